/**
 * RecordChunkFailure: the Catch target of every chunk state. The chunk is marked failed with the
 * error, its batch in flight (if any) is canceled, and the other chunks carry on. Finalize turns the
 * chunk's rows that have no final result into errored `chunk_failed`, with this cause — which ends
 * up in errors.jsonl, so it is cleaned as MarkJobFailed cleans a job's (describeFailure).
 *
 * A Collect that failed for a reason a later run cures (it was killed more often than the workflow
 * retries it, the API or storage stayed unavailable, the key was refused) while its batch had ended
 * leaves paid results at the API for 29 days: the chunk is marked `collectLater` (and the job with
 * it), its rows end `collect_pending` for now, and the daily reconciler collects them, going on from
 * Collect's checkpoint, and finalizes the job again (shared/jobs/reconcile-jobs.ts).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import type { PipelineConfig } from '../config';
import { errorFields, quietObserver, type Observer } from '../observability';
import { cancelBatch, mayRunUncanceled, recordCancelSent } from './cancel';
import {
  API_RETRYABLE_ERRORS,
  KEY_REFUSED_ERRORS,
  LAMBDA_CRASH_ERRORS,
  LAMBDA_TRANSIENT_ERRORS,
  STORAGE_THROTTLED_ERRORS,
  type ChunkFailureInput,
  type ChunkFailureOutput,
} from './contract';
import { describeFailure } from './mark-job-failed';
import { releaseCreateSlot } from './create-slot';
import { attemptOf, isoAt, jobKey, readChunk, updateChunk } from './chunk-state';
import { updateItem } from '../store/dynamo';
import type { ChunkAttempt } from '../store/items';
import { clockOf } from '../clock';

/** Failures a later Collect can get past: the task's own time (States.Timeout), a killed function, unavailable services, a refused key. */
export const COLLECT_LATER_ERRORS: ReadonlySet<string> = new Set<string>([
  'States.Timeout',
  ...LAMBDA_CRASH_ERRORS,
  ...LAMBDA_TRANSIENT_ERRORS,
  ...STORAGE_THROTTLED_ERRORS,
  ...API_RETRYABLE_ERRORS,
  ...KEY_REFUSED_ERRORS,
]);

/** Whether the chunk's attempt failed in Collect, curably, with its batch's results still to read. */
export function collectsLater(error: string, attempt: ChunkAttempt): boolean {
  return COLLECT_LATER_ERRORS.has(error) && Boolean(attempt.batchId) && attempt.processingStatus === 'ended' && attempt.collectedAt === undefined;
}

export interface ChunkFailureDeps {
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: Pick<PipelineConfig, 'table'>;
  now?: () => number;
  /** Where the step's log lines go (the handler's invocation). */
  observer?: Observer;
}

export async function recordChunkFailure(input: ChunkFailureInput, deps: ChunkFailureDeps): Promise<ChunkFailureOutput> {
  const { dynamo, api, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  const chunk = await readChunk(dynamo, config.table, input.jobId, input.chunk);
  const { record, index } = attemptOf(chunk, chunk.currentAttempt);
  observer.keys({ attempt: record.attempt, batchId: record.batchId });
  let canceledNow = false;
  if (mayRunUncanceled(record)) {
    try {
      const cancel = await cancelBatch(api, record.batchId, record.createdAt);
      if (cancel.outcome === 'refused') {
        observer.warn('cancel of the batch failed', { batchId: record.batchId, error: errorFields(cancel.error) });
      } else {
        // Canceled, or found ended or gone: recorded, so MarkJobFailed and Reconcile do not ask again.
        // Only this attempt's field is written: a concurrent write to the chunk's other attempts stands.
        await recordCancelSent(dynamo, config.table, input.jobId, { chunk: input.chunk, index, batchId: record.batchId }, isoAt(now()));
        canceledNow = cancel.outcome === 'canceled';
      }
    } catch (error) {
      // Best effort: the failure is what matters here. Left unrecorded, a MarkJobFailed of the job asks again.
      observer.warn('cancel of the batch failed', { batchId: record.batchId, error: errorFields(error) });
    }
  }
  // A create slot the attempt may hold is freed for the next attempt of its size; if the attempt's
  // create went unanswered, the moment is noted, so no later holder adopts a batch it made.
  const unanswered = record.intentAt !== '' && record.batchId === undefined;
  await releaseCreateSlot(
    dynamo,
    config.table,
    record.rows,
    { jobId: input.jobId, chunk: input.chunk, attempt: record.attempt },
    unanswered ? isoAt(now()) : undefined,
  );
  // A Lambda error's cause reduced to its type and message, a JSON.parse quote of a request removed, ≤ 4 KB.
  const failure = describeFailure(input.error);
  if (collectsLater(input.error.Error, record)) {
    const at = isoAt(now());
    await updateChunk(dynamo, config.table, chunk, { set: { status: 'failed', failure, collectLater: at, updatedAt: at } });
    await updateItem(dynamo, config.table, jobKey(input.jobId), { set: { collectLater: at, updatedAt: at } });
    observer.error("collecting the chunk's results did not finish; they wait at the API, and the daily reconciler collects them", {
      error: failure,
      batchId: record.batchId,
    });
    return { jobId: input.jobId, chunk: input.chunk, ok: false };
  }
  await updateChunk(dynamo, config.table, chunk, { set: { status: 'failed', failure, updatedAt: isoAt(now()) } });
  observer.error('chunk failed', { error: failure, batchCanceled: canceledNow });
  return { jobId: input.jobId, chunk: input.chunk, ok: false };
}
