import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRequestInvalid, ApiRetryable, BatchTooLarge, OutcomeUnknown } from '../../shared/anthropic/errors';
import type { PipelineConfig } from '../../shared/config';
import type { BatchesApi } from '../../shared/anthropic/api';
import { getItem, updateItem } from '../../shared/store/dynamo';
import { BATCH_SK, batchPk, JOB_SK, jobPk, type BatchClaimItem } from '../../shared/store/items';
import { BatchQueueFull, submitChunk, type SubmitDeps } from '../../shared/jobs/submit';
import type { SimulatorOptions } from '../../simulator/options';
import { useLocalAws } from '../support/aws';
import { readChunkItem, readJobItem, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

describe('submitChunk', () => {
  const aws = useLocalAws();
  const apis: ApiContext[] = [];
  afterAll(async () => {
    for (const ctx of apis) await stopApi(ctx);
  });

  /** A simulator of its own (faults count down per server), and Submit's dependencies against it. */
  async function setup(options: SimulatorOptions = {}, config: Partial<PipelineConfig> = {}, now?: () => number) {
    const ctx = await startApi(options);
    apis.push(ctx);
    const deps: SubmitDeps = { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws, config), now };
    return { ...ctx, deps };
  }

  const claimOf = (batchId: string) => getItem<BatchClaimItem>(aws.dynamo, aws.table, { pk: batchPk(batchId), sk: BATCH_SK });

  let plain: Awaited<ReturnType<typeof setup>>;
  beforeAll(async () => {
    plain = await setup();
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
    const sim = await setup({ httpFaults: [{ endpoint: 'create', status: 500, times: 1 }] });
    const job = await seedJob(aws, { chunks: [requests(2, 'twin-a'), requests(2, 'twin-b')] });

    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(ApiRetryable);
    const b = await submitChunk({ jobId: job.jobId, chunk: 1 }, sim.deps);
    // Chunk 0's retry sees chunk 1's batch (same size, just created) but it is claimed.
    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(OutcomeUnknown);
    expect(sim.sim.stats().batchesCreated).toEqual([b.batchId]);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.batchId).toBeUndefined();
  });

  it('within the grace period keeps looking rather than creating; after it, creates anew', async () => {
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const sim = await setup({ httpFaults: [{ endpoint: 'create', status: 500, times: 1 }] }, { adoptGraceSeconds: 60 }, () => clock);
    const job = await seedJob(aws, { chunks: [requests(2, 'grace')] });

    // A 500 leaves the outcome open: the intent stays.
    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(ApiRetryable);
    clock += 30_000;
    await expect(submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps)).rejects.toBeInstanceOf(OutcomeUnknown);
    expect(sim.sim.stats().calls.create).toBe(1);
    expect(sim.sim.stats().calls.list).toBeGreaterThanOrEqual(1);

    clock += 31_000;
    const out = await submitChunk({ jobId: job.jobId, chunk: 0 }, sim.deps);
    expect(out.batchId).toBe(sim.sim.stats().batchesCreated[0]);
    expect(sim.sim.stats().batchesCreated).toHaveLength(1);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.intentAt).toBe(new Date(clock).toISOString());
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

  /** The real client, but the job is stopped (MarkJobFailed, a user's cancel) while its create is in flight. */
  const stoppedDuringCreate = (api: BatchesApi, jobId: string): BatchesApi =>
    new Proxy(api, {
      get(target, property) {
        if (property === 'create') {
          return async (...args: Parameters<BatchesApi['create']>) => {
            const batch = await target.create(...args);
            await updateItem(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK }, { set: { status: 'failed', cancelRequested: true } });
            return batch;
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
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
