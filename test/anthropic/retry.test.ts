import { describe, expect, it } from 'vitest';
import {
  MAX_RETRY_AFTER_MS,
  RetryBudget,
  defaultBackoffMs,
  headerValue,
  isTransientNotFound,
  retryDelayMs,
  serverRetryDelayMs,
  shouldRetryResponse,
} from '../../shared/anthropic/retry';

const NOW = Date.parse('2026-11-24T12:00:00Z');

describe('shouldRetryResponse', () => {
  it.each([408, 409, 429, 500, 502, 503, 504, 529])('retries status %i', (status) => {
    expect(shouldRetryResponse(status, {})).toBe(true);
  });

  it.each([400, 401, 402, 403, 404, 413, 422])('does not retry status %i', (status) => {
    expect(shouldRetryResponse(status, {})).toBe(false);
  });

  it('lets x-should-retry override the status either way', () => {
    expect(shouldRetryResponse(500, { 'x-should-retry': 'false' })).toBe(false);
    expect(shouldRetryResponse(529, { 'x-should-retry': 'false' })).toBe(false);
    expect(shouldRetryResponse(400, { 'x-should-retry': 'true' })).toBe(true);
  });

  it('ignores an x-should-retry value other than true or false', () => {
    expect(shouldRetryResponse(400, { 'x-should-retry': 'yes' })).toBe(false);
    expect(shouldRetryResponse(500, { 'x-should-retry': '' })).toBe(true);
  });
});

describe('headerValue', () => {
  it('matches names case-insensitively and takes the first of repeated values', () => {
    expect(headerValue({ 'Retry-After': '3' }, 'retry-after')).toBe('3');
    expect(headerValue({ 'retry-after': ['4', '5'] }, 'Retry-After')).toBe('4');
    expect(headerValue({}, 'retry-after')).toBeUndefined();
    expect(headerValue(undefined, 'retry-after')).toBeUndefined();
  });
});

describe('defaultBackoffMs', () => {
  it('doubles from 0.5 s and caps at 8 s with no jitter when random is 0', () => {
    expect([0, 1, 2, 3, 4, 5, 10].map((n) => defaultBackoffMs(n, () => 0))).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('takes off at most a quarter as jitter', () => {
    expect(defaultBackoffMs(0, () => 0.999999)).toBeCloseTo(375, 3);
    expect(defaultBackoffMs(4, () => 0.5)).toBe(7000);
    for (let n = 0; n < 8; n += 1) {
      for (const r of [0, 0.1, 0.5, 0.9, 0.999]) {
        const ms = defaultBackoffMs(n, () => r);
        const base = Math.min(500 * 2 ** n, 8000);
        expect(ms).toBeGreaterThan(base * 0.75);
        expect(ms).toBeLessThanOrEqual(base);
      }
    }
  });
});

describe('serverRetryDelayMs', () => {
  it('prefers retry-after-ms over retry-after', () => {
    expect(serverRetryDelayMs({ 'retry-after-ms': '250.5', 'retry-after': '7' }, NOW)).toBe(250.5);
  });

  it('reads retry-after as (fractional) seconds', () => {
    expect(serverRetryDelayMs({ 'retry-after': '7' }, NOW)).toBe(7000);
    expect(serverRetryDelayMs({ 'retry-after': '1.5' }, NOW)).toBe(1500);
  });

  it('reads retry-after as an HTTP date relative to now', () => {
    const at = new Date(NOW + 12_000).toUTCString();
    expect(serverRetryDelayMs({ 'retry-after': at }, NOW)).toBe(12_000);
  });

  it('falls back to retry-after when retry-after-ms is unparseable', () => {
    expect(serverRetryDelayMs({ 'retry-after-ms': 'soon', 'retry-after': '2' }, NOW)).toBe(2000);
  });

  it('rejects zero, negative, past and over-cap delays', () => {
    expect(serverRetryDelayMs({ 'retry-after': '0' }, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after-ms': '-5' }, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after': new Date(NOW - 5000).toUTCString() }, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after': '61' }, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after-ms': String(MAX_RETRY_AFTER_MS + 1) }, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after': '60' }, NOW)).toBe(60_000);
  });

  it('returns undefined without headers or with garbage', () => {
    expect(serverRetryDelayMs(undefined, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after': 'whenever' }, NOW)).toBeUndefined();
    expect(serverRetryDelayMs({ 'retry-after': '' }, NOW)).toBeUndefined();
  });
});

describe('retryDelayMs', () => {
  it('uses the server delay when valid, else the default backoff for the retry count', () => {
    const random = () => 0;
    expect(retryDelayMs({ retriesMade: 3, headers: { 'retry-after': '2' }, random, now: NOW })).toBe(2000);
    expect(retryDelayMs({ retriesMade: 3, headers: { 'retry-after': '120' }, random, now: NOW })).toBe(4000);
    expect(retryDelayMs({ retriesMade: 1, random, now: NOW })).toBe(1000);
  });
});

describe('isTransientNotFound', () => {
  it('is true only within the grace window after a known creation time', () => {
    expect(isTransientNotFound(NOW - 29_999, NOW, 30_000)).toBe(true);
    expect(isTransientNotFound(NOW - 30_000, NOW, 30_000)).toBe(false);
    expect(isTransientNotFound(undefined, NOW, 30_000)).toBe(false);
    expect(isTransientNotFound(Number.NaN, NOW, 30_000)).toBe(false);
    expect(isTransientNotFound(NOW, NOW, 0)).toBe(false);
  });
});

describe('RetryBudget', () => {
  it('hands out exactly max retries and counts them', () => {
    const budget = new RetryBudget(2);
    expect([budget.take(), budget.take(), budget.take()]).toEqual([true, true, false]);
    expect(budget.retriesMade).toBe(2);
    expect(new RetryBudget(0).take()).toBe(false);
  });
});
