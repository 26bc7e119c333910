import { describe, expect, it } from 'vitest';
import { ConfigError, readPipelineConfig } from '../../shared/config';
import {
  BUILT_IN_PRICES,
  DATED_MODEL_IDS,
  MODELS_WITHOUT_LIST_PRICE,
  parsePriceOverrides,
  priceTableFromConfig,
  resolvePrice,
  UnknownModel,
} from '../../shared/cost/prices';

/** §7 of docs/api-reference.md, column order: input, 5m write, 1h write, cache read, output. */
const LIST_PRICES: Record<string, [number, number, number, number, number]> = {
  'claude-fable-5': [10, 12.5, 20, 1, 50],
  'claude-mythos-5': [10, 12.5, 20, 1, 50],
  'claude-fable-5-1': [10, 12.5, 20, 0.25, 50],
  'claude-mythos-5-1': [10, 12.5, 20, 0.25, 50],
  'claude-opus-5-5': [4, 5, 8, 0.2, 20],
  'claude-opus-5': [5, 6.25, 10, 0.5, 25],
  'claude-opus-4-8': [5, 6.25, 10, 0.5, 25],
  'claude-opus-4-7': [5, 6.25, 10, 0.5, 25],
  'claude-opus-4-6': [5, 6.25, 10, 0.5, 25],
  'claude-opus-4-5': [5, 6.25, 10, 0.5, 25],
  'claude-opus-4-1': [15, 18.75, 30, 1.5, 75],
  'claude-opus-4': [15, 18.75, 30, 1.5, 75],
  'claude-opus-4-0': [15, 18.75, 30, 1.5, 75],
  'claude-sonnet-5-5': [2, 2.5, 4, 0.2, 10],
  'claude-sonnet-5': [2, 2.5, 4, 0.2, 10],
  'claude-sonnet-4-6': [3, 3.75, 6, 0.3, 15],
  'claude-sonnet-4-5': [3, 3.75, 6, 0.3, 15],
  'claude-sonnet-4': [3, 3.75, 6, 0.3, 15],
  'claude-sonnet-4-0': [3, 3.75, 6, 0.3, 15],
  'claude-haiku-5-5': [0.1, 0.125, 0.2, 0.01, 0.5],
  'claude-haiku-4-5': [1, 1.25, 2, 0.1, 5],
  'claude-3-5-haiku': [0.8, 1, 1.6, 0.08, 4],
  'claude-3-5-haiku-latest': [0.8, 1, 1.6, 0.08, 4],
};

describe('the built-in price table', () => {
  it('prices exactly the models of §7', () => {
    expect([...BUILT_IN_PRICES.keys()].sort()).toEqual(Object.keys(LIST_PRICES).sort());
  });

  it.each(Object.entries(LIST_PRICES))('%s has its list prices', (model, [input, cacheWrite5m, cacheWrite1h, cacheRead, output]) => {
    expect(resolvePrice(model)).toEqual({ pricedAs: model, price: { input, output, cacheWrite5m, cacheWrite1h, cacheRead } });
  });

  it('has cache writes at 1.25× (5 minutes) and 2× (1 hour) the input price in every entry', () => {
    for (const [model, price] of BUILT_IN_PRICES) {
      expect(price.cacheWrite5m, model).toBeCloseTo(price.input * 1.25, 12);
      expect(price.cacheWrite1h, model).toBeCloseTo(price.input * 2, 12);
    }
  });

  it.each(DATED_MODEL_IDS)('prices the dated id %s as its undated base', (model) => {
    const base = model.replace(/-\d{8}$/, '');
    expect(resolvePrice(model)).toEqual({ pricedAs: base, price: BUILT_IN_PRICES.get(base) });
  });

  it('prices any dated id of a known model as that model', () => {
    expect(resolvePrice('claude-opus-5-20270101').pricedAs).toBe('claude-opus-5');
  });

  it('prefers an exact entry for a dated id over its base', () => {
    const table = parsePriceOverrides('{"claude-haiku-4-5-20251001": {"output": 6}}');
    expect(resolvePrice('claude-haiku-4-5-20251001', table)).toEqual({
      pricedAs: 'claude-haiku-4-5-20251001',
      price: { input: 1, output: 6, cacheWrite5m: 1.25, cacheWrite1h: 2, cacheRead: 0.1 },
    });
    expect(resolvePrice('claude-haiku-4-5', table).price.output).toBe(5);
  });
});

describe('UnknownModel', () => {
  const hint = (model: string) =>
    `add one with BATCHLINE_PRICES, e.g. {"${model}": {"input": 3, "output": 15, "cacheWrite5m": 3.75, "cacheWrite1h": 6, "cacheRead": 0.3}}`;

  it('names the model and how to price it', () => {
    const error = captureError(() => resolvePrice('gpt-9'));
    expect(error).toBeInstanceOf(UnknownModel);
    expect(error.name).toBe('UnknownModel');
    expect((error as UnknownModel).model).toBe('gpt-9');
    expect(error.message).toBe(`no price for model "gpt-9": the price table has no entry for "gpt-9"; ${hint('gpt-9')}`);
  });

  it('names the undated base it also tried', () => {
    expect(captureError(() => resolvePrice('claude-nova-1-20270101')).message).toBe(
      `no price for model "claude-nova-1-20270101": the price table has no entry for "claude-nova-1-20270101" or its undated base "claude-nova-1"; ${hint('claude-nova-1-20270101')}`,
    );
  });

  it.each([...MODELS_WITHOUT_LIST_PRICE])('says %s is known but has no list price', (model) => {
    expect(captureError(() => resolvePrice(model)).message).toBe(
      `no price for model "${model}": the model is known but has no list price in the reference; ${hint(model)}`,
    );
  });
});

describe('BATCHLINE_PRICES overrides', () => {
  it('adds a model given all five prices, keeping the built-in ones', () => {
    const table = parsePriceOverrides('{"my-model": {"input": 1, "output": 2, "cacheWrite5m": 1.25, "cacheWrite1h": 2, "cacheRead": 0.1}}');
    expect(resolvePrice('my-model', table).price).toEqual({ input: 1, output: 2, cacheWrite5m: 1.25, cacheWrite1h: 2, cacheRead: 0.1 });
    expect(resolvePrice('claude-opus-5', table).price.input).toBe(5);
    expect(table.size).toBe(BUILT_IN_PRICES.size + 1);
  });

  it('changes only the given fields of a model already priced, leaving the built-in table alone', () => {
    const table = parsePriceOverrides('{"claude-sonnet-5-5": {"cacheRead": 0.1}}');
    expect(resolvePrice('claude-sonnet-5-5', table).price).toEqual({ input: 2, output: 10, cacheWrite5m: 2.5, cacheWrite1h: 4, cacheRead: 0.1 });
    expect(resolvePrice('claude-sonnet-5-5').price.cacheRead).toBe(0.2);
  });

  it('applies an override of a base model to its dated ids', () => {
    const table = parsePriceOverrides('{"claude-haiku-4-5": {"input": 2}}');
    expect(resolvePrice('claude-haiku-4-5-20251001', table)).toMatchObject({ pricedAs: 'claude-haiku-4-5', price: { input: 2, output: 5 } });
  });

  it('gives a price to a model the reference leaves unpriced', () => {
    const table = parsePriceOverrides('{"claude-fable-5-2": {"input": 10, "output": 50, "cacheWrite5m": 12.5, "cacheWrite1h": 20, "cacheRead": 0.25}}');
    expect(resolvePrice('claude-fable-5-2', table).price.output).toBe(50);
  });

  it.each([
    { json: 'not json', message: 'BATCHLINE_PRICES is not valid JSON' },
    { json: '[]', message: 'BATCHLINE_PRICES must be a JSON object keyed by model id, got an array' },
    { json: '3', message: 'BATCHLINE_PRICES must be a JSON object keyed by model id, got 3' },
    { json: 'null', message: 'BATCHLINE_PRICES must be a JSON object keyed by model id, got null' },
    {
      json: '{"m": 3}',
      message: 'BATCHLINE_PRICES["m"] must be an object with input, output, cacheWrite5m, cacheWrite1h, cacheRead, got 3',
    },
    {
      json: '{"m": {"input": 1}}',
      message:
        'BATCHLINE_PRICES["m"].output is missing (a model the built-in table does not price needs all of input, output, cacheWrite5m, cacheWrite1h, cacheRead)',
    },
    {
      json: '{"claude-opus-5": {"inptu": 1}}',
      message: 'BATCHLINE_PRICES["claude-opus-5"].inptu is not a price field (expected input, output, cacheWrite5m, cacheWrite1h, cacheRead)',
    },
    {
      json: '{"claude-opus-5": {"input": -1}}',
      message: 'BATCHLINE_PRICES["claude-opus-5"].input must be a number ≥ 0 (USD per million tokens), got -1',
    },
    {
      json: '{"claude-opus-5": {"output": "25"}}',
      message: 'BATCHLINE_PRICES["claude-opus-5"].output must be a number ≥ 0 (USD per million tokens), got "25"',
    },
    {
      json: '{"claude-opus-5": {"cacheRead": null}}',
      message: 'BATCHLINE_PRICES["claude-opus-5"].cacheRead must be a number ≥ 0 (USD per million tokens), got null',
    },
    { json: '{" ": {"input": 1}}', message: 'BATCHLINE_PRICES has an empty model id' },
  ])('rejects $json, naming the problem', ({ json, message }) => {
    const error = captureError(() => parsePriceOverrides(json));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(message);
  });

  it('is read from the pipeline config', () => {
    const env = { BATCHLINE_BUCKET: 'b', BATCHLINE_TABLE: 't' };
    expect(priceTableFromConfig(readPipelineConfig(env))).toBe(BUILT_IN_PRICES);
    const table = priceTableFromConfig(readPipelineConfig({ ...env, BATCHLINE_PRICES: '{"claude-opus-5": {"input": 4}}' }));
    expect(resolvePrice('claude-opus-5', table).price.input).toBe(4);
  });
});

function captureError(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}
