import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { bar, LONG_WORK_ROWS, nextTryText, ProgressView, statusLine } from '../../cli/progress';
import { RetryClock } from '../../cli/retry-delay';
import type { LiveProgress } from '../../local/progress';

const base: LiveProgress = {
  jobId: 'j',
  status: 'running',
  chunks: undefined,
  chunksDone: 0,
  chunksFailed: 0,
  batches: 0,
  polls: 0,
  retries: 0,
  attemptOutcomes: { succeeded: 0, errored: 0, expired: 0, canceled: 0 },
  running: [],
  batchesEnded: 0,
  rowsProcessed: 0,
  rowsSent: 0,
};

describe('the progress line of long work', () => {
  it('while validating: a bar of the input read so far, valid rows, rows a second, and an ETA', () => {
    const validating: LiveProgress = { ...base, status: 'registered', validating: { rows: 250_000, bytes: 30_000_000, inputBytes: 120_000_000 } };
    expect(statusLine(validating, 5_000, { fraction: 0.25, rowsPerSecond: 50_000, etaMs: 15_000, bar: true })).toBe(
      `5.0s · ${bar(0.25)} · validating: 250,000 rows, 50,000 rows/s · ETA 15.0s`,
    );
    expect(bar(0.25)).toBe('[███░░░░░░░░░] 25%');
  });

  it('while batches run: submitted and ended, how long the oldest have been running, and an ETA', () => {
    const now = Date.parse('2026-01-01T01:00:00.000Z');
    const running: LiveProgress = {
      ...base,
      validRows: 400_000,
      invalidRows: 0,
      chunks: 4,
      chunksDone: 1,
      batches: 5,
      retries: 1,
      batchesEnded: 1,
      rowsSent: 500_000,
      rowsProcessed: 150_000,
      running: [
        { chunk: 3, attempt: 1, batchId: 'b3', since: '2026-01-01T00:59:00.000Z' },
        { chunk: 1, attempt: 1, batchId: 'b1', since: '2026-01-01T00:50:00.000Z' },
        { chunk: 2, attempt: 1, batchId: 'b2', since: '2026-01-01T00:55:00.000Z' },
        { chunk: 0, attempt: 2, batchId: 'b0', since: '2026-01-01T00:30:00.000Z' },
      ],
    };
    expect(statusLine(running, 3_600_000, { fraction: 0.3, etaMs: 1_800_000, now })).toBe(
      '1h00m · 30% · 400,000 valid · chunks 1/4 · 5 batches submitted, 1 ended (1 retry) · running: chunk 0 (attempt 2) 30m00s, chunk 1 10m00s, chunk 2 5m00s, +1 more · 0 ok, 0 errored, 0 expired · ETA 30m00s',
    );
  });

  it('counts rows a second and the time left from the snapshots of the phase under way', () => {
    let written = '';
    const out = new Writable({
      write(chunk, _encoding, done) {
        written = String(chunk);
        done();
      },
    });
    const start = Date.parse('2026-01-01T00:00:00.000Z');
    const view = new ProgressView(out, true, start);
    const validating = (rows: number, bytes: number): LiveProgress => ({ ...base, status: 'registered', validating: { rows, bytes, inputBytes: 100_000_000 } });
    view.update(validating(10_000, 10_000_000), start + 1_000);
    // One snapshot gives no pace yet.
    expect(written).toContain(`${bar(0.1)} · validating: 10,000 rows`);
    expect(written).not.toMatch(/rows\/s|ETA/);
    view.update(validating(110_000, 30_000_000), start + 3_000);
    // 100,000 rows and 20 MB in 2 s: 50,000 rows/s, and 70 MB left at 10 MB/s.
    expect(written).toContain(`3.0s · ${bar(0.3)} · validating: 110,000 rows, 50,000 rows/s · ETA 7.0s`);
  });

  it('not on a terminal: a plain progress line now and then for 100,000 rows and more, none for less, never a carriage return or an escape', () => {
    let written = '';
    const out = new Writable({
      write(chunk, _encoding, done) {
        written += String(chunk);
        done();
      },
    });
    const view = new ProgressView(out, false, Date.now());
    view.update({ ...base, validRows: LONG_WORK_ROWS - 1, invalidRows: 0 });
    expect(written).toBe('');
    view.update({ ...base, validRows: LONG_WORK_ROWS, invalidRows: 0, chunks: 1, batches: 1, rowsSent: LONG_WORK_ROWS });
    expect(written).toMatch(/^\[ *[\d.]+s\] progress: [\d.]+s · 0% · 100,000 valid · chunks 0\/1 · 1 batch submitted, 0 ended · 0 ok, 0 errored, 0 expired\n$/);
    // At most one line every PLAIN_PROGRESS_EVERY_MS.
    view.update({ ...base, validRows: LONG_WORK_ROWS, invalidRows: 0 });
    expect(written.split('\n')).toHaveLength(2);
    expect(written.includes('\r') || written.includes('\u001b')).toBe(false);
  });
});

describe('when a retried step tries next', () => {
  /** A definition as the CDK app writes it: a Map whose SubmitChunk has two retriers. */
  const definition = {
    States: {
      Prepare: { Type: 'Task', Retry: [{ ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 2, MaxAttempts: 2, BackoffRate: 2 }] },
      Chunks: {
        Type: 'Map',
        ItemProcessor: {
          States: {
            SubmitChunk: {
              Type: 'Task',
              Retry: [
                { ErrorEquals: ['CreateSlotBusy'], IntervalSeconds: 30, MaxAttempts: 3, BackoffRate: 1, JitterStrategy: 'NONE' as const },
                {
                  ErrorEquals: ['CreateRefused'],
                  IntervalSeconds: 60,
                  MaxAttempts: 3,
                  BackoffRate: 1.5,
                  MaxDelaySeconds: 100,
                  JitterStrategy: 'FULL' as const,
                },
              ],
            },
          },
        },
      },
    },
  };

  it('on AWS or with --live: the interval grown by the backoff, capped, "within" when jittered; nothing once the attempts are used', () => {
    const clock = new RetryClock(definition);
    expect(nextTryText(clock.failed('SubmitChunk', 'CreateRefused'))).toBe(', next try within 1m00s');
    expect(clock.failed('SubmitChunk', 'CreateRefused')).toEqual({ ms: 90_000, upTo: true });
    expect(clock.failed('SubmitChunk', 'CreateRefused')).toEqual({ ms: 100_000, upTo: true });
    expect(clock.failed('SubmitChunk', 'CreateRefused')).toBeUndefined();
    expect(clock.failed('SubmitChunk', 'CreateSlotBusy')).toEqual({ ms: 30_000, upTo: false });
    // States.TaskFailed takes any error of a Task; a state without Retry, or an error no retrier names, has no next try.
    expect(clock.failed('Prepare', 'Whatever')).toEqual({ ms: 2_000, upTo: false });
    expect(clock.failed('Chunks', 'Whatever')).toBeUndefined();
    expect(clock.failed('SubmitChunk', 'ValidationFailed')).toBeUndefined();
    // Once the state moves on, its retriers start again.
    clock.movedOn();
    expect(clock.failed('SubmitChunk', 'CreateRefused')).toEqual({ ms: 60_000, upTo: true });
  });

  it('locally: each retrier waits its interval divided by the time scale, without backoff or jitter', () => {
    const clock = new RetryClock(definition, 600);
    expect(clock.failed('SubmitChunk', 'CreateRefused')).toEqual({ ms: 100, upTo: false });
    expect(clock.failed('SubmitChunk', 'CreateRefused')).toEqual({ ms: 100, upTo: false });
    expect(nextTryText(clock.failed('SubmitChunk', 'CreateRefused'))).toBe(', next try in 0.1s');
  });
});
