import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main';
import { settingsFromEnv } from '../../cli/settings';
import { describeEvent, ProgressView, statusLine } from '../../cli/progress';
import type { Io } from '../../cli/io';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `batchline ARGS` in this process, capturing what it prints. */
async function batchline(args: string[], env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const sink = (append: (text: string) => void) =>
    new Writable({
      write(chunk, _encoding, done) {
        append(String(chunk));
        done();
      },
    }) as unknown as NodeJS.WriteStream;
  const io: Io = { stdout: sink((t) => (stdout += t)), stderr: sink((t) => (stderr += t)), env, cwd: ROOT };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

describe('the batchline command line', () => {
  it.each([
    [['run', 'no-such-file.jsonl'], 'batchline run: no such file: no-such-file.jsonl'],
    [['run', '--frobnicate'], 'batchline run: unknown option --frobnicate (see batchline run --help)'],
    [['run', 'a.jsonl', 'b.jsonl'], 'batchline run: batchline run takes one file, got 2 (see batchline run --help)'],
    [['run', '--time-scale', 'fast'], 'batchline run: --time-scale must be a positive number, got "fast"'],
    [['run', '--live'], 'batchline run: --live needs ANTHROPIC_API_KEY in the environment'],
    [
      ['run', '--deadline', 'tomorrow'],
      'batchline run: --deadline is "tomorrow"; use an ISO time with its zone (2026-12-08T06:00:00Z) or a duration (6h, 90m, 1h30m)',
    ],
    [
      ['serve', '--deadline', '0m'],
      'batchline serve: --deadline is "0m": a duration must be more than 0; use an ISO time with its zone (2026-12-08T06:00:00Z) or a duration (6h, 90m, 1h30m)',
    ],
    [['serve', '--port', '99999'], 'batchline serve: --port must be a port number from 0 to 65535, got "99999"'],
    [['serve', 'file.jsonl'], 'batchline serve: batchline serve takes no file (drop files in the watched folder; see batchline serve --help)'],
    [['estimate'], 'batchline estimate: batchline estimate needs a file (see batchline estimate --help)'],
    [['launch'], 'batchline: unknown command "launch" (see batchline --help)'],
  ])('answers a usage mistake (%j) with one line on stderr and exit status 2', async (args, message) => {
    expect(await batchline(args)).toEqual({ code: 2, stdout: '', stderr: `${message}\n` });
  });

  it('reports a malformed setting in the environment as a usage mistake', async () => {
    const run = await batchline(['estimate', 'examples/classification.jsonl'], { BATCHLINE_MAX_BYTES_PER_CHUNK: 'lots' });
    expect(run).toEqual({
      code: 2,
      stdout: '',
      stderr: 'batchline estimate: BATCHLINE_MAX_BYTES_PER_CHUNK must be a whole number from 1024 to 256000000, got "lots"\n',
    });
  });

  it('prints help for every command', async () => {
    for (const args of [['--help'], ['help', 'run'], ['run', '--help'], ['serve', '-h'], ['estimate', '--help']]) {
      const run = await batchline(args);
      expect({ args, code: run.code, stderr: run.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(run.stdout).toMatch(/^Usage: batchline/);
    }
  });

  it('estimates a file without sending anything: counts, the first invalid lines and the cost at batch rates', async () => {
    const run = await batchline(['estimate', 'examples/with-invalid-rows.jsonl', '--show', '2']);
    expect(run.code).toBe(1);
    expect(run.stdout.split('\n').slice(0, 5)).toEqual([
      'examples/with-invalid-rows.jsonl: 12 valid rows, 4 invalid lines',
      "  line 4 is not valid JSON: unexpected '}' where a value was expected at column 104 [invalid_json]",
      '  line 7: custom_id has a character that is not allowed, " " at position 7 (allowed: letters, digits, "_" and "-") [custom_id_bad_character]',
      '  … and 2 more',
      'Strict mode would reject this file; --lenient runs the 12 valid rows.',
    ]);
    expect(run.stdout).toMatch(
      /Estimated cost at batch rates: \$[0-9.]+ expected \(no history read \(--stack or --local reads one\): output at max_tokens\)\n/,
    );
    expect(run.stdout).toMatch(/\n {2}up to \$[0-9.]+ with every row using its max_tokens \(\$[0-9.]+ without the batch discount\)\n/);
    expect(run.stdout).toMatch(/\n {2}claude-haiku-4-5: 12 requests, \$[0-9.]+ expected, up to \$[0-9.]+\n/);
  });

  it('takes pipeline settings and prefixes for a local run from their environment variables', () => {
    const env = {
      BATCHLINE_MAX_REQUESTS_PER_CHUNK: '50',
      BATCHLINE_MAX_ATTEMPTS: ' 3 ',
      BATCHLINE_BUCKET: 'not-a-setting',
      ANTHROPIC_API_KEY: 'sk-x',
      BATCHLINE_POLL_MIN_SECONDS: '',
      BATCHLINE_RESULTS_PREFIX: 'team/out/',
    };
    expect(settingsFromEnv(env)).toEqual({ maxRequestsPerChunk: '50', maxAttempts: '3', resultsPrefix: 'team/out/' });
  });

  it("shows a running job's progress on one line", () => {
    const progress = {
      jobId: 'j',
      status: 'running' as const,
      validRows: 1200,
      invalidRows: 3,
      chunks: 3,
      chunksDone: 1,
      chunksFailed: 0,
      batches: 4,
      polls: 9,
      retries: 1,
      attemptOutcomes: { succeeded: 800, errored: 12, expired: 5, canceled: 0 },
    };
    expect(statusLine(progress, 83_000)).toBe('1m23s · 1,200 valid, 3 invalid · chunks 1/3 · 4 batches (1 retry) · 800 ok, 12 errored, 5 expired');
    expect(statusLine({ ...progress, status: undefined, validRows: undefined, chunks: undefined, batches: 0 }, 500)).toBe('0.5s · registering');
  });

  it("shows a retried step's cause on the bar until the workflow moves on, and in a plain line", () => {
    let written = '';
    const out = new Writable({
      write(chunk, _encoding, done) {
        written = String(chunk);
        done();
      },
    });
    const view = new ProgressView(out, true, Date.now());
    const progress = {
      jobId: 'j',
      status: 'running' as const,
      validRows: 30,
      invalidRows: 0,
      chunks: 1,
      chunksDone: 0,
      chunksFailed: 0,
      batches: 0,
      polls: 0,
      retries: 0,
      attemptOutcomes: { succeeded: 0, errored: 0, expired: 0, canceled: 0 },
    };
    const refused = { type: 'task-failed' as const, state: 'SubmitChunk', error: 'CreateRefused', jobId: 'j', cause: 'connect ECONNREFUSED 127.0.0.1:9' };
    view.event(refused);
    view.update(progress);
    expect(written).toMatch(/ · retrying SubmitChunk: CreateRefused \(connect ECONNREFUSED 127\.0\.0\.1:9\)$/);
    view.event({ type: 'batch-submitted', jobId: 'j', chunk: 0, attempt: 1, batchId: 'msgbatch_1', canceled: false });
    view.update(progress);
    expect(written).not.toContain('retrying');
    // An error no Retry takes gives no cause (its message might quote a request).
    view.event({ type: 'task-failed', state: 'PrepareJob', error: 'ValidationFailed', jobId: 'j' });
    view.update(progress);
    expect(written).not.toContain('retrying');
    expect(describeEvent(refused)).toBe('SubmitChunk failed with CreateRefused (connect ECONNREFUSED 127.0.0.1:9); the workflow retries it');
  });

  it('describes each step of a job in one plain line', () => {
    expect(describeEvent({ type: 'job-prepared', jobId: 'j', outcome: 'ready', chunks: 2, validRows: 10, invalidRows: 1 })).toBe(
      'validated: 10 rows valid, 1 invalid; 2 chunks',
    );
    expect(describeEvent({ type: 'batch-submitted', jobId: 'j', chunk: 1, attempt: 2, batchId: 'msgbatch_1', canceled: false })).toBe(
      'chunk 1: attempt 2 submitted as msgbatch_1',
    );
    expect(describeEvent({ type: 'chunk-collected', jobId: 'j', chunk: 0, attempt: 1, retry: true })).toBe(
      'chunk 0: attempt 1 collected, retrying its transient failures',
    );
    expect(describeEvent({ type: 'chunk-collected', jobId: 'j', chunk: 0, attempt: 1, retry: false, stragglers: true })).toBe(
      'chunk 0: attempt 1 canceled for the deadline and collected; its unfinished rows go as synchronous calls',
    );
    expect(describeEvent({ type: 'stragglers-ran', jobId: 'j', chunk: 0, attempt: 2, done: false, remaining: 40 })).toBe(
      'chunk 0: synchronous calls under way, 40 rows to go',
    );
    expect(describeEvent({ type: 'batch-polled', jobId: 'j', chunk: 0, attempt: 1, ended: false })).toBeUndefined();
  });
});
