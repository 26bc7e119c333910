/**
 * Ctrl-C during `batchline run --live`: the batches run, and bill, at the API whatever becomes of
 * the local process. The first Ctrl-C names them and stops nothing; the second cancels each at the
 * API, waits for the API to take it, says so, then exits 130. A real process, real signals; the
 * API is the simulator, its batches slow enough to still be running.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server';
import { BatchesClient } from '../../shared/anthropic/client';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEY = 'sk-ant-interrupt-test';

// Not on moto (npm run test:moto): the CLI process would start a moto_server of its own; this is about
// signals and the API, not storage.
describe.skipIf(process.env.BATCHLINE_TEST_BACKEND === 'moto')('Ctrl-C during run --live', () => {
  let api: SimulatorHandle;
  let out: string;
  beforeAll(async () => {
    // Real time, and an hour per batch: the batch is still running when the run is interrupted.
    api = await startSimulator({ timeScale: 1, processingSeconds: 3_600 });
    out = await mkdtemp(path.join(tmpdir(), 'batchline-interrupt-'));
  });
  afterAll(async () => {
    await api?.stop();
    await rm(out, { recursive: true, force: true });
  });

  it('names the batches still running on the first, cancels them at the API on the second, and exits 130', async () => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin/batchline.mjs'), 'run', path.join(ROOT, 'examples/classification.jsonl'), '--live', '--yes', '--out', out],
      {
        // Live runs keep their state in the working folder (.batchline/state/): a folder of the test's own.
        cwd: out,
        env: { ...process.env, ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: api.url },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const until = async (read: () => string, pattern: RegExp): Promise<RegExpMatchArray> => {
      for (;;) {
        const match = read().match(pattern);
        if (match) return match;
        if (child.exitCode !== null) throw new Error(`the run exited (${child.exitCode}) before printing ${pattern}:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const exited = once(child, 'exit');

    // The batch id is on screen as soon as the batch exists.
    const [, batchId] = await until(() => stdout, /chunk 0: attempt 1 submitted as (msgbatch_\w+)/);
    child.kill('SIGINT');
    await until(() => stderr, /Press Ctrl-C again to cancel them at the API\./);
    expect(stderr).toContain(`  ${batchId} (chunk 0, attempt 1)`);
    expect(stderr).toContain('"batchline resume" in this folder carries the job on from .batchline/state/');
    // Nothing was canceled by the first.
    const client = new BatchesClient({ apiKey: KEY, baseUrl: api.url });
    try {
      expect((await client.retrieve(batchId!)).processing_status).toBe('in_progress');
      child.kill('SIGINT');
      const [code, signal] = await exited;
      expect({ code, signal }).toEqual({ code: 130, signal: null });
      expect(stderr).toMatch(new RegExp(`  ${batchId}: the API took the cancel \\((canceling|ended)\\)`));
      expect(['canceling', 'ended']).toContain((await client.retrieve(batchId!)).processing_status);
    } finally {
      await client.close();
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 180_000);
});
