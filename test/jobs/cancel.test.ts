import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import { ApiAuthError, ApiNotFound, ApiRequestInvalid, ApiRetryable } from '../../shared/anthropic/errors';
import { cancelBatch, mayRunUncanceled, recordCancelSent, stopBatch } from '../../shared/jobs/cancel';
import { getItem, putItem } from '../../shared/store/dynamo';
import { chunkSk, jobPk, type ChunkAttempt, type ChunkItem } from '../../shared/store/items';
import { startSimulator, type SimulatorHandle } from '../../simulator/server';
import { useLocalAws } from '../support/aws';
import { request } from '../support/pipeline';

const UNKNOWN = 'msgbatch_00000000000000000000nope';

describe('cancelBatch and stopBatch, against the simulator', () => {
  let sim: SimulatorHandle;
  let api: BatchesClient;

  beforeAll(async () => {
    // Batches run an hour unless a test ends one: they are in progress while canceled.
    sim = await startSimulator({ processingSeconds: 3600, apiKeys: ['sk-test'] });
    api = new BatchesClient({ apiKey: 'sk-test', baseUrl: sim.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await api?.close();
    await sim?.stop();
  });
  beforeEach(() => {
    sim.setHttpFaults([]);
    sim.setBatchFaults(undefined);
  });

  const inProgress = async (customId: string) => (await api.create([request(customId)])).id;
  async function ended(customId: string): Promise<string> {
    sim.setBatchFaults({ processingSeconds: 0 });
    const id = (await api.create([request(customId)])).id;
    sim.setBatchFaults(undefined);
    expect((await api.retrieve(id)).processing_status).toBe('ended');
    return id;
  }

  it('cancels a batch in progress: the API takes it, and the batch is canceling', async () => {
    const batchId = await inProgress('running');

    const result = await cancelBatch(api, batchId);

    expect(result.outcome).toBe('canceled');
    expect(result.outcome === 'canceled' && result.batch).toMatchObject({ id: batchId, processing_status: 'canceling' });
    expect((await api.retrieve(batchId)).cancel_initiated_at).not.toBeNull();
    expect(await stopBatch(api, batchId)).toBe(true);
  });

  it('counts an ended batch as stopped, whether the API answers its cancel with the batch or with a 400', async () => {
    const batchId = await ended('ended');
    const retrieves = sim.stats().calls.retrieve;

    // The simulator answers 200 with the batch unchanged.
    expect(await cancelBatch(api, batchId)).toMatchObject({ outcome: 'canceled', batch: { id: batchId, processing_status: 'ended' } });
    expect(sim.stats().calls.retrieve).toBe(retrieves);

    // The real API may answer 400: a retrieve then shows the batch has ended.
    sim.setHttpFaults([{ endpoint: 'cancel', status: 400, times: 1 }]);
    expect(await cancelBatch(api, batchId)).toEqual({
      outcome: 'already-stopped',
      batch: expect.objectContaining({ id: batchId, processing_status: 'ended' }),
    });
    expect(sim.stats().calls.retrieve).toBe(retrieves + 1);
  });

  it('counts a batch the API does not know (deleted) as stopped: nothing is left to run', async () => {
    const result = await cancelBatch(api, UNKNOWN);

    expect(result.outcome).toBe('gone');
    expect(result.outcome === 'gone' && result.error).toBeInstanceOf(ApiNotFound);
    expect(await stopBatch(api, UNKNOWN)).toBe(true);
  });

  it('does not take a 400 for a stop while the batch is still in progress', async () => {
    const batchId = await inProgress('refused');
    sim.setHttpFaults([{ endpoint: 'cancel', status: 400, times: 2 }]);

    const result = await cancelBatch(api, batchId);

    expect(result).toMatchObject({ outcome: 'refused', batch: { id: batchId, processing_status: 'in_progress' } });
    expect(result.outcome === 'refused' && result.error).toBeInstanceOf(ApiRequestInvalid);
    expect(await stopBatch(api, batchId)).toBe(false);
    expect((await api.retrieve(batchId)).cancel_initiated_at).toBeNull();
  });

  it('does not take a 404 on the cancel for a deleted batch while a retrieve still finds it running', async () => {
    const batchId = await inProgress('hidden-from-cancel');
    sim.setHttpFaults([{ endpoint: 'cancel', status: 404, times: 1 }]);

    const result = await cancelBatch(api, batchId);

    expect(result).toMatchObject({ outcome: 'refused', batch: { processing_status: 'in_progress' } });
    expect(result.outcome === 'refused' && result.error).toBeInstanceOf(ApiNotFound);
  });

  it('takes the 404 right after create for a deleted batch only when not told the created_at', async () => {
    // Each batch is not found for 3 simulated seconds after create; a client's retry waits 5.
    const hiddenBatch = async (customId: string) => {
      sim.setBatchFaults({ notFoundForSeconds: 3 });
      const batch = await api.create([request(customId)]);
      sim.setBatchFaults(undefined);
      return batch;
    };
    // Another container's client: it did not make the create.
    const freshClient = () => new BatchesClient({ apiKey: 'sk-test', baseUrl: sim.url, maxRetries: 2, sleep: async () => sim.advance(5) });

    const blind = freshClient();
    const first = await hiddenBatch('blind');
    sim.setHttpFaults([{ endpoint: 'cancel', status: 404, times: 1 }]);
    expect((await cancelBatch(blind, first.id)).outcome).toBe('gone');
    await blind.close();

    const told = freshClient();
    const second = await hiddenBatch('told');
    sim.setHttpFaults([{ endpoint: 'cancel', status: 404, times: 1 }]);
    expect(await cancelBatch(told, second.id, second.created_at)).toMatchObject({
      outcome: 'refused',
      batch: { id: second.id, processing_status: 'in_progress' },
    });
    await told.close();
  });

  it('throws what is neither a refusal nor a 404: a retryable error, a wrong key', async () => {
    const batchId = await inProgress('throws');
    sim.setHttpFaults([{ endpoint: 'cancel', status: 529, times: 1 }]);
    await expect(cancelBatch(api, batchId)).rejects.toBeInstanceOf(ApiRetryable);

    const wrongKey = new BatchesClient({ apiKey: 'sk-revoked', baseUrl: sim.url, maxRetries: 0 });
    await expect(stopBatch(wrongKey, batchId)).rejects.toBeInstanceOf(ApiAuthError);
    await wrongKey.close();
    expect((await api.retrieve(batchId)).processing_status).toBe('in_progress');
  });
});

describe('mayRunUncanceled', () => {
  const attempt = (fields: Partial<ChunkAttempt>): ChunkAttempt => ({ attempt: 1, rows: 1, bytes: 10, intentAt: '2026-01-01T00:00:00.000Z', ...fields });

  it('holds for a submitted batch nobody saw end, collected or asked to stop', () => {
    expect(mayRunUncanceled(attempt({ batchId: 'msgbatch_a' }))).toBe(true);
    expect(mayRunUncanceled(attempt({ batchId: 'msgbatch_a', processingStatus: 'in_progress' }))).toBe(true);
    expect(mayRunUncanceled(attempt({ batchId: 'msgbatch_a', processingStatus: 'canceling' }))).toBe(true);
  });

  it.each<[string, Partial<ChunkAttempt>]>([
    ['no batch yet', {}],
    ['an empty batch id', { batchId: '' }],
    ['its end recorded', { batchId: 'msgbatch_a', endedAt: '2026-01-01T01:00:00.000Z' }],
    ['seen ended by a poll', { batchId: 'msgbatch_a', processingStatus: 'ended' }],
    ['a cancel recorded', { batchId: 'msgbatch_a', cancelSentAt: '2026-01-01T01:00:00.000Z' }],
    ['collected', { batchId: 'msgbatch_a', collectedAt: '2026-01-01T01:00:00.000Z' }],
  ])('does not hold for an attempt with %s', (_, fields) => {
    expect(mayRunUncanceled(attempt(fields))).toBe(false);
  });
});

describe('recordCancelSent', () => {
  const aws = useLocalAws();
  const JOB = 'cancel-record-0000000000000000';

  async function seedChunk(attempts: Array<Partial<ChunkAttempt>>): Promise<void> {
    const chunk: ChunkItem = {
      pk: jobPk(JOB),
      sk: chunkSk(0),
      type: 'chunk',
      jobId: JOB,
      chunk: 0,
      status: 'in_progress',
      rows: 1,
      bytes: 10,
      firstLine: 1,
      lastLine: 1,
      currentAttempt: attempts.length,
      attempts: attempts.map((a, i) => ({ attempt: i + 1, rows: 1, bytes: 10, intentAt: '2026-01-01T00:00:00.000Z', ...a })),
      updatedAt: '2026-01-01T00:00:00.000Z',
    };
    await putItem(aws.dynamo, aws.table, chunk);
  }
  const attempts = async () => (await getItem<ChunkItem>(aws.dynamo, aws.table, { pk: jobPk(JOB), sk: chunkSk(0) }))!.attempts;

  it('sets cancelSentAt on that attempt only, and keeps the first one recorded', async () => {
    await seedChunk([
      { batchId: 'msgbatch_first', polls: 3 },
      { batchId: 'msgbatch_second', polls: 1 },
    ]);

    await recordCancelSent(aws.dynamo, aws.table, JOB, { chunk: 0, index: 1, batchId: 'msgbatch_second' }, '2026-01-01T02:00:00.000Z');
    await recordCancelSent(aws.dynamo, aws.table, JOB, { chunk: 0, index: 1, batchId: 'msgbatch_second' }, '2026-01-01T03:00:00.000Z');

    expect((await attempts()).map(({ batchId, polls, cancelSentAt }) => ({ batchId, polls, cancelSentAt }))).toEqual([
      { batchId: 'msgbatch_first', polls: 3, cancelSentAt: undefined },
      { batchId: 'msgbatch_second', polls: 1, cancelSentAt: '2026-01-01T02:00:00.000Z' },
    ]);
  });

  it('writes nothing when the attempt at that position holds another batch', async () => {
    await seedChunk([{ batchId: 'msgbatch_other' }]);

    await recordCancelSent(aws.dynamo, aws.table, JOB, { chunk: 0, index: 0, batchId: 'msgbatch_stale' }, '2026-01-01T02:00:00.000Z');

    expect((await attempts())[0]!.cancelSentAt).toBeUndefined();
  });
});
