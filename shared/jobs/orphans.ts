/**
 * Orphans: batches that a create whose answer was lost made after all, after its attempt gave up
 * (CreateOutcomeUnknown: its rows ended `create_unknown`, shared/jobs/submit-chunk.ts). The reconciler
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
import { getJson, isS3NotFound, ObjectWriter, putJson } from '../store/s3';
import { errorFields, type Observer } from '../observability';
import { cancelBatch, isStopped } from './cancel';
import { requestIds } from './chunk-files';
import { isoAt, jobKey } from './chunk-state';
import { ADOPT_LOOKBACK_MS, GIVE_UP_LOOKS, totalRequests } from './submit-chunk';
import { parseWireId, SentRequests, userResultLine } from './wire-ids';
import type { JobSummary } from './finalize-job';

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
    const size = totalRequests(batch.request_counts);
    const ended = batch.processing_status === 'ended';
    // An ended batch proves whose it is by its results (no upper bound needed); a running one is
    // taken only within a create's window, on the API's clock.
    const creates = lost.filter((c) => c.from <= createdAt && (ended || createdAt <= c.to) && c.record.rows === size);
    const seen = known.get(batch.id);
    if (creates.length === 0 || seen?.outcome === 'collected') continue;
    // Canceled before, and still stopping: nothing new until it has ended.
    if (seen?.outcome === 'canceled' && !ended) continue;
    // Claimed by anyone but a given-up attempt (a collect cut short claims first, and goes on next run).
    const holder = await claimOf(batch.id, deps);
    if (holder && !creates.some((c) => holder.jobId === job.jobId && holder.chunk === c.chunk && holder.attempt === c.record.attempt)) continue;
    // A running batch while an attempt of its size has a create in flight may be that attempt's, unclaimed until recorded.
    if (!ended && (await slotHeld(size, deps))) continue;
    const found = ended ? await collect(job, creates, batch, deps) : await stopRunning(creates[0]!, batch, deps);
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
      // Given up only: an attempt still looking finds (adopts) its batch itself.
      if (!record.nonce || !record.intentAt || record.batchId || (record.looks ?? 0) < GIVE_UP_LOOKS) continue;
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

const orphanOf = (create: LostCreate, batch: MessageBatch, now: number) => ({
  batchId: batch.id,
  chunk: create.chunk,
  attempt: create.record.attempt,
  requests: create.record.rows,
  createdAt: batch.created_at,
  foundAt: isoAt(now),
});

/** Cancels a running batch of a given-up create (its rows are already reported); undefined when the cancel did not take. */
async function stopRunning(create: LostCreate, batch: MessageBatch, deps: OrphanDeps): Promise<OrphanBatch | undefined> {
  const orphan = orphanOf(create, batch, deps.now());
  if (!isStopped(await cancelBatch(deps.api, batch.id, batch.created_at))) {
    deps.observer.warn('could not cancel a batch of a lost create; the next run tries again', { batchId: batch.id });
    return undefined;
  }
  deps.observer.warn('canceled a running batch of a lost create: its rows were already reported create_unknown', orphan);
  return { ...orphan, outcome: 'canceled' };
}

/**
 * Collects an ended batch whose results carry the nonce of one of `creates`: claimed for that
 * attempt (before anything is stored), its lines kept with the user's custom_ids. Undefined when
 * it is not ours, or someone claimed it first.
 */
async function collect(job: JobItem, creates: LostCreate[], batch: MessageBatch, deps: OrphanDeps): Promise<OrphanBatch | undefined> {
  const keys = jobKeys(job.jobId);
  let create: LostCreate | undefined;
  let sent: SentRequests | undefined;
  let writer: ObjectWriter | undefined;
  let lines = 0;
  let damaged = 0;
  // A line that cannot be read costs only itself (its row keeps create_unknown); counted and logged.
  const onDamagedLine = () => {
    damaged += 1;
  };
  try {
    for await (const entry of deps.api.results(batch.id, { onDamagedLine })) {
      if (!create) {
        // The first line names the create: its nonce is one of the given-up attempts', or the batch is not ours.
        const nonce = parseWireId(entry.line.custom_id)?.nonce;
        create = creates.find((c) => c.record.nonce === nonce);
        if (!create) {
          deps.observer.info("a batch of a lost create's size and time is not its own: left alone", { batchId: batch.id });
          return undefined;
        }
        let ids: Set<string>;
        try {
          ids = await requestIds(deps.s3, deps.config.bucket, { jobId: job.jobId, chunk: create.chunk, attempt: create.record.attempt });
        } catch (error) {
          if (!isS3NotFound(error)) throw error;
          deps.observer.error("found a lost create's batch, but the attempt's requests file has expired: its results stay at the API", {
            batchId: batch.id,
            chunk: create.chunk,
          });
          return undefined;
        }
        sent = new SentRequests(create.record.nonce, [...ids]);
        if (!(await claim(job, create, batch, deps))) return undefined;
        writer = new ObjectWriter(deps.s3, deps.config.bucket, keys.orphanResults(batch.id));
      }
      const customId = sent!.customIdOf(entry.line.custom_id);
      if (customId === undefined) continue;
      await writer!.writeLine(userResultLine(entry.raw, customId));
      lines += 1;
    }
    if (!create) return undefined;
    await writer!.finish();
  } catch (error) {
    await writer?.abort();
    throw error;
  }
  const orphan = { ...orphanOf(create, batch, deps.now()), outcome: 'collected' as const, resultsKey: keys.orphanResults(batch.id) };
  deps.observer.error("found the batch of a create whose answer was lost: its results are kept beside the job's outputs", {
    ...orphan,
    lines,
    damagedLines: damaged,
  });
  return orphan;
}

/** Claims the batch for the attempt; false when another holds it. */
async function claim(job: JobItem, create: LostCreate, batch: MessageBatch, deps: OrphanDeps): Promise<boolean> {
  const now = deps.now();
  const item: BatchClaimItem = {
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
  if (await putItem(deps.dynamo, deps.config.table, item, { ifAbsent: true })) return true;
  const holder = await claimOf(batch.id, deps);
  return holder?.jobId === job.jobId && holder.chunk === create.chunk && holder.attempt === create.record.attempt;
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
