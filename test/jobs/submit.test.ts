import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ApiRequestInvalid, ApiRetryable, BatchTooLarge, OutcomeUnknown } from '../../shared/anthropic/errors';
import type { PipelineConfig } from '../../shared/config';
import type { BatchesApi, CallOptions, CreateItem } from '../../shared/anthropic/api';
import type { MessageBatch } from '../../shared/anthropic/types';
import { getItem, updateItem } from '../../shared/store/dynamo';
import { BATCH_SK, batchPk, CREATE_SLOT_SK, createSlotPk, JOB_SK, jobPk, type BatchClaimItem, type CreateSlotItem } from '../../shared/store/items';
import { CreateSlotBusy } from '../../shared/jobs/create-slot';
import { BatchQueueFull, CreateOutcomeUnknown, GIVE_UP_LOOKS, submitChunk, type SubmitDeps } from '../../shared/jobs/submit-chunk';
import type { SimulatorOptions } from '../../simulator/options';
import { createPipelineTable } from '../../local/emulators';
import { useLocalAws } from '../support/aws';
import { putAttemptOne, readChunkItem, readJobItem, seedJob, sharedClock, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

describe('submitChunk', () => {
  const aws = useLocalAws();
  const apis: ApiContext[] = [];
  afterAll(async () => {
    for (const ctx of apis) await stopApi(ctx);
  });

  /**
   * A simulator of its own (faults count down per server), and Submit's dependencies against it. It
   * does not wait in-process for a busy create slot: CreateSlotBusy comes at once.
   */
  async function setup(options: SimulatorOptions = {}, config: Partial<PipelineConfig> = {}) {
    const ctx = await startApi(options);
    apis.push(ctx);
    const deps: SubmitDeps = { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws, { table: aws.table, ...config }), slotWaitMs: 0 };
    return { ...ctx, deps };
  }

  const claimOf = (batchId: string) => getItem<BatchClaimItem>(aws.dynamo, aws.table, { pk: batchPk(batchId), sk: BATCH_SK });
  const slotOf = (requestCount: number) => getItem<CreateSlotItem>(aws.dynamo, aws.table, { pk: createSlotPk(requestCount), sk: CREATE_SLOT_SK });

  // A create slot is per request count across the table, as across a stack: each test has a table
  // (and a simulator) of its own, so no slot one test holds, or gave up, bears on another.
  let tables = 0;
  let plain: Awaited<ReturnType<typeof setup>>;
  beforeEach(async () => {
    aws.table = `submit-${++tables}`;
    await createPipelineTable(aws.dynamo, aws.table);
    plain = await setup();
  });

  /** The real client, with some of its methods replaced. */
  const replacing = (api: BatchesApi, methods: Partial<BatchesApi>): BatchesApi =>
    new Proxy(api, {
      get(target, property) {
        if (property in methods) return methods[property as keyof BatchesApi];
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });

  /** The real client, keeping the request lines each create is given (what the API receives). */
  function recordingCreates(api: BatchesApi) {
    const bodies: string[][] = [];
    const recording = replacing(api, {
      async create(source, options?: CallOptions) {
        const items: CreateItem[] = [];
        for await (const item of typeof source === 'function' ? source() : source) items.push(item);
        bodies.push(items.map((item) => (Buffer.isBuffer(item) ? item.toString('utf8') : JSON.stringify(item))));
        return api.create(typeof source === 'function' ? source : items, options);
      },
    });
    return { api: recording, bodies };
  }

  /** The real client, but its list lags behind create: the first `misses` list calls show no batch. */
  const listLagging = (api: BatchesApi, misses: number): BatchesApi =>
    replacing(api, {
      list: (options) => (misses-- > 0 ? (async function* (): AsyncGenerator<MessageBatch> {})() : api.list(options)),
    });

  it('creates one batch with the chunk file’s requests and records it on the attempt', async () => {
    const job = await seedJob(aws, { chunks: [requests(3, 'happy')] });
    const out = await submitChunk({ jobId: job.jobId, chunk: 0 }, plain.deps);

    expect(out).toEqual({ jobId: job.jobId, chunk: 0, attempt: 1, batchId: expect.stringMatching(/^msgbatch_/), canceled: false, waitSeconds: 30 });
    const batch = await plain.api.retrieve(out.batchId!);
    expect(batch.request_counts.processing).toBe(3);
    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('in_progress');
    expect(chunk.attempts).toEqual([
      expect.objectContaining({ attempt: 1, rows: 3, batchId: out.batchId, createdAt: batch.created_at, expiresAt: batch.expires_at }),
    ]);
    expect(Date.parse(chunk.attempts[0]!.intentAt)).toBeGreaterThan(0);
    expect(await claimOf(out.batchId!)).toMatchObject({ batchId: out.batchId, jobId: job.jobId, chunk: 0, attempt: 1 });
    expect((await readJobItem(aws, job.jobId)).rowsSubmitted).toBe(3);
  });

  it('answers a retry after success with the same batch, creating nothing', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'again')] });
    const first = await submitChunk({ jobId: job.jobId, chunk: 0 }, plain.deps);
    const created = plain.sim.stats().batchesCreated.length;
    const second = await submitChunk({ jobId: job.jobId, chunk: 0 }, plain.deps);
    expect(second).toEqual(first);
    expect(plain.sim.stats().batchesCreated).toHaveLength(created);
    expect((await readJobItem(aws, job.jobId)).rowsSubmitted).toBe(2);
  });

  it('does not submit for a job asked to stop', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'stop')], cancelRequested: true });
    const calls = plain.sim.stats().calls.create;
    expect(await submitChunk({ jobId: job.jobId, chunk: 0 }, plain.deps)).toEqual({
      jobId: job.jobId,
      chunk: 0,
      attempt: 1,
      batchId: null,
      canceled: true,
      waitSeconds: 0,
    });
    expect(plain.sim.stats().calls.create).toBe(calls);
  });

  it('adopts the batch of a create whose response was lost, instead of creating another', async () => {
    const sim = await setup({ dropCreateResponses: 1 });
    const job = await seedJob(aws, { chunks: [requests(4, 'lost')] });

    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(OutcomeUnknown);
    expect(sim.sim.stats().batchesCreated).toHaveLength(1);
    const [orphan] = sim.sim.stats().batchesCreated;

    const retried = await submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps);
    expect(retried).toMatchObject({ batchId: orphan, canceled: false, attempt: 1 });
    expect(sim.sim.stats().batchesCreated).toEqual([orphan]);
    expect(sim.sim.stats().calls.create).toBe(1);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.batchId).toBe(orphan);
    expect(await claimOf(orphan!)).toMatchObject({ jobId: job.jobId, chunk: 0, attempt: 1 });
  });

  it('never adopts a batch another chunk has claimed, even one of its own size', async () => {
    const sim = await setup();
    const job = await seedJob(aws, { chunks: [requests(2, 'twin-a'), requests(2, 'twin-b')] });

    const b = await submitChunk({ jobId: job.jobId, chunk: 1 }, sim.deps);
    sim.sim.setHttpFaults([{ endpoint: 'create', status: 500, times: 1 }]);
    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(ApiRetryable);
    // Chunk 0's retry sees chunk 1's batch (same size, created just before its own create) but it is claimed.
    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(OutcomeUnknown);
    expect(sim.sim.stats().batchesCreated).toEqual([b.batchId]);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.batchId).toBeUndefined();
  });

  it('after a lost create, creates anew only past the grace, and once a batch whose create was sent after the lost one ended is listed', async () => {
    const sim = await setup({ httpFaults: [{ endpoint: 'create', status: 500, times: 1 }] }, { adoptGraceSeconds: 60 });
    const clock = sharedClock(sim.sim);
    const deps = { ...sim.deps, now: clock.now };
    const job = await seedJob(aws, { chunks: [requests(2, 'grace'), requests(3, 'later')] });
    const submit = (chunk: number) => submitChunk({ jobId: job.jobId, chunk }, deps);

    // A 500 leaves the outcome open: the intent stays, and the create is noted lost.
    await expect(submit(0)).rejects.toBeInstanceOf(ApiRetryable);
    const lost = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    expect(lost).toMatchObject({ intentAt: new Date(clock.now()).toISOString(), lostAt: new Date(clock.now()).toISOString() });
    clock.advance(30);
    await expect(submit(0)).rejects.toBeInstanceOf(OutcomeUnknown);
    expect(sim.sim.stats().calls.create).toBe(1);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.looks).toBe(1);

    // Another chunk's create, sent 70 s after the lost one ended, is listed and claimed: the list is current past it.
    clock.advance(40);
    const later = await submit(1);
    expect((await claimOf(later.batchId!))!.intentAt).toBe(new Date(clock.now()).toISOString());
    clock.advance(5);
    const out = await submit(0);

    expect(sim.sim.stats().batchesCreated).toEqual([later.batchId, out.batchId]);
    const attempt = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    expect(attempt).toMatchObject({ batchId: out.batchId, intentAt: new Date(clock.now()).toISOString() });
    expect(attempt.nonce).toMatch(/^[0-9a-f]{16}$/);
    expect(attempt.nonce).not.toBe(lost.nonce);
    expect(attempt.lostAt).toBeUndefined();
    expect(attempt.looks).toBeUndefined();
  });

  it('with no listed batch whose create came after the lost one, keeps looking, and after GIVE_UP_LOOKS looks gives up (CreateOutcomeUnknown) without creating again', async () => {
    const sim = await setup({ httpFaults: [{ endpoint: 'create', status: 500, times: 1 }] }, { adoptGraceSeconds: 60 });
    const clock = sharedClock(sim.sim);
    const deps = { ...sim.deps, now: clock.now };
    const job = await seedJob(aws, { chunks: [requests(2, 'unknown'), requests(3, 'soon-after')] });
    const submit = (chunk: number) => submitChunk({ jobId: job.jobId, chunk }, deps);

    await expect(submit(0)).rejects.toBeInstanceOf(ApiRetryable);
    const { nonce, intentAt } = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    // Another chunk's create, sent 30 s after the lost one failed: the server may still have been
    // acting on that one then (a minute's margin), so its batch shows nothing about it.
    clock.advance(30);
    const soonAfter = await submit(1);
    // Every create from now on fails with a 500 (a probe's too, should Submit send one).
    sim.sim.setHttpFaults([{ endpoint: 'create', status: 500, times: 100 }]);

    for (let look = 1; look < GIVE_UP_LOOKS; look++) {
      clock.advance(120);
      await expect(submit(0)).rejects.toBeInstanceOf(OutcomeUnknown);
      expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.looks).toBe(look);
    }
    clock.advance(120);
    const givenUp = submit(0);
    await expect(givenUp).rejects.toBeInstanceOf(CreateOutcomeUnknown);
    await expect(givenUp).rejects.toThrow(`a batch of 2 requests created near ${intentAt} whose custom_ids start with ${nonce}-`);

    expect(sim.sim.stats().batchesCreated).toEqual([soonAfter.batchId]);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]).toMatchObject({ intentAt, nonce, looks: GIVE_UP_LOOKS });
    // The slot is free again, noting when the create was given up: no later holder adopts a batch made before then.
    expect(await slotOf(2)).toEqual({
      pk: createSlotPk(2),
      sk: CREATE_SLOT_SK,
      type: 'create-slot',
      requests: 2,
      heldUntil: 0,
      abandonedAt: new Date(clock.now()).toISOString(),
    });
  });

  it('a create refused with 429 (queue full) leaves no intent behind and says BatchQueueFull, so the retry creates at once', async () => {
    const sim = await setup({ httpFaults: [{ endpoint: 'create', status: 429, times: 1 }] });
    const job = await seedJob(aws, { chunks: [requests(2, 'limited')] });
    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(BatchQueueFull);
    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.attempts[0]!.intentAt).toBe('');
    expect(chunk.status).toBe('pending');

    const out = await submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps);
    expect(out.batchId).toBe(sim.sim.stats().batchesCreated[0]);
    expect(sim.sim.stats().calls.list).toBe(0);
  });

  it('passes the API’s final refusals on as they are, for the chunk to fail with', async () => {
    const sim = await setup({ maxBodyBytes: 400, httpFaults: [{ endpoint: 'create', status: 400, times: 1 }] });
    const refused = await seedJob(aws, { chunks: [requests(1, 'refused')] });
    await expect(submitChunk({ jobId: refused.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(ApiRequestInvalid);

    const big = await seedJob(aws, { chunks: [requests(5, 'too-big')] });
    await expect(submitChunk({ jobId: big.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(BatchTooLarge);
    expect(sim.sim.stats().batchesCreated).toHaveLength(0);
  });

  it('never adopts a batch of its size made before an earlier create of that size was given up', async () => {
    const sim = await setup({ dropCreateResponses: 1 });
    const clock = sharedClock(sim.sim);
    // The lost create's batch is not listed until its attempt has given up.
    const deps = { ...sim.deps, api: listLagging(sim.api, GIVE_UP_LOOKS), now: clock.now };
    const job = await seedJob(aws, { chunks: [requests(2, 'given-up'), requests(2, 'after')] });
    const submit = (chunk: number) => submitChunk({ jobId: job.jobId, chunk }, deps);

    await expect(submit(0)).rejects.toBeInstanceOf(OutcomeUnknown);
    const [unfound] = sim.sim.stats().batchesCreated;
    for (let look = 1; look < GIVE_UP_LOOKS; look++) {
      clock.advance(1);
      await expect(submit(0)).rejects.toBeInstanceOf(OutcomeUnknown);
    }
    clock.advance(1);
    await expect(submit(0)).rejects.toBeInstanceOf(CreateOutcomeUnknown);

    // Chunk 1's create gets a 500. Looking for its batch, it lists the given-up one: its size, unclaimed,
    // made 8 s before chunk 1's intent (well within the lookback), yet made before the give-up, so not its own.
    clock.advance(1);
    sim.sim.setHttpFaults([{ endpoint: 'create', status: 500, times: 1 }]);
    await expect(submit(1)).rejects.toBeInstanceOf(ApiRetryable);
    clock.advance(1);
    await expect(submit(1)).rejects.toBeInstanceOf(OutcomeUnknown);
    expect(sim.sim.stats().batchesCreated).toEqual([unfound]);
    expect((await readChunkItem(aws, job.jobId, 1)).attempts[0]!.batchId).toBeUndefined();
    expect(await claimOf(unfound!)).toBeUndefined();
  });

  it('sends each request as {"custom_id":"<nonce>-<line in base 36>","params":…}, the params as written, and records the nonce with the intent', async () => {
    const rows = requests(37, 'wire');
    const job = await seedJob(aws, { chunks: [rows] });
    // Request lines as Python writes them: spaces, \u escapes. Their params reach the API byte for byte.
    const params = '{"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}]}';
    await putAttemptOne(aws, job.jobId, 0, rows.map((r) => `{"custom_id": "${r.custom_id}", "params": ${params}}\n`).join(''));
    const recorded = recordingCreates(plain.api);

    const out = await submitChunk({ jobId: job.jobId, chunk: 0 }, { ...plain.deps, api: recorded.api });

    const attempt = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    expect(attempt.nonce).toMatch(/^[0-9a-f]{16}$/);
    const wire = (n: number) => `${attempt.nonce}-${n.toString(36)}`;
    expect(recorded.bodies).toEqual([rows.map((_, n) => `{"custom_id":"${wire(n)}","params":${params}}`)]);
    expect(recorded.bodies[0]![10]).toBe(`{"custom_id":"${attempt.nonce}-a","params":${params}}`);
    expect(recorded.bodies[0]![36]).toBe(`{"custom_id":"${attempt.nonce}-10","params":${params}}`);
    expect(await claimOf(out.batchId!)).toMatchObject({ batchId: out.batchId, attempt: 1, intentAt: attempt.intentAt });
    // The batch's results name the wire ids, never the user's.
    plain.sim.advance(120);
    const served: string[] = [];
    for await (const entry of plain.api.results(out.batchId!)) served.push(entry.line.custom_id);
    expect(served.sort()).toEqual(rows.map((_, n) => wire(n)).sort());
  });

  it('makes another attempt of the same size wait (CreateSlotBusy) while a create is unanswered, and create once that one’s batch is recorded', async () => {
    const sim = await setup({ dropCreateResponses: 1 });
    const job = await seedJob(aws, { chunks: [requests(2, 'first'), requests(2, 'second'), requests(3, 'other-size')] });
    const submit = (chunk: number) => submitChunk({ jobId: job.jobId, chunk }, sim.deps);

    await expect(submit(0)).rejects.toBeInstanceOf(OutcomeUnknown);
    const [orphan] = sim.sim.stats().batchesCreated;
    expect(await slotOf(2)).toMatchObject({ jobId: job.jobId, chunk: 0, attempt: 1 });

    await expect(submit(1)).rejects.toBeInstanceOf(CreateSlotBusy);
    expect(sim.sim.stats().calls.create).toBe(1);
    expect((await readChunkItem(aws, job.jobId, 1)).attempts[0]!.intentAt).toBe('');
    // Another size has a slot of its own.
    const other = await submit(2);

    // Chunk 0 finds its batch (the only unclaimed one of 2 requests) and records it: the slot is free.
    expect((await submit(0)).batchId).toBe(orphan);
    expect(await slotOf(2)).not.toHaveProperty('jobId');
    const second = await submit(1);
    expect(sim.sim.stats().batchesCreated).toEqual([orphan, other.batchId, second.batchId]);
    expect(await claimOf(second.batchId!)).toMatchObject({ jobId: job.jobId, chunk: 1, attempt: 1 });
  });

  it('frees the create slot when the API refuses the create with a 4xx: an attempt of the same size creates at once', async () => {
    const sim = await setup({ httpFaults: [{ endpoint: 'create', status: 400, times: 1 }] });
    const job = await seedJob(aws, { chunks: [requests(2, 'refused'), requests(2, 'next')] });

    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(ApiRequestInvalid);
    expect(await slotOf(2)).toEqual({ pk: createSlotPk(2), sk: CREATE_SLOT_SK, type: 'create-slot', requests: 2, heldUntil: 0 });

    const next = await submitChunk({ jobId: job.jobId, chunk: 1 }, sim.deps);
    expect(sim.sim.stats().batchesCreated).toEqual([next.batchId]);
    expect(sim.sim.stats().calls.list).toBe(0);
  });

  it('adopts a lost create’s batch that the list shows only some looks later', async () => {
    const sim = await setup({ dropCreateResponses: 1 }, { adoptGraceSeconds: 60 });
    const clock = sharedClock(sim.sim);
    const deps = { ...sim.deps, api: listLagging(sim.api, 2), now: clock.now };
    const job = await seedJob(aws, { chunks: [requests(4, 'lagging')] });
    const submit = () => submitChunk({ jobId: job.jobId, chunk: 0 }, deps);

    await expect(submit()).rejects.toBeInstanceOf(OutcomeUnknown);
    const [orphan] = sim.sim.stats().batchesCreated;
    for (const look of [1, 2]) {
      clock.advance(15);
      await expect(submit()).rejects.toBeInstanceOf(OutcomeUnknown);
      expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.looks).toBe(look);
    }
    clock.advance(15);
    expect(await submit()).toMatchObject({ batchId: orphan, canceled: false });

    expect(sim.sim.stats().batchesCreated).toEqual([orphan]);
    expect(sim.sim.stats().calls.create).toBe(1);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]).toMatchObject({ batchId: orphan, looks: 2 });
    expect(await claimOf(orphan!)).toMatchObject({ jobId: job.jobId, chunk: 0, attempt: 1 });
  });

  /** The real client, but the job is stopped (MarkJobFailed, a user's cancel) while its create is in flight. */
  const stoppedDuringCreate = (api: BatchesApi, jobId: string): BatchesApi =>
    replacing(api, {
      async create(...args) {
        const batch = await api.create(...args);
        await updateItem(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK }, { set: { status: 'failed', cancelRequested: true } });
        return batch;
      },
    });
  const AT = Date.parse('2030-01-01T00:00:00Z');

  it('cancels the batch it just created when the job was stopped meanwhile, and records the cancel', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'stopped-meanwhile')] });
    const deps = { ...plain.deps, api: stoppedDuringCreate(plain.api, job.jobId), now: () => AT };

    const out = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps);

    expect(out).toMatchObject({ batchId: expect.stringMatching(/^msgbatch_/), canceled: false });
    expect((await plain.api.retrieve(out.batchId!)).processing_status).toBe('canceling');
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]).toMatchObject({ batchId: out.batchId, cancelSentAt: new Date(AT).toISOString() });
  });

  it('still answers with the batch when that cancel is refused, leaving the cancel unrecorded for MarkJobFailed', async () => {
    const sim = await setup({ httpFaults: [{ endpoint: 'cancel', status: 400, times: 1 }] });
    const job = await seedJob(aws, { chunks: [requests(2, 'refused-meanwhile')] });
    const deps = { ...sim.deps, api: stoppedDuringCreate(sim.api, job.jobId), now: () => AT };

    const out = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps);

    expect(out.batchId).toBe(sim.sim.stats().batchesCreated[0]);
    expect((await sim.api.retrieve(out.batchId!)).processing_status).toBe('in_progress');
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.cancelSentAt).toBeUndefined();
  });
});
