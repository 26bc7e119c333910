/**
 * MarkJobFailed: the workflow's last resort. Records the failure on the job, cancels the job's
 * batches still in flight (they would otherwise run, and bill, for nobody), and announces the end.
 *
 * Re-runnable, and meant to be re-run until it succeeds: the job's status does not say whether its
 * batches were stopped — each attempt does. A batch counts as stopped once its attempt records
 * `cancelSentAt` (written only after the API took the cancel, or said the batch had ended or was
 * gone) or its end. A re-run keeps the first failure, cancels only what is still un-canceled, and
 * announces only if no run did (`failureAnnouncedAt`). ExecutionEnded and Reconcile re-run it for a
 * failed job that still has such batches, so a cancel that failed is never the last word.
 */
import type { CaughtError, MarkJobFailedInput } from './contract';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import type { NotifyConfig } from '../config';
import { ConditionFailed, getItem, updateItem } from '../store/dynamo';
import { JOB_SK, jobPk, type ChunkItem, type JobItem } from '../store/items';
import { jobKeys } from '../store/keys';
import { announceJobEnded, type JobEndedDetail, type NotifyClients } from '../notify';
import { errorFields, quietObserver, scrubErrorText, type Observer } from '../observability';
import { mayRunUncanceled, recordCancelSent, stopBatch } from './cancel';
import { isoAt, readJobChunks } from './chunk-state';
import { parseRegisterEvent } from './events';
import { clockOf } from '../clock';

/** Some in-flight batches could not be canceled (the job is marked failed and announced regardless). */
export class CancelFailed extends Error {
  override readonly name = 'CancelFailed';
}

export interface FailDeps extends NotifyClients {
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: { table: string; notify: NotifyConfig };
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Cancel calls in flight at once. */
  concurrency?: number;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
}

/** What one run of markJobFailed did. */
export interface FailReport {
  jobId: string | null;
  /** Batches this run stopped (canceled, or found ended or gone) and recorded so on their attempt. */
  batchesCanceled: number;
  /** Whether this run announced the failure (false when an earlier run already had). */
  announced: boolean;
}

/** A batch that may still be running: its attempt has a batch id, and neither its end nor a cancel is recorded. */
export interface BatchNotCanceled {
  chunk: number;
  attempt: number;
  /** Position of the attempt in the chunk's attempts list. */
  index: number;
  batchId: string;
  /** The batch's created_at as recorded, so a 404 right after create is not taken for a deleted batch. */
  createdAt?: string;
}

/** What a failed job's MarkJobFailed left undone. */
export interface FailureLeftovers {
  batches: BatchNotCanceled[];
  /** False when no run announced the failure (the announcement failed, or the run died before it). */
  announced: boolean;
}

export const CAUSE_MAX_BYTES = 4096;

/**
 * Marks the job failed (a job already failed keeps its first failure), cancels and records every
 * batch of it still un-canceled, and announces the failure unless a run already did. Throws
 * CancelFailed, after all that, when some batch could not be canceled: a re-run picks it up.
 *
 * `chunks`: the job's chunk records, when the caller has just read them for a job that had already
 * failed (a re-run's caller); otherwise they are read here, after the job is marked failed, so no
 * batch recorded before that is missed.
 */
export async function markJobFailed(input: MarkJobFailedInput, deps: FailDeps, chunks?: readonly ChunkItem[]): Promise<FailReport> {
  const failure = describeFailure(input.error);
  const now = isoAt(clockOf(deps)());
  const jobId = typeof input.jobId === 'string' && input.jobId !== '' ? input.jobId : undefined;
  const observer = deps.observer ?? quietObserver;

  if (jobId === undefined) {
    // Register itself failed: the state still holds its input, which says what the file was.
    observer.metric('JobsFailed', 1);
    const { error: _error, ...registerInput } = input;
    const known = knownObject(registerInput);
    observer.error('job failed before it was registered', { ...known, error: failure });
    await announceJobEnded({ status: 'failed', ...known, failure }, deps, deps.config.notify);
    return { jobId: null, batchesCanceled: 0, announced: true };
  }

  const key = { pk: jobPk(jobId), sk: JOB_SK };
  let job = await getItem<JobItem>(deps.dynamo, deps.config.table, key);
  let failedNow = false;
  if (job && job.status !== 'failed') {
    try {
      job = await updateItem<JobItem>(deps.dynamo, deps.config.table, key, {
        // cancelRequested also tells any chunk still polling to stop, and Submit to create nothing.
        set: { status: 'failed', failure, endedAt: now, updatedAt: now, cancelRequested: true },
        // A concurrent run that failed it first has the first word.
        condition: { expression: '#status <> :failed', names: { '#status': 'status' }, values: { ':failed': 'failed' } },
      });
      failedNow = true;
    } catch (error) {
      if (!(error instanceof ConditionFailed)) throw error;
      job = await getItem<JobItem>(deps.dynamo, deps.config.table, key);
    }
  }
  if (failedNow || !job) observer.metric('JobsFailed', 1);
  const recorded = job?.failure ?? failure;

  const batches = batchesNotCanceled(chunks ?? (await readJobChunks(deps.dynamo, deps.config.table, jobId)));
  const { canceled, problems } = await cancelBatches(jobId, batches, deps, now);
  const fields = { error: recorded, recorded: job !== undefined, batchesInFlight: batches.length, batchesNotCanceled: problems.length };
  if (failedNow || !job) observer.error('job failed', fields);
  else observer.warn('job had already failed: finished what its failure left undone', fields);

  let announced = false;
  if (job?.failureAnnouncedAt === undefined) {
    const detail: JobEndedDetail = {
      jobId,
      status: 'failed',
      bucket: job?.bucket,
      key: job?.key,
      resultsPrefix: jobKeys(jobId).resultsPrefix,
      failure: recorded,
    };
    await announceJobEnded(detail, deps, deps.config.notify);
    announced = true;
    // Recorded after the announcement: a run that dies in between announces twice, never not at all.
    if (job) await updateItem(deps.dynamo, deps.config.table, key, { set: { failureAnnouncedAt: now } });
  }
  if (problems.length > 0) {
    throw new CancelFailed(`could not cancel ${problems.length} batch(es) of job ${jobId}: ${problems.join('; ')}`);
  }
  return { jobId, batchesCanceled: canceled, announced };
}

/**
 * For a failed job: what its MarkJobFailed left undone, or undefined when nothing is. `chunks`: the
 * job's chunk records, when the caller has them; otherwise they are read here.
 */
export async function failureLeftovers(
  dynamo: DynamoDBClient,
  table: string,
  job: JobItem,
  chunks?: readonly ChunkItem[],
): Promise<FailureLeftovers | undefined> {
  const batches = batchesNotCanceled(chunks ?? (await readJobChunks(dynamo, table, job.jobId)));
  const announced = job.failureAnnouncedAt !== undefined;
  return batches.length > 0 || !announced ? { batches, announced } : undefined;
}

/**
 * Every attempt of the job whose batch may still be running un-canceled. A done chunk collected all
 * its attempts; a failed chunk is included, since its own cancel was best effort.
 */
function batchesNotCanceled(chunks: readonly ChunkItem[]): BatchNotCanceled[] {
  const found: BatchNotCanceled[] = [];
  for (const chunk of chunks) {
    if (chunk.status === 'done') continue;
    (chunk.attempts ?? []).forEach((attempt, index) => {
      if (mayRunUncanceled(attempt)) {
        found.push({ chunk: chunk.chunk, attempt: attempt.attempt, index, batchId: attempt.batchId, createdAt: attempt.createdAt });
      }
    });
  }
  return found;
}

/**
 * Cancels each batch and records `cancelSentAt` on its attempt once the batch is known to stop:
 * the API took the cancel, or the batch had ended or is gone. Returns how many were recorded, and
 * a line per batch that could not be (it stays un-canceled, for a re-run).
 */
async function cancelBatches(jobId: string, batches: BatchNotCanceled[], deps: FailDeps, now: string): Promise<{ canceled: number; problems: string[] }> {
  const problems: string[] = [];
  let canceled = 0;
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      try {
        if (!(await stopBatch(deps.api, batch.batchId, batch.createdAt))) {
          problems.push(`${batch.batchId}: the API refused the cancel and the batch is still in progress`);
          continue;
        }
      } catch (error) {
        problems.push(`${batch.batchId}: ${describeError(error)}`);
        continue;
      }
      try {
        await recordCancelSent(deps.dynamo, deps.config.table, jobId, batch, now);
        canceled += 1;
      } catch (error) {
        // Canceled, but a re-run cannot tell: it cancels again, which is harmless.
        problems.push(`${batch.batchId}: canceled, but recording it failed: ${describeError(error)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(deps.concurrency ?? 8, batches.length) }, worker));
  return { canceled, problems };
}

/** `name: message` (no message for a SyntaxError, whose message may quote a request). */
function describeError(error: unknown): string {
  const { name, message } = errorFields(error);
  return message === undefined ? name : `${name}: ${message}`;
}

function knownObject(registerInput: Record<string, unknown>): { bucket?: string; key?: string } {
  try {
    const ref = parseRegisterEvent(registerInput);
    return { bucket: ref.bucket, key: ref.key };
  } catch {
    return {};
  }
}

/**
 * The failure as recorded and announced: the error's name, and a cause cut to 4 KB. A Lambda
 * cause is JSON with a stack trace; only its type and message are kept. V8's JSON.parse messages
 * quote the text they failed on, which may be a request: that quote is removed.
 */
export function describeFailure(error: CaughtError | undefined): { error: string; cause: string } {
  const name = typeof error?.Error === 'string' && error.Error !== '' ? error.Error : 'UnknownError';
  let cause = typeof error?.Cause === 'string' ? error.Cause : '';
  try {
    const parsed = JSON.parse(cause) as { errorType?: unknown; errorMessage?: unknown };
    if (typeof parsed?.errorMessage === 'string') {
      cause = typeof parsed.errorType === 'string' ? `${parsed.errorType}: ${parsed.errorMessage}` : parsed.errorMessage;
    }
  } catch {
    // Not a Lambda error payload (a States.* error's plain text): kept as it is.
  }
  return { error: name, cause: truncateUtf8(scrubErrorText(cause), CAUSE_MAX_BYTES) };
}

/** Cuts text to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  const marker = '…';
  let end = maxBytes - Buffer.byteLength(marker);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString('utf8') + marker;
}
