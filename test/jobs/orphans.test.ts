import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { OutcomeUnknown } from '../../shared/anthropic/errors';
import type { BatchRequest, BatchResultLine, MessageBatch } from '../../shared/anthropic/types';
import { getItem, putItem } from '../../shared/store/dynamo';
import { BATCH_SK, batchPk, CREATE_SLOT_SK, createSlotPk, type BatchClaimItem, type CreateSlotItem, type OrphanBatch } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { quietObserver } from '../../shared/observability';
import { sweepOrphans, type OrphanDeps } from '../../shared/jobs/orphans';
import { BatchQueueFull, CreateOutcomeUnknown, GIVE_UP_LOOKS, submitChunk, type SubmitDeps } from '../../shared/jobs/submit-chunk';
import { wireId } from '../../shared/jobs/wire-ids';
import type { BatchFaults } from '../../simulator/options';
import { createPipelineTable } from '../../local/emulators';
import { useLocalAws } from '../support/aws';
import {
  putText,
  readChunkItem,
  readJobItem,
  readJsonl,
  readText,
  seedJob,
  sharedClock,
  startApi,
  stopApi,
  type ApiContext,
  type SeededJob,
} from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

describe('sweepOrphans', () => {
  const aws = useLocalAws();
  const apis: ApiContext[] = [];
  afterAll(async () => {
    for (const ctx of apis) await stopApi(ctx);
  });

  // Each test has a table (create slots, claims) and a simulator (its list, its stats) of its own.
  let tables = 0;
  let ctx: ApiContext;
  let clock: ReturnType<typeof sharedClock>;
  let submitDeps: SubmitDeps;
  let deps: OrphanDeps;
  beforeEach(async () => {
    aws.table = `orphans-${++tables}`;
    await createPipelineTable(aws.dynamo, aws.table);
    ctx = await startApi();
    apis.push(ctx);
    clock = sharedClock(ctx.sim);
    const config = pipelineConfig(aws, { table: aws.table });
    submitDeps = { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config, now: clock.now, slotWaitMs: 0 };
    deps = { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config, now: clock.now, observer: quietObserver };
  });

  const claimOf = (batchId: string) => getItem<BatchClaimItem>(aws.dynamo, aws.table, { pk: batchPk(batchId), sk: BATCH_SK });
  const slotOf = (requestCount: number) => getItem<CreateSlotItem>(aws.dynamo, aws.table, { pk: createSlotPk(requestCount), sk: CREATE_SLOT_SK });
  const sweep = async (jobId: string) => sweepOrphans(await readJobItem(aws, jobId), deps);
  const iso = (ms: number) => new Date(ms).toISOString();
  const calls = () => ctx.sim.stats().calls;

  /**
   * A create of the chunk whose answer is lost, its batch hidden from the list (with `faults`) until
   * Submit gives up (CreateOutcomeUnknown) after GIVE_UP_LOOKS looks, a second apart. Answers the batch's id.
   */
  async function giveUp(jobId: string, chunk: number, faults: BatchFaults = {}): Promise<string> {
    const submit = () => submitChunk({ jobId, chunk }, submitDeps);
    ctx.sim.setBatchFaults({ hiddenFromListCalls: 1_000, ...faults });
    ctx.sim.dropCreateResponses(1);
    await expect(submit()).rejects.toBeInstanceOf(OutcomeUnknown);
    ctx.sim.setBatchFaults(undefined);
    const batchId = ctx.sim.stats().batchesCreated.at(-1)!;
    for (let look = 1; look < GIVE_UP_LOOKS; look++) {
      clock.advance(1);
      await expect(submit()).rejects.toBeInstanceOf(OutcomeUnknown);
    }
    clock.advance(1);
    await expect(submit()).rejects.toBeInstanceOf(CreateOutcomeUnknown);
    expect((await readChunkItem(aws, jobId, chunk)).attempts[0]).toMatchObject({ looks: GIVE_UP_LOOKS });
    expect(await claimOf(batchId)).toBeUndefined();
    return batchId;
  }

  /** A batch created straight through the API (not by Submit) with these requests. */
  async function createDirectly(rows: BatchRequest[], faults?: BatchFaults): Promise<MessageBatch> {
    ctx.sim.setBatchFaults(faults);
    try {
      return await ctx.api.create(rows);
    } finally {
      ctx.sim.setBatchFaults(undefined);
    }
  }

  /** The API's results of a batch the chunk's attempt 1 created, each line with the user's custom_id in place of its wire id. */
  async function asTheUserSees(job: SeededJob, chunk: number, batchId: string): Promise<BatchResultLine[]> {
    const { nonce } = (await readChunkItem(aws, job.jobId, chunk)).attempts[0]!;
    const userIds = new Map(job.chunks[chunk]!.map((row, n) => [wireId(nonce!, n), row.custom_id]));
    const lines: BatchResultLine[] = [];
    for await (const entry of ctx.api.results(batchId)) lines.push({ ...entry.line, custom_id: userIds.get(entry.line.custom_id)! });
    return lines.sort((a, b) => a.custom_id.localeCompare(b.custom_id));
  }

  const byId = (lines: BatchResultLine[]) => [...lines].sort((a, b) => a.custom_id.localeCompare(b.custom_id));

  it('collects the ended batch of a given-up create: claims it, keeps its results under the user’s custom_ids, names it on the job; a second sweep changes nothing', async () => {
    const job = await seedJob(aws, { chunks: [requests(3, 'lost')] });
    const lostBatch = await giveUp(job.jobId, 0);
    const { intentAt } = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    // A summary from Finalize: the sweep names the orphan there too.
    await putText(aws, job.keys.summary, JSON.stringify({ jobId: job.jobId, status: 'failed' }));

    // The list catches up; the batch ends meanwhile.
    ctx.sim.catchUpList();
    clock.advance(120);
    const { created_at: createdAt, processing_status: status } = await ctx.api.retrieve(lostBatch);
    expect(status).toBe('ended');

    const resultsKey = jobKeys(job.jobId).orphanResults(lostBatch);
    const foundAt = iso(clock.now());
    const expected: OrphanBatch[] = [{ batchId: lostBatch, chunk: 0, attempt: 1, requests: 3, createdAt, outcome: 'collected', resultsKey, foundAt }];
    const orphans = await sweep(job.jobId);

    expect(orphans).toEqual(expected);
    const kept = await readJsonl<BatchResultLine>(aws, resultsKey);
    expect(kept.map((line) => line.custom_id).sort()).toEqual(['lost-00000', 'lost-00001', 'lost-00002']);
    expect(kept.map((line) => line.result.type)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // Every other byte of each line is the API's.
    expect(byId(kept)).toEqual(await asTheUserSees(job, 0, lostBatch));
    expect(await claimOf(lostBatch)).toEqual({
      pk: batchPk(lostBatch),
      sk: BATCH_SK,
      type: 'batch',
      batchId: lostBatch,
      jobId: job.jobId,
      chunk: 0,
      attempt: 1,
      claimedAt: foundAt,
      intentAt,
      ttl: expect.any(Number),
    });
    const record = await readJobItem(aws, job.jobId);
    expect(record.orphanBatches).toEqual(expected);
    expect(record.updatedAt).toBe(foundAt);
    expect(JSON.parse((await readText(aws, job.keys.summary))!)).toEqual({ jobId: job.jobId, status: 'failed', orphanBatches: expected });

    // Found once: a later sweep answers the same, reads no results, and writes nothing.
    const claim = await claimOf(lostBatch);
    const text = await readText(aws, resultsKey);
    const summary = await readText(aws, job.keys.summary);
    const before = calls();
    clock.advance(60);

    expect(await sweep(job.jobId)).toEqual(expected);
    expect(calls().results).toBe(before.results);
    expect(calls().cancel).toBe(before.cancel);
    expect(await readJobItem(aws, job.jobId)).toEqual(record);
    expect(await claimOf(lostBatch)).toEqual(claim);
    expect(await readText(aws, resultsKey)).toBe(text);
    expect(await readText(aws, job.keys.summary)).toBe(summary);
  });

  it('cancels a running batch of a given-up create made within the create’s window while its size’s slot is free, and collects it once it has ended', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'stalled')] });
    const lostBatch = await giveUp(job.jobId, 0, { stall: true });
    expect(await slotOf(2)).not.toHaveProperty('jobId');
    // A running batch of the same size made past the window (5 minutes on): not the lost create's.
    clock.advance(300);
    const later = await createDirectly(
      requests(2, 'later').map((row, n) => ({ ...row, custom_id: wireId('0123456789abcdef', n) })),
      { stall: true },
    );
    ctx.sim.catchUpList();
    const { created_at: createdAt } = await ctx.api.retrieve(lostBatch);

    const canceledAt = iso(clock.now());
    const canceled: OrphanBatch = { batchId: lostBatch, chunk: 0, attempt: 1, requests: 2, createdAt, outcome: 'canceled', foundAt: canceledAt };
    expect(await sweep(job.jobId)).toEqual([canceled]);
    expect((await ctx.api.retrieve(lostBatch)).processing_status).toBe('canceling');
    expect((await ctx.api.retrieve(later.id)).processing_status).toBe('in_progress');
    expect((await readJobItem(aws, job.jobId)).orphanBatches).toEqual([canceled]);

    // The cancel takes effect; the next sweep collects the batch.
    clock.advance(60);
    expect((await ctx.api.retrieve(lostBatch)).processing_status).toBe('ended');
    const resultsKey = jobKeys(job.jobId).orphanResults(lostBatch);
    const collected: OrphanBatch = { ...canceled, outcome: 'collected', resultsKey, foundAt: iso(clock.now()) };

    expect(await sweep(job.jobId)).toEqual([collected]);
    expect((await readJobItem(aws, job.jobId)).orphanBatches).toEqual([collected]);
    const kept = await readJsonl<BatchResultLine>(aws, resultsKey);
    expect(kept.map((line) => [line.custom_id, line.result.type]).sort()).toEqual([
      ['stalled-00000', 'canceled'],
      ['stalled-00001', 'canceled'],
    ]);
    expect(await claimOf(lostBatch)).toMatchObject({ jobId: job.jobId, chunk: 0, attempt: 1 });
    expect((await ctx.api.retrieve(later.id)).processing_status).toBe('in_progress');
    expect(await claimOf(later.id)).toBeUndefined();
  });

  it('leaves a running batch of the size alone while another attempt holds that size’s create slot', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'held')] });
    const lostBatch = await giveUp(job.jobId, 0, { stall: true });
    ctx.sim.catchUpList();
    // Another attempt's create of 2 requests is unanswered: a running batch of 2 may be its own.
    const heldUntil = clock.now() + 60_000;
    await putItem(aws.dynamo, aws.table, {
      pk: createSlotPk(2),
      sk: CREATE_SLOT_SK,
      type: 'create-slot',
      requests: 2,
      jobId: 'another-job',
      chunk: 4,
      attempt: 1,
      heldUntil,
    } satisfies CreateSlotItem);
    const before = calls();

    expect(await sweep(job.jobId)).toEqual([]);
    expect(calls().list).toBeGreaterThan(before.list);
    expect(calls().cancel).toBe(before.cancel);
    expect((await ctx.api.retrieve(lostBatch)).processing_status).toBe('in_progress');
    expect(await claimOf(lostBatch)).toBeUndefined();
    expect((await readJobItem(aws, job.jobId)).orphanBatches).toBeUndefined();

    // The holder never came back and its hold ran out: the slot is free, and the batch is taken as the lost create's.
    clock.advance(61);
    expect(await sweep(job.jobId)).toEqual([expect.objectContaining({ batchId: lostBatch, outcome: 'canceled' })]);
    expect((await ctx.api.retrieve(lostBatch)).processing_status).toBe('canceling');
  });

  it('leaves alone an ended batch of the size and time whose results carry another nonce, or the user’s own ids', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'mine')] });
    // The lost create's batch stays out of the list: only the others are seen.
    await giveUp(job.jobId, 0);
    const rows = job.chunks[0]!;
    const otherNonce = await createDirectly(rows.map((row, n) => ({ ...row, custom_id: wireId('fedcba9876543210', n) })));
    const userIds = await createDirectly(rows);
    clock.advance(120);
    expect((await ctx.api.retrieve(otherNonce.id)).processing_status).toBe('ended');
    expect((await ctx.api.retrieve(userIds.id)).processing_status).toBe('ended');
    const before = calls();

    expect(await sweep(job.jobId)).toEqual([]);
    // Both were looked at (their results read), and neither proved to be the attempt's.
    expect(calls().results - before.results).toBe(2);
    for (const batch of [otherNonce, userIds]) {
      expect(await claimOf(batch.id)).toBeUndefined();
      expect(await readText(aws, jobKeys(job.jobId).orphanResults(batch.id))).toBeUndefined();
    }
    expect((await readJobItem(aws, job.jobId)).orphanBatches).toBeUndefined();
  });

  it('does not list batches for a job without a given-up create', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'fine'), requests(3, 'refused')] });
    // Chunk 0's batch is recorded; chunk 1's create was refused (429), its intent withdrawn.
    await submitChunk({ jobId: job.jobId, chunk: 0 }, submitDeps);
    ctx.sim.setHttpFaults([{ endpoint: 'create', status: 429, times: 1 }]);
    await expect(submitChunk({ jobId: job.jobId, chunk: 1 }, submitDeps)).rejects.toBeInstanceOf(BatchQueueFull);
    expect((await readChunkItem(aws, job.jobId, 1)).attempts[0]).toMatchObject({ intentAt: '', nonce: expect.any(String) });
    clock.advance(120);
    const before = calls();

    expect(await sweep(job.jobId)).toEqual([]);
    expect(calls()).toEqual(before);
    expect((await readJobItem(aws, job.jobId)).orphanBatches).toBeUndefined();
  });

  it('collects each of two given-up creates of the same size by its own nonce, not the first create that fits', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'a'), requests(2, 'b')] });
    const first = await giveUp(job.jobId, 0);
    clock.advance(5);
    const second = await giveUp(job.jobId, 1);
    ctx.sim.catchUpList();
    clock.advance(120);

    const orphans = await sweep(job.jobId);

    expect(orphans.map((orphan) => [orphan.batchId, orphan.chunk, orphan.outcome]).sort()).toEqual(
      [
        [first, 0, 'collected'],
        [second, 1, 'collected'],
      ].sort(),
    );
    expect((await claimOf(first))?.chunk).toBe(0);
    expect((await claimOf(second))?.chunk).toBe(1);
  });

  it('leaves alone the batch of an attempt that is still looking for it (it adopts it itself)', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'gone'), requests(3, 'looking')] });
    await giveUp(job.jobId, 0);
    // Chunk 1's create is lost too, but it has looked only once.
    ctx.sim.setBatchFaults({ hiddenFromListCalls: 2 });
    ctx.sim.dropCreateResponses(1);
    await expect(submitChunk({ jobId: job.jobId, chunk: 1 }, submitDeps)).rejects.toBeInstanceOf(OutcomeUnknown);
    ctx.sim.setBatchFaults(undefined);
    const looking = ctx.sim.stats().batchesCreated.at(-1)!;
    clock.advance(120);
    ctx.sim.catchUpList();

    const orphans = await sweep(job.jobId);

    expect(orphans.map((orphan) => orphan.chunk)).toEqual([0]);
    expect(await claimOf(looking)).toBeUndefined();
    expect((await submitChunk({ jobId: job.jobId, chunk: 1 }, submitDeps)).batchId).toBe(looking);
  });
});
