/**
 * The simulated clock: runs `timeScale` times faster than real time and can be pushed forward.
 * Batch state is derived from it whenever a batch is observed, so no timers run.
 */
import { performance } from 'node:perf_hooks';

export class SimulatedClock {
  private readonly realStart = performance.now();
  private readonly simulatedStart: number;
  private advancedMs = 0;

  constructor(
    private readonly timeScale: number,
    start: number = Date.now(),
  ) {
    if (!(timeScale > 0) || !Number.isFinite(timeScale)) {
      throw new RangeError(`timeScale must be a positive number, got ${timeScale}`);
    }
    this.simulatedStart = start;
  }

  /** Simulated now, epoch ms (fractional: timestamps carry microseconds). */
  now(): number {
    return this.simulatedStart + (performance.now() - this.realStart) * this.timeScale + this.advancedMs;
  }

  advance(seconds: number): void {
    if (!(seconds >= 0) || !Number.isFinite(seconds)) {
      throw new RangeError(`advance() takes a non-negative number of seconds, got ${seconds}`);
    }
    this.advancedMs += seconds * 1000;
  }
}

export const SECOND_MS = 1000;
export const HOUR_MS = 3600 * SECOND_MS;
export const DAY_MS = 24 * HOUR_MS;

/** Truncates to whole microseconds, the precision the API's timestamps carry. */
export function toMicros(ms: number): number {
  return Math.floor(ms * 1000) / 1000;
}

/** RFC 3339 in UTC with microseconds, as the API writes them: `2024-09-24T18:37:24.100435Z`. */
export function rfc3339(ms: number): string {
  const micros = Math.floor(ms * 1000);
  const wholeMs = Math.floor(micros / 1000);
  const extra = String(micros - wholeMs * 1000).padStart(3, '0');
  return `${new Date(wholeMs).toISOString().slice(0, -1)}${extra}Z`;
}

/** The HTTP `Date` header format (RFC 1123 / IMF-fixdate). */
export function httpDate(ms: number): string {
  return new Date(Math.floor(ms)).toUTCString();
}
