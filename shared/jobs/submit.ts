/**
 * Submit: create the batch of a chunk's current attempt — at most one batch per attempt, even when
 * a create's outcome is unknown (DESIGN.md: the API takes no idempotency key).
 *
 * 1. The intent to create is recorded (conditionally) before create is called.
 * 2. create runs with maxRetries 0: a retry belongs to the workflow, so that a retried Submit can
 *    look for the batch first.
 * 3. A Submit that finds an intent but no batch id adopts: it lists recent batches, takes one whose
 *    request count matches the attempt and that nobody has claimed, and claims it with a
 *    conditional put (`BATCH#<id>`), so one batch can never be adopted twice. Found nothing? Within
 *    the grace period the create may still be landing: OutcomeUnknown again (the workflow retries).
 *    After it, the earlier create is taken to have failed, and a new one is made.
 *
 * Clocks: intentAt and the grace period are on the local clock. The intent is written before any
 * API call, so no server time exists for it; and what the grace covers — a create still in flight,
 * or not listed yet — is real elapsed time on any server (a simulator whose clock runs fast still
 * answers in real milliseconds). The local runtime, which shortens the workflow's retry waits,
 * shortens this grace with BATCHLINE_ADOPT_GRACE_SECONDS. The Step Functions Retry on
 * OutcomeUnknown must span more than the grace, or a lost create fails the chunk.
 *
 * Known limit: batches carry no metadata, so adoption recognises a batch by its request count and
 * creation time only. If two chunks of equal size both lose their create responses within the same
 * two minutes, each may adopt the other's batch; Collect then finds results for custom_ids that are
 * not its rows (ignored) and records its own rows as missing_result.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi } from '../anthropic/api';
import { AnthropicError, ApiRetryable, OutcomeUnknown } from '../anthropic/errors';
import type { MessageBatch, RequestCounts } from '../anthropic/types';
import type { PipelineConfig } from '../config';
import { ConditionFailed, getItem, putItem, updateItem } from '../store/dynamo';
import { BATCH_SK, batchPk, ttlAfter, type BatchClaimItem, type ChunkAttempt, type ChunkItem } from '../store/items';
import { jobKeys } from '../store/keys';
import { errorFields, quietObserver, type Observer } from '../observability';
import {
  attemptOf,
  chunkCondition,
  isoAt,
  jobKey,
  patchAttempt,
  readChunk,
  readJob,
  updateChunk,
  type ChunkRef,
} from './chunk-state';
import { requestLines } from './chunk-files';
import { nextPollDelay, type PollSettings } from './poll';
import { cancelBatch, recordCancelSent, type AttemptBatch } from './cancel';

/** How far before the recorded intent adoption looks: clock skew between us and the API. */
export const ADOPT_LOOKBACK_MS = 2 * 60_000;

/** The batch we created was claimed by another chunk attempt (an adoption guessed wrong). */
export class BatchClaimConflict extends Error {
  override readonly name = 'BatchClaimConflict';
}

export interface SubmitOutput extends ChunkRef {
  attempt: number;
  batchId: string | null;
  /** True when the job was canceled before this attempt was submitted: Collect marks its rows canceled. */
  canceled: boolean;
  /** Seconds until the first poll. */
  waitSeconds: number;
}

export interface SubmitDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'adoptGraceSeconds' | 'rowTtlDays'> & PollSettings;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
}

interface Owner extends ChunkRef {
  attempt: number;
}

export async function submitChunk(input: ChunkRef, deps: SubmitDeps): Promise<SubmitOutput> {
  const { dynamo, config } = deps;
  const now = deps.now ?? Date.now;
  const observer = deps.observer ?? quietObserver;
  const [chunk, job] = await Promise.all([
    readChunk(dynamo, config.table, input.jobId, input.chunk),
    readJob(dynamo, config.table, input.jobId),
  ]);
  const attempt = chunk.currentAttempt;
  observer.keys({ attempt });
  const { record, index } = attemptOf(chunk, attempt);
  const owner: Owner = { jobId: input.jobId, chunk: input.chunk, attempt };

  // A retried Submit after one that succeeded.
  if (record.batchId) return alreadySubmitted(owner, record.batchId, record, config, observer);

  if (record.intentAt) {
    const adopted = await adoptBatch(owner, record, deps);
    if (adopted) {
      observer.keys({ batchId: adopted.id });
      observer.warn('adopted a batch whose create had an unknown outcome', { batchId: adopted.id, rows: record.rows, createdAt: adopted.created_at });
      return recordBatch(owner, chunk, adopted, deps, observer, true);
    }
    const intentAge = now() - Date.parse(record.intentAt);
    if (intentAge < config.adoptGraceSeconds * 1000) {
      throw new OutcomeUnknown(
        `chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: a create may have been accepted ` +
          `${Math.round(intentAge / 1000)} s ago and no batch of ${record.rows} requests is listed yet`,
        { requests: record.rows, bytes: record.bytes, sentAt: Date.parse(record.intentAt) },
      );
    }
  }

  if (job.cancelRequested) {
    observer.info('not submitted: the job was canceled', { rows: record.rows });
    return { ...owner, batchId: null, canceled: true, waitSeconds: 0 };
  }

  const intentAt = isoAt(now());
  let intended: ChunkItem;
  try {
    intended = await updateChunk(dynamo, config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, { intentAt }), status: 'submitting', updatedAt: intentAt },
      condition: chunkCondition(
        `#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND ` +
          `(attribute_not_exists(#att[${index}].#int) OR #att[${index}].#int = :previous)`,
        {
          ':attempt': attempt,
          ':previous': record.intentAt ?? '',
        },
      ),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // Another Submit of this attempt got there first; the retry will find (adopt) its batch.
    throw new OutcomeUnknown(`chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: another Submit is creating its batch`, {
      requests: record.rows,
      bytes: record.bytes,
      sentAt: now(),
    });
  }

  const keys = jobKeys(input.jobId);
  let batch: MessageBatch;
  try {
    batch = await deps.api.create(() => requestLines(deps.s3, config.bucket, keys.chunkRequests(input.chunk, attempt)), { maxRetries: 0 });
  } catch (error) {
    if (provesNoBatch(error)) await withdrawIntent(intended, index, attempt, intentAt, deps);
    if (error instanceof ApiRetryable && error.status === 429) {
      // The workspace's queue of batch requests is full, or its rate limit reached: that lasts
      // until earlier batches end, hours perhaps — the workflow waits minutes between tries.
      throw new BatchQueueFull(`chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: ${error.message}`);
    }
    throw error;
  }
  observer.keys({ batchId: batch.id });
  let output: SubmitOutput;
  try {
    await claim(owner, batch.id, deps, true);
    output = await recordBatch(owner, intended, batch, deps, observer, false);
  } catch (error) {
    if (error instanceof BatchClaimConflict) throw error;
    // The batch exists but may not be recorded: the retry must find it (its claim, or adoption),
    // never fail the chunk and leave the batch running unseen.
    throw new OutcomeUnknown(
      `chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: batch ${batch.id} was created but recording it failed ` +
        `(${(error as Error).name})`,
      { requests: record.rows, bytes: record.bytes, sentAt: Date.parse(intentAt) },
    );
  }
  await cancelIfJobStopped(owner, { chunk: input.chunk, index, batchId: batch.id }, deps, observer);
  return output;
}

/**
 * A job that failed or was canceled while this Submit was creating its batch has already swept
 * its batches; one recorded after the sweep would run unseen. Poll would cancel it, but a failed
 * job's chunks are no longer polled. A cancel that fails is logged, not thrown: the batch is
 * recorded, so it stays un-canceled for a re-run of MarkJobFailed (or Poll) to stop.
 */
async function cancelIfJobStopped(owner: Owner, at: AttemptBatch, deps: SubmitDeps, observer: Observer): Promise<void> {
  const job = await readJob(deps.dynamo, deps.config.table, owner.jobId);
  if (!job.cancelRequested) return;
  const { batchId } = at;
  try {
    const cancel = await cancelBatch(deps.api, batchId);
    if (cancel.outcome === 'refused') {
      observer.error('could not cancel the batch of a stopped job', { batchId, error: errorFields(cancel.error) });
      return;
    }
    observer.warn('canceled the batch just created: the job was stopped meanwhile', { batchId, status: job.status, cancel: cancel.outcome });
  } catch (error) {
    observer.error('could not cancel the batch of a stopped job', { batchId, error: errorFields(error) });
    return;
  }
  try {
    // As MarkJobFailed records its cancels: a re-run of it then leaves this batch alone.
    await recordCancelSent(deps.dynamo, deps.config.table, owner.jobId, at, isoAt((deps.now ?? Date.now)()));
  } catch (error) {
    observer.warn('canceled the batch, but could not record it: a re-run of MarkJobFailed cancels it again', { batchId, error: errorFields(error) });
  }
}

/** Creating a batch was refused with 429: the queue of batch requests is full (or the rate limit hit). */
export class BatchQueueFull extends Error {
  override readonly name = 'BatchQueueFull';
}

export const totalRequests = (counts: RequestCounts): number =>
  counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired;

/**
 * The batch an earlier Submit of this attempt created, if it can be found: a listed batch created
 * since the intent (less ADOPT_LOOKBACK_MS) with the attempt's request count, either already claimed
 * by this attempt (a Submit that died after claiming) or unclaimed and now claimed by us.
 * Candidates nearest the intent in time go first.
 */
async function adoptBatch(owner: Owner, record: ChunkAttempt, deps: SubmitDeps): Promise<MessageBatch | undefined> {
  const intentMs = Date.parse(record.intentAt);
  const since = intentMs - ADOPT_LOOKBACK_MS;
  const candidates: MessageBatch[] = [];
  for await (const batch of deps.api.list({ limit: 100 })) {
    if (Date.parse(batch.created_at) < since) break;
    if (totalRequests(batch.request_counts) === record.rows) candidates.push(batch);
  }
  candidates.sort((a, b) => Math.abs(Date.parse(a.created_at) - intentMs) - Math.abs(Date.parse(b.created_at) - intentMs));
  const claims = await Promise.all(candidates.map((batch) => readClaim(batch.id, deps)));
  const ours = candidates.find((_, i) => isOwner(claims[i], owner));
  if (ours) return ours;
  for (const [i, batch] of candidates.entries()) {
    if (claims[i] === undefined && (await claim(owner, batch.id, deps, false))) return batch;
  }
  return undefined;
}

async function readClaim(batchId: string, deps: SubmitDeps): Promise<BatchClaimItem | undefined> {
  return getItem<BatchClaimItem>(deps.dynamo, deps.config.table, { pk: batchPk(batchId), sk: BATCH_SK });
}

const isOwner = (item: BatchClaimItem | undefined, owner: Owner): boolean =>
  item !== undefined && item.jobId === owner.jobId && item.chunk === owner.chunk && item.attempt === owner.attempt;

/**
 * Claims a batch for a chunk attempt. True when the claim is (now) ours. For a batch we created
 * ourselves (`created`), a claim held by someone else is a conflict: an adoption took our batch.
 */
async function claim(owner: Owner, batchId: string, deps: SubmitDeps, created: boolean): Promise<boolean> {
  const now = (deps.now ?? Date.now)();
  const item: BatchClaimItem = {
    pk: batchPk(batchId),
    sk: BATCH_SK,
    type: 'batch',
    batchId,
    jobId: owner.jobId,
    chunk: owner.chunk,
    attempt: owner.attempt,
    claimedAt: isoAt(now),
    ttl: ttlAfter(now, deps.config.rowTtlDays),
  };
  if (await putItem(deps.dynamo, deps.config.table, item, { ifAbsent: true })) return true;
  const holder = await readClaim(batchId, deps);
  if (isOwner(holder, owner)) return true;
  if (created) {
    throw new BatchClaimConflict(
      `batch ${batchId}, created for chunk ${owner.chunk} attempt ${owner.attempt} of job ${owner.jobId}, is claimed by ` +
        `chunk ${holder?.chunk} attempt ${holder?.attempt} of job ${holder?.jobId}`,
    );
  }
  return false;
}

/** Records the batch on the attempt (once: a retry after this point finds it there). */
async function recordBatch(
  owner: Owner,
  chunk: ChunkItem,
  batch: MessageBatch,
  deps: SubmitDeps,
  observer: Observer,
  adopted: boolean,
): Promise<SubmitOutput> {
  const { dynamo, config } = deps;
  const now = deps.now ?? Date.now;
  const { record, index } = attemptOf(chunk, owner.attempt);
  const patch = { batchId: batch.id, createdAt: batch.created_at, expiresAt: batch.expires_at };
  try {
    await updateChunk(dynamo, config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, patch), status: 'in_progress', updatedAt: isoAt(now()) },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid)`, { ':attempt': owner.attempt }),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // Recorded meanwhile by a concurrent Submit: theirs stands (it holds the same claim).
    const current = attemptOf(await readChunk(dynamo, config.table, owner.jobId, owner.chunk), owner.attempt).record;
    if (current.batchId === undefined) throw error;
    return alreadySubmitted(owner, current.batchId, current, config, observer);
  }
  try {
    await updateItem(dynamo, config.table, jobKey(owner.jobId), { add: { rowsSubmitted: record.rows }, set: { updatedAt: isoAt(now()) } });
  } catch (error) {
    // A progress counter: failing the chunk for it would cancel a healthy batch.
    observer.warn('could not count the submitted rows on the job', { error: errorFields(error) });
  }
  const output = submitted(owner, batch.id, { ...record, ...patch }, config);
  observer.metric('RowsSubmitted', record.rows);
  observer.info('submitted', { batchId: batch.id, rows: record.rows, bytes: record.bytes, adopted, waitSeconds: output.waitSeconds });
  return output;
}

/** The answer of a Submit whose batch was recorded before (a retry, or a concurrent Submit): nothing is counted again. */
function alreadySubmitted(owner: Owner, batchId: string, record: ChunkAttempt, settings: PollSettings, observer: Observer): SubmitOutput {
  const output = submitted(owner, batchId, record, settings);
  observer.keys({ batchId });
  observer.info('submitted before', { batchId, rows: record.rows, waitSeconds: output.waitSeconds });
  return output;
}

function submitted(owner: Owner, batchId: string, record: ChunkAttempt, settings: PollSettings): SubmitOutput {
  const createdAt = record.createdAt ?? isoAt(Date.now());
  const expiresAt = record.expiresAt ?? isoAt(Date.parse(createdAt) + 86_400_000);
  return {
    ...owner,
    batchId,
    canceled: false,
    waitSeconds: nextPollDelay({ createdAt, expiresAt, serverNow: createdAt, settings }),
  };
}

/**
 * Whether a failed create shows that no batch was made: the API answered with a 4xx, or the
 * request failed before its whole body was sent. A 5xx (the server may have acted) and
 * OutcomeUnknown leave the intent in place, so the retry looks for a batch first.
 */
function provesNoBatch(error: unknown): boolean {
  if (error instanceof OutcomeUnknown) return false;
  // Only a definite refusal proves it: a 408 or 409 from an intermediary, or a 2xx we could not
  // read, may follow a body the API accepted.
  if (error instanceof AnthropicError) return error.status === undefined || DEFINITE_REFUSALS.has(error.status);
  return true;
}

const DEFINITE_REFUSALS: ReadonlySet<number> = new Set([400, 401, 402, 403, 404, 413, 422, 429]);

async function withdrawIntent(chunk: ChunkItem, index: number, attempt: number, intentAt: string, deps: SubmitDeps): Promise<void> {
  try {
    await updateChunk(deps.dynamo, deps.config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, { intentAt: '' }), status: 'pending', updatedAt: isoAt((deps.now ?? Date.now)()) },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND #att[${index}].#int = :intent`, {
        ':attempt': attempt,
        ':intent': intentAt,
      }),
    });
  } catch (error) {
    // Someone moved the attempt on meanwhile; the intent is theirs to resolve.
    if (!(error instanceof ConditionFailed)) throw error;
  }
}
