/**
 * How a batch's requests turn out. At create, each request draws (from the batch's seeded stream)
 * what it will become and when it completes within the processing time. When the batch ends, a
 * request that completed by then gets its planned outcome; one that did not is canceled (if the
 * batch was canceled) or expired (if the batch ran into its 24 h limit).
 */
import type { RequestCounts } from '../shared/anthropic/types';
import type { BatchFaults } from './options';
import { SECOND_MS } from './clock';
import { NO_CACHE, REQUEST_SECONDS, type CacheUsage, type PromptCache } from './prompt-cache';
import type { Random } from './prng';
import type { RequestDigest } from './request-digest';

export type Outcome = 'succeeded' | 'errored' | 'canceled' | 'expired';

export interface Plan {
  /** Planned error type per request (null: planned to succeed). */
  errorTypes: Array<string | null>;
  /** When each request completes, in ms after create; Infinity = never (it will expire). */
  completesAfterMs: Float64Array;
  /** True when some request can never complete, so the batch runs until it expires. */
  runsToExpiry: boolean;
}

export function planOutcomes(requests: readonly RequestDigest[], faults: BatchFaults, processingMs: number, expiresAfterMs: number, random: Random): Plan {
  const errorRates = Object.entries(faults.errored ?? {}).filter(([, rate]) => rate !== undefined && rate > 0) as Array<[string, number]>;
  const expiredRate = faults.expired ?? 0;
  const errorTypes: Array<string | null> = new Array(requests.length).fill(null);
  const completesAfterMs = new Float64Array(requests.length);
  let runsToExpiry = faults.stall === true || processingMs >= expiresAfterMs;
  requests.forEach((request, i) => {
    // Two draws per request whatever the outcome, so a change of rates never reshuffles the order or timing.
    const pick = random();
    const at = random();
    if (request.invalid !== null) {
      // Params and model are checked on arrival: such requests are done at once and are never canceled or expired.
      errorTypes[i] = request.invalid.type;
      completesAfterMs[i] = 0;
      return;
    }
    let threshold = 0;
    let expires = faults.stall === true;
    for (const [type, rate] of errorRates) {
      threshold += rate;
      if (pick < threshold) {
        errorTypes[i] = type;
        break;
      }
    }
    if (errorTypes[i] === null && pick < threshold + expiredRate) expires = true;
    if (expires) runsToExpiry = true;
    completesAfterMs[i] = expires ? Number.POSITIVE_INFINITY : at * processingMs;
  });
  return { errorTypes, completesAfterMs, runsToExpiry };
}

export interface Settlement {
  endedAt: number;
  counts: RequestCounts;
  outcomes: Outcome[];
  /** Error type of each errored request. */
  errorTypes: Array<string | null>;
  /** Prompt-cache usage of each succeeded request, decided once so results never change between reads. */
  cacheUsage: CacheUsage[];
}

/**
 * Decides every request's outcome at the moment the batch ends. The prompt cache sees the succeeded
 * requests in the order they completed, each at its own simulated time (prompt-cache.ts).
 */
export function settle(requests: readonly RequestDigest[], plan: Plan, createdAt: number, endedAt: number, canceled: boolean, cache: PromptCache): Settlement {
  const counts: RequestCounts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
  const outcomes: Outcome[] = new Array(requests.length);
  const cacheUsage: CacheUsage[] = new Array(requests.length).fill(NO_CACHE);
  const cached: number[] = [];
  requests.forEach((request, i) => {
    let outcome: Outcome;
    if (createdAt + plan.completesAfterMs[i]! <= endedAt) {
      outcome = plan.errorTypes[i] === null ? 'succeeded' : 'errored';
    } else {
      outcome = canceled ? 'canceled' : 'expired';
    }
    outcomes[i] = outcome;
    counts[outcome] += 1;
    if (outcome === 'succeeded' && request.breakpoints.length > 0) cached.push(i);
  });
  cached.sort((a, b) => plan.completesAfterMs[a]! - plan.completesAfterMs[b]! || a - b);
  for (const i of cached) {
    const completedAt = createdAt + plan.completesAfterMs[i]!;
    cacheUsage[i] = cache.use(requests[i]!, { startedAt: Math.max(createdAt, completedAt - REQUEST_SECONDS * SECOND_MS), completedAt });
  }
  return { endedAt, counts, outcomes, errorTypes: plan.errorTypes, cacheUsage };
}
