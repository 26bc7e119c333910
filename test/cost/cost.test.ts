import { describe, expect, it } from 'vitest';
import type { Usage } from '../../shared/anthropic/types';
import {
  billableTokens,
  CostTotals,
  estimateInputTokens,
  estimateRequest,
  EstimateTotals,
  priceUsage,
  readMessageUsage,
  roundUsd,
  tokenTotals,
  type CostBreakdown,
  type CostTotalsJson,
} from '../../shared/cost/cost';
import { BUILT_IN_PRICES, parsePriceOverrides, UnknownModel } from '../../shared/cost/prices';
import { params } from '../support/requests';

/** Every dollar figure to 12 decimals (float noise sits near 1e-18 here), pricedAs exactly. */
function expectUsd(actual: CostBreakdown, expected: Omit<CostBreakdown, 'pricedAs'> & { pricedAs: string }) {
  const { pricedAs, ...figures } = expected;
  expect(actual.pricedAs).toBe(pricedAs);
  for (const [field, value] of Object.entries(figures)) expect(actual[field as keyof typeof figures], field).toBeCloseTo(value, 12);
}

const MILLION_OF_EACH: Usage = {
  input_tokens: 1_000_000,
  output_tokens: 1_000_000,
  cache_read_input_tokens: 1_000_000,
  cache_creation: { ephemeral_5m_input_tokens: 1_000_000, ephemeral_1h_input_tokens: 1_000_000 },
};

describe('priceUsage', () => {
  it.each([
    ['claude-fable-5', 10 + 50 + 12.5 + 20 + 1],
    ['claude-mythos-5-1', 10 + 50 + 12.5 + 20 + 0.25],
    ['claude-opus-5-5', 4 + 20 + 5 + 8 + 0.2],
    ['claude-opus-4-6', 5 + 25 + 6.25 + 10 + 0.5],
    ['claude-opus-4-1', 15 + 75 + 18.75 + 30 + 1.5],
    ['claude-sonnet-5-5', 2 + 10 + 2.5 + 4 + 0.2],
    ['claude-sonnet-5', 2 + 10 + 2.5 + 4 + 0.2],
    ['claude-sonnet-4-5', 3 + 15 + 3.75 + 6 + 0.3],
    ['claude-haiku-5-5', 0.1 + 0.5 + 0.125 + 0.2 + 0.01],
    ['claude-haiku-4-5', 1 + 5 + 1.25 + 2 + 0.1],
    ['claude-3-5-haiku-20241022', 0.8 + 4 + 1 + 1.6 + 0.08],
  ])('bills %s at half its list prices in a batch', (model, listSum) => {
    const cost = priceUsage(MILLION_OF_EACH, model);
    expect(cost.totalUsd).toBeCloseTo(listSum / 2, 10);
    expect(cost.standardTotalUsd).toBeCloseTo(listSum, 10);
    expect(cost.discountUsd).toBeCloseTo(listSum / 2, 10);
  });

  it('applies the batch discount to every kind of token (Sonnet 4.5, 5-minute cache writes)', () => {
    const usage: Usage = { input_tokens: 1000, output_tokens: 500, cache_creation_input_tokens: 400, cache_read_input_tokens: 2000 };
    expectUsd(priceUsage(usage, 'claude-sonnet-4-5'), {
      pricedAs: 'claude-sonnet-4-5',
      inputUsd: 0.0015, // 1000 × $3/M × 0.5
      outputUsd: 0.00375, // 500 × $15/M × 0.5
      cacheWrite5mUsd: 0.00075, // 400 × $3.75/M × 0.5
      cacheWrite1hUsd: 0,
      cacheReadUsd: 0.0003, // 2000 × $0.30/M × 0.5
      totalUsd: 0.0063,
      standardTotalUsd: 0.0126,
      discountUsd: 0.0063,
    });
  });

  it('bills cache writes by TTL from cache_creation when the response splits them (Opus 4.7)', () => {
    const usage: Usage = {
      input_tokens: 100,
      output_tokens: 10,
      cache_creation_input_tokens: 3000,
      cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 },
    };
    expectUsd(priceUsage(usage, 'claude-opus-4-7'), {
      pricedAs: 'claude-opus-4-7',
      inputUsd: 0.00025,
      outputUsd: 0.000125,
      cacheWrite5mUsd: 0.003125, // 1000 × $6.25/M × 0.5 = 0.625× base input
      cacheWrite1hUsd: 0.01, // 2000 × $10/M × 0.5 = 1.0× base input
      cacheReadUsd: 0,
      totalUsd: 0.0135,
      standardTotalUsd: 0.027,
      discountUsd: 0.0135,
    });
  });

  it('counts all cache creation as 5-minute writes when the split is absent or empty', () => {
    const expected = { input: 0, output: 0, cacheWrite5m: 800, cacheWrite1h: 0, cacheRead: 0 };
    expect(billableTokens({ input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 800 })).toEqual(expected);
    expect(billableTokens({ input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 800, cache_creation: null })).toEqual(expected);
    expect(
      billableTokens({
        input_tokens: 0,
        output_tokens: 0,
        cache_creation_input_tokens: 800,
        cache_creation: { ephemeral_5m_input_tokens: null, ephemeral_1h_input_tokens: null },
      }),
    ).toEqual(expected);
  });

  it('counts null and missing fields as zero', () => {
    const usage: Usage = {
      input_tokens: 10,
      output_tokens: 0,
      cache_creation_input_tokens: null,
      cache_read_input_tokens: null,
      cache_creation: { ephemeral_1h_input_tokens: 5 },
      inference_geo: null,
    };
    expect(billableTokens(usage)).toEqual({ input: 10, output: 0, cacheWrite5m: 0, cacheWrite1h: 5, cacheRead: 0 });
    expect(priceUsage({ input_tokens: 0, output_tokens: 0 }, 'claude-opus-5').totalUsd).toBe(0);
  });

  it('multiplies by 1.1 for inference_geo "us", stacking with the batch discount', () => {
    const usage: Usage = { input_tokens: 1_000_000, output_tokens: 1_000_000, inference_geo: 'us' };
    expectUsd(priceUsage(usage, 'claude-haiku-4-5'), {
      pricedAs: 'claude-haiku-4-5',
      inputUsd: 0.55, // $1 × 1.1 × 0.5
      outputUsd: 2.75, // $5 × 1.1 × 0.5
      cacheWrite5mUsd: 0,
      cacheWrite1hUsd: 0,
      cacheReadUsd: 0,
      totalUsd: 3.3,
      standardTotalUsd: 6.6,
      discountUsd: 3.3,
    });
  });

  it.each(['global', 'eu', 'US'])('charges no geo premium for inference_geo %s', (geo) => {
    expect(priceUsage({ input_tokens: 1_000_000, output_tokens: 0, inference_geo: geo }, 'claude-haiku-4-5').totalUsd).toBe(0.5);
  });

  it('prices a dated id as its base, saying so', () => {
    const cost = priceUsage({ input_tokens: 1_000_000, output_tokens: 0 }, 'claude-sonnet-4-5-20250929');
    expect(cost.pricedAs).toBe('claude-sonnet-4-5');
    expect(cost.totalUsd).toBe(1.5);
  });

  it('charges standard prices when batch is false', () => {
    const cost = priceUsage({ input_tokens: 1_000_000, output_tokens: 0 }, 'claude-sonnet-5', { batch: false });
    expect([cost.totalUsd, cost.standardTotalUsd, cost.discountUsd]).toEqual([2, 2, 0]);
  });

  it('uses the price table it is given', () => {
    const prices = parsePriceOverrides('{"house-model": {"input": 8, "output": 0, "cacheWrite5m": 10, "cacheWrite1h": 16, "cacheRead": 0.8}}');
    expect(priceUsage({ input_tokens: 1_000_000, output_tokens: 0 }, 'house-model', { prices }).totalUsd).toBe(4);
  });

  it('throws UnknownModel rather than pricing an unknown model at zero', () => {
    expect(() => priceUsage({ input_tokens: 1, output_tokens: 1 }, 'claude-imaginary-9')).toThrow(UnknownModel);
  });
});

describe('tokenTotals and roundUsd', () => {
  it('gives usage in wire names, cache creation as billed', () => {
    const usage: Usage = {
      input_tokens: 7,
      output_tokens: 3,
      cache_creation_input_tokens: 400,
      cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 300 },
      cache_read_input_tokens: null,
    };
    expect(tokenTotals(usage)).toEqual({ input_tokens: 7, output_tokens: 3, cache_creation_input_tokens: 400, cache_read_input_tokens: 0 });
  });

  it('rounds to micro-dollars by default', () => {
    expect(roundUsd(0.1 + 0.2)).toBe(0.3);
    expect(roundUsd(1.0000004)).toBe(1);
    expect(roundUsd(0.0000015)).toBe(0.000002);
    expect(roundUsd(1.23456, 2)).toBe(1.23);
  });
});

describe('CostTotals', () => {
  const ROWS: Array<[Usage, string]> = [
    [{ input_tokens: 1000, output_tokens: 500, cache_creation_input_tokens: 400, cache_read_input_tokens: 2000 }, 'claude-sonnet-4-5'],
    [{ input_tokens: 1_000_000, output_tokens: 0, inference_geo: 'us' }, 'claude-haiku-4-5'],
    [{ input_tokens: 10, output_tokens: 10 }, 'claude-sonnet-4-5-20250929'],
    [{ input_tokens: 5, output_tokens: 5 }, 'mystery-model'],
  ];
  const zero = { input: 0, output: 0, cacheWrite5m: 0, cacheWrite1h: 0, cacheRead: 0 };

  const EXPECTED: CostTotalsJson = {
    requests: 4,
    tokens: { input_tokens: 1_001_015, output_tokens: 515, cache_creation_input_tokens: 400, cache_read_input_tokens: 2000 },
    totalUsd: 0.55639,
    standardTotalUsd: 1.11278,
    discountUsd: 0.55639,
    complete: false,
    unpricedModels: ['mystery-model'],
    models: {
      'claude-haiku-4-5': {
        requests: 1,
        tokens: { ...zero, input: 1_000_000 },
        geoTokens: { us: { ...zero, input: 1_000_000 } },
        usd: {
          pricedAs: 'claude-haiku-4-5',
          inputUsd: 0.55,
          outputUsd: 0,
          cacheWrite5mUsd: 0,
          cacheWrite1hUsd: 0,
          cacheReadUsd: 0,
          totalUsd: 0.55,
          standardTotalUsd: 1.1,
          discountUsd: 0.55,
        },
      },
      'claude-sonnet-4-5': {
        requests: 1,
        tokens: { input: 1000, output: 500, cacheWrite5m: 400, cacheWrite1h: 0, cacheRead: 2000 },
        geoTokens: {},
        usd: {
          pricedAs: 'claude-sonnet-4-5',
          inputUsd: 0.0015,
          outputUsd: 0.00375,
          cacheWrite5mUsd: 0.00075,
          cacheWrite1hUsd: 0,
          cacheReadUsd: 0.0003,
          totalUsd: 0.0063,
          standardTotalUsd: 0.0126,
          discountUsd: 0.0063,
        },
      },
      'claude-sonnet-4-5-20250929': {
        requests: 1,
        tokens: { ...zero, input: 10, output: 10 },
        geoTokens: {},
        usd: {
          pricedAs: 'claude-sonnet-4-5',
          inputUsd: 0.000015,
          outputUsd: 0.000075,
          cacheWrite5mUsd: 0,
          cacheWrite1hUsd: 0,
          cacheReadUsd: 0,
          totalUsd: 0.00009,
          standardTotalUsd: 0.00018,
          discountUsd: 0.00009,
        },
      },
      'mystery-model': { requests: 1, tokens: { ...zero, input: 5, output: 5 }, geoTokens: {}, usd: null },
    },
  };

  const totalsOf = (rows: Array<[Usage, string]>) => {
    const totals = new CostTotals();
    for (const [usage, model] of rows) totals.add(usage, model);
    return totals;
  };

  it('totals tokens and cost per model and overall; an unpriced model is counted, flagged and left out of the dollars', () => {
    expect(totalsOf(ROWS).toJSON()).toEqual(EXPECTED);
  });

  it('gives the same totals however the rows are split and merged', () => {
    const [a, b, c, d] = ROWS;
    expect(
      totalsOf([a!, b!])
        .merge(totalsOf([c!, d!]))
        .toJSON(),
    ).toEqual(EXPECTED);
    expect(
      totalsOf([d!, c!])
        .merge(totalsOf([b!]))
        .merge(totalsOf([a!]))
        .toJSON(),
    ).toEqual(EXPECTED);
    expect(new CostTotals().merge(totalsOf(ROWS)).toJSON()).toEqual(EXPECTED);
  });

  it('survives a trip through JSON and merges after it (Step Functions carries the JSON)', () => {
    const json = JSON.parse(JSON.stringify(totalsOf(ROWS))) as CostTotalsJson;
    expect(CostTotals.fromJSON(json).toJSON()).toEqual(EXPECTED);
    const [a, b, c, d] = ROWS;
    const left = CostTotals.fromJSON(JSON.parse(JSON.stringify(totalsOf([a!, c!]))));
    const right = CostTotals.fromJSON(JSON.parse(JSON.stringify(totalsOf([b!, d!]))));
    expect(left.merge(right).toJSON()).toEqual(EXPECTED);
  });

  it('re-derives dollars from tokens with the price table it is given', () => {
    const prices = parsePriceOverrides('{"mystery-model": {"input": 2, "output": 2, "cacheWrite5m": 2.5, "cacheWrite1h": 4, "cacheRead": 0.2}}');
    const json = CostTotals.fromJSON(totalsOf(ROWS).toJSON(), prices).toJSON();
    expect(json.complete).toBe(true);
    expect(json.unpricedModels).toEqual([]);
    expect(json.models['mystery-model']!.usd!.totalUsd).toBe(0.00001); // 10 tokens × $2/M × 0.5
  });

  it('exposes unrounded figures', () => {
    const totals = totalsOf(ROWS);
    expect(totals.requests).toBe(4);
    expect(totals.tokens()).toEqual(EXPECTED.tokens);
    const cost = totals.cost();
    expect(cost.totalUsd).toBeCloseTo(0.55639, 12);
    expect(cost.unpricedModels).toEqual(['mystery-model']);
    expect(totals.modelCost('claude-sonnet-4-5').totalUsd).toBeCloseTo(0.0063, 12);
    expect(() => totals.modelCost('mystery-model')).toThrow(UnknownModel);
  });

  it('adds up many rows without accumulating rounding error', () => {
    const totals = new CostTotals();
    for (let i = 0; i < 100_000; i++) totals.add({ input_tokens: 7, output_tokens: 3 }, 'claude-3-5-haiku');
    const single = priceUsage({ input_tokens: 700_000, output_tokens: 300_000 }, 'claude-3-5-haiku');
    expect(totals.cost().totalUsd).toBe(single.totalUsd);
    expect(totals.toJSON().totalUsd).toBe(0.88); // (0.7 × $0.80 + 0.3 × $4) × 0.5
  });

  it.each([
    { json: null, message: 'cost totals must be an object with a "models" object' },
    { json: { models: { m: { requests: -1, tokens: zero, geoTokens: {} } } }, message: 'cost totals: models["m"].requests must be a whole number ≥ 0, got -1' },
    {
      json: { models: { m: { requests: 1, tokens: { ...zero, cacheRead: 1.5 }, geoTokens: {} } } },
      message: 'cost totals: models["m"].tokens.cacheRead must be a whole number ≥ 0, got 1.5',
    },
    {
      json: { models: { m: { requests: 1, tokens: zero, geoTokens: { us: { ...zero, input: 3 } } } } },
      message: 'cost totals: models["m"].geoTokens add up to more input tokens than cost totals: models["m"].tokens holds',
    },
  ])('rejects malformed JSON, naming the field: $message', ({ json, message }) => {
    expect(() => CostTotals.fromJSON(json as unknown as CostTotalsJson)).toThrow(new TypeError(message));
  });

  it('uses the built-in table by default', () => {
    const totals = new CostTotals(BUILT_IN_PRICES);
    totals.add({ input_tokens: 2_000_000, output_tokens: 0 }, 'claude-opus-5');
    expect(totals.toJSON().totalUsd).toBe(5);
  });
});

describe('readMessageUsage', () => {
  const message = (fields: Record<string, unknown>) => ({ id: 'msg_1', type: 'message', model: 'claude-haiku-4-5', content: [], ...fields });

  it('reads the priced fields of the API’s usage, nothing else', () => {
    const usage = {
      input_tokens: 10,
      output_tokens: 5,
      cache_creation_input_tokens: 7,
      cache_read_input_tokens: null,
      cache_creation: { ephemeral_5m_input_tokens: 3, ephemeral_1h_input_tokens: 4 },
      server_tool_use: { web_search_requests: 1 },
      service_tier: 'batch',
      inference_geo: 'us',
    };
    expect(readMessageUsage(message({ usage }))).toEqual({
      model: 'claude-haiku-4-5',
      usage: {
        input_tokens: 10,
        output_tokens: 5,
        cache_creation_input_tokens: 7,
        cache_read_input_tokens: null,
        cache_creation: { ephemeral_5m_input_tokens: 3, ephemeral_1h_input_tokens: 4 },
        inference_geo: 'us',
      },
    });
  });

  it('says why a message cannot be priced, whatever its shape, keeping the usage it could read', () => {
    const usage = { input_tokens: 1, output_tokens: 2 };
    const read = (value: unknown) => readMessageUsage(value).unpriced;
    expect([null, undefined, 'text', 7, [usage]].map(read)).toEqual(['no_message', 'no_message', 'no_message', 'no_message', 'no_message']);
    expect([message({}), message({ usage: null }), message({ usage: [1] }), message({ usage: 'x' })].map(read)).toEqual([
      'no_usage',
      'no_usage',
      'no_usage',
      'no_usage',
    ]);
    for (const odd of [
      { output_tokens: 2 },
      { input_tokens: '1', output_tokens: 2 },
      { input_tokens: -1, output_tokens: 2 },
      { input_tokens: 1.5, output_tokens: 2 },
      { input_tokens: 2 ** 60, output_tokens: 2 },
      { ...usage, cache_read_input_tokens: '3' },
      { ...usage, cache_creation: 5 },
      { ...usage, cache_creation: { ephemeral_1h_input_tokens: -2 } },
      { ...usage, inference_geo: 3 },
    ]) {
      expect(readMessageUsage(message({ usage: odd })), JSON.stringify(odd)).toEqual({
        usage: undefined,
        model: 'claude-haiku-4-5',
        unpriced: 'unreadable_usage',
      });
    }
    for (const model of [undefined, '', 7, null]) {
      expect(readMessageUsage(message({ model, usage }))).toEqual({
        usage: { ...usage, cache_creation_input_tokens: null, cache_read_input_tokens: null, inference_geo: null },
        model: undefined,
        unpriced: 'no_model',
      });
    }
  });
});

describe('CostTotals with model ids the API made up', () => {
  it('keeps `__proto__` and `constructor` as ordinary models, unpriced', () => {
    const totals = new CostTotals();
    totals.add({ input_tokens: 1, output_tokens: 1 }, '__proto__');
    totals.add({ input_tokens: 1, output_tokens: 1 }, 'constructor');
    const json = JSON.parse(JSON.stringify(totals.toJSON())) as CostTotalsJson;
    expect(Object.keys(json.models).sort()).toEqual(['__proto__', 'constructor']);
    expect(json.unpricedModels).toEqual(['__proto__', 'constructor']);
    expect(json.totalUsd).toBe(0);
  });
});

describe('estimates before submission', () => {
  it('counts by the shared token rules: text at 4 ASCII characters a token, plus the system, message and request overheads', () => {
    const request = params({ model: 'claude-sonnet-4-5', max_tokens: 1000, system: 'S'.repeat(40), messages: [{ role: 'user', content: 'x'.repeat(80) }] });
    // System 3 + 10, message 3 + 20, request 4 (shared/cost/tokens.ts; its own tests cover the rules).
    expect(estimateInputTokens(request)).toBe(40);
  });

  it('counts content blocks, tool calls and results, tools with the tool-use system prompt, and media whose size is unknown at the most', () => {
    const request = params({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'x'.repeat(100) },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(100_000) } },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0x'.repeat(10_000) } },
          ],
        },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { q: 'abc' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'result!' }] },
      ],
      tools: [{ name: 'lookup', description: 'Looks up.', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }],
      tool_choice: { type: 'auto' },
    });
    // Tools: the tool-use system prompt 346 + JSON (115 characters) 29. First message: 3 + text 25;
    // an image with no readable header at the standard tier's most, 3 + 1,600; a PDF with no page
    // objects as one page, 3 + 1,500 + 1,600. Tool call 3 + "lookup" 2 + '{"q":"abc"}' 3; tool result
    // 3 + 3 + "result!" 2; the request 4.
    expect(estimateInputTokens(request)).toBe(375 + 28 + 1603 + 3103 + 8 + 8 + 4);
  });

  it('estimates a request at batch rates with max_tokens as the output (worst case), labelled as an estimate', () => {
    const request = params({ model: 'claude-sonnet-4-5', max_tokens: 1000, system: 'S'.repeat(40), messages: [{ role: 'user', content: 'x'.repeat(80) }] });
    const estimate = estimateRequest(request);
    expect(estimate).toMatchObject({ estimate: true, model: 'claude-sonnet-4-5', inputTokens: 40, outputTokens: 1000 });
    expectUsd(estimate.usd, {
      pricedAs: 'claude-sonnet-4-5',
      inputUsd: 0.00006, // 40 × $3/M × 0.5
      outputUsd: 0.0075, // 1000 × $15/M × 0.5
      cacheWrite5mUsd: 0,
      cacheWrite1hUsd: 0,
      cacheReadUsd: 0,
      totalUsd: 0.00756,
      standardTotalUsd: 0.01512,
      discountUsd: 0.00756,
    });
  });

  it('applies the request’s inference_geo', () => {
    const request = params({ model: 'claude-haiku-4-5', max_tokens: 1_000_000, messages: [{ role: 'user', content: '' }], inference_geo: 'us' });
    // An empty message: its opening 3 and the request's 4 → 7 input tokens; 1M output × $5 × 1.1 × 0.5.
    expect(estimateRequest(request).usd.totalUsd).toBeCloseTo(7 * 0.0000005 * 1.1 + 2.75, 12);
  });

  it('throws UnknownModel for a model without a price', () => {
    expect(() => estimateRequest(params({ model: 'claude-imaginary-9' }))).toThrow(UnknownModel);
  });

  it('totals estimates over a file, mergeable, flagging unpriced models', () => {
    const row = params({ model: 'claude-sonnet-4-5', max_tokens: 1000, system: 'S'.repeat(40), messages: [{ role: 'user', content: 'x'.repeat(80) }] });
    const first = new EstimateTotals();
    first.add(row);
    first.add(row);
    const second = new EstimateTotals();
    second.add(params({ model: 'claude-imaginary-9', max_tokens: 10 }));
    const merged = first.merge(second).toJSON();
    expect(merged).toMatchObject({
      estimate: true,
      requests: 3,
      totalUsd: roundUsd(2 * 0.00756),
      complete: false,
      unpricedModels: ['claude-imaginary-9'],
    });
    // The default fixture message "Say hello.": 3 + 3 + 4 = 10 tokens.
    expect(merged.tokens).toEqual({ input_tokens: 40 + 40 + 10, output_tokens: 2010, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
  });
});
