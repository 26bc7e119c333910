import { afterAll, describe, expect, it } from 'vitest';
import type { BatchRequest, MessageParams } from '../../shared/anthropic/types';
import { breakpointsOf, choosePrimeCache, InvalidPrimeCache, planPriming, primeAttempt, primingParams, PRIME_MIN_ROWS } from '../../shared/jobs/prime-cache';
import { quietObserver } from '../../shared/observability';
import { useLocalAws } from '../support/aws';
import { readChunkItem, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';

/** A marked text block of `chars` ASCII characters (chars / 4 tokens). */
const marked = (label: string, chars: number, ttl?: '1h') => ({
  type: 'text',
  text: `${label} `.repeat(chars).slice(0, chars),
  cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) },
});

const params = (overrides: Partial<MessageParams> = {}): MessageParams => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'Question' }],
  ...overrides,
});

const request = (customId: string, overrides: Partial<MessageParams> = {}): BatchRequest => ({ custom_id: customId, params: params(overrides) });

const lines = (requests: BatchRequest[]) => () => requests.map((r) => Buffer.from(JSON.stringify(r)));

describe('which prefixes are primed', () => {
  it(`primes a prefix only when at least ${PRIME_MIN_ROWS} rows share it, once, with max_tokens 0`, async () => {
    const shared = [marked('rules', 8000)];
    const rows = [
      ...['a', 'b', 'c'].map((id) => request(id, { system: shared, messages: [{ role: 'user', content: `Question ${id}` }] })),
      // Two rows share another prefix: too few to be worth a call.
      ...['d', 'e'].map((id) => request(id, { system: [marked('other', 8000)] })),
    ];

    const plans = await planPriming(lines(rows));

    expect(plans).toHaveLength(1);
    expect(plans[0]!.prefix).toEqual({ model: 'claude-sonnet-4-5', ttl: '5m', tokens: 2003, rows: 3 });
    expect(plans[0]!.params).toEqual({ model: 'claude-sonnet-4-5', max_tokens: 0, system: shared, messages: [{ role: 'user', content: '.' }] });
  });

  it("never primes a prefix shorter than the model's minimum cacheable length (it is not cached)", async () => {
    // 800 characters: 203 tokens, under Sonnet's 1,024.
    const rows = ['a', 'b', 'c', 'd'].map((id) => request(id, { system: [marked('short', 800)] }));

    expect(breakpointsOf(rows[0]!.params)).toEqual([]);
    expect(await planPriming(lines(rows))).toEqual([]);
  });

  it("assigns each row its longest shared prefix, and cuts the priming request's messages after the marked block", async () => {
    const system = [marked('rules', 8000)];
    const document = { role: 'user', content: [marked('document', 8000), { type: 'text', text: 'Question x' }] };
    const rows = [
      ...['a', 'b', 'c'].map((id) =>
        request(id, { system, messages: [{ ...document, content: [document.content[0], { type: 'text', text: `Question ${id}` }] }] }),
      ),
      ...['d', 'e'].map((id) => request(id, { system, temperature: 0.2, messages: [{ role: 'user', content: `Question ${id}` }] })),
    ];

    const plans = await planPriming(lines(rows));

    // The document prefix (system + document, 4,006 tokens) for a, b, c; the system prefix for d and e.
    expect(plans.map((plan) => plan.prefix)).toEqual([
      { model: 'claude-sonnet-4-5', ttl: '5m', tokens: 4006, rows: 3 },
      { model: 'claude-sonnet-4-5', ttl: '5m', tokens: 2003, rows: 2 },
    ]);
    expect(plans[0]!.params).toEqual({ model: 'claude-sonnet-4-5', max_tokens: 0, system, messages: [{ role: 'user', content: [document.content[0]] }] });
  });

  it('keeps the tools and tool_choice, and carries a top-level cache_control (automatic caching)', () => {
    const tools = [{ name: 'lookup', description: 'd'.repeat(6000), input_schema: { type: 'object' } }];
    const whole = params({ tools, tool_choice: { type: 'auto' }, cache_control: { type: 'ephemeral' }, thinking: { type: 'enabled', budget_tokens: 2048 } });
    const [point] = breakpointsOf(whole);

    expect(point).toMatchObject({ topLevel: true, ttl: '5m' });
    expect(primingParams(whole, point!)).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 0,
      tools,
      tool_choice: { type: 'auto' },
      cache_control: { type: 'ephemeral' },
      messages: whole.messages,
    });
  });
});

describe('the prime-cache option', () => {
  it('takes the object metadata over the stack setting, and refuses what is not a yes or a no', () => {
    expect(choosePrimeCache(undefined, false)).toBe(false);
    expect(choosePrimeCache(undefined, true)).toBe(true);
    expect(choosePrimeCache('true', false)).toBe(true);
    expect(choosePrimeCache(' False ', true)).toBe(false);
    expect(() => choosePrimeCache('sometimes', false)).toThrow(InvalidPrimeCache);
    expect(() => choosePrimeCache('sometimes', false)).toThrow('batchline-prime-cache metadata is "sometimes"; use true or false');
  });
});

describe('primeAttempt', () => {
  const aws = useLocalAws();
  let ctx: ApiContext | undefined;
  afterAll(async () => stopApi(ctx));

  it('primes an attempt once: a re-run finds the priming on the attempt and calls nothing', async () => {
    ctx = await startApi();
    const system = [marked('rules', 8000, '1h')];
    const rows = ['a', 'b', 'c', 'd'].map((id) => request(id, { system, messages: [{ role: 'user', content: `Question ${id}` }] }));
    const { jobId } = await seedJob(aws, { chunks: [rows] });
    const deps = {
      s3: aws.s3,
      dynamo: aws.dynamo,
      messages: ctx.api,
      config: { bucket: aws.bucket, table: aws.table },
      now: Date.now,
      observer: quietObserver,
    };
    const key = { jobId, chunk: 0, attempt: 1 };

    const first = await primeAttempt(key, await readChunkItem(aws, jobId, 0), 0, deps);
    // A Submit that ran again (its first run's reply lost) reads the chunk afresh.
    const second = await primeAttempt(key, await readChunkItem(aws, jobId, 0), 0, deps);

    expect(ctx.sim.stats().calls.messages).toBe(1);
    expect(first.attempts[0]!.priming).toMatchObject({
      prefixes: [{ model: 'claude-sonnet-4-5', ttl: '1h', tokens: 2003, rows: 4 }],
      calls: 1,
      failed: 0,
      usage: { 'claude-sonnet-4-5': { cacheWrite1h: 2003, cacheWrite5m: 0, cacheRead: 0, output: 0 } },
    });
    expect(second.attempts[0]!.priming).toEqual(first.attempts[0]!.priming);
    expect((await readChunkItem(aws, jobId, 0)).attempts[0]!.priming).toEqual(first.attempts[0]!.priming);
  });
});
