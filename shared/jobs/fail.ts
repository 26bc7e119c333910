/**
 * MarkJobFailed: the workflow's last resort. Records the failure on the job, cancels the job's
 * batches still in flight (they would otherwise run, and bill, for nobody), and announces the end.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import { ApiNotFound, ApiRequestInvalid } from '../anthropic/errors';
import type { NotifyConfig } from '../config';
import { getItem, queryPartition, updateItem } from '../store/dynamo';
import { CHUNK_SK_PREFIX, JOB_SK, jobPk, type ChunkItem, type JobItem } from '../store/items';
import { jobKeys } from '../store/keys';
import { announceJobEnded, type JobEndedDetail, type NotifyClients } from '../notify';
import { quietObserver, type Observer } from '../observability';
import { parseRegisterEvent } from './events';

/** Some in-flight batches could not be canceled (the job is marked failed and announced regardless). */
export class CancelFailed extends Error {
  override readonly name = 'CancelFailed';
}

/** A Catch's ResultPath `$.error`: the Step Functions error name and its cause. */
export interface StepError {
  Error?: string;
  Cause?: string;
}

export interface FailInput {
  jobId?: string;
  error?: StepError;
  [field: string]: unknown;
}

export interface FailDeps extends NotifyClients {
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: { table: string; notify: NotifyConfig };
  now?: () => Date;
  /** Cancel calls in flight at once. */
  concurrency?: number;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
}

export const CAUSE_MAX_BYTES = 4096;

export async function markJobFailed(input: FailInput, deps: FailDeps): Promise<{ jobId: string | null }> {
  const failure = describeFailure(input.error);
  const now = (deps.now ?? (() => new Date()))().toISOString();
  const jobId = typeof input.jobId === 'string' && input.jobId !== '' ? input.jobId : undefined;
  const observer = deps.observer ?? quietObserver;
  observer.metric('JobsFailed', 1);

  if (jobId === undefined) {
    // Register itself failed: the state still holds its input, which says what the file was.
    const { error: _error, ...registerInput } = input;
    const known = knownObject(registerInput);
    observer.error('job failed before it was registered', { ...known, error: failure });
    await announceJobEnded({ status: 'failed', ...known, failure }, deps, deps.config.notify);
    return { jobId: null };
  }

  const key = { pk: jobPk(jobId), sk: JOB_SK };
  const job = await getItem<JobItem>(deps.dynamo, deps.config.table, key);
  if (job) {
    await updateItem(deps.dynamo, deps.config.table, key, {
      // cancelRequested also tells any chunk still polling to stop.
      set: { status: 'failed', failure, endedAt: now, updatedAt: now, cancelRequested: true },
    });
  }
  const { inFlight, problems: unCanceled } = await cancelInFlight(jobId, deps);
  observer.error('job failed', { error: failure, recorded: job !== undefined, batchesInFlight: inFlight, batchesNotCanceled: unCanceled.length });

  const detail: JobEndedDetail = {
    jobId,
    status: 'failed',
    bucket: job?.bucket,
    key: job?.key,
    resultsPrefix: jobKeys(jobId).resultsPrefix,
    failure,
  };
  await announceJobEnded(detail, deps, deps.config.notify);
  if (unCanceled.length > 0) {
    throw new CancelFailed(`could not cancel ${unCanceled.length} batch(es) of job ${jobId}: ${unCanceled.join('; ')}`);
  }
  return { jobId };
}

/**
 * Cancels every batch of an unfinished chunk attempt. A batch that already ended (or is gone) is
 * fine; returns how many batches were in flight, and a line per batch that could not be canceled.
 */
async function cancelInFlight(jobId: string, deps: FailDeps): Promise<{ inFlight: number; problems: string[] }> {
  const batchIds: string[] = [];
  for await (const chunk of queryPartition<ChunkItem>(deps.dynamo, deps.config.table, jobPk(jobId), CHUNK_SK_PREFIX)) {
    if (chunk.status === 'done' || chunk.status === 'failed') continue;
    for (const attempt of chunk.attempts ?? []) {
      if (attempt.batchId && !attempt.endedAt) batchIds.push(attempt.batchId);
    }
  }
  const problems: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < batchIds.length) {
      const batchId = batchIds[next++]!;
      try {
        await deps.api.cancel(batchId);
      } catch (error) {
        // Ended, canceling or deleted batches answer 400 or 404: nothing left to stop.
        if (error instanceof ApiNotFound || error instanceof ApiRequestInvalid) continue;
        problems.push(`${batchId}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(deps.concurrency ?? 8, batchIds.length) }, worker));
  return { inFlight: batchIds.length, problems };
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
export function describeFailure(error: StepError | undefined): { error: string; cause: string } {
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
  return { error: name, cause: truncateUtf8(scrubJsonQuotes(cause), CAUSE_MAX_BYTES) };
}

/** V8 quotes the source raw (inner quotes unescaped, cut with `...`): everything from the first quote goes. */
function scrubJsonQuotes(text: string): string {
  return text
    .replace(/(?:\.\.\.)?"[\s\S]*"(?:\.\.\.)? is not valid JSON/g, '"…" is not valid JSON')
    .replace(/(Unexpected (?:token|character) )(?:'[^']*'|\S+)/g, '$1…');
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
