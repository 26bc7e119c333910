import { describe, expect, it } from 'vitest';
import type { MessageParams } from '../../shared/anthropic/types';
import { EstimateTotals, type OutputHistory } from '../../shared/cost/cost';
import { historyAdditions } from '../../shared/jobs/output-history';

/**
 * Hand-built requests, counted by the real token rules (docs/api-reference.md §10): a system block
 * of 8,000 ASCII characters is 2,000 tokens plus the system's opening 3 = a 2,003-token prefix; the
 * user turn "Say hello." is 3 + 3 = 6; the request closes with 4. So 2,013 input tokens, 10 of them
 * after the prefix.
 */
function cachedRow(options: { model?: string; ttl?: '1h'; maxTokens?: number; system?: string } = {}): MessageParams {
  const mark = options.ttl ? { type: 'ephemeral', ttl: options.ttl } : { type: 'ephemeral' };
  return {
    model: options.model ?? 'claude-sonnet-4-5',
    max_tokens: options.maxTokens ?? 100,
    system: [{ type: 'text', text: options.system ?? 'S'.repeat(8_000), cache_control: mark }],
    messages: [{ role: 'user', content: 'Say hello.' }],
  } as MessageParams;
}

const PREFIX = 2_003;
const AFTER = 10;
/** claude-sonnet-4-5 per million tokens: input 3, 5m write 3.75, 1h write 6, read 0.30, output 15; batch halves each. */
const SONNET = { input: 3, write5m: 3.75, write1h: 6, read: 0.3, output: 15 };
const batchUsd = (tokens: { input?: number; write5m?: number; write1h?: number; read?: number; output?: number }) =>
  (0.5 *
    ((tokens.input ?? 0) * SONNET.input +
      (tokens.write5m ?? 0) * SONNET.write5m +
      (tokens.write1h ?? 0) * SONNET.write1h +
      (tokens.read ?? 0) * SONNET.read +
      (tokens.output ?? 0) * SONNET.output)) /
  1_000_000;

function totalsOf(rows: MessageParams[], options: ConstructorParameters<typeof EstimateTotals>[0] = {}, batchEvery = Number.POSITIVE_INFINITY) {
  const totals = new EstimateTotals(options);
  rows.forEach((row, i) => {
    if (i > 0 && i % batchEvery === 0) totals.newBatch();
    totals.add(row);
  });
  return totals.toJSON();
}

describe('EstimateTotals: prompt caching', () => {
  it('expected: in one batch, the first row with a prefix writes it and the others read it', () => {
    const json = totalsOf([cachedRow(), cachedRow(), cachedRow()]);
    expect(json.expected.tokens).toEqual({
      input_tokens: 3 * AFTER,
      output_tokens: 300,
      cache_creation_input_tokens: PREFIX,
      cache_read_input_tokens: 2 * PREFIX,
    });
    expect(json.expected.totalUsd).toBeCloseTo(batchUsd({ input: 3 * AFTER, write5m: PREFIX, read: 2 * PREFIX, output: 300 }), 6);
    expect(json.cache).toEqual({ batches: 1, prefixes: 1, primedPrefixes: 0, primingUsd: 0 });
  });

  it('upper bound: every row writes its prefix, as rows that start together do', () => {
    const json = totalsOf([cachedRow(), cachedRow(), cachedRow()]);
    expect(json.tokens).toEqual({ input_tokens: 3 * AFTER, output_tokens: 300, cache_creation_input_tokens: 3 * PREFIX, cache_read_input_tokens: 0 });
    expect(json.totalUsd).toBeCloseTo(batchUsd({ input: 3 * AFTER, write5m: 3 * PREFIX, output: 300 }), 6);
    expect(json.totalUsd).toBeGreaterThan(json.expected.totalUsd);
  });

  it('each batch (chunk) writes its prefixes again', () => {
    const json = totalsOf([cachedRow(), cachedRow(), cachedRow(), cachedRow()], {}, 2);
    expect(json.expected.tokens.cache_creation_input_tokens).toBe(2 * PREFIX);
    expect(json.expected.tokens.cache_read_input_tokens).toBe(2 * PREFIX);
    expect(json.cache).toMatchObject({ batches: 2, prefixes: 2 });
  });

  it('prices a 1-hour mark as a 1-hour write', () => {
    const json = totalsOf([cachedRow({ ttl: '1h' }), cachedRow({ ttl: '1h' })]);
    expect(json.models['claude-sonnet-4-5']!.tokens).toMatchObject({ cacheWrite1h: 2 * PREFIX, cacheWrite5m: 0, cacheRead: 0 });
    expect(json.totalUsd).toBeCloseTo(batchUsd({ input: 2 * AFTER, write1h: 2 * PREFIX, output: 200 }), 6);
    expect(json.expected.totalUsd).toBeCloseTo(batchUsd({ input: 2 * AFTER, write1h: PREFIX, read: PREFIX, output: 200 }), 6);
  });

  it('different prefixes are written once each', () => {
    const json = totalsOf([cachedRow(), cachedRow({ system: 'T'.repeat(8_000) }), cachedRow(), cachedRow({ system: 'T'.repeat(8_000) })]);
    expect(json.expected.tokens.cache_creation_input_tokens).toBe(2 * PREFIX);
    expect(json.expected.tokens.cache_read_input_tokens).toBe(2 * PREFIX);
  });

  it('a marked prefix shorter than the model minimum is plain input (Haiku 4.5: 4,096 tokens)', () => {
    const json = totalsOf([cachedRow({ model: 'claude-haiku-4-5' }), cachedRow({ model: 'claude-haiku-4-5' })]);
    expect(json.tokens).toMatchObject({ input_tokens: 2 * (PREFIX + AFTER), cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    expect(json.expected.tokens).toMatchObject({ input_tokens: 2 * (PREFIX + AFTER), cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
  });

  it('with primeCache, a prefix 3 rows share is written by one call at standard price and every row reads it (expected)', () => {
    const json = totalsOf([cachedRow(), cachedRow(), cachedRow()], { primeCache: true });
    expect(json.expected.tokens).toMatchObject({ cache_creation_input_tokens: 0, cache_read_input_tokens: 3 * PREFIX });
    const priming = (PREFIX * SONNET.write5m) / 1_000_000;
    expect(json.cache).toMatchObject({ primedPrefixes: 1 });
    expect(json.cache.primingUsd).toBeCloseTo(priming, 6);
    expect(json.expected.totalUsd).toBeCloseTo(batchUsd({ input: 3 * AFTER, read: 3 * PREFIX, output: 300 }) + priming, 5);
    // At worst the primed prefix has expired when the batch starts: the priming is paid and every row writes.
    expect(json.totalUsd).toBeCloseTo(batchUsd({ input: 3 * AFTER, write5m: 3 * PREFIX, output: 300 }) + priming, 5);
  });

  it('with primeCache, a prefix only 2 rows share is not primed', () => {
    const json = totalsOf([cachedRow(), cachedRow()], { primeCache: true });
    expect(json.expected.tokens).toMatchObject({ cache_creation_input_tokens: PREFIX, cache_read_input_tokens: PREFIX });
    expect(json.cache).toMatchObject({ primedPrefixes: 0, primingUsd: 0 });
  });
});

describe('EstimateTotals: expected output', () => {
  it("without history, the expected figure's output is the upper bound's, at max_tokens", () => {
    const plain: MessageParams = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'Say hello.' }] };
    const json = totalsOf([plain, plain]);
    expect(json.expected).toMatchObject({ basis: 'max_tokens', historyRows: 0, totalUsd: json.totalUsd });
    expect(json.expected.tokens.output_tokens).toBe(200);
    const cached = totalsOf([cachedRow(), cachedRow()]);
    expect(cached.expected.tokens.output_tokens).toBe(cached.tokens.output_tokens);
  });

  it("with history, output is max_tokens × the model's past output ÷ max_tokens", () => {
    const history: OutputHistory = { 'claude-sonnet-4-5': { rows: 40, outputTokens: 1_000, maxTokens: 4_000 } };
    const json = totalsOf([cachedRow(), cachedRow({ maxTokens: 1_000 })], { history });
    expect(json.expected).toMatchObject({ basis: 'history', historyRows: 40 });
    expect(json.expected.tokens.output_tokens).toBe(25 + 250);
    expect(json.tokens.output_tokens).toBe(1_100);
    expect(json.expected.models['claude-sonnet-4-5']).toMatchObject({ outputRatio: 0.25, historyRows: 40, outputTokens: 275 });
    // The two figures differ by the output, and by the second row's write (upper) against its read (expected).
    const cacheGap = batchUsd({ write5m: PREFIX }) - batchUsd({ read: PREFIX });
    expect(json.totalUsd - json.expected.totalUsd).toBeCloseTo((0.5 * (1_100 - 275) * SONNET.output) / 1_000_000 + cacheGap, 5);
  });

  it('a model without history stays at max_tokens, and the basis says partial', () => {
    const history: OutputHistory = { 'claude-haiku-4-5': { rows: 10, outputTokens: 100, maxTokens: 1_000 } };
    const haiku: MessageParams = { model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'Say hello.' }] };
    const json = totalsOf([cachedRow(), haiku], { history });
    expect(json.expected.basis).toBe('partial');
    expect(json.expected.models['claude-sonnet-4-5']).toMatchObject({ outputRatio: null, outputTokens: 100 });
    expect(json.expected.models['claude-haiku-4-5']).toMatchObject({ outputRatio: 0.1, outputTokens: 5 });
  });
});

describe('historyAdditions', () => {
  it("takes the succeeded rows' share of the max_tokens Prepare recorded, per model", () => {
    const sent = { 'claude-sonnet-4-5': { rows: 10, maxTokens: 2_000 }, 'claude-haiku-4-5': { rows: 4, maxTokens: 400 } };
    expect(historyAdditions(sent, { 'claude-sonnet-4-5': { rows: 8, outputTokens: 500 }, 'claude-haiku-4-5': { rows: 0, outputTokens: 0 } })).toEqual([
      { model: 'claude-sonnet-4-5', rows: 8, outputTokens: 500, maxTokens: 1_600 },
    ]);
  });

  it('leaves out a model Prepare did not send', () => {
    expect(historyAdditions({}, { 'claude-sonnet-4-5': { rows: 1, outputTokens: 5 } })).toEqual([]);
  });
});

describe('EstimateTotals: carried between invocations (toState / fromState)', () => {
  const plainRow = (geo?: string): MessageParams =>
    ({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Classify this.' }],
      ...(geo ? { inference_geo: geo } : {}),
    }) as MessageParams;
  const rows = [cachedRow(), cachedRow(), cachedRow(), plainRow('us'), cachedRow({ ttl: '1h' }), cachedRow(), cachedRow(), plainRow(), cachedRow()];
  const history: OutputHistory = { 'claude-sonnet-4-5': { rows: 40, outputTokens: 1_000, maxTokens: 4_000 } };

  it('a run cut at batch ends and resumed from JSON gives the figures of one run', () => {
    for (const options of [{}, { primeCache: true, history }]) {
      const whole = totalsOf(rows, options, 3);
      // Three "invocations" of one batch each, the state passed on through JSON as a checkpoint carries it.
      let state: ReturnType<EstimateTotals['toState']> | undefined;
      for (let start = 0; start < rows.length; start += 3) {
        const totals = state ? EstimateTotals.fromState(JSON.parse(JSON.stringify(state)), options) : new EstimateTotals(options);
        if (state) totals.newBatch();
        for (const row of rows.slice(start, start + 3)) totals.add(row);
        state = totals.toState();
      }
      expect(EstimateTotals.fromState(state!, options).toJSON()).toEqual(whole);
    }
  });
});
