import { copyFile, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator } from '../../simulator/server';
import { ROOT, startBatchline, type Running } from '../support/cli';

describe('batchline serve', () => {
  let cwd: string;
  let serve: Running;

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-serve-'));
    serve = startBatchline(['serve', '--dir', 'inbox', '--out', 'out'], { cwd });
    await serve.matched(/Drop a \.jsonl file/);
  }, 120_000);
  afterAll(async () => {
    if (serve?.running) serve.signal('SIGKILL');
    await rm(cwd, { recursive: true, force: true });
  });

  it('runs a file dropped in the watched folder and copies its outputs out', async () => {
    const state = JSON.parse(await readFile(path.join(cwd, '.batchline/local.json'), 'utf8'));
    expect(state).toMatchObject({ pid: serve.pid, s3Endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });

    await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(cwd, 'inbox/tickets.jsonl'));
    const [, jobId] = await serve.matched(/outputs {3}out\/(tickets-[0-9a-f]+)\//);

    const { stdout } = serve;
    expect(stdout).toContain(`tickets.jsonl → job ${jobId}`);
    expect(stdout).toContain('rows      30 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
    // Each event line names its job; the stack's own plumbing (topic, event bus) stays out of it.
    expect(stdout).toContain(`  [${jobId}] job ${jobId} finalized: succeeded`);
    expect(stdout).not.toMatch(/EventBridge event|SNS notification/);
    expect(stdout).toContain('simulated replies, tokens and cost came from the Batches API simulator');
    expect((await readdir(path.join(cwd, 'out', jobId!))).sort()).toEqual(['errors.jsonl', 'invalid.jsonl', 'results.jsonl', 'summary.html', 'summary.json']);
  });

  it('stops cleanly on Ctrl-C, removing its state file', async () => {
    serve.signal('SIGINT');
    expect((await serve.done).code).toBe(0);
    await expect(stat(path.join(cwd, '.batchline/local.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('batchline serve stopped while a job runs', () => {
  it('names the job that had not ended and what becomes of it, with no socket errors', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'batchline-serve-stop-'));
    // Real time on the simulator: a batch takes a minute, so the job is still running at Ctrl-C.
    const serve = startBatchline(['serve', '--dir', 'inbox', '--out', 'out', '--time-scale', '1'], { cwd });
    try {
      await serve.matched(/Drop a \.jsonl file/);
      await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(cwd, 'inbox/slow.jsonl'));
      const [, jobId] = await serve.matched(/slow\.jsonl → job (slow-[0-9a-f]+)/);
      await serve.matched(/submitted as msgbatch_/);
      serve.signal('SIGINT');
      const { code, stdout, stderr } = await serve.done;
      expect(code).toBe(0);
      expect(stdout).toContain(`  slow.jsonl (job ${jobId}) had not ended: it ends here, with the simulator; drop the file again to run it`);
      expect(`${stdout}\n${stderr}`).not.toMatch(/ECONN|socket|Error:|\n\s+at /);
    } finally {
      if (serve.running) serve.signal('SIGKILL');
      await rm(cwd, { recursive: true, force: true });
    }
  }, 180_000);
});

// Not on moto: serve --live keeps DynamoDB on disk (dynalite), which moto does not.
describe.skipIf(process.env.BATCHLINE_TEST_BACKEND === 'moto')('batchline serve --live interrupted while a batch runs at the API', () => {
  it('names the batch on the first Ctrl-C and how to resume, keeps serving; cancels it at the API on the second', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'batchline-serve-live-'));
    // The API is the simulator over HTTP, real time and an hour per batch: still running at each Ctrl-C.
    const api = await startSimulator({ timeScale: 1, processingSeconds: 3_600 });
    const serve = startBatchline(['serve', '--live', '--yes', '--dir', 'inbox', '--out', 'out'], {
      cwd,
      env: { ANTHROPIC_API_KEY: 'sk-ant-serve-live', ANTHROPIC_BASE_URL: api.url },
    });
    try {
      await serve.matched(/Drop a \.jsonl file/);
      await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(cwd, 'inbox/paid.jsonl'));
      const [, jobId] = await serve.matched(/paid\.jsonl → job (paid-[0-9a-f]+)/);
      const [, batchId] = await serve.matched(/submitted as (msgbatch_\w+)/);
      serve.signal('SIGINT');
      await serve.matched(/Press Ctrl-C again to cancel them at the API and stop\./);
      expect(serve.stdout).toContain(`  ${batchId} (job ${jobId}, chunk 0)`);
      expect(serve.stdout).toContain('"batchline resume" in this folder carries their jobs on from .batchline/state/');
      // The first stopped nothing: the batch runs on, and serve with it.
      expect(serve.running).toBe(true);
      expect(api.stats().calls.cancel).toBe(0);

      serve.signal('SIGINT');
      const { code, stdout, stderr } = await serve.done;
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`  ${batchId}: the API took the cancel \\((canceling|ended)\\)`));
      expect(api.stats().calls.cancel).toBe(1);
      expect(stdout).toContain(`  paid.jsonl (job ${jobId}) had not ended: its outputs were not written; "batchline resume" carries it on`);
      expect(`${stdout}\n${stderr}`).not.toMatch(/ECONN|socket|Error:|\n\s+at /);
    } finally {
      if (serve.running) serve.signal('SIGKILL');
      await api.stop();
      await rm(cwd, { recursive: true, force: true });
    }
  }, 180_000);
});
