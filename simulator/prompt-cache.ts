/**
 * The simulator's prompt cache: the first request that reaches a cached prefix (per model + prefix
 * hash) writes it, later ones read it. Entries never expire; the simulator does not model TTLs or
 * the API's minimum cacheable length.
 */
import type { RequestDigest } from './request-digest';

export interface CacheUsage {
  read: number;
  created5m: number;
  created1h: number;
}

export const NO_CACHE: CacheUsage = { read: 0, created5m: 0, created1h: 0 };

export class PromptCache {
  private readonly written = new Set<string>();

  /**
   * Reads the longest prefix already written and writes the rest up to the last breakpoint, each
   * segment billed at the TTL of the breakpoint that ends it — the API's accounting.
   */
  use(request: RequestDigest): CacheUsage {
    if (request.breakpoints.length === 0) return NO_CACHE;
    let read = 0;
    for (const point of request.breakpoints) {
      if (this.written.has(point.key)) read = Math.max(read, point.tokens);
    }
    const usage: CacheUsage = { read, created5m: 0, created1h: 0 };
    let covered = read;
    for (const point of request.breakpoints) {
      if (point.tokens > covered) {
        if (point.ttl === '1h') usage.created1h += point.tokens - covered;
        else usage.created5m += point.tokens - covered;
        covered = point.tokens;
      }
      this.written.add(point.key);
    }
    return usage;
  }
}
