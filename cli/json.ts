/**
 * `--json` (or `--output json`): a command's result as one JSON document on stdout, for scripts and
 * CI. The shapes are documented field by field in docs/cli-json.md; their words are summary.json's.
 * Progress and human lines go to stderr (or are left out); the exit status is the same as without.
 */
import { jobCostUsd, type JobSummary } from '../shared/jobs/finalize-job';
import { hasEnded, type JobProgressReport } from '../shared/jobs/queries';
import type { ChunkItem, JobItem, JobStatus } from '../shared/store/items';
import { jobKeys } from '../shared/store/keys';
import { UsageError, type Options } from './args';
import type { Target } from './ops/target';

/** The flags every command that prints a result takes. */
export const JSON_FLAGS = {
  json: { type: 'boolean' },
  output: { type: 'string' },
} as const satisfies Options;

export const JSON_HELP = `  --json             print the result as one JSON document on stdout (docs/cli-json.md),
                     and any progress on stderr; the exit status is the same. --output json
                     is the same as --json; --output text (the default) is not`;

/** Bumped only when a field changes meaning or goes away; new fields may appear without it. */
export const JSON_VERSION = 1;

/** Whether the result is asked for as JSON; UsageError for an --output other than json or text. */
export function wantsJson(values: { json?: unknown; output?: unknown }): boolean {
  const output = values.output as string | undefined;
  if (output !== undefined && output !== 'json' && output !== 'text') throw new UsageError(`--output must be json or text, got "${output}"`);
  if (values.json === true && output === 'text') throw new UsageError('--json and --output text disagree: give one');
  return values.json === true || output === 'json';
}

/** The one document on stdout, with the shape's version first. */
export function writeJson(out: NodeJS.WritableStream, command: string, document: object): void {
  out.write(`${JSON.stringify({ batchline: JSON_VERSION, command, ...document }, null, 2)}\n`);
}

/** Counts as summary.json has them (`total` included once known). */
export type JsonCounts = JobSummary['counts'] | (Omit<JobSummary['counts'], 'total'> & { total?: number });

/** What `run`, `submit` and `status` say of a job: the same fields, whoever ran it. */
export interface JsonJob {
  jobId: string;
  status: JobStatus | null;
  /** True once the job has its final status and its outputs are written. */
  ended: boolean;
  /** The exit status the command returns (README: exit statuses). */
  exitStatus: number;
  counts: JsonCounts | null;
  /** Rows of a rejected file that were never sent (in counts.canceled, as in summary.json). */
  notSubmitted: JobSummary['notSubmitted'] | null;
  failure: { error: string; cause: string } | null;
  costUsd: number | null;
  /** summary.json as the job wrote it; null until the job has ended (or when it wrote none). */
  summary: JobSummary | null;
}

export function jsonJob(fields: {
  jobId: string;
  status: JobStatus | undefined;
  ended: boolean;
  exitStatus: number;
  job?: JobItem | undefined;
  summary?: JobSummary | undefined;
  failure?: { error: string; cause: string } | undefined;
}): JsonJob {
  const { job, summary } = fields;
  const counts = summary?.counts ?? (job?.counts ? { ...(job.totalRows !== undefined ? { total: job.totalRows } : {}), ...job.counts } : null);
  return {
    jobId: fields.jobId,
    status: fields.status ?? null,
    ended: fields.ended,
    exitStatus: fields.exitStatus,
    counts,
    notSubmitted: summary?.notSubmitted ?? null,
    failure: fields.failure ?? job?.failure ?? null,
    costUsd: (summary ? jobCostUsd(summary) : undefined) ?? job?.costUsd ?? null,
    summary: summary ?? null,
  };
}

/** A chunk attempt as `status --json` lists it (the record's own field names). */
export function jsonAttempts(chunks: readonly ChunkItem[]) {
  return chunks.flatMap((chunk) =>
    chunk.attempts.map((attempt) => ({
      chunk: chunk.chunk,
      attempt: attempt.attempt,
      status: attempt.attempt < chunk.currentAttempt ? 'collected' : chunk.status,
      batchId: attempt.batchId ?? null,
      rows: attempt.rows,
      counts: attempt.counts ?? null,
      requestCounts: attempt.requestCounts ?? null,
      polls: attempt.polls ?? 0,
      createdAt: attempt.createdAt ?? null,
      endedAt: attempt.endedAt ?? null,
      collectedAt: attempt.collectedAt ?? null,
      retryRows: attempt.retryRows ?? 0,
      failure: attempt.attempt === chunk.currentAttempt ? (chunk.failure ?? null) : null,
    })),
  );
}

/** What `status --json` and `submit --json` print of a job (docs/cli-json.md). */
export function jobDocument(report: JobProgressReport, summary: JobSummary | undefined, exitStatus: number, target: Pick<Target, 'bucket' | 'prefixes'>) {
  const { job, chunks, totals } = report;
  const ended = hasEnded(job);
  return {
    ...jsonJob({ jobId: job.jobId, status: job.status, ended, exitStatus, job, summary }),
    source: 'stack',
    input: { bucket: job.bucket, key: job.key, validationMode: job.validationMode },
    createdAt: job.createdAt,
    endedAt: job.endedAt ?? null,
    cancelRequested: job.cancelRequested === true,
    progress: {
      totalRows: job.totalRows ?? null,
      validRows: job.validRows ?? null,
      invalidRows: job.invalidRows ?? null,
      rowsFinal: job.rowsFinal ?? null,
      chunks: totals.chunks ?? null,
      chunksDone: totals.chunksDone,
      chunksFailed: totals.chunksFailed,
      batches: totals.batches,
      retries: totals.retries,
      polls: totals.polls,
    },
    attempts: jsonAttempts(chunks),
    outputs: ended ? { bucket: target.bucket, prefix: jobKeys(job.jobId, target.prefixes).resultsPrefix } : null,
  };
}
