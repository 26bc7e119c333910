/**
 * The retry policy of the Batches client, as the official SDKs apply it (docs/api-reference.md §5.4).
 * Pure: no I/O, no clock or randomness of its own, so every rule is unit-testable.
 */

export type HeaderBag = Record<string, string | string[] | undefined>;

/** Statuses the SDKs retry when the server does not say otherwise. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 409, 429]);

/** Default backoff: 0.5 s doubled per retry already made, capped at 8 s, minus up to 25 % jitter. */
export const INITIAL_RETRY_DELAY_MS = 500;
export const MAX_RETRY_DELAY_MS = 8_000;

/**
 * A server-given delay (`retry-after-ms` / `retry-after`) is honoured only in (0, 60 s], as the
 * Python SDK does: a longer wait belongs to the workflow (a Step Functions retry costs nothing while
 * it waits), not to a Lambda that is billed while it sleeps and may time out.
 */
export const MAX_RETRY_AFTER_MS = 60_000;

/** One header's value, case-insensitively; the first one when a header repeats. */
export function headerValue(headers: HeaderBag | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

/** Whether an HTTP error response is worth another attempt: `x-should-retry` first, then the status. */
export function shouldRetryResponse(status: number, headers?: HeaderBag): boolean {
  const explicit = headerValue(headers, 'x-should-retry');
  if (explicit === 'true') return true;
  if (explicit === 'false') return false;
  return RETRYABLE_STATUSES.has(status) || status >= 500;
}

/** `min(0.5 · 2^n, 8) s × (1 − 0.25·random)`, n = retries already made. */
export function defaultBackoffMs(retriesMade: number, random: () => number): number {
  const base = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** Math.max(0, retriesMade), MAX_RETRY_DELAY_MS);
  return base * (1 - 0.25 * random());
}

/**
 * The delay the server asked for, in ms: `retry-after-ms` (float ms) first, then `retry-after`
 * (float seconds or an HTTP date). Undefined when absent, unparseable or not in (0, MAX_RETRY_AFTER_MS].
 */
export function serverRetryDelayMs(headers: HeaderBag | undefined, now: number): number | undefined {
  let ms: number | undefined;
  const afterMs = headerValue(headers, 'retry-after-ms');
  if (afterMs !== undefined && afterMs.trim() !== '') {
    const n = Number(afterMs);
    if (Number.isFinite(n)) ms = n;
  }
  if (ms === undefined) {
    const after = headerValue(headers, 'retry-after');
    if (after !== undefined && after.trim() !== '') {
      const seconds = Number(after);
      if (Number.isFinite(seconds)) {
        ms = seconds * 1000;
      } else {
        const at = Date.parse(after);
        if (Number.isFinite(at)) ms = at - now;
      }
    }
  }
  if (ms === undefined || !(ms > 0) || ms > MAX_RETRY_AFTER_MS) return undefined;
  return ms;
}

export interface DelayInputs {
  /** Retries already made in this call (0 before the first retry). */
  retriesMade: number;
  /** Headers of the failed response; undefined after a connection error or timeout. */
  headers?: HeaderBag;
  random: () => number;
  /** Epoch ms, for `retry-after` given as an HTTP date. */
  now: number;
}

/** How long to wait before the next attempt. */
export function retryDelayMs(inputs: DelayInputs): number {
  return serverRetryDelayMs(inputs.headers, inputs.now) ?? defaultBackoffMs(inputs.retriesMade, inputs.random);
}

/**
 * The transient 404 seen seconds after create (docs/api-reference.md §6): a 404 for a batch created
 * less than `graceMs` ago is retried like a 5xx. `createdAt` undefined = unknown, never retried.
 */
export function isTransientNotFound(createdAt: number | undefined, now: number, graceMs: number): boolean {
  if (createdAt === undefined || !Number.isFinite(createdAt) || graceMs <= 0) return false;
  return now - createdAt < graceMs;
}

/** Retries left in one call. Results streams spend it on both the first request and every resume. */
export class RetryBudget {
  private used = 0;
  constructor(readonly max: number) {}

  get retriesMade(): number {
    return this.used;
  }

  /** Takes one retry if any is left. */
  take(): boolean {
    if (this.used >= this.max) return false;
    this.used += 1;
    return true;
  }
}
