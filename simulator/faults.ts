/**
 * Injected failures: HTTP errors answered instead of the real response (in order, by count or by
 * a seeded rate), and the per-batch faults a batch carries from its creation.
 */
import type { BatchFaults, Endpoint, HttpFault, SimulatorOptions } from './options';
import { ApiError } from './envelopes';
import { seededRandom, type Random } from './prng';

const DEFAULT_MESSAGES: Record<number, string> = {
  429: 'Number of requests has exceeded your rate limit',
  500: 'Internal server error',
  503: 'Service unavailable',
  504: 'Request timed out',
  529: 'Overloaded',
};

function hits(fault: HttpFault, endpoint: Endpoint): boolean {
  if (fault.endpoint === undefined) return true;
  return Array.isArray(fault.endpoint) ? fault.endpoint.includes(endpoint) : fault.endpoint === endpoint;
}

export class HttpFaults {
  private entries: Array<{ fault: HttpFault; left: number }> = [];
  private readonly random: Random;

  constructor(seed: number, faults: HttpFault[] = []) {
    this.random = seededRandom(seed, 'http-faults');
    this.set(faults);
  }

  /** Replaces the list; `times` counts start afresh. */
  set(faults: HttpFault[]): void {
    this.entries = faults.map((fault) => ({ fault, left: fault.times ?? 1 }));
  }

  /** The error to answer this call with, or null to answer normally. Consumes a `times` count. */
  next(endpoint: Endpoint): ApiError | null {
    for (const entry of this.entries) {
      if (!hits(entry.fault, endpoint)) continue;
      const fires = entry.fault.rate !== undefined ? this.random() < entry.fault.rate : entry.left > 0;
      if (!fires) continue;
      if (entry.fault.rate === undefined) entry.left -= 1;
      return toError(entry.fault);
    }
    return null;
  }
}

function toError(fault: HttpFault): ApiError {
  const headers: Record<string, string> = {};
  if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
  if (fault.retryAfterMs !== undefined) headers['retry-after-ms'] = String(fault.retryAfterMs);
  if (fault.shouldRetry !== undefined) headers['x-should-retry'] = String(fault.shouldRetry);
  const message = DEFAULT_MESSAGES[fault.status] ?? `Simulated HTTP ${fault.status}`;
  return new ApiError(fault.status, message, headers);
}

/** The faults batch `sequence` is created with: server-wide ones, overridden field by field by its own. */
export function batchFaultsFor(serverWide: BatchFaults | undefined, bySequence: SimulatorOptions['batchFaultsBySequence'], sequence: number): BatchFaults {
  return { ...serverWide, ...bySequence?.[sequence] };
}
