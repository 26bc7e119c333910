/**
 * The price table: list (standard, undiscounted) prices in USD per million tokens, keyed by model
 * id, from docs/api-reference.md §7. Data only; the math lives in ./cost.ts. BATCHLINE_PRICES
 * (shared/config.ts) overrides or extends it without a redeploy of code.
 *
 * Markers as in the reference: [V] verified (docs pricing page, 2026-08-21), [U] unverified
 * (overview pages, third-party trackers, or a model id that the reference does not list).
 */
import { ConfigError } from '../config';

export interface ModelPrice {
  /** Base input tokens. */
  input: number;
  output: number;
  /** Cache writes with the 5-minute TTL (1.25× input). */
  cacheWrite5m: number;
  /** Cache writes with the 1-hour TTL (2× input). */
  cacheWrite1h: number;
  /** Cache hits (0.1× input for most models). */
  cacheRead: number;
}

export type PriceTable = ReadonlyMap<string, ModelPrice>;

export const PRICE_FIELDS = ['input', 'output', 'cacheWrite5m', 'cacheWrite1h', 'cacheRead'] as const;

/** Fraction taken off every batch token, cache multipliers included (they stack). */
export const BATCH_DISCOUNT = 0.5;

/** Multiplier for requests served with `inference_geo: "us"`; stacks with the batch discount. */
export const INFERENCE_GEO_MULTIPLIERS: Readonly<Record<string, number>> = { us: 1.1 };

const price = (input: number, cacheWrite5m: number, cacheWrite1h: number, cacheRead: number, output: number): ModelPrice =>
  Object.freeze({ input, output, cacheWrite5m, cacheWrite1h, cacheRead });

/** Argument order follows the §7 table's columns: input, 5m write, 1h write, cache read, output. */
const FAMILIES: ReadonlyArray<{ ids: readonly string[]; price: ModelPrice }> = [
  // Fable 5 and Mythos 5 (limited) [V].
  { ids: ['claude-fable-5', 'claude-mythos-5'], price: price(10, 12.5, 20, 1, 50) },
  // Fable 5.1 / Mythos 5.1 [U]: docs pricing excerpt of uncertain date; cache read 0.025× input.
  { ids: ['claude-fable-5-1', 'claude-mythos-5-1'], price: price(10, 12.5, 20, 0.25, 50) },
  // Opus 5.5 [U]: official overview page, undated; cache read 0.05× input.
  { ids: ['claude-opus-5-5'], price: price(4, 5, 8, 0.2, 20) },
  // Opus 5 / 4.8 / 4.7 / 4.6 / 4.5 [V].
  { ids: ['claude-opus-5', 'claude-opus-4-8', 'claude-opus-4-7', 'claude-opus-4-6', 'claude-opus-4-5'], price: price(5, 6.25, 10, 0.5, 25) },
  // Opus 4.1 and Opus 4, retired on the 1P API [V prices; U ids: the reference lists no id for them].
  { ids: ['claude-opus-4-1', 'claude-opus-4', 'claude-opus-4-0'], price: price(15, 18.75, 30, 1.5, 75) },
  // Sonnet 5.5 [U]: official overview page; trackers report cache read cut to 0.10 from 2026-10-07 (not applied).
  { ids: ['claude-sonnet-5-5'], price: price(2, 2.5, 4, 0.2, 10) },
  // Sonnet 5 [V].
  { ids: ['claude-sonnet-5'], price: price(2, 2.5, 4, 0.2, 10) },
  // Sonnet 4.6 / 4.5 / 4 [V prices; U ids claude-sonnet-4 and claude-sonnet-4-0].
  { ids: ['claude-sonnet-4-6', 'claude-sonnet-4-5', 'claude-sonnet-4', 'claude-sonnet-4-0'], price: price(3, 3.75, 6, 0.3, 15) },
  // Haiku 5.5 [U]: trackers report two bands by prompt length; this is the ≤100k band. Prompts over
  // 100k tokens are reported at 5× these prices and are underpriced here (override if that matters).
  { ids: ['claude-haiku-5-5'], price: price(0.1, 0.125, 0.2, 0.01, 0.5) },
  // Haiku 4.5 [V].
  { ids: ['claude-haiku-4-5'], price: price(1, 1.25, 2, 0.1, 5) },
  // Haiku 3.5, retired on the 1P API [V prices; U ids].
  { ids: ['claude-3-5-haiku', 'claude-3-5-haiku-latest'], price: price(0.8, 1, 1.6, 0.08, 4) },
];

/**
 * Dated ids. Each resolves to its undated base by the `-YYYYMMDD` rule (no entry of its own), so an
 * override of the base applies to them too. Listed so tests can prove each one resolves.
 */
export const DATED_MODEL_IDS: readonly string[] = [
  // [V] known to SDK 1.12.0.
  'claude-haiku-4-5-20251001',
  'claude-opus-4-5-20251101',
  'claude-sonnet-4-5-20250929',
  // [U] not in the reference.
  'claude-opus-4-1-20250805',
  'claude-opus-4-20250514',
  'claude-sonnet-4-20250514',
  'claude-3-5-haiku-20241022',
];

/** Ids the SDK knows whose list price the reference does not give: UnknownModel says so. */
export const MODELS_WITHOUT_LIST_PRICE: ReadonlySet<string> = new Set(['claude-fable-5-2', 'claude-mythos-5-2', 'claude-mythos-preview']);

export const BUILT_IN_PRICES: PriceTable = new Map(FAMILIES.flatMap((family) => family.ids.map((id) => [id, family.price] as const)));

/** Thrown when a model has no price; never priced silently as zero. */
export class UnknownModel extends Error {
  override readonly name = 'UnknownModel';
  constructor(readonly model: string) {
    const base = undatedBase(model);
    const tried = base === undefined ? `"${model}"` : `"${model}" or its undated base "${base}"`;
    const why =
      MODELS_WITHOUT_LIST_PRICE.has(model) || (base !== undefined && MODELS_WITHOUT_LIST_PRICE.has(base))
        ? 'the model is known but has no list price in the reference'
        : `the price table has no entry for ${tried}`;
    super(
      `no price for model "${model}": ${why}; add one with BATCHLINE_PRICES, e.g. ` +
        `{"${model}": {"input": 3, "output": 15, "cacheWrite5m": 3.75, "cacheWrite1h": 6, "cacheRead": 0.3}}`,
    );
  }
}

const DATED_SUFFIX = /^(.+)-(\d{8})$/;

function undatedBase(model: string): string | undefined {
  return DATED_SUFFIX.exec(model)?.[1];
}

/** The table entry a model is priced as: its exact id, else `<base>` for `<base>-YYYYMMDD`. */
export function resolvePrice(model: string, prices: PriceTable = BUILT_IN_PRICES): { pricedAs: string; price: ModelPrice } {
  const exact = prices.get(model);
  if (exact) return { pricedAs: model, price: exact };
  const base = undatedBase(model);
  const fallback = base === undefined ? undefined : prices.get(base);
  if (base !== undefined && fallback) return { pricedAs: base, price: fallback };
  throw new UnknownModel(model);
}

/**
 * The built-in table with a JSON override applied: `{"model-id": {"input":..,"output":..,
 * "cacheWrite5m":..,"cacheWrite1h":..,"cacheRead":..}}`, USD per million tokens at list price.
 * A model the table already prices may give only the fields it changes; a new model gives all five.
 * Any problem throws ConfigError naming the variable, the model and the field.
 */
export function parsePriceOverrides(json: string, base: PriceTable = BUILT_IN_PRICES, variable = 'BATCHLINE_PRICES'): PriceTable {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new ConfigError(`${variable} is not valid JSON`);
  }
  if (!isPlainObject(parsed)) {
    throw new ConfigError(`${variable} must be a JSON object keyed by model id, got ${describe(parsed)}`);
  }
  const table = new Map(base);
  for (const [model, entry] of Object.entries(parsed)) {
    const where = `${variable}[${JSON.stringify(model)}]`;
    if (model.trim() === '') throw new ConfigError(`${variable} has an empty model id`);
    if (!isPlainObject(entry)) {
      throw new ConfigError(`${where} must be an object with ${PRICE_FIELDS.join(', ')}, got ${describe(entry)}`);
    }
    for (const field of Object.keys(entry)) {
      if (!(PRICE_FIELDS as readonly string[]).includes(field)) {
        throw new ConfigError(`${where}.${field} is not a price field (expected ${PRICE_FIELDS.join(', ')})`);
      }
    }
    let known: ModelPrice | undefined;
    try {
      known = resolvePrice(model, base).price;
    } catch (error) {
      if (!(error instanceof UnknownModel)) throw error;
    }
    const merged: Partial<Record<(typeof PRICE_FIELDS)[number], number>> = {};
    for (const field of PRICE_FIELDS) {
      const value = entry[field];
      if (value === undefined) {
        if (known === undefined) {
          throw new ConfigError(`${where}.${field} is missing (a model the built-in table does not price needs all of ${PRICE_FIELDS.join(', ')})`);
        }
        merged[field] = known[field];
      } else if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw new ConfigError(`${where}.${field} must be a number ≥ 0 (USD per million tokens), got ${JSON.stringify(value)}`);
      } else {
        merged[field] = value;
      }
    }
    table.set(model, Object.freeze(merged as ModelPrice));
  }
  return table;
}

/** The table to price with: built-in, with `pricesJson` (PipelineConfig.pricesJson) applied when set. */
export function priceTableFromConfig(config: { pricesJson?: string | undefined }): PriceTable {
  return config.pricesJson === undefined ? BUILT_IN_PRICES : parsePriceOverrides(config.pricesJson);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : JSON.stringify(value);
}
