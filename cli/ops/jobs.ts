/** `batchline jobs`: the most recent jobs of a stack, newest first. */
import { hasEnded, listRecentJobs } from '../../shared/jobs/queries';
import type { JobItem } from '../../shared/store/items';
import { positiveNumber, UsageError } from '../args';
import { count, usd } from '../format';
import { opsCommand } from './command';
import { asJobRow, LOCAL_RUNS_DIR, readLocalRuns, targetOrLocalRuns } from './local-runs';
import { table, when } from './layout';
import { TARGET_HELP } from './target';
import { JSON_FLAGS, JSON_HELP, wantsJson, writeJson } from '../json';

const DEFAULT_LIMIT = 20;

export const JOBS_HELP = `Usage: batchline jobs [options]

Lists the most recent jobs of a deployed stack (or of a local one), newest first: status, rows,
outcomes, cost and when each was created. FAILED counts rows that errored, expired or were canceled.
With no stack configured (no AWS region or credentials, or no deployed stack) and none named, it
lists the runs "batchline run" left in ./${LOCAL_RUNS_DIR}/ instead.

Options:
  --limit N          how many jobs to list (default ${DEFAULT_LIMIT})
${JSON_HELP}
${TARGET_HELP}
  -h, --help         show this help

Exit status: 0 when the jobs are listed, 1 when the stack cannot be read, 2 for a usage error.
`;

export const jobsCommand = opsCommand('jobs', JOBS_HELP, { limit: { type: 'string' }, ...JSON_FLAGS }, async ({ values, positionals }, open, io) => {
  if (positionals.length > 0) throw new UsageError('takes no arguments (see batchline jobs --help)');
  const json = wantsJson(values);
  const limit = positiveNumber(values.limit as string | undefined, '--limit') ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit)) throw new UsageError(`--limit must be a whole number, got "${String(values.limit)}"`);
  // No stack configured at all, and none named: the runs `batchline run` left here instead.
  const opened = await targetOrLocalRuns(open, values, io, async (root) => {
    const runs = await readLocalRuns(root);
    return runs.length > 0 ? runs : undefined;
  });
  if ('local' in opened) {
    if (json) {
      const runs = opened.local.slice(0, limit);
      writeJson(io.stdout, 'jobs', {
        source: 'local-runs',
        noStack: opened.noStack,
        jobs: runs.map((run) => ({ ...jsonJobRow(asJobRow(run)), dir: run.dir })),
        more: opened.local.length > limit,
      });
      return 0;
    }
    io.stdout.write(`No deployed stack (${opened.noStack}).\nLocal runs in ${LOCAL_RUNS_DIR}/, newest first:\n`);
    io.stdout.write(formatJobs(opened.local.slice(0, limit).map(asJobRow)));
    if (opened.local.length > limit) io.stdout.write(`(the ${count(limit)} most recent; --limit N shows more)\n`);
    return 0;
  }
  const { target } = opened;
  // One more than shown tells whether there are more.
  const jobs = await listRecentJobs(target, { limit: limit + 1 });
  if (json) {
    writeJson(io.stdout, 'jobs', { source: 'stack', stack: target.label, jobs: jobs.slice(0, limit).map(jsonJobRow), more: jobs.length > limit });
    return 0;
  }
  if (jobs.length === 0) {
    io.stdout.write(`No jobs yet in ${target.label}.\n`);
    return 0;
  }
  io.stdout.write(formatJobs(jobs.slice(0, limit)));
  if (jobs.length > limit) io.stdout.write(`(the ${count(limit)} most recent; --limit N shows more)\n`);
  return 0;
});

/** What `jobs` shows of a job: a job record's fields, or a local run's summary read as one (./local-runs.ts). */
export type JobRow = Pick<
  JobItem,
  'jobId' | 'status' | 'totalRows' | 'validRows' | 'invalidRows' | 'counts' | 'costUsd' | 'createdAt' | 'endedAt' | 'rowsFinal' | 'cancelRequested'
>;

/** A job as `jobs --json` lists it (docs/cli-json.md): the columns' values, unformatted. */
export function jsonJobRow(job: JobRow) {
  return {
    jobId: job.jobId,
    status: job.status,
    totalRows: job.totalRows ?? null,
    validRows: job.validRows ?? null,
    invalidRows: job.invalidRows ?? null,
    rowsFinal: job.rowsFinal ?? null,
    counts: job.counts ?? null,
    costUsd: job.costUsd ?? null,
    createdAt: job.createdAt,
    endedAt: job.endedAt ?? null,
    cancelRequested: job.cancelRequested === true,
  };
}

export function formatJobs(jobs: readonly JobRow[]): string {
  return table(
    [
      { title: 'JOB' },
      { title: 'STATUS' },
      { title: 'ROWS', align: 'right' },
      { title: 'SUCCEEDED', align: 'right' },
      { title: 'FAILED', align: 'right' },
      { title: 'INVALID', align: 'right' },
      { title: 'COST', align: 'right' },
      { title: 'CREATED' },
    ],
    jobs.map((job) => [
      job.jobId,
      jobStatus(job),
      count(job.totalRows),
      count(job.counts?.succeeded),
      job.counts ? count(job.counts.errored + job.counts.expired + job.counts.canceled) : '–',
      count(job.invalidRows),
      usd(job.costUsd),
      when(job.createdAt),
    ]),
  );
}

/** The status, with how far a running job has got and whether it is being canceled. */
export function jobStatus(job: JobRow): string {
  let text: string = job.status;
  if (job.status === 'running' && job.validRows) text += ` ${Math.floor((100 * (job.rowsFinal ?? 0)) / job.validRows)}%`;
  if (job.cancelRequested && !hasEnded(job)) text += ' (canceling)';
  return text;
}
