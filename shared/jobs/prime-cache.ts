/**
 * Prompt-cache priming (docs/architecture.md, "Prompt-cache priming"): just before a chunk
 * attempt's batch is created, one synchronous Messages call (`max_tokens: 0`, the API's cache
 * pre-warming) per distinct `cache_control` prefix that enough of the attempt's rows share, so
 * that the batch's requests, which the API runs concurrently, read the prefix instead of each
 * writing it.
 *
 * - Which prefixes: every marked prefix the API would cache (at least the model's minimum
 *   cacheable length, shared/cost/tokens.ts) is keyed by model and a hash of the prompt up to it;
 *   each row is assigned its longest prefix that at least PRIME_MIN_ROWS rows of the attempt
 *   share, and the prefixes so assigned are primed, the most rows × tokens first, at most
 *   PRIME_MAX_PREFIXES of them.
 * - Two passes over the attempt's requests: one counts prefixes (a hash per breakpoint and a few
 *   small integers per row: memory does not grow with the prompts), one picks an example request
 *   per chosen prefix, stopping as soon as every one has its example.
 * - At most once per attempt: the prefixes are recorded on the attempt (`priming`) before the first
 *   call, and a Submit that finds the record does not prime again (a Submit that died mid-way
 *   leaves the calls' usage unknown, and the summary says so).
 * - Best-effort: a call that fails is logged (never its prompt) and counted; the batch is created
 *   all the same.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { MessagesApi } from '../anthropic/api';
import type { MessageParams } from '../anthropic/types';
import { billableTokens, PRIME_MIN_ROWS, roundUsd, type BillableTokens, type CostTotalsJson } from '../cost/cost';
import { BATCH_DISCOUNT, resolvePrice, UnknownModel, type ModelPrice, type PriceTable } from '../cost/prices';
import { breakpointsOf, type Breakpoint } from '../cost/tokens';
import { errorFields, type Observer } from '../observability';
import { ConditionFailed } from '../store/dynamo';
import type { AttemptPriming, CacheTtl, ChunkItem, PrimedPrefix } from '../store/items';
import { chunkCondition, isoAt, patchAttempt, updateChunk } from './chunk-state';
import { requestLines } from './chunk-files';
import type { AttemptKey } from './contract';

/** User metadata that turns priming on or off for a file (`x-amz-meta-batchline-prime-cache`). */
export const PRIME_CACHE_METADATA = 'batchline-prime-cache';

// Rows that must share a prefix for it to be primed: the cost module's, as the estimate prices priming too.
export { PRIME_MIN_ROWS } from '../cost/cost';

/** Prefixes primed per attempt at most (the calls run inside SubmitChunk, before its create). */
export const PRIME_MAX_PREFIXES = 20;

/** Priming calls in flight at once. */
export const PRIME_CONCURRENCY = 4;

/** Distinct prefixes counted per attempt at most; past it, new prefixes count as unshared (memory stays bounded). */
const MAX_DISTINCT_PREFIXES = 1_000_000;

/** The object's `batchline-prime-cache` metadata is not a yes or a no. */
export class InvalidPrimeCache extends Error {
  override readonly name = 'InvalidPrimeCache';
}

/** Whether a job primes: the object's metadata when it says, else the stack's `primeCache` setting. */
export function choosePrimeCache(metadata: string | undefined, fallback: boolean): boolean {
  if (metadata === undefined) return fallback;
  const value = metadata.trim().toLowerCase();
  if (value === 'true' || value === 'yes' || value === '1') return true;
  if (value === 'false' || value === 'no' || value === '0') return false;
  throw new InvalidPrimeCache(`the object's ${PRIME_CACHE_METADATA} metadata is "${metadata}"; use true or false`);
}

// ---------------------------------------------------------------------------------------------
// Prefixes

// The prefixes themselves are the token rules' (the estimator prices them too).
export { breakpointsOf, type Breakpoint } from '../cost/tokens';

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The priming call for a request's prefix ending at `point`: the same model, tools and tool_choice,
 * the system and messages up to the marked block (a one-character user turn when the prefix ends
 * before the messages), `max_tokens: 0`. Sampling and thinking settings are left out (thinking
 * cannot run in 0 tokens); the API keeps the tools and system cached across those
 * (docs/architecture.md notes what that means for a prefix that ends in the messages).
 */
export function primingParams(params: MessageParams, point: Breakpoint): MessageParams {
  const tools = Array.isArray(params.tools) ? params.tools : [];
  const system = params.system;
  const systemUnits = typeof system === 'string' ? 1 : Array.isArray(system) ? system.length : 0;
  const out: MessageParams = { model: params.model, max_tokens: 0, messages: [{ role: 'user', content: '.' }] };
  if (tools.length > 0) {
    out.tools = tools;
    if (params.tool_choice !== undefined) out.tool_choice = params.tool_choice;
  }
  if (typeof params.inference_geo === 'string') out.inference_geo = params.inference_geo;
  if (point.topLevel) out.cache_control = params.cache_control;
  if (point.unit < tools.length) return out;
  if (point.unit < tools.length + systemUnits) {
    out.system = typeof system === 'string' ? system : (system as unknown[]).slice(0, point.unit - tools.length + 1);
    return out;
  }
  if (system !== undefined) out.system = system;
  // Walk the messages as countPrompt does: one unit per block of a non-empty array, else one.
  let unit = tools.length + systemUnits;
  const kept: unknown[] = [];
  for (const message of params.messages) {
    if (!isRecord(message)) continue;
    const content = message.content;
    const blocks = Array.isArray(content) && content.length > 0 ? content.length : 1;
    if (point.unit < unit + blocks) {
      const upTo = point.unit - unit + 1;
      kept.push(Array.isArray(content) && content.length > 0 ? { ...message, content: content.slice(0, upTo) } : message);
      out.messages = kept;
      return out;
    }
    kept.push(message);
    unit += blocks;
  }
  out.messages = kept;
  return out;
}

interface PrefixCount {
  key: string;
  tokens: number;
  ttl: CacheTtl;
  model: string;
  /** Rows with this breakpoint. */
  rows: number;
  /** Rows for which it is the longest shared breakpoint. */
  assigned: number;
}

/** A prefix chosen for priming, with the request that will prime it. */
export interface PrimingPlan {
  prefix: PrimedPrefix;
  params: MessageParams;
}

function paramsOf(line: Buffer): MessageParams | undefined {
  try {
    const parsed = JSON.parse(line.toString('utf8')) as { params?: unknown };
    return isRecord(parsed.params) ? (parsed.params as MessageParams) : undefined;
  } catch {
    return undefined;
  }
}

/** The prefixes worth priming among `lines` (a factory: read twice), with a request for each. */
export async function planPriming(lines: () => AsyncIterable<Buffer> | Iterable<Buffer>): Promise<PrimingPlan[]> {
  const ids = new Map<string, number>();
  const counts: PrefixCount[] = [];
  const rows: number[][] = [];
  for await (const line of lines()) {
    const params = paramsOf(line);
    const own: number[] = [];
    if (params) {
      for (const point of breakpointsOf(params)) {
        let id = ids.get(point.key);
        if (id === undefined) {
          if (ids.size >= MAX_DISTINCT_PREFIXES) continue;
          id = counts.length;
          ids.set(point.key, id);
          counts.push({ key: point.key, tokens: point.tokens, ttl: point.ttl, model: params.model, rows: 0, assigned: 0 });
        }
        counts[id]!.rows += 1;
        own.push(id);
      }
    }
    rows.push(own);
  }
  for (const own of rows) {
    const longest = own.findLast((id) => counts[id]!.rows >= PRIME_MIN_ROWS);
    if (longest !== undefined) counts[longest]!.assigned += 1;
  }
  const chosen = counts
    .filter((c) => c.assigned > 0)
    .sort((a, b) => b.assigned * b.tokens - a.assigned * a.tokens || a.key.localeCompare(b.key))
    .slice(0, PRIME_MAX_PREFIXES);
  if (chosen.length === 0) return [];
  const wanted = new Map(chosen.map((c) => [c.key, c]));
  const plans: Array<PrimingPlan & { rank: number }> = [];
  for await (const line of lines()) {
    const params = paramsOf(line);
    if (!params) continue;
    for (const point of breakpointsOf(params)) {
      const count = wanted.get(point.key);
      if (!count) continue;
      wanted.delete(point.key);
      const prefix = { model: count.model, ttl: count.ttl, tokens: count.tokens, rows: count.assigned };
      plans.push({ prefix, params: primingParams(params, point), rank: chosen.indexOf(count) });
    }
    if (wanted.size === 0) break;
  }
  // The most rows × tokens first, as chosen.
  return plans.sort((a, b) => a.rank - b.rank).map(({ prefix, params }) => ({ prefix, params }));
}

// ---------------------------------------------------------------------------------------------
// Priming an attempt

export interface PrimeDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  messages: MessagesApi;
  config: { bucket: string; table: string };
  now: () => number;
  observer: Observer;
}

/**
 * Primes the attempt's shared prefixes, once: the plan is recorded on the attempt (conditionally:
 * no priming recorded yet, no batch) before the first call, the calls' usage after the last. A
 * re-run of Submit that finds `priming` on the attempt primes nothing.
 */
export async function primeAttempt(key: AttemptKey, chunk: ChunkItem, index: number, deps: PrimeDeps): Promise<ChunkItem> {
  const record = chunk.attempts[index]!;
  if (record.priming) return chunk;
  const plans = await planPriming(() => requestLines(deps.s3, deps.config.bucket, key));
  const startedAt = isoAt(deps.now());
  const priming: AttemptPriming = { startedAt, prefixes: plans.map((plan) => plan.prefix) };
  let recorded: ChunkItem;
  try {
    recorded = await updateChunk(deps.dynamo, deps.config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, { priming }), updatedAt: startedAt },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND attribute_not_exists(#att[${index}].#pri)`, {
        ':attempt': key.attempt,
      }),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // Another Submit of this attempt recorded its priming first: it primes, not us.
    deps.observer.info('priming recorded by another Submit of this attempt: not primed again');
    return chunk;
  }
  if (plans.length === 0) {
    deps.observer.info('prime cache: no prefix shared by enough rows', { minRows: PRIME_MIN_ROWS });
    return recorded;
  }

  const usage: Record<string, BillableTokens> = {};
  let calls = 0;
  let failed = 0;
  const queue = [...plans];
  const worker = async () => {
    for (let plan = queue.shift(); plan; plan = queue.shift()) {
      try {
        const message = await deps.messages.createMessage(plan.params);
        calls += 1;
        const model = typeof message.model === 'string' && message.model !== '' ? message.model : plan.prefix.model;
        const tokens = billableTokens(message.usage);
        const into = Object.hasOwn(usage, model) ? usage[model]! : (usage[model] = { input: 0, output: 0, cacheWrite5m: 0, cacheWrite1h: 0, cacheRead: 0 });
        for (const field of Object.keys(tokens) as Array<keyof BillableTokens>) into[field] += tokens[field];
      } catch (error) {
        failed += 1;
        deps.observer.warn('a priming call failed: the batch is created all the same', { model: plan.prefix.model, error: errorFields(error) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PRIME_CONCURRENCY, plans.length) }, worker));
  const endedAt = isoAt(deps.now());
  const done: AttemptPriming = { ...priming, endedAt, calls, failed, usage };
  deps.observer.info('primed the prompt cache', { prefixes: plans.length, calls, failed, rows: plans.reduce((n, p) => n + p.prefix.rows, 0) });
  return updateChunk(deps.dynamo, deps.config.table, recorded, {
    set: { attempts: patchAttempt(recorded, index, { priming: done }), updatedAt: endedAt },
    condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid)`, { ':attempt': key.attempt }),
  });
}

// ---------------------------------------------------------------------------------------------
// The report (summary.json `promptCache`)

/** summary.json's `promptCache`: how much of the cacheable input was read, and what priming cost and saved. */
export interface PromptCacheSummary {
  /** Input tokens of the batch rows that were in a cached prefix: read from the cache, or written to it. */
  cacheableInputTokens: number;
  readTokens: number;
  writeTokens: number;
  /** readTokens ÷ cacheableInputTokens (4 decimals): 1 when every row read its prefix. */
  readRatio: number;
  priming?: {
    /** Chunk attempts primed, prefixes primed, and Messages calls answered and failed. */
    attempts: number;
    prefixes: number;
    calls: number;
    failed: number;
    /** Attempts whose priming stopped part-way (their calls' usage is unknown, and not in the figures). */
    unfinished: number;
    /** Rows whose longest shared prefix was primed. */
    rows: number;
    /** The priming calls' own tokens. */
    tokens: { input: number; output: number; cache_creation_input: number; cache_read_input: number };
    /** The priming calls at standard (Messages) prices. */
    costUsd: number;
    /** Cache reads of the batch rows that the primed prefixes account for (at most tokens × rows of each). */
    readOnPrimedTokens: number;
    /**
     * readOnPrimedTokens × (batch cache-write price − batch cache-read price) − costUsd: what the
     * rows that read a primed prefix would have paid more had each written it, as requests that
     * start together do without priming, less the priming calls. An upper bound: without priming,
     * rows that start after the first write has finished read it (docs/architecture.md).
     */
    savedUsd: number;
  };
}

const ZERO_TOKENS = (): BillableTokens => ({ input: 0, output: 0, cacheWrite5m: 0, cacheWrite1h: 0, cacheRead: 0 });

/** Gathers the chunks' priming records (FinalizeJob), and reports them with the job's token totals. */
export class PrimingTally {
  private attempts = 0;
  private prefixes = 0;
  private calls = 0;
  private failed = 0;
  private unfinished = 0;
  private rows = 0;
  private readonly usage = new Map<string, BillableTokens>();
  /** Σ tokens × rows of the primed prefixes, by model and TTL. */
  private readonly coverage = new Map<string, { model: string; ttl: CacheTtl; tokens: number }>();

  addChunk(chunk: ChunkItem): void {
    for (const attempt of chunk.attempts) {
      const priming = attempt.priming;
      if (!priming || priming.prefixes.length === 0) continue;
      this.attempts += 1;
      this.prefixes += priming.prefixes.length;
      if (priming.endedAt === undefined) this.unfinished += 1;
      this.calls += priming.calls ?? 0;
      this.failed += priming.failed ?? 0;
      for (const prefix of priming.prefixes) {
        this.rows += prefix.rows;
        const key = `${prefix.ttl}\u0000${prefix.model}`;
        const entry = this.coverage.get(key) ?? { model: prefix.model, ttl: prefix.ttl, tokens: 0 };
        entry.tokens += prefix.tokens * prefix.rows;
        this.coverage.set(key, entry);
      }
      for (const [model, tokens] of Object.entries(priming.usage ?? {})) {
        const into = this.usage.get(model) ?? ZERO_TOKENS();
        for (const field of Object.keys(into) as Array<keyof BillableTokens>) into[field] += tokens[field] ?? 0;
        this.usage.set(model, into);
      }
    }
  }

  /** The report, from the job's cost totals (its batch rows); undefined when nothing was cacheable nor primed. */
  report(totals: CostTotalsJson, prices: PriceTable): PromptCacheSummary | undefined {
    const readTokens = totals.tokens.cache_read_input_tokens;
    const writeTokens = totals.tokens.cache_creation_input_tokens;
    const cacheable = readTokens + writeTokens;
    if (cacheable === 0 && this.attempts === 0) return undefined;
    const summary: PromptCacheSummary = {
      cacheableInputTokens: cacheable,
      readTokens,
      writeTokens,
      readRatio: cacheable > 0 ? Math.round((readTokens / cacheable) * 10_000) / 10_000 : 0,
    };
    if (this.attempts === 0) return summary;

    let costUsd = 0;
    const tokens = { input: 0, output: 0, cache_creation_input: 0, cache_read_input: 0 };
    for (const [model, used] of this.usage) {
      tokens.input += used.input;
      tokens.output += used.output;
      tokens.cache_creation_input += used.cacheWrite5m + used.cacheWrite1h;
      tokens.cache_read_input += used.cacheRead;
      const price = priceOf(model, prices);
      if (price)
        costUsd +=
          (used.input * price.input +
            used.output * price.output +
            used.cacheWrite5m * price.cacheWrite5m +
            used.cacheWrite1h * price.cacheWrite1h +
            used.cacheRead * price.cacheRead) /
          1e6;
    }
    // The rows' reads a model's primed prefixes can account for, shared among its TTLs by coverage.
    let readOnPrimed = 0;
    let spared = 0;
    const byModel = new Map<string, number>();
    for (const entry of this.coverage.values()) byModel.set(entry.model, (byModel.get(entry.model) ?? 0) + entry.tokens);
    for (const entry of this.coverage.values()) {
      const modelReads = totals.models[entry.model]?.tokens.cacheRead ?? 0;
      const covered = byModel.get(entry.model)!;
      const reads = Math.min(modelReads, covered) * (entry.tokens / covered);
      readOnPrimed += reads;
      const price = priceOf(entry.model, prices);
      if (price) spared += (reads * ((entry.ttl === '1h' ? price.cacheWrite1h : price.cacheWrite5m) - price.cacheRead) * (1 - BATCH_DISCOUNT)) / 1e6;
    }
    summary.priming = {
      attempts: this.attempts,
      prefixes: this.prefixes,
      calls: this.calls,
      failed: this.failed,
      unfinished: this.unfinished,
      rows: this.rows,
      tokens,
      costUsd: roundUsd(costUsd),
      readOnPrimedTokens: Math.round(readOnPrimed),
      savedUsd: roundUsd(spared - costUsd),
    };
    return summary;
  }
}

function priceOf(model: string, prices: PriceTable): ModelPrice | undefined {
  try {
    return resolvePrice(model, prices).price;
  } catch (error) {
    if (error instanceof UnknownModel) return undefined;
    throw error;
  }
}
