/** `batchline status JOB`: a job's record and each chunk attempt's progress. */
import { hasEnded, jobProgress, type JobProgressReport } from '../../shared/jobs/queries';
import type { ChunkAttempt, ChunkItem } from '../../shared/store/items';
import { count, plural, usd } from '../format';
import path from 'node:path';
import { jobKeys } from '../../shared/store/keys';
import { oneJob, opsCommand } from './command';
import { LOCAL_RUNS_DIR, readLocalRun, targetOrLocalRuns } from './local-runs';
import { oneLine, table, when } from './layout';
import { TARGET_HELP } from './target';
import { EXIT, EXIT_STATUS_HELP, exitStatusOf } from '../exit-status';
import { failureText, formatSummary, LOCAL_KEY, STACK_KEY } from '../run';
import { getJson } from '../../shared/store/s3';
import type { JobSummary } from '../../shared/jobs/finalize-job';
import { JSON_FLAGS, JSON_HELP, jobDocument, jsonJob, wantsJson, writeJson } from '../json';
import { followToEnd } from './submit';

export const STATUS_HELP = `Usage: batchline status JOB [options]

Shows a job's progress from its records: the job (status, rows, outcome, cost) and every attempt of
every chunk (its batch, the outcomes so far, polls, and why a chunk failed). With no stack
configured (no AWS region or credentials, or no deployed stack) and none named, it shows the run
"batchline run" left in ./${LOCAL_RUNS_DIR}/JOB/ instead, from its summary.json.

Options:
  --wait             follow the job until it ends (progress, then its summary), and exit as
                     "batchline run" and "batchline submit" do; Ctrl-C stops following (exit 130),
                     the job runs on
${JSON_HELP}
${TARGET_HELP}
  -h, --help         show this help

A job that has ended exits with the status "batchline submit" would have given it. Without --wait,
one that has not ended yet exits 0 (status shows where a job is, it does not wait for it).

${EXIT_STATUS_HELP}`;

export const statusCommand = opsCommand('status', STATUS_HELP, { wait: { type: 'boolean' }, ...JSON_FLAGS }, async ({ values, positionals }, open, io) => {
  const jobId = oneJob(positionals, 'status');
  const json = wantsJson(values);
  // No stack configured at all, and none named: a run `batchline run` left here, if it is one.
  const opened = await targetOrLocalRuns(open, values, io, (root) => readLocalRun(root, jobId));
  if ('local' in opened) {
    const { summary, dir } = opened.local;
    const exitStatus = exitStatusOf({ status: summary.status, counts: summary.counts });
    if (json) {
      writeJson(io.stdout, 'status', {
        ...jsonJob({ jobId: summary.jobId, status: summary.status, ended: true, exitStatus, summary }),
        source: 'local-run',
        noStack: opened.noStack,
        attempts: null,
        outputs: { dir },
      });
      return exitStatus;
    }
    io.stdout.write(`No deployed stack (${opened.noStack}); a local run:\n`);
    const outcome = { jobId: summary.jobId, status: summary.status, execution: undefined, job: undefined, summary, keys: jobKeys(summary.jobId) };
    io.stdout.write(`${formatSummary(outcome, summary.timings.durationSeconds * 1000)}\n  outputs   ${path.relative(io.cwd, dir) || '.'}/\n`);
    return exitStatus;
  }
  const { target } = opened;
  const report = await jobProgress(target, jobId);
  const { job } = report;
  if (values.wait === true && !hasEnded(job)) {
    const screen = json ? io.stderr : io.stdout;
    return followToEnd(target, jobId, io, {
      tty: screen.isTTY === true,
      startedAt: Date.parse(job.createdAt),
      json: json ? 'status' : undefined,
      opening: `${formatStatus(report, target.kind === 'local' ? LOCAL_KEY : STACK_KEY)}\nWaiting for job ${jobId} to end (Ctrl-C stops waiting; the job runs on)\n`,
    });
  }
  const ended = hasEnded(job);
  const summary = ended ? await getJson<JobSummary>(target.s3, target.bucket, jobKeys(jobId, target.prefixes).summary) : undefined;
  const exitStatus = ended ? exitStatusOf({ status: job.status, counts: summary?.counts ?? job.counts }) : EXIT.succeeded;
  if (json) writeJson(io.stdout, 'status', jobDocument(report, summary, exitStatus, target));
  else io.stdout.write(formatStatus(report, target.kind === 'local' ? LOCAL_KEY : STACK_KEY));
  return exitStatus;
});

/** `keyFrom`: where the stack's API key comes from, for a job that failed on it (cli/run.ts). */
export function formatStatus({ job, chunks, totals }: JobProgressReport, keyFrom = STACK_KEY): string {
  const lines = [`Job ${job.jobId}: ${job.status}${job.cancelRequested && job.status !== 'canceled' && job.status !== 'failed' ? ' (cancel requested)' : ''}`];
  lines.push(`  input     s3://${job.bucket}/${job.key} (${job.validationMode})`);
  lines.push(`  created   ${when(job.createdAt)} · updated ${when(job.updatedAt)}${job.endedAt ? ` · ended ${when(job.endedAt)}` : ''}`);
  if (job.totalRows === undefined) {
    lines.push('  rows      not counted yet (the file is being validated)');
  } else {
    const final = hasEnded(job) ? '' : ` · ${count(job.rowsFinal ?? 0)} final so far`;
    lines.push(`  rows      ${count(job.totalRows)} in all: ${count(job.validRows)} valid, ${count(job.invalidRows)} invalid${final}`);
  }
  if (totals.chunks !== undefined) {
    const batches =
      totals.batches > 0
        ? ` · ${plural(totals.batches, 'batch', 'batches')}${totals.retries > 0 ? ` (${plural(totals.retries, 'retry', 'retries')})` : ''}`
        : '';
    const polls = totals.polls > 0 ? ` · ${plural(totals.polls, 'poll')}` : '';
    lines.push(`  chunks    ${count(totals.chunks)}: ${count(totals.chunksDone)} done, ${count(totals.chunksFailed)} failed${batches}${polls}`);
  }
  if (job.counts) {
    const c = job.counts;
    lines.push(
      `  outcome   ${count(c.succeeded)} succeeded, ${count(c.errored)} errored, ${count(c.expired)} expired, ${count(c.canceled)} canceled, ${count(c.invalid)} invalid`,
    );
  }
  if (job.costUsd !== undefined) lines.push(`  cost      ${usd(job.costUsd)} at batch rates`);
  if (job.failure) lines.push(`  failure   ${failureText(job.failure, keyFrom)}`);
  const refused = chunks.flatMap((chunk) => chunk.attempts.flatMap((attempt) => (attempt.keyRefusedSince ? [attempt.keyRefusedSince] : []))).sort()[0];
  if (refused) lines.push(`  API KEY   refused by the API since ${when(refused)}: batches run on (and bill); put a valid key in the secret`);
  let text = lines.join('\n') + '\n';
  if (chunks.length === 0) return text;
  text += '\n' + attemptsTable(chunks);
  for (const chunk of chunks) {
    if (chunk.failure) text += `chunk ${chunk.chunk} failed: ${chunk.failure.error}: ${oneLine(chunk.failure.cause)}\n`;
  }
  return text;
}

function attemptsTable(chunks: readonly ChunkItem[]): string {
  const rows = chunks.flatMap((chunk) =>
    chunk.attempts.map((attempt) => {
      // Collected counts once the attempt is collected; the batch's own counts while it runs.
      const counts = attempt.counts ?? attempt.requestCounts;
      return [
        String(chunk.chunk),
        String(attempt.attempt),
        attempt.attempt < chunk.currentAttempt ? 'collected' : chunk.status,
        attempt.batchId ?? '–',
        count(attempt.rows),
        count(counts?.succeeded),
        count(counts?.errored),
        count(counts?.expired),
        count(counts?.canceled),
        count(attempt.polls ?? 0),
        attemptNote(attempt),
      ];
    }),
  );
  return table(
    [
      { title: 'CHUNK', align: 'right' },
      { title: 'ATTEMPT', align: 'right' },
      { title: 'STATUS' },
      { title: 'BATCH' },
      { title: 'ROWS', align: 'right' },
      { title: 'SUCCEEDED', align: 'right' },
      { title: 'ERRORED', align: 'right' },
      { title: 'EXPIRED', align: 'right' },
      { title: 'CANCELED', align: 'right' },
      { title: 'POLLS', align: 'right' },
      { title: 'NOTE' },
    ],
    rows,
  );
}

function attemptNote(attempt: ChunkAttempt): string {
  const notes: string[] = [];
  if (!attempt.counts && attempt.requestCounts && attempt.processingStatus !== 'ended') {
    notes.push(`${count(attempt.requestCounts.processing)} processing`);
  }
  if (attempt.collectedAt && !attempt.batchId) notes.push('canceled before submitting');
  if (attempt.cancelSentAt) notes.push('cancel sent');
  if (attempt.keyRefusedSince) notes.push(`API KEY REFUSED since ${when(attempt.keyRefusedSince)}: the batch runs on; fix the key`);
  if (attempt.retryRows) notes.push(`${count(attempt.retryRows)} to retry`);
  if (attempt.missingRows) notes.push(`${count(attempt.missingRows)} missing from results`);
  if (attempt.unpricedModels?.length) notes.push(`not priced: ${attempt.unpricedModels.join(', ')}`);
  return notes.join('; ');
}
