/**
 * Canceling a batch, the one way: Poll (a job's cancel request), RecordChunkFailure, MarkJobFailed,
 * Reconcile and Submit (a job stopped while its batch was being created) all ask through here, so
 * they agree on what an answer means.
 *
 * A cancel of a batch that has ended, or is already canceling, may be answered 400 (docs/api-reference.md
 * §6 leaves it open); a 400 for any other reason must not pass for a cancel. A 404 may be the
 * transient one right after create rather than a deleted batch. Either is settled by a retrieve,
 * which the client retries through that window when it knows the batch's created_at.
 *
 * What each caller does with the answer is its own: Poll and Reconcile throw what the API throws
 * (the workflow or the next run retries), RecordChunkFailure and Submit log it, MarkJobFailed
 * collects it and fails with CancelFailed once every other batch had its turn.
 */
import { UpdateItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import { ApiNotFound, ApiRequestInvalid } from '../anthropic/errors';
import type { MessageBatch } from '../anthropic/types';
import { isConditionFailure } from '../store/dynamo';
import { chunkSk, jobPk, type ChunkAttempt } from '../store/items';

export type CancelResult =
  /** The API took the cancel: `batch` is its answer (canceling, or ended if it already had). */
  | { outcome: 'canceled'; batch: MessageBatch }
  /** The cancel was refused or not found, but the batch has ended or is canceling already. */
  | { outcome: 'already-stopped'; batch: MessageBatch }
  /** The API no longer knows the batch (deleted): nothing is left to stop. */
  | { outcome: 'gone'; error: ApiNotFound }
  /** The cancel was refused (400) or not found (a transient 404), and the batch is still in progress. */
  | { outcome: 'refused'; batch: MessageBatch; error: ApiRequestInvalid | ApiNotFound };

/** Whether the batch is now stopping or stopped, whoever stopped it. */
export const isStopped = (result: CancelResult): boolean => result.outcome !== 'refused';

/**
 * Asks the API to cancel a batch, and says what came of it. `createdAt` (the attempt's recorded
 * created_at) lets the client tell a 404 right after create from a deleted batch. Throws what is
 * neither a 400 nor a 404 (retryable, auth, ...), and what the retrieve behind a 400 or 404 throws
 * other than a 404.
 */
export async function cancelBatch(api: BatchesApi, batchId: string, createdAt?: string): Promise<CancelResult> {
  if (createdAt !== undefined) api.rememberCreated(batchId, createdAt);
  let refusal: ApiRequestInvalid | ApiNotFound;
  try {
    return { outcome: 'canceled', batch: await api.cancel(batchId) };
  } catch (error) {
    if (!(error instanceof ApiRequestInvalid || error instanceof ApiNotFound)) throw error;
    refusal = error;
  }
  let batch: MessageBatch;
  try {
    batch = await api.retrieve(batchId);
  } catch (error) {
    if (error instanceof ApiNotFound) return { outcome: 'gone', error };
    throw error;
  }
  return batch.processing_status === 'in_progress' ? { outcome: 'refused', batch, error: refusal } : { outcome: 'already-stopped', batch };
}

/** cancelBatch for callers that only need to know whether the batch is now stopping or stopped. */
export async function stopBatch(api: BatchesApi, batchId: string, createdAt?: string): Promise<boolean> {
  return isStopped(await cancelBatch(api, batchId, createdAt));
}

/** Whether an attempt's batch may still be running with nobody having asked it to stop. */
export function mayRunUncanceled(attempt: ChunkAttempt): attempt is ChunkAttempt & { batchId: string } {
  return (
    attempt.batchId !== undefined &&
    attempt.batchId !== '' &&
    attempt.endedAt === undefined &&
    attempt.cancelSentAt === undefined &&
    attempt.collectedAt === undefined &&
    attempt.processingStatus !== 'ended'
  );
}

/** One attempt's batch, where it sits in its chunk record. */
export interface AttemptBatch {
  chunk: number;
  /** Position of the attempt in the chunk's attempts list. */
  index: number;
  batchId: string;
}

/**
 * Sets `cancelSentAt` on one attempt only, so no concurrent write to the chunk's other fields is
 * undone. A cancel already recorded (by Poll, a concurrent run) is kept: the batch is stopping either way.
 */
export async function recordCancelSent(dynamo: DynamoDBClient, table: string, jobId: string, batch: AttemptBatch, at: string): Promise<void> {
  const path = `#att[${batch.index}]`;
  try {
    await dynamo.send(
      new UpdateItemCommand({
        TableName: table,
        Key: marshall({ pk: jobPk(jobId), sk: chunkSk(batch.chunk) }),
        UpdateExpression: `SET ${path}.#cs = :at`,
        ConditionExpression: `${path}.#bid = :batchId AND attribute_not_exists(${path}.#cs)`,
        ExpressionAttributeNames: { '#att': 'attempts', '#bid': 'batchId', '#cs': 'cancelSentAt' },
        ExpressionAttributeValues: marshall({ ':at': at, ':batchId': batch.batchId }),
      }),
    );
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
}
