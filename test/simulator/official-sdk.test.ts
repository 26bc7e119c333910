/**
 * The official SDK (@anthropic-ai/sdk 1.12: `Authorization: Bearer`, `anthropic-version: 2026-10-21`)
 * pointed at the simulator: if it works here, the simulator speaks the real wire format.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { BatchCreateParams } from '@anthropic-ai/sdk/resources/messages/batches';
import { describe, expect, it } from 'vitest';
import type { BatchRequest } from '../../shared/anthropic/types';
import type { SimulatorHandle } from '../../simulator/server';
import { API_KEY, RFC3339_MICROS, request, requests, useSimulators } from './fixtures';

const sims = useSimulators();
/** Only the test key is accepted: the SDK's `Authorization: Bearer` must carry it. */
const startSim = (options: Parameters<typeof sims.start>[0] = {}) => sims.start({ apiKeys: [API_KEY], ...options });

/** Our open request type, in the SDK's closed one. */
function body(batch: BatchRequest[]): BatchCreateParams {
  return { requests: batch as unknown as BatchCreateParams['requests'] };
}

function sdk(sim: SimulatorHandle, maxRetries = 0): Anthropic {
  return new Anthropic({ apiKey: API_KEY, baseURL: sim.url, maxRetries });
}

describe('the official SDK against the simulator', () => {
  it('creates a batch and retrieves it with every MessageBatch field', async () => {
    const sim = await startSim();
    const client = sdk(sim);

    const created = await client.messages.batches.create(body([request('a'), request('b')]));

    expect(created).toEqual({
      id: expect.stringMatching(/^msgbatch_01[0-9A-Za-z]{22}$/),
      type: 'message_batch',
      processing_status: 'in_progress',
      request_counts: { processing: 2, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
      ended_at: null,
      created_at: expect.stringMatching(RFC3339_MICROS),
      expires_at: expect.stringMatching(RFC3339_MICROS),
      archived_at: null,
      cancel_initiated_at: null,
      results_url: null,
    });
    expect(Date.parse(created.expires_at) - Date.parse(created.created_at)).toBe(24 * 3600 * 1000);
    expect(await client.messages.batches.retrieve(created.id)).toEqual(created);
  });

  it('lists newest first and auto-paginates across pages of two', async () => {
    const sim = await startSim();
    const client = sdk(sim);
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push((await client.messages.batches.create(body([request(`r${i}`)]))).id);

    const listed: string[] = [];
    for await (const batch of client.messages.batches.list({ limit: 2 })) listed.push(batch.id);

    expect(listed).toEqual([...ids].reverse());
    expect(sim.stats().calls.list).toBe(3);
  });

  it('streams results that the SDK decodes line by line', async () => {
    const sim = await startSim();
    const client = sdk(sim);
    const created = await client.messages.batches.create(body(requests(3)));
    sim.advance(60);

    const ended = await client.messages.batches.retrieve(created.id);
    const lines = [];
    for await (const line of await client.messages.batches.results(created.id)) lines.push(line);

    expect(ended.processing_status).toBe('ended');
    expect(ended.results_url).toBe(`${sim.url}/v1/messages/batches/${created.id}/results`);
    expect(lines.map((line) => line.custom_id).sort()).toEqual(['row-0', 'row-1', 'row-2']);
    for (const line of lines) {
      expect(line.result.type).toBe('succeeded');
      if (line.result.type === 'succeeded') expect(line.result.message.model).toBe('claude-sonnet-5');
    }
  });

  it('cancels: canceling with cancel_initiated_at, then ended with every request accounted for', async () => {
    const sim = await startSim();
    const client = sdk(sim);
    const created = await client.messages.batches.create(body(requests(40)));
    sim.advance(30);

    const canceling = await client.messages.batches.cancel(created.id);
    sim.advance(5);
    const ended = await client.messages.batches.retrieve(created.id);

    expect(canceling.processing_status).toBe('canceling');
    expect(canceling.cancel_initiated_at).toMatch(RFC3339_MICROS);
    expect(canceling.request_counts).toEqual({ processing: 40, succeeded: 0, errored: 0, canceled: 0, expired: 0 });
    expect(canceling.results_url).toBeNull();
    expect(ended.processing_status).toBe('ended');
    const { succeeded, canceled, processing } = ended.request_counts;
    expect(processing).toBe(0);
    expect(succeeded + canceled).toBe(40);
    // Half the processing time had passed: some requests finished, the rest were canceled.
    expect(succeeded).toBeGreaterThan(0);
    expect(canceled).toBeGreaterThan(0);
  });

  it('deletes only an ended batch, after which it is not found', async () => {
    const sim = await startSim();
    const client = sdk(sim);
    const created = await client.messages.batches.create(body([request('a')]));

    await expect(client.messages.batches.delete(created.id)).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    sim.advance(60);
    const deleted = await client.messages.batches.delete(created.id);

    expect(deleted).toEqual({ id: created.id, type: 'message_batch_deleted' });
    await expect(client.messages.batches.retrieve(created.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('throws NotFoundError, with the request id, for an unknown batch', async () => {
    const sim = await startSim();
    const error = await sdk(sim)
      .messages.batches.retrieve('msgbatch_01unknown')
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(Anthropic.NotFoundError);
    expect((error as InstanceType<typeof Anthropic.NotFoundError>).status).toBe(404);
    expect((error as InstanceType<typeof Anthropic.NotFoundError>).requestID).toMatch(/^req_01/);
  });

  it('retries a 529 once and then succeeds', async () => {
    const sim = await startSim({ httpFaults: [{ endpoint: 'create', status: 529, retryAfterMs: 10 }] });

    const created = await sdk(sim, 2).messages.batches.create(body([request('a')]));

    expect(created.processing_status).toBe('in_progress');
    expect(sim.stats().calls.create).toBe(2);
    expect(sim.stats().batchesCreated).toEqual([created.id]);
  });
});
