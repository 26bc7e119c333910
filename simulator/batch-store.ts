/**
 * The batches and their lifecycle. Nothing runs on timers: a batch's state is a function of the
 * simulated clock, and `observe(now)` settles every batch whose end has come (in the order they
 * ended, so the prompt cache sees them in that order) before any request is answered.
 */
import type { ListPage, MessageBatch, ProcessingStatus } from '../shared/anthropic/types';
import { DAY_MS, SECOND_MS, rfc3339, toMicros } from './clock';
import { ApiError } from './envelopes';
import { randomId } from './ids';
import type { BatchFaults } from './options';
import { planOutcomes, settle, type Plan, type Settlement } from './outcomes';
import { seededRandom } from './prng';
import { PromptCache, type CacheUsage } from './prompt-cache';
import type { RequestDigest } from './request-digest';

const EXPIRES_AFTER_MS = DAY_MS;
/** Results stay downloadable for 29 days after created_at (not ended_at). */
const ARCHIVES_AFTER_MS = 29 * DAY_MS;
/** A canceled batch ends this long after the cancel (in-flight requests may still finish meanwhile). */
export const CANCEL_GRACE_MS = 5 * SECOND_MS;

export interface BatchRecord {
  id: string;
  /** 1 = the first batch this simulator created. */
  sequence: number;
  createdAt: number;
  expiresAt: number;
  archivesAt: number;
  faults: BatchFaults;
  requestCount: number;
  /** Dropped once the batch is archived: its results can no longer be read. */
  requests: RequestDigest[] | null;
  /** Dropped once the batch is settled. */
  plan: Plan | null;
  /** When the batch ends if nobody cancels it. */
  naturalEndAt: number;
  cancelAt: number | null;
  settlement: Settlement | null;
  /** Retrieve and results answer 404 until then (a fault: eventual consistency after create). */
  hiddenUntil: number;
  /** How many more list calls leave the batch out (a fault: a list that lags behind create). */
  listMissesLeft: number;
  /** How many more results requests get cut part-way. */
  resultsCutsLeft: number;
  /** Size of the results file, computed the first time a Range needs it. */
  resultsBytes: number | null;
}

export interface StoreSettings {
  seed: number;
  processingSeconds: number;
}

export interface ListQuery {
  limit: number;
  afterId: string | null;
  beforeId: string | null;
}

export class BatchStore {
  private readonly batches = new Map<string, BatchRecord>();
  private readonly unsettled = new Set<BatchRecord>();
  private readonly live = new Set<BatchRecord>();
  private readonly cache = new PromptCache();
  private sequence = 0;

  constructor(private readonly settings: StoreSettings) {}

  create(requests: RequestDigest[], now: number, faults: (sequence: number) => BatchFaults): BatchRecord {
    this.sequence += 1;
    const sequence = this.sequence;
    const batchFaults = faults(sequence);
    const createdAt = toMicros(now);
    const processingMs = (batchFaults.processingSeconds ?? this.settings.processingSeconds) * SECOND_MS;
    const random = seededRandom(this.settings.seed, 'batch', sequence, 'outcomes');
    const plan = planOutcomes(requests, batchFaults, processingMs, EXPIRES_AFTER_MS, random);
    const expiresAt = createdAt + EXPIRES_AFTER_MS;
    const batch: BatchRecord = {
      id: randomId('msgbatch_'),
      sequence,
      createdAt,
      expiresAt,
      archivesAt: createdAt + ARCHIVES_AFTER_MS,
      faults: batchFaults,
      requestCount: requests.length,
      requests,
      plan,
      naturalEndAt: plan.runsToExpiry ? expiresAt : createdAt + processingMs,
      cancelAt: null,
      settlement: null,
      hiddenUntil: createdAt + (batchFaults.notFoundForSeconds ?? 0) * SECOND_MS,
      listMissesLeft: batchFaults.hiddenFromListCalls ?? 0,
      resultsCutsLeft: batchFaults.cutResultsAfterBytes === undefined ? 0 : (batchFaults.cutResultsTimes ?? 1),
      resultsBytes: null,
    };
    this.batches.set(batch.id, batch);
    this.unsettled.add(batch);
    this.live.add(batch);
    return batch;
  }

  /** Brings every batch up to `now`: settles those that have ended, archives those past retention. */
  observe(now: number): void {
    const due = [...this.unsettled].filter((batch) => endAt(batch) <= now);
    due.sort((a, b) => endAt(a) - endAt(b) || a.sequence - b.sequence);
    for (const batch of due) {
      batch.settlement = settle(batch.requests!, batch.plan!, batch.createdAt, endAt(batch), batch.cancelAt !== null, this.cache);
      batch.plan = null;
      this.unsettled.delete(batch);
    }
    for (const batch of this.live) {
      if (batch.archivesAt <= now && batch.settlement !== null) {
        batch.requests = null;
        batch.settlement = { ...batch.settlement, outcomes: [], errorTypes: [], cacheUsage: [] };
        this.live.delete(batch);
      }
    }
  }

  /** The batch, or 404. `hidden` applies the notFoundForSeconds fault (retrieve and results only). */
  get(id: string, now: number, options: { hidden?: boolean } = {}): BatchRecord {
    const batch = this.batches.get(id);
    if (batch === undefined || (options.hidden === true && now < batch.hiddenUntil)) {
      throw new ApiError(404, `No message batch with id ${JSON.stringify(id)}`);
    }
    return batch;
  }

  /** Starts canceling an unfinished batch; a canceling or ended batch is returned unchanged. */
  cancel(batch: BatchRecord, now: number): void {
    if (batch.settlement !== null || batch.cancelAt !== null) return;
    batch.cancelAt = toMicros(now);
  }

  delete(batch: BatchRecord): void {
    if (batch.settlement === null) {
      throw new ApiError(400, `Message batch ${batch.id} has not ended and cannot be deleted; cancel it and wait for it to end first`);
    }
    this.batches.delete(batch.id);
    this.live.delete(batch);
  }

  /** A synchronous Messages call's use of the prompt cache: it starts and completes at `now`. */
  useCache(request: RequestDigest, now: number): CacheUsage {
    return this.cache.use(request, { startedAt: now, completedAt: now });
  }

  /** Ends every batch's list lag (the fault `hiddenFromListCalls`). */
  catchUpList(): void {
    for (const batch of this.batches.values()) batch.listMissesLeft = 0;
  }

  /**
   * docs/api-reference.md §1.1: newest first; `after_id` pages towards older batches, `before_id`
   * towards newer ones (still listed newest first). Both cursors at once is a 400; a cursor naming
   * no batch (never created, or deleted) is a 404, since the page it anchors cannot be found.
   */
  list(query: ListQuery, now: number, origin: string): ListPage {
    if (query.afterId !== null && query.beforeId !== null) {
      throw new ApiError(400, 'before_id and after_id cannot both be given');
    }
    // A batch the list still lags behind on is left out of this call (and counted), as if not yet indexed.
    const newestFirst = [...this.batches.values()].reverse().filter((batch) => batch.listMissesLeft <= 0 || batch.listMissesLeft-- <= 0);
    const cursor = query.afterId ?? query.beforeId;
    let start = 0;
    let end = Math.min(query.limit, newestFirst.length);
    let hasMore = end < newestFirst.length;
    if (cursor !== null) {
      const at = newestFirst.findIndex((batch) => batch.id === cursor);
      if (at === -1) throw new ApiError(404, `No message batch with id ${JSON.stringify(cursor)} to page from`);
      if (query.afterId !== null) {
        start = at + 1;
        end = Math.min(start + query.limit, newestFirst.length);
        hasMore = end < newestFirst.length;
      } else {
        end = at;
        start = Math.max(0, at - query.limit);
        hasMore = start > 0;
      }
    }
    const data = newestFirst.slice(start, end).map((batch) => toWire(batch, now, origin));
    return { data, has_more: hasMore, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
  }
}

export function endAt(batch: BatchRecord): number {
  return batch.cancelAt === null ? batch.naturalEndAt : Math.min(batch.naturalEndAt, batch.cancelAt + CANCEL_GRACE_MS);
}

function statusOf(batch: BatchRecord): ProcessingStatus {
  if (batch.settlement !== null) return 'ended';
  return batch.cancelAt === null ? 'in_progress' : 'canceling';
}

export function resultsPath(batchId: string): string {
  return `/v1/messages/batches/${batchId}/results`;
}

/** The MessageBatch object, every key present (§2); `origin` makes results_url absolute on this server. */
export function toWire(batch: BatchRecord, now: number, origin: string): MessageBatch {
  const settlement = batch.settlement;
  return {
    id: batch.id,
    type: 'message_batch',
    processing_status: statusOf(batch),
    request_counts: settlement === null ? { processing: batch.requestCount, succeeded: 0, errored: 0, canceled: 0, expired: 0 } : { ...settlement.counts },
    ended_at: settlement === null ? null : rfc3339(settlement.endedAt),
    created_at: rfc3339(batch.createdAt),
    expires_at: rfc3339(batch.expiresAt),
    archived_at: now >= batch.archivesAt ? rfc3339(batch.archivesAt) : null,
    cancel_initiated_at: batch.cancelAt === null ? null : rfc3339(batch.cancelAt),
    results_url: settlement === null ? null : `${origin}${resultsPath(batch.id)}`,
  };
}
