/**
 * `POST /v1/messages` on the simulator, over HTTP: the same usage rules as batch results, answered
 * at once, and a prompt cache shared with the batches — primed by a Messages call within the TTL,
 * a batch reads; not primed (or primed too long ago), its first requests write.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import { ApiRequestInvalid } from '../../shared/anthropic/errors';
import type { BatchRequest, Message, Usage } from '../../shared/anthropic/types';
import type { SimulatorHandle } from '../../simulator/server';
import { API_KEY, raw, request, runBatch, useSimulators } from './fixtures';

const sims = useSimulators();
const clients: BatchesClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

function client(sim: SimulatorHandle, maxRetries = 0): BatchesClient {
  const made = new BatchesClient({ apiKey: API_KEY, baseUrl: sim.url, maxRetries, sleep: async () => undefined });
  clients.push(made);
  return made;
}

/** 8,000 ASCII characters (2,000 tokens + the system opening 3): past Sonnet 5's minimum of 1,024. */
const SYSTEM_TOKENS = 2003;
const sharedSystem = (ttl?: '1h') => [
  { type: 'text', text: 'rules '.repeat(1334).slice(0, 8000), cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) } },
];
const row = (id: string, ttl?: '1h'): BatchRequest => request(id, { system: sharedSystem(ttl), messages: [{ role: 'user', content: `Question ${id}` }] });
const rows = (count: number, ttl?: '1h') => Array.from({ length: count }, (_, i) => row(`row-${i}`, ttl));

function usages(lines: Awaited<ReturnType<typeof runBatch>>): Usage[] {
  return [...lines.values()].map((line) => {
    if (line.result.type !== 'succeeded') throw new Error(`expected succeeded, got ${line.result.type}`);
    return line.result.message.usage;
  });
}

describe('POST /v1/messages', () => {
  it('answers the official SDK with a Message at standard rates: "Hello, world" is 10 input tokens', async () => {
    const sim = await sims.start();
    const sdk = new Anthropic({ apiKey: API_KEY, baseURL: sim.url, maxRetries: 0 });

    const reply = await sdk.messages.create({ model: 'claude-opus-5', max_tokens: 1024, messages: [{ role: 'user', content: 'Hello, world' }] });

    expect(reply).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-opus-5', stop_reason: 'end_turn', diagnostics: null });
    expect(reply.id).toMatch(/^msg_01[0-9A-Za-z]{22}$/);
    expect(reply.usage).toMatchObject({
      input_tokens: 10,
      service_tier: 'standard',
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      speed: 'standard',
    });
    expect(sim.stats().calls.messages).toBe(1);
  });

  it('gives the same usage as the same request in a batch, but standard service tier', async () => {
    const sim = await sims.start();
    const params = request('same', { messages: [{ role: 'user', content: '안녕하세요, 배치 처리에 대해 알려주세요.' }] }).params;
    const sync = await client(sim).createMessage(params);
    const lines = await runBatch(sim, [{ custom_id: 'same', params }]);
    const [batched] = usages(lines);
    expect(sync.usage.input_tokens).toBe(batched!.input_tokens);
    expect(sync.usage.output_tokens).toBe(batched!.output_tokens);
    expect([sync.usage.service_tier, batched!.service_tier]).toEqual(['standard', 'batch']);
  });

  it('rejects what a batch request would error: 400 naming the parameter, 404 for a model it does not serve', async () => {
    const sim = await sims.start();
    const thinkingHot = await raw(sim, 'POST', '/v1/messages', {
      body: { ...request('x').params, max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 2048 }, temperature: 0.5 },
    });
    expect(thinkingHot.status).toBe(400);
    expect(thinkingHot.json.error).toEqual({ type: 'invalid_request_error', message: 'temperature: may only be set to 1 when thinking is enabled' });

    const unknown = await raw(sim, 'POST', '/v1/messages', { body: request('x', { model: 'claude-imaginary-9' }).params });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toEqual({ type: 'not_found_error', message: 'model: claude-imaginary-9' });

    const notJson = await raw(sim, 'POST', '/v1/messages', { body: '{"model":' });
    expect(notJson.status).toBe(400);
    await expect(client(sim).createMessage({ ...request('x').params, top_p: 2 })).rejects.toThrow(ApiRequestInvalid);
  });

  it('accepts max_tokens 0 (cache pre-warming), which a batch refuses: no content, no output tokens', async () => {
    const sim = await sims.start();
    const reply: Message = await client(sim).createMessage({ ...row('warm').params, max_tokens: 0 });
    expect(reply.content).toEqual([]);
    expect(reply.stop_reason).toBe('max_tokens');
    expect(reply.usage).toMatchObject({ output_tokens: 0, cache_creation_input_tokens: SYSTEM_TOKENS, cache_read_input_tokens: 0 });
  });

  it('is retried by the client on 529, as the batch calls are', async () => {
    const sim = await sims.start({ httpFaults: [{ endpoint: 'messages', status: 529, times: 2 }] });
    const reply = await client(sim, 2).createMessage(request('x').params);
    expect(reply.type).toBe('message');
    expect(sim.stats().calls.messages).toBe(3);
  });
});

describe('prompt cache priming', () => {
  it('a batch run within 5 minutes of a priming call reads the prefix on every request', async () => {
    const sim = await sims.start();
    const primed = await client(sim).createMessage({ ...row('prime').params, max_tokens: 0 });
    expect(primed.usage.cache_creation?.ephemeral_5m_input_tokens).toBe(SYSTEM_TOKENS);

    const all = usages(await runBatch(sim, rows(20), 60));

    expect(all.every((usage) => usage.cache_read_input_tokens === SYSTEM_TOKENS && usage.cache_creation_input_tokens === 0)).toBe(true);
  });

  it('without priming, the requests that start together all write, and only the later ones read', async () => {
    const sim = await sims.start();
    const all = usages(await runBatch(sim, rows(20), 60));
    const writes = all.filter((usage) => usage.cache_creation_input_tokens === SYSTEM_TOKENS).length;
    const reads = all.filter((usage) => usage.cache_read_input_tokens === SYSTEM_TOKENS).length;
    // The first request cannot read (nothing was written); more than one writes, since requests run concurrently.
    expect(writes).toBeGreaterThan(1);
    expect(reads).toBeGreaterThan(0);
    expect(writes + reads).toBe(20);
  });

  it('a 5-minute entry has expired 6 minutes later: the batch writes again', async () => {
    const sim = await sims.start();
    await client(sim).createMessage({ ...row('prime').params, max_tokens: 0 });
    sim.advance(6 * 60);
    const all = usages(await runBatch(sim, rows(5), 60));
    expect(all.some((usage) => usage.cache_creation_input_tokens === SYSTEM_TOKENS)).toBe(true);
  });

  it('a 1-hour entry is still there 30 minutes later, and every read refreshes it', async () => {
    const sim = await sims.start();
    await client(sim).createMessage({ ...row('prime', '1h').params, max_tokens: 0 });
    sim.advance(30 * 60);
    const first = usages(await runBatch(sim, rows(5, '1h'), 60));
    sim.advance(50 * 60); // 81 minutes after priming, 50 after the batch's reads
    const second = await client(sim).createMessage(row('later', '1h').params);

    expect(first.every((usage) => usage.cache_read_input_tokens === SYSTEM_TOKENS)).toBe(true);
    expect(second.usage).toMatchObject({ cache_read_input_tokens: SYSTEM_TOKENS, cache_creation_input_tokens: 0 });
  });
});
