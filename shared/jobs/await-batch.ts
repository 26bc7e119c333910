/**
 * The arms of the two callback waits of a chunk, AwaitBatch and AwaitRetry.
 *
 * AwaitBatch's arm: a chunk attempt is about to wait for its batch on a task token. The arm checks
 * the attempt is still this batch's and not collected, checks the poller is alive, and stores the
 * token in a watch item for the poller (shared/jobs/poller.ts) to settle. It never calls the API
 * and never creates anything: only SubmitChunk makes batches.
 *
 * While the poller's health record is stale the arm refuses with PollerUnavailable, and the
 * workflow sends the chunk to the adaptive Wait loop instead: a token stored then would only be
 * noticed by its heartbeat timeout, up to 15 minutes late.
 *
 * AwaitRetry's arm: a chunk is about to wait out its retry backoff, which the task's own timeout
 * (TimeoutSecondsPath, the backoff) ends. The watch is there so the poller can end it early when the
 * job is canceled (shared/jobs/poller.ts): a cancel takes effect within a tick, not when a backoff
 * of hours runs out. The arm never refuses: with the poller down the backoff still ends on time.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { PipelineConfig, PollerConfig } from '../config';
import { quietObserver, type Observer } from '../observability';
import { putItem } from '../store/dynamo';
import { retryWatchSk, WATCH_PK, watchSk, type RetryWatchItem, type WatchItem } from '../store/items';
import { attemptOf, ChunkStateConflict, chunkCondition, isoAt, patchAttempt, readChunk, updateChunk } from './chunk-state';
import type { ArmOutput, AwaitBatchInput, AwaitRetryInput } from './contract';
import { pollerHealthy, readPollerHealth, WATCH_TTL_PAST_EXPIRY_SECONDS } from './watch';
import { clockOf } from '../clock';

/** The poller is down (its health record is stale): wait on the Wait loop. The workflow catches it by this name. */
export class PollerUnavailable extends Error {
  override readonly name = 'PollerUnavailable';
}

export interface ArmDeps {
  dynamo: DynamoDBClient;
  config: Pick<PipelineConfig, 'table'> & Pick<PollerConfig, 'staleSeconds'>;
  now?: () => number;
  observer?: Observer;
}

export async function armWatch(input: AwaitBatchInput, deps: ArmDeps): Promise<ArmOutput> {
  const { dynamo, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  const [chunk, health] = await Promise.all([readChunk(dynamo, config.table, input.jobId, input.chunk), readPollerHealth(dynamo, config.table)]);
  const { record, index } = attemptOf(chunk, input.attempt);
  if (chunk.currentAttempt !== input.attempt || record.batchId !== input.batchId || record.collectedAt) {
    throw new ChunkStateConflict(
      `chunk ${input.chunk} of job ${input.jobId} is at attempt ${chunk.currentAttempt} (batch ${record.batchId ?? 'none'}${record.collectedAt ? ', collected' : ''}), not waiting for ${input.batchId} of attempt ${input.attempt}`,
    );
  }
  if (!record.createdAt || !record.expiresAt) {
    throw new ChunkStateConflict(`chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId} has no batch times recorded`);
  }
  if (!pollerHealthy(health, now(), config)) {
    observer.info('poller unavailable: waiting on the Wait loop', { lastTickAt: health?.lastTickAt ?? null });
    throw new PollerUnavailable(`the poller's last tick was ${health?.lastTickAt ?? 'never'}, more than ${config.staleSeconds} s ago`);
  }
  const watch: WatchItem = {
    pk: WATCH_PK,
    sk: watchSk(record.expiresAt, input.batchId),
    type: 'watch',
    jobId: input.jobId,
    chunk: input.chunk,
    attempt: input.attempt,
    batchId: input.batchId,
    taskToken: input.taskToken,
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
    armedAt: isoAt(now()),
    cancelSentAt: record.cancelSentAt,
    ttl: Math.floor(Date.parse(record.expiresAt) / 1000) + WATCH_TTL_PAST_EXPIRY_SECONDS,
  };
  // The count first: a watch is never stored for an attempt whose count did not move, so the cap holds.
  const arms = (record.arms ?? 0) + 1;
  await updateChunk(dynamo, config.table, chunk, {
    set: { attempts: patchAttempt(chunk, index, { arms }) },
    condition: chunkCondition(`#ca = :attempt AND #att[${index}].#bid = :batchId AND attribute_not_exists(#att[${index}].#col)`, {
      ':attempt': input.attempt,
      ':batchId': input.batchId,
    }),
  });
  await putItem(dynamo, config.table, watch);
  observer.info('armed', { arms });
  return { armed: true, arms };
}

export async function armRetryWatch(input: AwaitRetryInput, deps: Omit<ArmDeps, 'config'> & { config: Pick<PipelineConfig, 'table'> }): Promise<ArmOutput> {
  const now = clockOf(deps)();
  const dueAt = now + input.retryWaitSeconds * 1000;
  const watch: RetryWatchItem = {
    pk: WATCH_PK,
    sk: retryWatchSk(input.jobId, input.chunk),
    type: 'watch',
    wait: 'retry',
    jobId: input.jobId,
    chunk: input.chunk,
    attempt: input.attempt,
    taskToken: input.taskToken,
    armedAt: isoAt(now),
    dueAt: isoAt(dueAt),
    ttl: Math.floor(dueAt / 1000) + WATCH_TTL_PAST_EXPIRY_SECONDS,
  };
  await putItem(deps.dynamo, deps.config.table, watch);
  (deps.observer ?? quietObserver).info('armed the retry backoff', { retryWaitSeconds: input.retryWaitSeconds });
  return { armed: true, arms: 1 };
}
