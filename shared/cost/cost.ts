/**
 * The one cost module: prices a response's usage at batch rates, totals usage and cost across a
 * job, and estimates a request's cost before it is submitted. Prices come from ./prices.ts.
 *
 * Exactness: money is never accumulated row by row. Totals keep integer token counts per model
 * (and per priced inference geo), which add exactly and merge in any order to the same result;
 * dollars are derived from those counts with one multiplication per figure, so a total carries a
 * relative error near 1e-16 whatever the row count. Figures are rounded only for display
 * (`roundUsd`, and in `toJSON`, to micro-dollars).
 */
import type { MessageParams, Usage } from '../anthropic/types';
import type { CacheTtl, TokenTotals } from '../store/items';
import { breakpointsOfUnits, countInputTokens, countPrompt } from './tokens';
import { BATCH_DISCOUNT, BUILT_IN_PRICES, INFERENCE_GEO_MULTIPLIERS, resolvePrice, UnknownModel, type ModelPrice, type PriceTable } from './prices';

/** Tokens by the rate they are billed at. */
export interface BillableTokens {
  input: number;
  output: number;
  cacheWrite5m: number;
  cacheWrite1h: number;
  cacheRead: number;
}

export interface CostBreakdown {
  /** The price table entry used (the undated base for a `-YYYYMMDD` id). */
  pricedAs: string;
  inputUsd: number;
  outputUsd: number;
  cacheWrite5mUsd: number;
  cacheWrite1hUsd: number;
  cacheReadUsd: number;
  /** What is billed: at batch rates unless `batch: false`. */
  totalUsd: number;
  /** The same tokens at standard (non-batch) rates. */
  standardTotalUsd: number;
  /** standardTotalUsd − totalUsd. */
  discountUsd: number;
}

export interface PriceOptions {
  prices?: PriceTable;
  /** Apply the batch discount (default true: everything batchline sends is a batch). */
  batch?: boolean;
}

const TOKEN_FIELDS = ['input', 'output', 'cacheWrite5m', 'cacheWrite1h', 'cacheRead'] as const;
type TokenField = (typeof TOKEN_FIELDS)[number];
const USD_FIELD: Record<TokenField, 'inputUsd' | 'outputUsd' | 'cacheWrite5mUsd' | 'cacheWrite1hUsd' | 'cacheReadUsd'> = {
  input: 'inputUsd',
  output: 'outputUsd',
  cacheWrite5m: 'cacheWrite5mUsd',
  cacheWrite1h: 'cacheWrite1hUsd',
  cacheRead: 'cacheReadUsd',
};

const count = (value: number | null | undefined): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0);

const zeroTokens = (): BillableTokens => ({ input: 0, output: 0, cacheWrite5m: 0, cacheWrite1h: 0, cacheRead: 0 });

/**
 * Tokens by billing rate. Cache writes come from `cache_creation`'s 5m/1h split when the response
 * has one; otherwise every `cache_creation_input_tokens` token counts as a 5-minute write (the
 * default TTL, and the only kind older responses report). Null or missing fields count as 0.
 */
export function billableTokens(usage: Usage): BillableTokens {
  const split = usage.cache_creation;
  const hasSplit = split != null && (split.ephemeral_5m_input_tokens != null || split.ephemeral_1h_input_tokens != null);
  return {
    input: count(usage.input_tokens),
    output: count(usage.output_tokens),
    cacheWrite5m: hasSplit ? count(split.ephemeral_5m_input_tokens) : count(usage.cache_creation_input_tokens),
    cacheWrite1h: hasSplit ? count(split.ephemeral_1h_input_tokens) : 0,
    cacheRead: count(usage.cache_read_input_tokens),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading a result's usage

/**
 * Why a succeeded row has no cost: no message object, no usage object, token counts that are not
 * whole numbers ≥ 0, no model id, or a model without a price. Such a row's cost is null, never 0.
 */
export type UnpricedReason = 'no_message' | 'no_usage' | 'unreadable_usage' | 'no_model' | 'unknown_model';

/** What a succeeded message says it used, as far as it can be read; `unpriced` when it cannot be priced. */
export type MessageUsage =
  | { usage: Usage; model: string; unpriced?: undefined }
  | { usage: Usage | undefined; model: string | undefined; unpriced: Exclude<UnpricedReason, 'unknown_model'> };

/**
 * A succeeded result's `message` (of any shape: the API's, or whatever a damaged or odd line holds)
 * read for pricing. The usage returned holds only the fields that are priced, each checked, so
 * nothing downstream meets a string, a negative or a non-finite number where it counts tokens.
 */
export function readMessageUsage(message: unknown): MessageUsage {
  if (!isRecord(message)) return { usage: undefined, model: undefined, unpriced: 'no_message' };
  const model = typeof message.model === 'string' && message.model !== '' ? message.model : undefined;
  if (!isRecord(message.usage)) return { usage: undefined, model, unpriced: 'no_usage' };
  const usage = readUsage(message.usage);
  if (usage === undefined) return { usage: undefined, model, unpriced: 'unreadable_usage' };
  if (model === undefined) return { usage, model, unpriced: 'no_model' };
  return { usage, model };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const isTokenCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** A count that may be absent or null (as 0), else must be a token count; false when it is neither. */
function optionalCount(value: unknown): number | null | false {
  if (value === undefined || value === null) return null;
  return isTokenCount(value) ? value : false;
}

/** The priced fields of a usage object, or undefined when one of them cannot be read. */
function readUsage(raw: Record<string, unknown>): Usage | undefined {
  if (!isTokenCount(raw.input_tokens) || !isTokenCount(raw.output_tokens)) return undefined;
  const cacheCreation = optionalCount(raw.cache_creation_input_tokens);
  const cacheRead = optionalCount(raw.cache_read_input_tokens);
  if (cacheCreation === false || cacheRead === false) return undefined;
  const geo = raw.inference_geo;
  if (geo !== undefined && geo !== null && typeof geo !== 'string') return undefined;
  const usage: Usage = {
    input_tokens: raw.input_tokens,
    output_tokens: raw.output_tokens,
    cache_creation_input_tokens: cacheCreation,
    cache_read_input_tokens: cacheRead,
    inference_geo: geo ?? null,
  };
  const split = raw.cache_creation;
  if (split !== undefined && split !== null) {
    if (!isRecord(split)) return undefined;
    const fiveMinutes = optionalCount(split.ephemeral_5m_input_tokens);
    const oneHour = optionalCount(split.ephemeral_1h_input_tokens);
    if (fiveMinutes === false || oneHour === false) return undefined;
    usage.cache_creation = { ephemeral_5m_input_tokens: fiveMinutes, ephemeral_1h_input_tokens: oneHour };
  }
  return usage;
}

/** Usage in the wire names the job and row records use; cache creation is what was billed as writes. */
export function tokenTotals(usage: Usage): TokenTotals {
  return toTokenTotals(billableTokens(usage));
}

function toTokenTotals(tokens: BillableTokens): TokenTotals {
  return {
    input_tokens: tokens.input,
    output_tokens: tokens.output,
    cache_creation_input_tokens: tokens.cacheWrite5m + tokens.cacheWrite1h,
    cache_read_input_tokens: tokens.cacheRead,
  };
}

/** The price multiplier of the geo a request was served in (1 unless the geo is priced differently). */
export function geoMultiplier(inferenceGeo: string | null | undefined): number {
  return inferenceGeo != null && Object.hasOwn(INFERENCE_GEO_MULTIPLIERS, inferenceGeo) ? INFERENCE_GEO_MULTIPLIERS[inferenceGeo]! : 1;
}

/** Adds `tokens` priced at `price` × `multiplier` into `into` (standard, then billed). */
function accumulate(into: CostBreakdown, tokens: BillableTokens, price: ModelPrice, multiplier: number, batch: boolean): void {
  const paid = batch ? 1 - BATCH_DISCOUNT : 1;
  for (const field of TOKEN_FIELDS) {
    const standard = ((tokens[field] * price[field]) / 1_000_000) * multiplier;
    into.standardTotalUsd += standard;
    into[USD_FIELD[field]] += standard * paid;
  }
}

function emptyBreakdown(pricedAs: string): CostBreakdown {
  return { pricedAs, inputUsd: 0, outputUsd: 0, cacheWrite5mUsd: 0, cacheWrite1hUsd: 0, cacheReadUsd: 0, totalUsd: 0, standardTotalUsd: 0, discountUsd: 0 };
}

function finish(breakdown: CostBreakdown): CostBreakdown {
  breakdown.totalUsd = breakdown.inputUsd + breakdown.outputUsd + breakdown.cacheWrite5mUsd + breakdown.cacheWrite1hUsd + breakdown.cacheReadUsd;
  breakdown.discountUsd = breakdown.standardTotalUsd - breakdown.totalUsd;
  return breakdown;
}

/**
 * What one response's usage costs. The batch discount applies to every token kind and stacks with
 * the cache multipliers (already in the table's prices) and the `inference_geo` multiplier.
 * Throws UnknownModel when the model has no price.
 */
export function priceUsage(usage: Usage, model: string, options: PriceOptions = {}): CostBreakdown {
  const { pricedAs, price } = resolvePrice(model, options.prices ?? BUILT_IN_PRICES);
  const breakdown = emptyBreakdown(pricedAs);
  accumulate(breakdown, billableTokens(usage), price, geoMultiplier(usage.inference_geo), options.batch ?? true);
  return finish(breakdown);
}

/** Rounds dollars for display (default: to the micro-dollar). */
export function roundUsd(usd: number, decimals = 6): number {
  const scale = 10 ** decimals;
  return Math.round(usd * scale) / scale;
}

// ---------------------------------------------------------------------------------------------
// Totals

export interface ModelTotalsJson {
  requests: number;
  /** Every token of this model. */
  tokens: BillableTokens;
  /** The part of `tokens` served in a geo with its own price multiplier (e.g. `us`), by geo. */
  geoTokens: Record<string, BillableTokens>;
  /** Rounded to micro-dollars; null when the model has no price (see `unpricedModels`). */
  usd: CostBreakdown | null;
}

export interface CostTotalsJson {
  requests: number;
  tokens: TokenTotals;
  /** Priced models only, rounded to micro-dollars. */
  totalUsd: number;
  standardTotalUsd: number;
  discountUsd: number;
  /** False when some tokens could not be priced: the dollar figures then leave them out. */
  complete: boolean;
  unpricedModels: string[];
  models: Record<string, ModelTotalsJson>;
}

/** CostTotals as JSON: by model, its requests and tokens (plain, and by geo). */
export type CostTotalsState = Record<string, { requests: number; plain: BillableTokens; byGeo: Record<string, BillableTokens> }>;

interface ModelBucket {
  requests: number;
  /** Tokens billed without a geo multiplier. */
  plain: BillableTokens;
  /** Tokens billed with a geo multiplier, by geo. */
  byGeo: Map<string, BillableTokens>;
}

function addTokens(into: BillableTokens, from: BillableTokens, sign = 1): void {
  for (const field of TOKEN_FIELDS) into[field] += sign * from[field];
}

/**
 * Token and cost totals across many responses, per model and overall. Mergeable (chunks total
 * separately, Finalize sums them) and JSON-serializable (`toJSON` / `fromJSON`). A model without a
 * price does not throw here: its tokens are counted, its cost left out, and the totals say so
 * (`complete: false`), so one unpriced model cannot fail a job's bookkeeping.
 */
export class CostTotals {
  private readonly models = new Map<string, ModelBucket>();

  constructor(private readonly prices: PriceTable = BUILT_IN_PRICES) {}

  add(usage: Usage, model: string): void {
    const bucket = this.bucket(model);
    bucket.requests += 1;
    const tokens = billableTokens(usage);
    const geo = usage.inference_geo;
    if (geo != null && geoMultiplier(geo) !== 1) {
      let geoTokens = bucket.byGeo.get(geo);
      if (!geoTokens) bucket.byGeo.set(geo, (geoTokens = zeroTokens()));
      addTokens(geoTokens, tokens);
    } else {
      addTokens(bucket.plain, tokens);
    }
  }

  /**
   * Moves tokens of one model between billing rates without counting a request (`sign` −1 takes
   * them out): the estimate's primed prefixes, whose first write becomes a read.
   */
  shift(model: string, geo: string | null, tokens: BillableTokens, sign: 1 | -1): void {
    const bucket = this.bucket(model);
    if (geo !== null && geoMultiplier(geo) !== 1) {
      let geoTokens = bucket.byGeo.get(geo);
      if (!geoTokens) bucket.byGeo.set(geo, (geoTokens = zeroTokens()));
      addTokens(geoTokens, tokens, sign);
    } else {
      addTokens(bucket.plain, tokens, sign);
    }
  }

  merge(other: CostTotals): this {
    for (const [model, theirs] of other.models) {
      const ours = this.bucket(model);
      ours.requests += theirs.requests;
      addTokens(ours.plain, theirs.plain);
      for (const [geo, tokens] of theirs.byGeo) {
        let geoTokens = ours.byGeo.get(geo);
        if (!geoTokens) ours.byGeo.set(geo, (geoTokens = zeroTokens()));
        addTokens(geoTokens, tokens);
      }
    }
    return this;
  }

  get requests(): number {
    let requests = 0;
    for (const bucket of this.models.values()) requests += bucket.requests;
    return requests;
  }

  tokens(): TokenTotals {
    const all = zeroTokens();
    for (const bucket of this.models.values()) addTokens(all, modelTokens(bucket));
    return toTokenTotals(all);
  }

  /** Unrounded cost of one model's tokens; throws UnknownModel when it has no price. */
  modelCost(model: string): CostBreakdown {
    const bucket = this.models.get(model);
    const { pricedAs, price } = resolvePrice(model, this.prices);
    const breakdown = emptyBreakdown(pricedAs);
    if (bucket) {
      accumulate(breakdown, bucket.plain, price, 1, true);
      for (const [geo, tokens] of bucket.byGeo) accumulate(breakdown, tokens, price, geoMultiplier(geo), true);
    }
    return finish(breakdown);
  }

  /** Unrounded cost of every priced model. */
  cost(): { totalUsd: number; standardTotalUsd: number; discountUsd: number; unpricedModels: string[] } {
    let totalUsd = 0;
    let standardTotalUsd = 0;
    const unpricedModels: string[] = [];
    for (const model of this.models.keys()) {
      const priced = this.tryModelCost(model);
      if (priced === null) {
        unpricedModels.push(model);
      } else {
        totalUsd += priced.totalUsd;
        standardTotalUsd += priced.standardTotalUsd;
      }
    }
    return { totalUsd, standardTotalUsd, discountUsd: standardTotalUsd - totalUsd, unpricedModels: unpricedModels.sort() };
  }

  toJSON(): CostTotalsJson {
    // Built with fromEntries: a model id is the API's text, and `__proto__` must stay an ordinary key.
    const models: Record<string, ModelTotalsJson> = Object.fromEntries(
      [...this.models.keys()].sort().map((model) => {
        const bucket = this.models.get(model)!;
        const geoTokens = Object.fromEntries([...bucket.byGeo].sort(([a], [b]) => a.localeCompare(b)).map(([geo, tokens]) => [geo, { ...tokens }]));
        const usd = this.tryModelCost(model);
        return [model, { requests: bucket.requests, tokens: modelTokens(bucket), geoTokens, usd: usd && roundBreakdown(usd) }];
      }),
    );
    const cost = this.cost();
    return {
      requests: this.requests,
      tokens: this.tokens(),
      totalUsd: roundUsd(cost.totalUsd),
      standardTotalUsd: roundUsd(cost.standardTotalUsd),
      discountUsd: roundUsd(cost.discountUsd),
      complete: cost.unpricedModels.length === 0,
      unpricedModels: cost.unpricedModels,
      models,
    };
  }

  /** Rebuilds totals from `toJSON` output; only the token counts are read (dollars are re-derived). */
  static fromJSON(json: CostTotalsJson, prices: PriceTable = BUILT_IN_PRICES): CostTotals {
    const totals = new CostTotals(prices);
    if (typeof json !== 'object' || json === null || typeof json.models !== 'object' || json.models === null) {
      throw new TypeError('cost totals must be an object with a "models" object');
    }
    for (const [model, entry] of Object.entries(json.models)) {
      const where = `cost totals: models[${JSON.stringify(model)}]`;
      if (typeof entry !== 'object' || entry === null) throw new TypeError(`${where} must be an object`);
      const bucket = totals.bucket(model);
      bucket.requests = wholeNumber(entry.requests, `${where}.requests`);
      const plain = readTokens(entry.tokens, `${where}.tokens`);
      for (const [geo, tokens] of Object.entries(entry.geoTokens ?? {})) {
        const geoTokens = readTokens(tokens, `${where}.geoTokens.${geo}`);
        bucket.byGeo.set(geo, geoTokens);
        addTokens(plain, geoTokens, -1);
      }
      for (const field of TOKEN_FIELDS) {
        if (plain[field] < 0) throw new TypeError(`${where}.geoTokens add up to more ${field} tokens than ${where}.tokens holds`);
      }
      bucket.plain = plain;
    }
    return totals;
  }

  private tryModelCost(model: string): CostBreakdown | null {
    try {
      return this.modelCost(model);
    } catch (error) {
      if (error instanceof UnknownModel) return null;
      throw error;
    }
  }

  /** Everything added so far, as JSON (a Prepare that resumes in another invocation carries it). */
  toState(): CostTotalsState {
    return Object.fromEntries(
      [...this.models].map(([model, bucket]) => [model, { requests: bucket.requests, plain: { ...bucket.plain }, byGeo: Object.fromEntries(bucket.byGeo) }]),
    );
  }

  /** Totals that go on from `state` (toState's). */
  static fromState(state: CostTotalsState, prices: PriceTable = BUILT_IN_PRICES): CostTotals {
    const totals = new CostTotals(prices);
    for (const [model, bucket] of Object.entries(state)) {
      totals.models.set(model, {
        requests: bucket.requests,
        plain: { ...bucket.plain },
        byGeo: new Map(Object.entries(bucket.byGeo).map(([geo, tokens]) => [geo, { ...tokens }])),
      });
    }
    return totals;
  }

  private bucket(model: string): ModelBucket {
    let bucket = this.models.get(model);
    if (!bucket) this.models.set(model, (bucket = { requests: 0, plain: zeroTokens(), byGeo: new Map() }));
    return bucket;
  }
}

function modelTokens(bucket: ModelBucket): BillableTokens {
  const all = { ...bucket.plain };
  for (const tokens of bucket.byGeo.values()) addTokens(all, tokens);
  return all;
}

function roundBreakdown(breakdown: CostBreakdown): CostBreakdown {
  return {
    pricedAs: breakdown.pricedAs,
    inputUsd: roundUsd(breakdown.inputUsd),
    outputUsd: roundUsd(breakdown.outputUsd),
    cacheWrite5mUsd: roundUsd(breakdown.cacheWrite5mUsd),
    cacheWrite1hUsd: roundUsd(breakdown.cacheWrite1hUsd),
    cacheReadUsd: roundUsd(breakdown.cacheReadUsd),
    totalUsd: roundUsd(breakdown.totalUsd),
    standardTotalUsd: roundUsd(breakdown.standardTotalUsd),
    discountUsd: roundUsd(breakdown.discountUsd),
  };
}

function wholeNumber(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${where} must be a whole number ≥ 0, got ${JSON.stringify(value)}`);
  }
  return value;
}

function readTokens(value: unknown, where: string): BillableTokens {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${where} must be an object`);
  const tokens = zeroTokens();
  for (const field of TOKEN_FIELDS) tokens[field] = wholeNumber((value as Record<string, unknown>)[field], `${where}.${field}`);
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// Estimates (before submission)

export interface RequestEstimate {
  estimate: true;
  model: string;
  /** Input tokens by the shared counting rules (./tokens.ts), all counted as uncached input. */
  inputTokens: number;
  /** `max_tokens`: the worst case, since every token of output up to it may be used. */
  outputTokens: number;
  /** Cost at batch rates of inputTokens and outputTokens. */
  usd: CostBreakdown;
}

/**
 * Input tokens of a request by the one set of counting rules (./tokens.ts, docs/api-reference.md
 * §10) that the simulator also answers with: text by script, images by their pixel size read from
 * the header, PDFs by their pages, the per-message, system and tool-use overheads.
 */
export function estimateInputTokens(params: MessageParams): number {
  return countInputTokens(params);
}

function estimatedUsage(params: MessageParams): Usage {
  const geo = typeof params.inference_geo === 'string' ? params.inference_geo : null;
  return { input_tokens: estimateInputTokens(params), output_tokens: count(params.max_tokens), inference_geo: geo };
}

/** An estimate of one request before submission, priced at batch rates. Throws UnknownModel. */
export function estimateRequest(params: MessageParams, options: { prices?: PriceTable } = {}): RequestEstimate {
  const usage = estimatedUsage(params);
  return {
    estimate: true,
    model: params.model,
    inputTokens: usage.input_tokens,
    outputTokens: usage.output_tokens,
    usd: priceUsage(usage, params.model, { prices: options.prices ?? BUILT_IN_PRICES, batch: true }),
  };
}

/** What past jobs' succeeded rows used of their max_tokens, for one model (accumulated at FinalizeJob). */
export interface OutputHistoryEntry {
  /** Succeeded rows counted. */
  rows: number;
  /** Σ output_tokens of those rows. */
  outputTokens: number;
  /** Σ max_tokens of those rows. */
  maxTokens: number;
}

/** Output history by model id as the requests give it. */
export type OutputHistory = Record<string, OutputHistoryEntry>;

export interface EstimateOptions {
  prices?: PriceTable;
  /** Past jobs' output use (docs/architecture.md, "Budgets"): the expected figure scales max_tokens by it. */
  history?: OutputHistory;
  /** The job primes the cache (shared/jobs/prime-cache.ts): a prefix enough rows share is written once at standard price. */
  primeCache?: boolean;
}

/**
 * Rows of a batch that must share a prefix for it to be primed (shared/jobs/prime-cache.ts, and the
 * estimate). One primed write at standard price (1.25× or 2× input) costs what two batch writes do
 * (0.625× or 1×): below three rows, priming can cost more than the writes it spares.
 */
export const PRIME_MIN_ROWS = 3;

/** The ratio of output to max_tokens that history gives a model, or undefined without history. */
export function outputRatio(history: OutputHistory | undefined, model: string): number | undefined {
  const entry = history && Object.hasOwn(history, model) ? history[model] : undefined;
  if (!entry || entry.rows <= 0 || entry.maxTokens <= 0) return undefined;
  return Math.min(1, Math.max(0, entry.outputTokens / entry.maxTokens));
}

export interface ExpectedModelJson {
  requests: number;
  outputTokens: number;
  /** Output ÷ max_tokens from history; null: no history, output at max_tokens. */
  outputRatio: number | null;
  /** Succeeded rows of past jobs the ratio comes from (0: none). */
  historyRows: number;
  usd: CostBreakdown | null;
}

export interface ExpectedJson {
  /** `history` when every priced model had history, `max_tokens` when none had, `partial` between. */
  basis: 'history' | 'max_tokens' | 'partial';
  /** Succeeded rows of past jobs behind the figure, over the file's models. */
  historyRows: number;
  tokens: TokenTotals;
  totalUsd: number;
  standardTotalUsd: number;
  models: Record<string, ExpectedModelJson>;
}

export interface CacheEstimateJson {
  /** Batches the rows were estimated as (chunks: each writes its own prefixes). */
  batches: number;
  /** Distinct (batch, prefix) pairs written. */
  prefixes: number;
  /** Of them, primed by a Messages call at standard price (primeCache, shared by at least 3 rows). */
  primedPrefixes: number;
  /** What the priming calls cost (standard price, in both figures). */
  primingUsd: number;
}

/**
 * The upper bound is the top level, as before: output at max_tokens, and every cacheable prefix
 * written by every row (requests that start together each write it, and a primed prefix may have
 * expired before the batch starts), plus the priming calls — what the job can cost at most by the
 * token rules. `expected` counts the cache at its best (per batch one write per prefix, the rest
 * read; primed prefixes read by every row) and scales output by history; `cache` says how the
 * prompt cache was counted.
 */
export type EstimateTotalsJson = CostTotalsJson & { estimate: true; expected: ExpectedJson; cache: CacheEstimateJson };

/** A prefix written in the current batch: who wrote it, and how many rows use it. */
interface BatchPrefix {
  model: string;
  geo: string | null;
  /** The segment of the prefix the first row wrote (tokens past the prefix it read), by TTL. */
  segment: number;
  ttl: CacheTtl;
  rows: number;
}

/**
 * Estimates summed over a file, in two figures: the upper bound (output at max_tokens) and the
 * expected (output at max_tokens × the model's ratio from past jobs, or max_tokens without history).
 *
 * Prompt caching, as the API bills it (docs/api-reference.md §10.5): within one batch, the first
 * row with a cacheable prefix writes it (each segment at the TTL of the mark that ends it) and every
 * later row with it reads it — that is, the batch's rows are assumed to start after the first
 * writer finished; rows that start together each write, so a batch that starts many at once pays
 * more writes than this (`--prime-cache` removes that gap). With `primeCache`, a prefix at least
 * PRIME_MIN_ROWS rows of the batch share is written by one Messages call at standard price
 * and every row reads it. `newBatch()` marks a chunk boundary: a new batch writes its prefixes again.
 */
/** EstimateTotals as JSON, between two batches (toState). */
export interface EstimateTotalsState {
  upper: CostTotalsState;
  expected: CostTotalsState;
  priming: Record<string, BillableTokens>;
  batches: number;
  prefixes: number;
  primedPrefixes: number;
}

export class EstimateTotals {
  private upper: CostTotals;
  private expected: CostTotals;
  /** Priming calls' tokens by model, priced at standard rates. */
  private priming = new Map<string, BillableTokens>();
  private prefixes = new Map<string, BatchPrefix>();
  private batches = 0;
  private prefixCount = 0;
  private primedCount = 0;
  private readonly prices: PriceTable;
  private readonly history: OutputHistory | undefined;
  private readonly primeCache: boolean;

  constructor(options: EstimateOptions = {}) {
    this.prices = options.prices ?? BUILT_IN_PRICES;
    this.history = options.history;
    this.primeCache = options.primeCache === true;
    this.upper = new CostTotals(this.prices);
    this.expected = new CostTotals(this.prices);
  }

  add(params: MessageParams): void {
    const geo = typeof params.inference_geo === 'string' ? params.inference_geo : null;
    const { units, total } = countPrompt(params);
    const usage: Usage = { input_tokens: total, output_tokens: count(params.max_tokens), inference_geo: geo, cache_creation: undefined };
    const points = breakpointsOfUnits(params.model, units, params.cache_control);
    if (points.length > 0) {
      if (this.batches === 0) this.batches = 1;
      let read = 0;
      for (const point of points) if (this.prefixes.has(point.key)) read = Math.max(read, point.tokens);
      let covered = read;
      let written5m = 0;
      let written1h = 0;
      for (const point of points) {
        const known = this.prefixes.get(point.key);
        if (known) {
          known.rows += 1;
          continue;
        }
        const segment = Math.max(0, point.tokens - covered);
        if (point.ttl === '1h') written1h += segment;
        else written5m += segment;
        covered = Math.max(covered, point.tokens);
        this.prefixes.set(point.key, { model: params.model, geo, segment, ttl: point.ttl, rows: 1 });
        this.prefixCount += 1;
      }
      usage.input_tokens = Math.max(0, total - read - written5m - written1h);
      usage.cache_read_input_tokens = read;
      usage.cache_creation_input_tokens = written5m + written1h;
      usage.cache_creation = { ephemeral_5m_input_tokens: written5m, ephemeral_1h_input_tokens: written1h };
    } else if (this.batches === 0) {
      this.batches = 1;
    }
    this.upper.add(worstCaseCaching(usage, points, total), params.model);
    const ratio = outputRatio(this.history, params.model);
    const maxTokens = count(params.max_tokens);
    this.expected.add({ ...usage, output_tokens: ratio === undefined ? maxTokens : Math.round(maxTokens * ratio) }, params.model);
  }

  /**
   * The totals as JSON, at a batch's end: the batch in progress is settled, so the rows added after
   * `fromState` must start another batch (a new chunk), as a resumed Prepare's do.
   */
  toState(): EstimateTotalsState {
    this.settleBatch();
    return {
      upper: this.upper.toState(),
      expected: this.expected.toState(),
      priming: Object.fromEntries(this.priming),
      batches: this.batches,
      prefixes: this.prefixCount,
      primedPrefixes: this.primedCount,
    };
  }

  /** Totals that go on from `state` (toState's), under the same options. */
  static fromState(state: EstimateTotalsState, options: EstimateOptions = {}): EstimateTotals {
    const totals = new EstimateTotals(options);
    totals.upper = CostTotals.fromState(state.upper, totals.prices);
    totals.expected = CostTotals.fromState(state.expected, totals.prices);
    totals.priming = new Map(Object.entries(state.priming).map(([model, tokens]) => [model, { ...tokens }]));
    totals.batches = state.batches;
    totals.prefixCount = state.prefixes;
    totals.primedCount = state.primedPrefixes;
    return totals;
  }

  /** The rows added from now on are another batch's (a new chunk): its prefixes are written again. */
  newBatch(): void {
    this.settleBatch();
    this.batches += 1;
  }

  /** Primed prefixes of the batch just ended: the first row's write becomes a read, and the priming call writes at standard price. */
  private settleBatch(): void {
    if (this.primeCache) {
      for (const prefix of this.prefixes.values()) {
        if (prefix.rows < PRIME_MIN_ROWS || prefix.segment === 0) continue;
        this.primedCount += 1;
        const write = { ...zeroTokens(), [prefix.ttl === '1h' ? 'cacheWrite1h' : 'cacheWrite5m']: prefix.segment };
        const read = { ...zeroTokens(), cacheRead: prefix.segment };
        // Only the expected figure counts on the priming: at worst the batch starts after the prefix expired.
        this.expected.shift(prefix.model, prefix.geo, write, -1);
        this.expected.shift(prefix.model, prefix.geo, read, 1);
        let primed = this.priming.get(prefix.model);
        if (!primed) this.priming.set(prefix.model, (primed = zeroTokens()));
        addTokens(primed, write);
      }
    }
    this.prefixes.clear();
  }

  merge(other: EstimateTotals): this {
    other.settleBatch();
    this.settleBatch();
    this.upper.merge(other.upper);
    this.expected.merge(other.expected);
    for (const [model, tokens] of other.priming) {
      let ours = this.priming.get(model);
      if (!ours) this.priming.set(model, (ours = zeroTokens()));
      addTokens(ours, tokens);
    }
    this.batches += other.batches;
    this.prefixCount += other.prefixCount;
    this.primedCount += other.primedCount;
    return this;
  }

  /** What the priming calls cost by model (standard price); unpriced models are left out. */
  private primingUsd(): Map<string, number> {
    const usd = new Map<string, number>();
    for (const [model, tokens] of this.priming) {
      try {
        const { pricedAs, price } = resolvePrice(model, this.prices);
        const breakdown = emptyBreakdown(pricedAs);
        accumulate(breakdown, tokens, price, 1, false);
        usd.set(model, finish(breakdown).totalUsd);
      } catch (error) {
        if (!(error instanceof UnknownModel)) throw error;
      }
    }
    return usd;
  }

  toJSON(): EstimateTotalsJson {
    this.settleBatch();
    const priming = this.primingUsd();
    let primingTotal = 0;
    for (const usd of priming.values()) primingTotal += usd;
    const upper = this.upper.toJSON();
    const expected = this.expected.toJSON();
    const withPriming = (model: string, entry: ModelTotalsJson): CostBreakdown | null => {
      const extra = priming.get(model) ?? 0;
      if (!entry.usd || extra === 0) return entry.usd;
      return { ...entry.usd, totalUsd: roundUsd(entry.usd.totalUsd + extra), standardTotalUsd: roundUsd(entry.usd.standardTotalUsd + extra) };
    };
    for (const [model, entry] of Object.entries(upper.models)) entry.usd = withPriming(model, entry);
    let historyRows = 0;
    let withHistory = 0;
    const expectedModels: Record<string, ExpectedModelJson> = Object.fromEntries(
      Object.entries(expected.models).map(([model, entry]) => {
        const ratio = outputRatio(this.history, model);
        const rows = ratio === undefined ? 0 : this.history![model]!.rows;
        historyRows += rows;
        if (ratio !== undefined) withHistory += 1;
        return [
          model,
          { requests: entry.requests, outputTokens: entry.tokens.output, outputRatio: ratio ?? null, historyRows: rows, usd: withPriming(model, entry) },
        ];
      }),
    );
    const modelCount = Object.keys(expected.models).length;
    return {
      estimate: true,
      ...upper,
      totalUsd: roundUsd(upper.totalUsd + primingTotal),
      standardTotalUsd: roundUsd(upper.standardTotalUsd + primingTotal),
      expected: {
        basis: withHistory === 0 ? 'max_tokens' : withHistory === modelCount ? 'history' : 'partial',
        historyRows,
        tokens: expected.tokens,
        totalUsd: roundUsd(expected.totalUsd + primingTotal),
        standardTotalUsd: roundUsd(expected.standardTotalUsd + primingTotal),
        models: expectedModels,
      },
      cache: { batches: this.batches, prefixes: this.prefixCount, primedPrefixes: this.primedCount, primingUsd: roundUsd(primingTotal) },
    };
  }
}

/**
 * A row's usage with its cacheable prefixes all written by it, none read: what the row costs at
 * most when it starts beside the batch's other rows, before any of their writes has finished.
 */
function worstCaseCaching(usage: Usage, points: ReadonlyArray<{ tokens: number; ttl: '5m' | '1h' }>, total: number): Usage {
  if (points.length === 0) return usage;
  let covered = 0;
  let written5m = 0;
  let written1h = 0;
  for (const point of points) {
    const segment = Math.max(0, point.tokens - covered);
    if (point.ttl === '1h') written1h += segment;
    else written5m += segment;
    covered = Math.max(covered, point.tokens);
  }
  return {
    ...usage,
    input_tokens: Math.max(0, total - written5m - written1h),
    cache_read_input_tokens: 0,
    cache_creation_input_tokens: written5m + written1h,
    cache_creation: { ephemeral_5m_input_tokens: written5m, ephemeral_1h_input_tokens: written1h },
  };
}
