/**
 * Read (and one write) access to jobs for whoever operates the pipeline — the CLI against a
 * deployed or a local stack. Pure data access: clients, bucket and table come in as arguments.
 *
 * - listRecentJobs: the `byCreated` index, newest first.
 * - jobProgress: a job record with its chunk records, and their progress summed.
 * - getRow: a row's record and its latest result line, fetched by the location Collect recorded.
 * - jobForUpload: the job an upload to the inbox created.
 * - requestCancel: sets `cancelRequested` on a job that can still be canceled; Poll and Submit act on it.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BatchResultLine } from '../anthropic/types';
import { ConditionFailed, getItem, queryJobsIndex, queryPartition, updateItem } from '../store/dynamo';
import { isS3NotFound } from '../store/s3';
import { CHUNK_SK_PREFIX, JOB_SK, jobPk, type ChunkItem, type JobItem, type JobStatus, type RowCounts, type RowRecord } from '../store/items';
import type { Prefixes } from '../store/keys';
import { bareEtag, jobIdFor } from './job-id';
import { JobNotFound } from './prepare-job';
import { readJob } from './chunk-state';
import { readRowRecord } from './row-records';

export { JobNotFound };

/** No record of this custom_id in the job (not collected yet, an invalid line, or a wrong id). */
export class RowNotFound extends Error {
  override readonly name = 'RowNotFound';
}

/** A row's recorded location holds some other row's line: the results file was rewritten under it. */
export class ResultLocationMismatch extends Error {
  override readonly name = 'ResultLocationMismatch';
}

export interface QueryDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  bucket: string;
  table: string;
  /** The stack's prefixes, when the caller is not one of its functions (default: the process's, shared/store/keys.ts). */
  prefixes?: Prefixes;
}

export const ENDED_JOB_STATUSES: ReadonlySet<JobStatus> = new Set(['succeeded', 'rejected', 'canceled', 'failed']);

/**
 * Whether a job has ended: Finalize and MarkJobFailed stamp `endedAt` with the final status. The
 * status alone is not enough: Prepare sets `rejected` before Finalize has written the outputs.
 */
export function hasEnded(job: Pick<JobItem, 'status' | 'endedAt'>): boolean {
  return ENDED_JOB_STATUSES.has(job.status) && job.endedAt !== undefined;
}
/** Statuses in which a cancel request still changes something (Finalize reads the flag once, at its start). */
export const CANCELABLE_JOB_STATUSES: readonly JobStatus[] = ['registered', 'preparing', 'running'];

/**
 * Jobs newest first, at most `limit` (default 20); with `since` (an ISO time), only jobs created
 * then or later.
 */
export async function listRecentJobs(deps: Pick<QueryDeps, 'dynamo' | 'table'>, options: { limit?: number; since?: string } = {}): Promise<JobItem[]> {
  const jobs: JobItem[] = [];
  const query = { from: options.since, newestFirst: true, limit: options.limit ?? 20 };
  for await (const job of queryJobsIndex<JobItem>(deps.dynamo, deps.table, query)) jobs.push(job);
  return jobs;
}

/** The job record (JobNotFound when there is none): the one reader, shared with the pipeline. */
export const getJob = (deps: Pick<QueryDeps, 'dynamo' | 'table'>, jobId: string): Promise<JobItem> => readJob(deps.dynamo, deps.table, jobId);

/** A job's progress summed over its chunk records (the same figures the local runtime reports). */
export interface ProgressTotals {
  jobId: string;
  status: JobStatus | undefined;
  totalRows?: number;
  validRows?: number;
  invalidRows?: number;
  chunks?: number;
  chunksDone: number;
  chunksFailed: number;
  /** Batches created, every attempt counted. */
  batches: number;
  /** Attempts after the first that created a batch. */
  retries: number;
  /** Polls of every attempt. */
  polls: number;
  /** Outcomes of collected attempts, summed: a row retried after an error counts once per attempt. */
  attemptOutcomes: { succeeded: number; errored: number; expired: number; canceled: number };
  /** Rows whose status is final (Collect's counter); the job's counts replace it once it ends. */
  rowsFinal?: number;
  counts?: RowCounts;
  costUsd?: number;
}

export interface JobProgressReport {
  job: JobItem;
  /** In chunk order. */
  chunks: ChunkItem[];
  totals: ProgressTotals;
}

/**
 * Chunks are read before the job, so the job record is never older than its chunks: a chunk with a
 * batch comes with a job that has its chunk count. (A job seen ended may have chunks read just
 * before their last update; read again for a final picture.)
 */
export async function jobProgress(deps: Pick<QueryDeps, 'dynamo' | 'table'>, jobId: string): Promise<JobProgressReport> {
  const chunks: ChunkItem[] = [];
  for await (const chunk of queryPartition<ChunkItem>(deps.dynamo, deps.table, jobPk(jobId), CHUNK_SK_PREFIX)) chunks.push(chunk);
  const job = await getJob(deps, jobId);
  return { job, chunks, totals: progressTotals(job, chunks) };
}

/** The attempt-derived counts of a job with no chunk yet (or no record). */
export const noAttempts = () => ({
  chunksDone: 0,
  chunksFailed: 0,
  batches: 0,
  retries: 0,
  polls: 0,
  attemptOutcomes: { succeeded: 0, errored: 0, expired: 0, canceled: 0 },
});

export function progressTotals(job: JobItem, chunks: readonly ChunkItem[]): ProgressTotals {
  const totals: ProgressTotals = {
    jobId: job.jobId,
    status: job.status,
    totalRows: job.totalRows,
    validRows: job.validRows,
    invalidRows: job.invalidRows,
    chunks: job.chunkCount,
    ...noAttempts(),
    rowsFinal: job.rowsFinal,
    counts: job.counts,
    costUsd: job.costUsd,
  };
  for (const chunk of chunks) {
    if (chunk.status === 'done') totals.chunksDone += 1;
    if (chunk.status === 'failed') totals.chunksFailed += 1;
    for (const attempt of chunk.attempts ?? []) {
      if (attempt.batchId) totals.batches += 1;
      // As summary.json counts them (Finalize's Tally): every attempt after the first, submitted or not.
      if (attempt.attempt > 1) totals.retries += 1;
      totals.polls += attempt.polls ?? 0;
      for (const outcome of ['succeeded', 'errored', 'expired', 'canceled'] as const) {
        totals.attemptOutcomes[outcome] += attempt.counts?.[outcome] ?? 0;
      }
    }
  }
  return totals;
}

export interface RowLookup {
  row: RowRecord;
  /** The row's latest result line as the API returned it; absent when the row has no recorded line. */
  result?: BatchResultLine;
  /** Set when a line is recorded but its work file is gone (work/ files expire; results.jsonl stays). */
  resultUnavailable?: string;
}

/** A row's record and its latest result line, read with a ranged GetObject at the recorded location. */
export async function getRow(deps: QueryDeps, jobId: string, customId: string): Promise<RowLookup> {
  const row = await readRowRecord(deps.dynamo, deps.table, await getJob(deps, jobId), customId, deps.prefixes);
  if (!row) {
    throw new RowNotFound(
      `job ${jobId} has no record of custom_id "${customId}" (rows are recorded as their batch is collected; invalid lines are listed in invalid.jsonl)`,
    );
  }
  if (!row.result) return { row };
  const { key, offset, length } = row.result;
  let text: string;
  try {
    const response = await deps.s3.send(new GetObjectCommand({ Bucket: deps.bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }));
    text = await response.Body!.transformToString('utf8');
  } catch (error) {
    if (isS3NotFound(error)) {
      return { row, resultUnavailable: `s3://${deps.bucket}/${key} no longer exists (work files expire; results.jsonl keeps every row)` };
    }
    throw error;
  }
  const result = JSON.parse(text) as BatchResultLine;
  if (result.custom_id !== customId) {
    throw new ResultLocationMismatch(`bytes ${offset}+${length} of s3://${deps.bucket}/${key} hold custom_id "${result.custom_id}", not "${customId}"`);
  }
  return { row, result };
}

/** An object just uploaded to the inbox, as the upload's response names it. */
export interface UploadedObject {
  bucket: string;
  key: string;
  etag: string;
  versionId?: string;
}

/**
 * The job an upload created, if Register has recorded it yet. With a version id (the deployed bucket
 * versions) the job id is known: Register names the job by version first. Without one, Register
 * used the event's sequencer, which the uploader never sees: the job is then the one for this key
 * and ETag, created since `since`, that is not in `exclude` (jobs that existed before the upload).
 */
export async function jobForUpload(
  deps: Pick<QueryDeps, 'dynamo' | 'table'>,
  uploaded: UploadedObject,
  options: { since: string; exclude?: ReadonlySet<string> },
): Promise<JobItem | undefined> {
  const versionId = uploaded.versionId && uploaded.versionId !== 'null' ? uploaded.versionId : undefined;
  if (versionId) {
    const jobId = jobIdFor({ bucket: uploaded.bucket, key: uploaded.key, token: versionId });
    const job = await getItem<JobItem>(deps.dynamo, deps.table, { pk: jobPk(jobId), sk: JOB_SK });
    if (job) return job;
  }
  const etag = bareEtag(uploaded.etag);
  const recent = await listRecentJobs(deps, { since: options.since, limit: RECENT_UPLOAD_WINDOW });
  return recent.find((job) => job.bucket === uploaded.bucket && job.key === uploaded.key && job.etag === etag && !options.exclude?.has(job.jobId));
}

/** Jobs looked at when matching an upload by key and ETag: more than arrive in minutes. */
const RECENT_UPLOAD_WINDOW = 200;

/** Ids of the jobs for `key` created since `since` (taken before an upload, for jobForUpload's `exclude`). */
export async function jobIdsForKey(deps: Pick<QueryDeps, 'dynamo' | 'table'>, bucket: string, key: string, since: string): Promise<Set<string>> {
  const recent = await listRecentJobs(deps, { since, limit: RECENT_UPLOAD_WINDOW });
  return new Set(recent.filter((job) => job.bucket === bucket && job.key === key).map((job) => job.jobId));
}

export type CancelOutcome =
  /** The flag is set now. */
  | { outcome: 'requested'; job: JobItem }
  /** It was set before; the job has not ended yet. */
  | { outcome: 'already-requested'; job: JobItem }
  /** Too late: no batch is left to cancel and Finalize is writing the outputs (or a rejected file's). */
  | { outcome: 'finalizing'; job: JobItem }
  | { outcome: 'ended'; job: JobItem };

/**
 * Asks a running job to cancel: a conditional update, so a job that has ended (or is finalizing) is
 * never touched. Submit then creates no more batches and Poll cancels those in progress.
 */
export async function requestCancel(deps: Pick<QueryDeps, 'dynamo' | 'table'>, jobId: string, now: () => Date = () => new Date()): Promise<CancelOutcome> {
  const statuses = Object.fromEntries(CANCELABLE_JOB_STATUSES.map((status, i) => [`:c${i}`, status]));
  try {
    const job = await updateItem<JobItem>(
      deps.dynamo,
      deps.table,
      { pk: jobPk(jobId), sk: JOB_SK },
      {
        set: { cancelRequested: true, updatedAt: now().toISOString() },
        condition: {
          expression: `attribute_exists(pk) AND #cst IN (${Object.keys(statuses).join(', ')}) AND (attribute_not_exists(#ccr) OR #ccr = :cfalse)`,
          names: { '#cst': 'status', '#ccr': 'cancelRequested' },
          values: { ...statuses, ':cfalse': false },
        },
      },
    );
    return { outcome: 'requested', job };
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
  }
  const job = await getJob(deps, jobId);
  if (hasEnded(job)) return { outcome: 'ended', job };
  if (CANCELABLE_JOB_STATUSES.includes(job.status)) return { outcome: 'already-requested', job };
  return { outcome: 'finalizing', job };
}
