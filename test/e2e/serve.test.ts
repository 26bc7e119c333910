import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator } from '../../simulator/server';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('batchline serve', () => {
  let cwd: string;
  let serve: ChildProcess;
  let stdout = '';
  /** Resolves once stdout has matched `pattern`. */
  const printed = (pattern: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = stdout.match(pattern);
        if (match) {
          serve.stdout!.off('data', check);
          serve.off('exit', gone);
          resolve(match);
        }
      };
      const gone = () => reject(new Error(`serve exited before printing ${pattern}:\n${stdout}`));
      serve.stdout!.on('data', check);
      serve.once('exit', gone);
      check();
    });

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-serve-'));
    serve = spawn(process.execPath, [path.join(ROOT, 'bin/batchline.mjs'), 'serve', '--dir', 'inbox', '--out', 'out'], { cwd });
    serve.stdout!.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    await printed(/Drop a \.jsonl file/);
  }, 120_000);
  afterAll(async () => {
    if (serve.exitCode === null) serve.kill('SIGKILL');
    await rm(cwd, { recursive: true, force: true });
  });

  it('runs a file dropped in the watched folder and copies its outputs out', async () => {
    const state = JSON.parse(await readFile(path.join(cwd, '.batchline/local.json'), 'utf8'));
    expect(state).toMatchObject({ pid: serve.pid, s3Endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });

    await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(cwd, 'inbox/tickets.jsonl'));
    const [, jobId] = await printed(/outputs {3}out\/(tickets-[0-9a-f]+)\//);

    expect(stdout).toContain(`tickets.jsonl → job ${jobId}`);
    expect(stdout).toContain('rows      30 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
    // Each event line names its job; the stack's own plumbing (topic, event bus) stays out of it.
    expect(stdout).toContain(`  [${jobId}] job ${jobId} finalized: succeeded`);
    expect(stdout).not.toMatch(/EventBridge event|SNS notification/);
    expect(stdout).toContain('simulated replies, tokens and cost came from the Batches API simulator');
    expect((await readdir(path.join(cwd, 'out', jobId!))).sort()).toEqual(['errors.jsonl', 'invalid.jsonl', 'results.jsonl', 'summary.html', 'summary.json']);
  });

  it('stops cleanly on Ctrl-C, removing its state file', async () => {
    serve.kill('SIGINT');
    const [code] = await once(serve, 'exit');
    expect(code).toBe(0);
    await expect(stat(path.join(cwd, '.batchline/local.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('batchline serve stopped while a job runs', () => {
  it('names the job that had not ended and what becomes of it, with no socket errors', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'batchline-serve-stop-'));
    // Real time on the simulator: a batch takes a minute, so the job is still running at Ctrl-C.
    const serve = spawn(process.execPath, [path.join(ROOT, 'bin/batchline.mjs'), 'serve', '--dir', 'inbox', '--out', 'out', '--time-scale', '1'], { cwd });
    let stdout = '';
    let stderr = '';
    serve.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    serve.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const until = async (pattern: RegExp): Promise<RegExpMatchArray> => {
      for (;;) {
        const match = stdout.match(pattern);
        if (match) return match;
        if (serve.exitCode !== null) throw new Error(`serve exited before printing ${pattern}:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    try {
      await until(/Drop a \.jsonl file/);
      await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(cwd, 'inbox/slow.jsonl'));
      const [, jobId] = await until(/slow\.jsonl → job (slow-[0-9a-f]+)/);
      await until(/submitted as msgbatch_/);
      const exited = once(serve, 'exit');
      serve.kill('SIGINT');
      const [code] = await exited;
      expect(code).toBe(0);
      expect(stdout).toContain(`  slow.jsonl (job ${jobId}) had not ended: it ends here, with the simulator; drop the file again to run it`);
      expect(`${stdout}\n${stderr}`).not.toMatch(/ECONN|socket|Error:|\n\s+at /);
    } finally {
      if (serve.exitCode === null) serve.kill('SIGKILL');
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
    const serve = spawn(process.execPath, [path.join(ROOT, 'bin/batchline.mjs'), 'serve', '--live', '--yes', '--dir', 'inbox', '--out', 'out'], {
      cwd,
      env: { ...process.env, ANTHROPIC_API_KEY: 'sk-ant-serve-live', ANTHROPIC_BASE_URL: api.url },
    });
    let stdout = '';
    let stderr = '';
    serve.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    serve.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const until = async (pattern: RegExp): Promise<RegExpMatchArray> => {
      for (;;) {
        const match = stdout.match(pattern);
        if (match) return match;
        if (serve.exitCode !== null) throw new Error(`serve exited before printing ${pattern}:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    try {
      await until(/Drop a \.jsonl file/);
      await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(cwd, 'inbox/paid.jsonl'));
      const [, jobId] = await until(/paid\.jsonl → job (paid-[0-9a-f]+)/);
      const [, batchId] = await until(/submitted as (msgbatch_\w+)/);
      serve.kill('SIGINT');
      await until(/Press Ctrl-C again to cancel them at the API and stop\./);
      expect(stdout).toContain(`  ${batchId} (job ${jobId}, chunk 0)`);
      expect(stdout).toContain('"batchline resume" in this folder carries their jobs on from .batchline/state/');
      // The first stopped nothing: the batch runs on, and serve with it.
      expect(serve.exitCode).toBeNull();
      expect(api.stats().calls.cancel).toBe(0);

      const exited = once(serve, 'exit');
      serve.kill('SIGINT');
      const [code] = await exited;
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`  ${batchId}: the API took the cancel \\((canceling|ended)\\)`));
      expect(api.stats().calls.cancel).toBe(1);
      expect(stdout).toContain(`  paid.jsonl (job ${jobId}) had not ended: its outputs were not written; "batchline resume" carries it on`);
      expect(`${stdout}\n${stderr}`).not.toMatch(/ECONN|socket|Error:|\n\s+at /);
    } finally {
      if (serve.exitCode === null) serve.kill('SIGKILL');
      await api.stop();
      await rm(cwd, { recursive: true, force: true });
    }
  }, 180_000);
});
