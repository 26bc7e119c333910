/**
 * What summary.json reports, gathered row by row and chunk by chunk: a chunk's tally is kept beside
 * its ordered rows (FinalizeChunk), and the job's is the sum of its chunks' (FinalizeJob).
 */
import type { Usage } from '../anthropic/types';
import { CostTotals, type CostTotalsJson, type UnpricedReason } from '../cost/cost';
import type { PriceTable } from '../cost/prices';
import type { ChunkAttempt, ChunkItem, JobItem, JobStatus, OrphanBatch, RowCounts } from '../store/items';
import type { ResultStatus } from './outcome';
import type { ResultRow } from './final-rows';
import type { PromptCacheSummary } from './prime-cache';

/** summary.json. */
export interface JobSummary {
  jobId: string;
  /** Batches of creates whose answers were lost, found by the reconciler after the job ended (shared/jobs/orphans.ts). */
  orphanBatches?: OrphanBatch[];
  input: { bucket: string; key: string };
  status: JobStatus;
  validationMode: 'strict' | 'lenient';
  counts: RowCounts & { total: number };
  errorsByType: Record<string, number>;
  tokens: { input: number; output: number; cache_creation_input: number; cache_read_input: number };
  cost: {
    batchUsd: number;
    standardUsd: number;
    savedUsd: number;
    byModel: Record<string, { requests: number; batchUsd: number | null; standardUsd: number | null }>;
    unpricedModels: string[];
    /**
     * Succeeded rows whose cost is null, by reason (cost/cost.ts UnpricedReason); absent when every
     * succeeded row has a cost. The dollar figures leave them out; so do the tokens, but for
     * `unknown_model` rows, whose tokens are counted.
     */
    unpricedRows?: Partial<Record<UnpricedReason, number>>;
  };
  chunks: number;
  batches: Array<{ chunk: number; attempt: number; batchId: string; counts: ChunkAttempt['counts'] | null }>;
  retries: { attempts: number; rows: number };
  timings: { createdAt: string; endedAt: string; durationSeconds: number };
  /** The failure a recovered job had (its FinalizeJob failed; the reconciler finalized it later). */
  recoveredFrom?: { error: string; cause: string };
  /**
   * A rejected file's valid rows, never sent (strict validation found invalid lines). They are in
   * `counts.canceled`, so the counts add up; nobody canceled them.
   */
  notSubmitted?: { rows: number; reason: 'rejected' };
  /** Chunks whose results wait at the API for the reconciler (their rows are `collect_pending` until then). */
  collectPending?: number[];
  /** Chunks the reconciler collected after the job had ended, and when: these outputs replace the first ones. */
  collectedLate?: { chunks: number[]; at: string };
  /**
   * Rows taken over from a finished job instead of being sent again (shared/jobs/reuse.ts): they are
   * in `counts`, but neither their tokens nor their cost (paid by that job, `costUsd`) are this job's.
   */
  reused?: { fromJob: string; rows: number; costUsd: number };
  /**
   * The job's budget, and Prepare's estimate of the rows it sent: `estimateUsd` the upper bound
   * (output at max_tokens), `expectedUsd` output from past jobs' history — the figure the guard judges.
   */
  budget?: { maxCostUsd: number; estimateUsd: number | null; expectedUsd?: number | null };
  /** The prompt cache: read ratio, and what priming cost and saved (shared/jobs/prime-cache.ts); absent when nothing was cacheable. */
  promptCache?: PromptCacheSummary;
  /**
   * The deadline fallback (shared/jobs/stragglers.ts): rows a deadline's cancel left unfinished,
   * sent as synchronous Messages calls. Their outcomes are in `counts`; their tokens and cost are
   * here, not in `tokens` and `cost` (which are the batches'): `costUsd` at standard rates, and
   * `premiumUsd` what that paid over batch rates. Absent when no row ran synchronously.
   */
  synchronous?: SynchronousSummary;
}

export interface SynchronousSummary {
  /** The job's deadline. */
  deadline: string | null;
  rows: number;
  counts: Record<ResultStatus, number>;
  tokens: JobSummary['tokens'];
  costUsd: number;
  /** What the same tokens would have cost in a batch. */
  atBatchRatesUsd: number;
  premiumUsd: number;
}

/** What the summary reports, gathered row by row and chunk by chunk. */
export class Tally {
  readonly counts: Record<ResultStatus, number> = { succeeded: 0, errored: 0, expired: 0, canceled: 0 };
  readonly errorsByType = new Map<string, number>();
  readonly unpricedRows = new Map<UnpricedReason, number>();
  readonly cost: CostTotals;
  readonly batches: JobSummary['batches'] = [];
  chunks = 0;
  retryAttempts = 0;
  retriedRows = 0;
  lines = 0;
  /** Rows answered by synchronous calls (the deadline fallback): their outcomes, and their cost apart from the batches'. */
  readonly syncCounts: Record<ResultStatus, number> = { succeeded: 0, errored: 0, expired: 0, canceled: 0 };
  readonly syncCost: CostTotals;

  constructor(readonly prices: PriceTable) {
    this.cost = new CostTotals(prices);
    this.syncCost = new CostTotals(prices);
  }

  /** Counts a row; `usage` (a priced model's or an unknown one's) goes into the totals, `unpriced` says why it has no cost. */
  add(row: ResultRow, usage?: { usage: Usage; model: string }, unpriced?: UnpricedReason): ResultRow {
    this.lines += 1;
    this.counts[row.status] += 1;
    if (row.error) this.errorsByType.set(row.error.type, (this.errorsByType.get(row.error.type) ?? 0) + 1);
    if (row.synchronous) this.syncCounts[row.status] += 1;
    if (usage) (row.synchronous ? this.syncCost : this.cost).add(usage.usage, usage.model);
    if (unpriced) this.unpricedRows.set(unpriced, (this.unpricedRows.get(unpriced) ?? 0) + 1);
    return row;
  }

  /** Adds another tally's rows and chunks (a chunk's, to the job's; chunks in order). */
  merge(other: Tally): this {
    this.lines += other.lines;
    for (const status of Object.keys(this.counts) as ResultStatus[]) this.counts[status] += other.counts[status];
    for (const [type, n] of other.errorsByType) this.errorsByType.set(type, (this.errorsByType.get(type) ?? 0) + n);
    for (const [reason, n] of other.unpricedRows) this.unpricedRows.set(reason, (this.unpricedRows.get(reason) ?? 0) + n);
    this.cost.merge(other.cost);
    for (const status of Object.keys(this.syncCounts) as ResultStatus[]) this.syncCounts[status] += other.syncCounts[status];
    this.syncCost.merge(other.syncCost);
    this.batches.push(...other.batches);
    this.chunks += other.chunks;
    this.retryAttempts += other.retryAttempts;
    this.retriedRows += other.retriedRows;
    return this;
  }

  toJSON(): TallyJson {
    return {
      lines: this.lines,
      counts: { ...this.counts },
      errorsByType: Object.fromEntries(this.errorsByType),
      unpricedRows: Object.fromEntries(this.unpricedRows),
      cost: this.cost.toJSON(),
      batches: this.batches,
      chunks: this.chunks,
      retryAttempts: this.retryAttempts,
      retriedRows: this.retriedRows,
      ...(this.syncRows > 0 ? { synchronous: { counts: { ...this.syncCounts }, cost: this.syncCost.toJSON() } } : {}),
    };
  }

  /** Rows answered by synchronous calls. */
  get syncRows(): number {
    return Object.values(this.syncCounts).reduce((a, b) => a + b, 0);
  }

  static fromJSON(json: TallyJson, prices: PriceTable): Tally {
    const tally = new Tally(prices);
    tally.lines = json.lines;
    Object.assign(tally.counts, json.counts);
    for (const [type, n] of Object.entries(json.errorsByType)) tally.errorsByType.set(type, n);
    for (const [reason, n] of Object.entries(json.unpricedRows)) tally.unpricedRows.set(reason as UnpricedReason, n);
    tally.cost.merge(CostTotals.fromJSON(json.cost, prices));
    tally.batches.push(...json.batches);
    tally.chunks = json.chunks;
    tally.retryAttempts = json.retryAttempts;
    tally.retriedRows = json.retriedRows;
    if (json.synchronous) {
      Object.assign(tally.syncCounts, json.synchronous.counts);
      tally.syncCost.merge(CostTotals.fromJSON(json.synchronous.cost, prices));
    }
    return tally;
  }

  chunk(chunk: ChunkItem): void {
    this.chunks += 1;
    for (const attempt of chunk.attempts) {
      if (attempt.batchId) this.batches.push({ chunk: chunk.chunk, attempt: attempt.attempt, batchId: attempt.batchId, counts: attempt.counts ?? null });
      // The deadline's synchronous attempt is no batch retry: its rows are in `synchronous`.
      if (attempt.attempt > 1 && !attempt.sync) this.retryAttempts += 1;
      if (!attempt.straggled) this.retriedRows += attempt.retryRows ?? 0;
    }
  }

  synchronousSummary(job: JobItem): SynchronousSummary {
    return synchronousOf(this.syncCounts, this.syncCost.toJSON(), job.deadline?.at ?? null);
  }

  summary(job: JobItem, status: JobStatus, endedAt: string): JobSummary {
    const cost = this.cost.toJSON();
    const tokens = cost.tokens;
    // fromEntries: a model id is the API's text, and `__proto__` must stay an ordinary key.
    const byModel: JobSummary['cost']['byModel'] = Object.fromEntries(
      Object.entries(cost.models).map(([model, entry]) => [
        model,
        { requests: entry.requests, batchUsd: entry.usd?.totalUsd ?? null, standardUsd: entry.usd?.standardTotalUsd ?? null },
      ]),
    );
    return {
      jobId: job.jobId,
      input: { bucket: job.bucket, key: job.key },
      status,
      validationMode: job.validationMode,
      counts: { total: job.totalRows ?? 0, ...this.counts, invalid: job.invalidRows ?? 0 },
      errorsByType: Object.fromEntries([...this.errorsByType].sort(([a], [b]) => a.localeCompare(b))),
      tokens: {
        input: tokens.input_tokens,
        output: tokens.output_tokens,
        cache_creation_input: tokens.cache_creation_input_tokens,
        cache_read_input: tokens.cache_read_input_tokens,
      },
      cost: {
        batchUsd: cost.totalUsd,
        standardUsd: cost.standardTotalUsd,
        savedUsd: cost.discountUsd,
        byModel,
        unpricedModels: cost.unpricedModels,
        ...(this.unpricedRows.size > 0 ? { unpricedRows: Object.fromEntries([...this.unpricedRows].sort(([a], [b]) => a.localeCompare(b))) } : {}),
      },
      chunks: this.chunks,
      batches: this.batches,
      retries: { attempts: this.retryAttempts, rows: this.retriedRows },
      ...(this.syncRows > 0 ? { synchronous: this.synchronousSummary(job) } : {}),
      timings: {
        createdAt: job.createdAt,
        endedAt,
        durationSeconds: Math.max(0, Math.round((Date.parse(endedAt) - Date.parse(job.createdAt)) / 1000)),
      },
    };
  }
}

/** summary.json's `synchronous`, from a tally's synchronous rows. */
function synchronousOf(counts: Record<ResultStatus, number>, cost: CostTotalsJson, deadline: string | null): SynchronousSummary {
  return {
    deadline,
    rows: Object.values(counts).reduce((a, b) => a + b, 0),
    counts: { ...counts },
    tokens: {
      input: cost.tokens.input_tokens,
      output: cost.tokens.output_tokens,
      cache_creation_input: cost.tokens.cache_creation_input_tokens,
      cache_read_input: cost.tokens.cache_read_input_tokens,
    },
    costUsd: cost.standardTotalUsd,
    atBatchRatesUsd: cost.totalUsd,
    premiumUsd: cost.discountUsd,
  };
}

/** A Tally as JSON (kept with a chunk's ordered rows). */
export interface TallyJson {
  lines: number;
  counts: Record<ResultStatus, number>;
  errorsByType: Record<string, number>;
  unpricedRows: Record<string, number>;
  cost: CostTotalsJson;
  batches: JobSummary['batches'];
  chunks: number;
  retryAttempts: number;
  retriedRows: number;
  /** Rows answered synchronously (the deadline fallback): their outcomes and cost. */
  synchronous?: { counts: Record<ResultStatus, number>; cost: CostTotalsJson };
}
