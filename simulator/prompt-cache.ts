/**
 * The simulator's prompt cache (docs/api-reference.md §10.4), per model + prefix hash, on the
 * simulated clock:
 *
 * - A request reads the longest marked prefix whose entry is live when it starts: written by a
 *   request (batch or Messages call) that had finished by then, and not yet expired. It writes the
 *   rest, up to its last breakpoint.
 * - An entry lives for its TTL (5 minutes, or 1 hour with ttl '1h') after it was last written or
 *   read: every hit refreshes it.
 * - A batch request starts REQUEST_SECONDS before it completes, so the requests of a batch that
 *   start together all miss and all write (batches run requests concurrently; hits are
 *   best-effort); only those that start after a writer finished read. A Messages call before the
 *   batch (priming) makes every request of the batch read, if the TTL still holds.
 * - Prefixes shorter than the model's minimum never get here (request-digest.ts drops them).
 */
import { HOUR_MS, SECOND_MS } from './clock';
import type { CacheTtl, RequestDigest } from './request-digest';

export interface CacheUsage {
  read: number;
  created5m: number;
  created1h: number;
}

export const NO_CACHE: CacheUsage = { read: 0, created5m: 0, created1h: 0 };

/** How long one batch request runs, start to completion, in simulated time. */
export const REQUEST_SECONDS = 10;

const TTL_MS: Record<CacheTtl, number> = { '5m': 5 * 60 * SECOND_MS, '1h': HOUR_MS };

interface Entry {
  /** When the entry could first be read: its writer's completion (epoch ms, simulated). */
  readyAt: number;
  /** When it stops being readable unless refreshed. */
  expiresAt: number;
}

/** When a request ran: it starts reading the cache at `startedAt` and its writes are ready at `completedAt`. */
export interface RequestTiming {
  startedAt: number;
  completedAt: number;
}

export class PromptCache {
  private readonly entries = new Map<string, Entry>();

  /**
   * Reads the longest prefix live at `timing.startedAt` and writes the rest up to the last
   * breakpoint, each segment billed at the TTL of the breakpoint that ends it — the API's accounting.
   */
  use(request: RequestDigest, timing: RequestTiming): CacheUsage {
    if (request.breakpoints.length === 0) return NO_CACHE;
    const { startedAt, completedAt } = timing;
    let read = 0;
    for (const point of request.breakpoints) {
      const entry = this.entries.get(point.key);
      if (entry !== undefined && entry.readyAt <= startedAt && startedAt < entry.expiresAt) read = Math.max(read, point.tokens);
    }
    const usage: CacheUsage = { read, created5m: 0, created1h: 0 };
    let covered = read;
    for (const point of request.breakpoints) {
      const ttl = TTL_MS[point.ttl];
      const entry = this.entries.get(point.key);
      if (point.tokens > covered) {
        if (point.ttl === '1h') usage.created1h += point.tokens - covered;
        else usage.created5m += point.tokens - covered;
        covered = point.tokens;
      }
      if (entry === undefined || entry.expiresAt <= startedAt) {
        this.entries.set(point.key, { readyAt: completedAt, expiresAt: completedAt + ttl });
      } else {
        // Live (read, or written meanwhile by a request that started earlier): refreshed.
        entry.readyAt = Math.min(entry.readyAt, completedAt);
        entry.expiresAt = Math.max(entry.expiresAt, completedAt + ttl);
      }
    }
    return usage;
  }
}
