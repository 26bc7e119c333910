/**
 * The operating commands as scripts use them: real `batchline` processes with --json against a
 * local stack this file starts (found through its state file, as `batchline serve` leaves it), and
 * `status --wait` following a job to its end, or until Ctrl-C.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useServedStack } from '../support/served-stack';
import { jsonl, requests } from '../support/requests';
import { batchline, startBatchline } from '../support/cli';

/** Several CLI processes one after another, each compiling the CLI with tsx first. */
const SPAWNS_TIMEOUT = 240_000;

describe('the operating commands with --json, and status --wait', () => {
  // The first batch created runs for almost 24 simulated hours (over two real minutes): a job that waits
  // until it is canceled. The others end in seconds.
  const served = useServedStack('batchline-cli-json-', { simulator: { batchFaultsBySequence: { 1: { processingSeconds: 86_000 } } } });

  const cli = (args: string[], env: Record<string, string> = {}) => batchline([...args, '--local', served.dir], { cwd: served.dir, env });

  it(
    'status --wait follows a running job until it ends and exits as run does; Ctrl-C stops following (130) and leaves the job running',
    async () => {
      await writeFile(path.join(served.dir, 'slow.jsonl'), jsonl(requests(3, 's')));
      const submitted = await cli(['submit', 'slow.jsonl', '--no-follow', '--json']);
      expect(submitted.code).toBe(0);
      const { jobId, registered } = JSON.parse(submitted.stdout) as { jobId: string; registered: boolean };
      expect(registered).toBe(true);

      // Ctrl-C while waiting: exit 130, and the job is still running.
      const interrupted = startBatchline(['status', jobId, '--wait', '--local', served.dir], { cwd: served.dir });
      await interrupted.printed(`Waiting for job ${jobId} to end`, 'stdout');
      interrupted.signal('SIGINT');
      const stopped = await interrupted.done;
      expect(stopped.code).toBe(130);
      expect(stopped.stderr).toContain(`Stopped following job ${jobId}; it keeps running`);
      const still = await cli(['status', jobId, '--json']);
      expect(still.code).toBe(0);
      expect(JSON.parse(still.stdout)).toMatchObject({
        command: 'status',
        jobId,
        status: 'running',
        ended: false,
        exitStatus: 0,
        summary: null,
        outputs: null,
      });

      // Waiting again, with --json: the cancel ends the job, its rows canceled, so exit 3.
      const waiting = startBatchline(['status', jobId, '--wait', '--json', '--local', served.dir], { cwd: served.dir });
      await waiting.printed(`Waiting for job ${jobId} to end`, 'stderr');
      const canceled = await cli(['cancel', jobId, '--json']);
      expect(canceled.code).toBe(0);
      expect(JSON.parse(canceled.stdout)).toMatchObject({ command: 'cancel', jobId, outcome: 'requested', status: 'running', exitStatus: 0 });
      const waited = await waiting.done;
      expect(waited.code).toBe(3);
      const document = JSON.parse(waited.stdout);
      expect(document).toMatchObject({
        batchline: 1,
        command: 'status',
        jobId,
        status: 'canceled',
        ended: true,
        exitStatus: 3,
        counts: { total: 3, errored: 0, expired: 0, invalid: 0 },
        cancelRequested: true,
        outputs: { bucket: served.stack.bucket, prefix: `results/${jobId}/` },
      });
      // The batch processes its rows over its simulated day: those done before the cancel succeeded.
      const { succeeded, canceled: canceledRows } = document.counts as { succeeded: number; canceled: number };
      expect(canceledRows).toBeGreaterThan(0);
      expect(succeeded + canceledRows).toBe(3);
      expect(document.summary.counts).toEqual(document.counts);
      expect(document.attempts).toMatchObject([{ chunk: 0, attempt: 1, rows: 3, counts: { succeeded, canceled: canceledRows } }]);
      expect(waited.stderr).toContain(`${canceledRows} of 3 rows did not succeed (${canceledRows} canceled): exit status 3`);

      // A second cancel is refused: the job has ended (exit 1, and still one document).
      const again = await cli(['cancel', jobId, '--json']);
      expect(again.code).toBe(1);
      expect(JSON.parse(again.stdout)).toMatchObject({ outcome: 'ended', status: 'canceled', exitStatus: 1 });
    },
    SPAWNS_TIMEOUT,
  );

  it(
    'submit, jobs, status, get and results each print one JSON document with the numbers summary.json holds',
    async () => {
      await writeFile(path.join(served.dir, 'quick.jsonl'), jsonl(requests(4, 'q')));
      const submitted = await cli(['submit', 'quick.jsonl', '--output', 'json']);
      expect(submitted.code).toBe(0);
      const job = JSON.parse(submitted.stdout);
      expect(job).toMatchObject({ command: 'submit', status: 'succeeded', ended: true, exitStatus: 0, counts: { total: 4, succeeded: 4 } });
      // The upload and the progress went to stderr.
      expect(submitted.stderr).toContain('Uploading quick.jsonl');

      const status = await cli(['status', job.jobId, '--json']);
      expect(status.code).toBe(0);
      const shown = JSON.parse(status.stdout);
      expect(shown).toEqual({ ...job, command: 'status' });
      expect(shown.costUsd).toBe(shown.summary.cost.batchUsd);

      const jobs = await cli(['jobs', '--json', '--limit', '1']);
      expect(jobs.code).toBe(0);
      expect(JSON.parse(jobs.stdout)).toMatchObject({
        command: 'jobs',
        source: 'stack',
        more: true,
        jobs: [{ jobId: job.jobId, status: 'succeeded', totalRows: 4, counts: { succeeded: 4, errored: 0 }, costUsd: job.costUsd }],
      });

      const got = await cli(['get', job.jobId, 'q-00002', '--json']);
      expect(got.code).toBe(0);
      const row = JSON.parse(got.stdout);
      expect(row).toMatchObject({ command: 'get', jobId: job.jobId, customId: 'q-00002', status: 'succeeded', final: true, attempt: 1, chunk: 0, index: 2 });
      expect(row.result).toMatchObject({ custom_id: 'q-00002', result: { type: 'succeeded' } });

      // --open with an opener on PATH (a script standing in for xdg-open that says what it was given).
      const bin = path.join(served.dir, 'bin');
      await mkdir(bin, { recursive: true });
      const opened = path.join(served.dir, 'opened.txt');
      await writeFile(path.join(bin, 'xdg-open'), `#!/bin/sh\necho "$1" > "${opened}"\n`);
      await chmod(path.join(bin, 'xdg-open'), 0o755);
      const results = await cli(['results', job.jobId, '--open', '--json', '--out', 'got'], { PATH: `${bin}${path.delimiter}${process.env.PATH}` });
      expect(results.code).toBe(0);
      const report = path.join(served.dir, 'got', 'summary.html');
      expect(JSON.parse(results.stdout)).toMatchObject({
        command: 'results',
        jobId: job.jobId,
        dir: path.join(served.dir, 'got'),
        files: ['results.jsonl', 'errors.jsonl', 'invalid.jsonl', 'summary.json', 'summary.html'],
        report,
        openedWith: 'xdg-open',
      });
      await expect.poll(async () => readFile(opened, 'utf8').catch(() => ''), { timeout: 60_000 }).toBe(`${report}\n`);
      expect(JSON.parse(await readFile(path.join(served.dir, 'got', 'summary.json'), 'utf8'))).toEqual(job.summary);

      // No opener at all: the path, for the user to open.
      const noOpener = await cli(['results', job.jobId, '--open', '--out', 'again'], { PATH: path.join(served.dir, 'empty') });
      expect(noOpener.code).toBe(0);
      expect(noOpener.stdout).toContain('Report: again/summary.html (no xdg-open or open here: open it in a browser)\n');
    },
    SPAWNS_TIMEOUT,
  );

  it(
    'with --json, a failure prints nothing on stdout and the one line on stderr, with the usual exit status',
    async () => {
      const missing = await cli(['status', 'no-such-job', '--json']);
      expect(missing.code).toBe(1);
      expect(missing.stdout).toBe('');
      expect(missing.stderr).toMatch(/^batchline status: .*no-such-job/);
      const wrong = await cli(['jobs', '--output', 'yaml']);
      expect(wrong.code).toBe(2);
      expect(wrong.stdout).toBe('');
      expect(wrong.stderr).toBe('batchline jobs: --output must be json or text, got "yaml"\n');
    },
    SPAWNS_TIMEOUT,
  );
});
