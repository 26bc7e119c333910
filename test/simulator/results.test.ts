/** The results file: line shapes, derived messages and usage, prompt caching, order, Range and cuts. */
import { describe, expect, it } from 'vitest';
import type { BatchResultLine, Message } from '../../shared/anthropic/types';
import type { SimulatorHandle } from '../../simulator/server';
import { BUILT_IN_PRICES } from '../../shared/cost/prices';
import { modelCatalog } from '../../shared/validation/models';
import { createBatch, parseLines, raw, request, requests, resultsBytes, runBatch, useSimulators } from './fixtures';

const sims = useSimulators();

function message(line: BatchResultLine | undefined): Message {
  if (line?.result.type !== 'succeeded') throw new Error(`expected a succeeded line, got ${JSON.stringify(line)}`);
  return line.result.message;
}

/** A prompt of exactly `chars` characters. */
function text(chars: number, seed = 'x'): string {
  return seed.repeat(chars).slice(0, chars);
}

describe('line shapes', () => {
  it('writes a succeeded line with every Message and usage field', async () => {
    const sim = await sims.start();
    const lines = await runBatch(sim, [request('only', { messages: [{ role: 'user', content: text(400) }] })]);

    expect(lines.get('only')).toEqual({
      custom_id: 'only',
      result: {
        type: 'succeeded',
        message: {
          id: expect.stringMatching(/^msg_01[0-9A-Za-z]{22}$/),
          type: 'message',
          role: 'assistant',
          model: 'claude-sonnet-5',
          content: [{ type: 'text', text: expect.stringMatching(/^Simulated reply to prompt [0-9a-f]{24}: /), citations: null }],
          stop_reason: 'end_turn',
          stop_sequence: null,
          stop_details: null,
          container: null,
          diagnostics: null,
          usage: {
            // 400 ASCII characters, the message's opening and the request's closing overhead.
            input_tokens: 100 + 3 + 4,
            output_tokens: expect.any(Number),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
            server_tool_use: null,
            service_tier: 'batch',
            inference_geo: null,
            output_tokens_details: null,
            speed: 'standard',
          },
        },
      },
    });
    const reply = message(lines.get('only'));
    expect(reply.usage.output_tokens).toBe((reply.content[0] as { text: string }).text.split(' ').length);
  });

  it('ends a reply cut by max_tokens with stop_reason max_tokens and output_tokens = max_tokens', async () => {
    const sim = await sims.start();
    const lines = await runBatch(sim, [request('short', { max_tokens: 3 })]);
    const reply = message(lines.get('short'));
    expect(reply.stop_reason).toBe('max_tokens');
    expect(reply.usage.output_tokens).toBe(3);
    expect(reply.content).toEqual([{ type: 'text', text: expect.stringMatching(/^Simulated reply to$/), citations: null }]);
  });

  it('gives the same reply to the same request, never echoing the prompt', async () => {
    const sim = await sims.start();
    const secret = 'The launch code is swordfish, do not repeat it.';
    const same = { messages: [{ role: 'user', content: secret }] };
    const lines = await runBatch(sim, [request('a', same), request('b', same), request('c')]);

    const [a, b, c] = ['a', 'b', 'c'].map((id) => message(lines.get(id)));
    expect(a!.content).toEqual(b!.content);
    expect(a!.content).not.toEqual(c!.content);
    expect(JSON.stringify([...lines.values()])).not.toContain('swordfish');
  });

  it('errors invalid params per request, naming the problem, while the others succeed', async () => {
    const sim = await sims.start();
    const lines = await runBatch(sim, [
      request('ok'),
      request('no-model', { model: undefined }),
      request('zero-tokens', { max_tokens: 0 }),
      request('streaming', { stream: true }),
      request('fast', { speed: 'fast' }),
      request('no-messages', { messages: undefined }),
      request('bad-role', { messages: [{ role: 'system', content: 'hi' }] }),
      request('hot', { temperature: 1.5 }),
      request('no-schema', { tools: [{ name: 'lookup' }] }),
      request('unknown-tool', { tools: [{ name: 'lookup', input_schema: { type: 'object' } }], tool_choice: { type: 'tool', name: 'search' } }),
      request('choice-alone', { tool_choice: { type: 'any' } }),
      request('small-budget', { thinking: { type: 'enabled', budget_tokens: 512 } }),
    ]);
    const errors = Object.fromEntries([...lines.values()].filter((line) => line.result.type === 'errored').map((line) => [line.custom_id, line.result]));

    expect(lines.get('ok')?.result.type).toBe('succeeded');
    const envelope = (message: RegExp) => ({
      type: 'errored',
      error: { type: 'error', error: { type: 'invalid_request_error', message: expect.stringMatching(message) }, request_id: null },
    });
    expect(errors).toEqual({
      'no-model': envelope(/^model: Field required$/),
      'zero-tokens': envelope(/^max_tokens: .*greater than or equal to 1/),
      streaming: envelope(/^stream: streaming is not supported/),
      fast: envelope(/^speed: not supported/),
      'no-messages': envelope(/^messages: Field required$/),
      'bad-role': envelope(/^messages\.0\.role: /),
      hot: envelope(/^temperature: .*less than or equal to 1$/),
      'no-schema': envelope(/^tools\.0\.input_schema: Field required$/),
      'unknown-tool': envelope(/^tool_choice\.name: no tool named "search" in tools$/),
      'choice-alone': envelope(/^tool_choice: may only be specified while providing tools$/),
      'small-budget': envelope(/^thinking\.enabled\.budget_tokens: .*1024$/),
    });
  });

  it('answers a request forcing a server tool (which it does not run) in text', async () => {
    const sim = await sims.start();
    const lines = await runBatch(sim, [
      request('search', { tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 2 }], tool_choice: { type: 'tool', name: 'web_search' } }),
    ]);
    expect(message(lines.get('search')).content.map((block) => (block as { type: string }).type)).toEqual(['text']);
  });

  it('errors a request for a model it does not serve with not_found_error, as the API does, after checking its params', async () => {
    const sim = await sims.start();
    const lines = await runBatch(sim, [
      request('ok'),
      request('dated', { model: 'claude-sonnet-4-5-20250929' }),
      request('misspelt', { model: 'claude-sonet-4-5' }),
      request('misspelt-and-broken', { model: 'claude-sonet-4-5', max_tokens: 0 }),
    ]);

    expect(lines.get('ok')?.result.type).toBe('succeeded');
    expect(lines.get('dated')?.result.type).toBe('succeeded');
    expect(lines.get('misspelt')?.result).toEqual({
      type: 'errored',
      error: { type: 'error', error: { type: 'not_found_error', message: 'model: claude-sonet-4-5' }, request_id: null },
    });
    expect(lines.get('misspelt-and-broken')?.result).toMatchObject({ type: 'errored', error: { error: { type: 'invalid_request_error' } } });
  });

  it('serves the models it is told to', async () => {
    const sim = await sims.start({ models: modelCatalog(new Map([['claude-next-9', BUILT_IN_PRICES.get('claude-haiku-4-5')!]])) });
    const lines = await runBatch(sim, [request('next', { model: 'claude-next-9' }), request('old', { model: 'claude-haiku-4-5' })]);
    expect(lines.get('next')?.result.type).toBe('succeeded');
    expect(lines.get('old')?.result).toMatchObject({ type: 'errored', error: { error: { type: 'not_found_error', message: 'model: claude-haiku-4-5' } } });
  });

  it('writes errored lines with the configured error types, as full envelopes', async () => {
    const sim = await sims.start({ batchFaults: { errored: { overloaded_error: 1 } } });
    const lines = await runBatch(sim, [request('a')]);
    expect(lines.get('a')).toEqual({
      custom_id: 'a',
      result: {
        type: 'errored',
        error: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' }, request_id: null },
      },
    });
  });

  it('writes canceled and expired lines as bare types', async () => {
    // Stalled batches have no request that finishes: canceling one cancels every request.
    const sim = await sims.start({ batchFaults: { stall: true } });
    const canceled = await createBatch(sim, [request('c')]);
    const expired = await createBatch(sim, [request('e')]);
    await raw(sim, 'POST', `/v1/messages/batches/${canceled.id}/cancel`);
    sim.advance(24 * 3600);

    expect(parseLines((await resultsBytes(sim, canceled.id)).body)).toEqual([{ custom_id: 'c', result: { type: 'canceled' } }]);
    expect(parseLines((await resultsBytes(sim, expired.id)).body)).toEqual([{ custom_id: 'e', result: { type: 'expired' } }]);
  });
});

describe('prompt caching', () => {
  // 8,000 ASCII characters: 2,000 tokens and the system prompt's opening 3, past Sonnet 5's minimum of 1,024.
  const SYSTEM_TOKENS = 2003;
  const cachedSystem = (ttl?: '1h') => ({
    system: [{ type: 'text', text: text(8000, 'sys '), cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) } }],
    messages: [{ role: 'user', content: text(400) }],
  });

  it('writes a cached prefix the first time it is seen and reads it afterwards', async () => {
    const sim = await sims.start();
    // Each batch ends within its processing time (60 s), well inside the hour the entry lives.
    const first = await runBatch(sim, [request('first', cachedSystem('1h'))], 60);
    const second = await runBatch(sim, [request('second', cachedSystem('1h'))], 60);

    expect(message(first.get('first')).usage).toMatchObject({
      input_tokens: 107,
      cache_creation_input_tokens: SYSTEM_TOKENS,
      cache_read_input_tokens: 0,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: SYSTEM_TOKENS },
    });
    expect(message(second.get('second')).usage).toMatchObject({
      input_tokens: 107,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: SYSTEM_TOKENS,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
    });
  });

  it('keys the cache by model, and bills a default-TTL write as 5 minutes', async () => {
    const sim = await sims.start();
    const lines = await runBatch(sim, [request('sonnet', cachedSystem()), request('opus', { ...cachedSystem(), model: 'claude-opus-5' })]);
    for (const id of ['sonnet', 'opus']) {
      expect(message(lines.get(id)).usage.cache_creation).toEqual({ ephemeral_5m_input_tokens: SYSTEM_TOKENS, ephemeral_1h_input_tokens: 0 });
    }
  });

  it('honours marks on tools, message blocks and the top level, reading the longest written prefix', async () => {
    const sim = await sims.start();
    const definition = { name: 'lookup', description: text(4400), input_schema: { type: 'object' } };
    const tools = [{ ...definition, cache_control: { type: 'ephemeral' } }];
    const turn = { role: 'user', content: [{ type: 'text', text: text(800), cache_control: { type: 'ephemeral' } }] };
    await runBatch(sim, [request('tools-only', { tools, messages: [{ role: 'user', content: 'q' }] })], 60);
    const lines = await runBatch(sim, [
      request('tools-and-turn', { tools, messages: [turn] }),
      request('automatic', { messages: [{ role: 'user', content: text(4400) }], cache_control: { type: 'ephemeral' } }),
    ]);

    // The tool-use system prompt (346 with tool_choice auto) opens the tools.
    const toolTokens = 346 + Math.ceil(JSON.stringify(definition).length / 4);
    expect(message(lines.get('tools-and-turn')).usage).toMatchObject({
      input_tokens: 4,
      cache_read_input_tokens: toolTokens,
      cache_creation_input_tokens: 200 + 3,
    });
    expect(message(lines.get('automatic')).usage).toMatchObject({ input_tokens: 4, cache_creation_input_tokens: 1100 + 3 });
  });

  it('caches nothing below the model’s minimum cacheable length: the marked prefix is billed as input', async () => {
    const sim = await sims.start();
    const short = { system: [{ type: 'text', text: text(4000), cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'hi' }] };
    const lines = await runBatch(sim, [request('sonnet', short), request('opus-4-6', { ...short, model: 'claude-opus-4-6' })]);
    // 1,003 tokens: under Sonnet 5's 1,024 and Opus 4.6's 4,096.
    for (const id of ['sonnet', 'opus-4-6']) {
      expect(message(lines.get(id)).usage).toMatchObject({ input_tokens: 1003 + 4 + 4, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    }
  });
});

describe('order, determinism and transport', () => {
  async function endedBatch(sim: SimulatorHandle, count: number): Promise<string> {
    const created = await createBatch(sim, requests(count));
    sim.advance(60);
    return created.id;
  }

  it('writes \\n-terminated lines, no blank ones, in an order other than the input order', async () => {
    const sim = await sims.start();
    const id = await endedBatch(sim, 50);
    const response = await resultsBytes(sim, id);
    const body = response.body.toString('utf8');

    expect(response.headers.get('content-type')).toBe('application/x-jsonl');
    expect(body.endsWith('\n')).toBe(true);
    expect(body).not.toContain('\n\n');
    const order = parseLines(response.body).map((line) => line.custom_id);
    const input = requests(50).map((r) => r.custom_id);
    expect([...order].sort()).toEqual([...input].sort());
    expect(order).not.toEqual(input);
  });

  it('gives identical results files for the same seed, and a different order for another seed', async () => {
    const run = async (seed: number): Promise<Buffer> => {
      const sim = await sims.start({ seed, batchFaults: { errored: { api_error: 0.2 } } });
      return (await resultsBytes(sim, await endedBatch(sim, 30))).body;
    };
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
  });

  it('serves the exact byte suffix for Range: bytes=N-, with 206 and Content-Range', async () => {
    const sim = await sims.start();
    const id = await endedBatch(sim, 20);
    const whole = (await resultsBytes(sim, id)).body;
    const from = Math.floor(whole.length / 3) + 7; // mid-line on purpose

    const part = await resultsBytes(sim, id, { range: `bytes=${from}-` });

    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes ${from}-${whole.length - 1}/${whole.length}`);
    expect(part.headers.get('content-length')).toBe(String(whole.length - from));
    expect(part.body.equals(whole.subarray(from))).toBe(true);
    const beyond = await resultsBytes(sim, id, { range: `bytes=${whole.length}-` });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${whole.length}`);
  });

  it('cuts the results stream after cutResultsAfterBytes, and a Range request resumes it', async () => {
    const sim = await sims.start({ batchFaults: { cutResultsAfterBytes: 1000, cutResultsTimes: 1 } });
    const id = await endedBatch(sim, 20);

    const received: Buffer[] = [];
    const response = await fetch(`${sim.url}/v1/messages/batches/${id}/results`, {
      headers: { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
    });
    const failure = await (async () => {
      try {
        for await (const chunk of response.body!) received.push(Buffer.from(chunk));
        return null;
      } catch (error) {
        return error;
      }
    })();
    const head = Buffer.concat(received);
    const rest = await resultsBytes(sim, id, { range: `bytes=${head.length}-` });
    const whole = await resultsBytes(sim, id);

    expect(response.status).toBe(200);
    expect(failure).toBeInstanceOf(Error);
    expect(head.length).toBe(1000);
    expect(rest.status).toBe(206);
    expect(Buffer.concat([head, rest.body]).equals(whole.body)).toBe(true);
    expect(parseLines(whole.body)).toHaveLength(20);
  });

  it('streams every line of a batch that spans many 64 KiB writes', async () => {
    const sim = await sims.start({ processingSeconds: 0 });
    const many = Array.from({ length: 3_000 }, (_, i) => request(`r${i}`, { max_tokens: 1 }));
    const created = await createBatch(sim, many);

    const response = await resultsBytes(sim, created.id);

    expect(created.request_counts.succeeded).toBe(3_000);
    expect(response.body.length).toBeGreaterThan(20 * 64 * 1024);
    expect(new Set(parseLines(response.body).map((line) => line.custom_id)).size).toBe(3_000);
  });
});
