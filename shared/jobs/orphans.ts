/**
 * Orphans: batches that a create whose answer was lost made after all, after its attempt gave up
 * (CreateOutcomeUnknown: its rows ended `create_unknown`, shared/jobs/submit.ts). The reconciler
 * looks for them in the jobs that had such a create (`lostCreates` on the job record): a listed
 * batch that no attempt or probe has claimed, of the attempt's request count, created within the
 * attempt's window.
 *
 * - Ended: its results are read; if they carry the attempt's nonce (shared/jobs/wire-ids.ts) the
 *   batch is the attempt's, provably. It is claimed, and its results are stored with the user's
 *   custom_ids in `results/<jobId>/orphans/<batchId>.jsonl` — paid for, so kept.
 * - Still running, created within the create's window on the API's clock, its size's create slot
 *   free (so no attempt of this stack has a create of that size in flight): by the slot no other
 *   attempt can have made it, so it is the attempt's; it is canceled, since its rows are already
 *   reported, and collected once it has ended. (A batch of another client of the same API key, of
 *   the same size and minute, would be canceled too: the window and size make that unlikely, not
 *   impossible.)
 * Both are named on the job record and in summary.json (`orphanBatches`).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi } from '../anthropic/api';
import type { MessageBatch } from '../anthropic/types';
import type { PipelineConfig } from '../config';
import { getItem, putItem, queryPartition, updateItem } from '../store/dynamo';
import {
  BATCH_SK,
  batchPk,
  CHUNK_SK_PREFIX,
  CREATE_SLOT_SK,
  createSlotPk,
  jobPk,
  ttlAfter,
  type BatchClaimItem,
  type ChunkAttempt,
  type ChunkItem,
  type CreateSlotItem,
  type JobItem,
  type OrphanBatch,
} from '../store/items';
import { jobKeys } from '../store/keys';
import { getJson, ObjectWriter, putJson } from '../store/s3';
import { errorFields, type Observer } from '../observability';
import { cancelBatch, isStopped } from './cancel';
import { requestIds } from './chunk-files';
import { isoAt, jobKey } from './chunk-state';
import { ADOPT_LOOKBACK_MS, totalRequests } from './submit';
import { SentRequests, userResultLine } from './wire-ids';
import type { JobSummary } from './finalize';

export interface OrphanDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'adoptGraceSeconds' | 'rowTtlDays'>;
  now: () => number;
  observer: Observer;
}

/** An attempt that gave up on its create, and when a batch of it could have been made. */
interface LostCreate {
  chunk: number;
  record: ChunkAttempt & { nonce: string };
  from: number;
  to: number;
}

/** Looks for the batches of the job's lost creates; answers the job's orphan batches as now known. */
export async function sweepOrphans(job: JobItem, deps: OrphanDeps): Promise<OrphanBatch[]> {
  const lost = await lostCreates(job, deps);
  const known = new Map((job.orphanBatches ?? []).map((orphan) => [orphan.batchId, orphan]));
  if (lost.length === 0) return [...known.values()];
  const earliest = Math.min(...lost.map((create) => create.from));
  let changed = false;
  for await (const batch of deps.api.list({ limit: 100 })) {
    const createdAt = Date.parse(batch.created_at);
    if (createdAt < earliest) break;
    // An ended batch proves itself by its results (no upper bound needed); a running one is taken
    // only within the create's window, on the API's clock.
    const ended = batch.processing_status === 'ended';
    const create = lost.find((c) => c.from <= createdAt && (ended || createdAt <= c.to) && totalRequests(batch.request_counts) === c.record.rows);
    if (!create || known.get(batch.id)?.outcome === 'collected') continue;
    if ((await claimOf(batch.id, deps)) !== undefined) continue;
    if (!ended && (await slotHeld(create.record.rows, deps))) continue;
    const found = await settle(job, create, batch, deps);
    if (found) {
      known.set(batch.id, found);
      changed = true;
    }
  }
  const orphans = [...known.values()];
  if (changed) await record(job, orphans, deps);
  return orphans;
}

/** The attempts of the job that gave up on a create (a nonce, an intent, no batch). */
async function lostCreates(job: JobItem, deps: OrphanDeps): Promise<LostCreate[]> {
  const graceMs = deps.config.adoptGraceSeconds * 1000;
  const lost: LostCreate[] = [];
  for await (const chunk of queryPartition<ChunkItem>(deps.dynamo, deps.config.table, jobPk(job.jobId), CHUNK_SK_PREFIX)) {
    for (const record of chunk.attempts) {
      if (!record.nonce || !record.intentAt || record.batchId) continue;
      const intent = Date.parse(record.intentAt);
      const end = record.lostAt ? Date.parse(record.lostAt) + Math.min(graceMs, 60_000) : intent + graceMs;
      lost.push({ chunk: chunk.chunk, record: record as LostCreate['record'], from: intent - ADOPT_LOOKBACK_MS, to: end + ADOPT_LOOKBACK_MS });
    }
  }
  return lost;
}

/** Whether an attempt of this size has a create in flight now: its batch, unclaimed until recorded, is not an orphan. */
async function slotHeld(requests: number, deps: OrphanDeps): Promise<boolean> {
  const slot = await getItem<CreateSlotItem>(deps.dynamo, deps.config.table, { pk: createSlotPk(requests), sk: CREATE_SLOT_SK });
  return slot?.jobId !== undefined && slot.heldUntil >= deps.now();
}

async function claimOf(batchId: string, deps: OrphanDeps): Promise<BatchClaimItem | undefined> {
  return getItem<BatchClaimItem>(deps.dynamo, deps.config.table, { pk: batchPk(batchId), sk: BATCH_SK });
}

/** Collects an ended batch that proves to be the attempt's, or cancels a running one; undefined for one that is not ours. */
async function settle(job: JobItem, create: LostCreate, batch: MessageBatch, deps: OrphanDeps): Promise<OrphanBatch | undefined> {
  const base = {
    batchId: batch.id,
    chunk: create.chunk,
    attempt: create.record.attempt,
    requests: create.record.rows,
    createdAt: batch.created_at,
    foundAt: isoAt(deps.now()),
  };
  if (batch.processing_status !== 'ended') {
    const canceled = await cancelBatch(deps.api, batch.id, batch.created_at);
    if (!isStopped(canceled)) {
      deps.observer.warn('could not cancel a batch of a lost create; the next run tries again', { batchId: batch.id });
      return undefined;
    }
    deps.observer.warn('canceled a running batch of a lost create: its rows were already reported create_unknown', base);
    return { ...base, outcome: 'canceled' };
  }
  const key = jobKeys(job.jobId).orphanResults(batch.id);
  const ids = await requestIds(deps.s3, deps.config.bucket, jobKeys(job.jobId).chunkRequests(create.chunk, create.record.attempt));
  const sent = new SentRequests(create.record.nonce, [...ids]);
  const writer = new ObjectWriter(deps.s3, deps.config.bucket, key);
  let own = 0;
  let foreign = 0;
  try {
    for await (const entry of deps.api.results(batch.id)) {
      const customId = sent.customIdOf(entry.line.custom_id);
      if (customId === undefined) {
        foreign += 1;
        continue;
      }
      own += 1;
      await writer.writeLine(userResultLine(entry.raw, customId));
    }
  } catch (error) {
    await writer.abort();
    throw error;
  }
  if (own === 0) {
    await writer.abort();
    deps.observer.info('a batch of a lost create\'s size and time is not its own: left alone', { batchId: batch.id, foreignLines: foreign });
    return undefined;
  }
  await writer.finish();
  const now = deps.now();
  const claim: BatchClaimItem = {
    pk: batchPk(batch.id),
    sk: BATCH_SK,
    type: 'batch',
    batchId: batch.id,
    jobId: job.jobId,
    chunk: create.chunk,
    attempt: create.record.attempt,
    claimedAt: isoAt(now),
    intentAt: create.record.intentAt,
    ttl: ttlAfter(now, deps.config.rowTtlDays),
  };
  await putItem(deps.dynamo, deps.config.table, claim, { ifAbsent: true });
  deps.observer.error('found the batch of a create whose answer was lost: its results are kept beside the job\'s outputs', {
    ...base,
    resultsKey: key,
    lines: own,
  });
  return { ...base, outcome: 'collected', resultsKey: key };
}

/** The orphans on the job record and in summary.json (when the job has one). */
async function record(job: JobItem, orphans: OrphanBatch[], deps: OrphanDeps): Promise<void> {
  await updateItem(deps.dynamo, deps.config.table, jobKey(job.jobId), { set: { orphanBatches: orphans, updatedAt: isoAt(deps.now()) } });
  const key = jobKeys(job.jobId).summary;
  try {
    const summary = await getJson<JobSummary>(deps.s3, deps.config.bucket, key);
    if (summary) await putJson(deps.s3, deps.config.bucket, key, { ...summary, orphanBatches: orphans });
  } catch (error) {
    deps.observer.warn('could not name the orphan batches in summary.json; the job record names them', { error: errorFields(error) });
  }
}
