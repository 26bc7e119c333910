/**
 * A live run survives its process (docs/local-state.md): `batchline run --live` is killed (SIGKILL,
 * by its own pid) after its batch was created and before it was collected; `batchline resume` in
 * the same folder restarts the local stack on `.batchline/state/` and carries the job on. The API
 * is the simulator over HTTP, counting its creates: the batch is collected, never created again,
 * and every input row is accounted for once.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEY = 'sk-ant-resume-test';
const EXAMPLE = path.join(ROOT, 'examples/classification.jsonl');

// Not on moto: the CLI keeps DynamoDB on disk (dynalite), which moto does not.
describe.skipIf(process.env.BATCHLINE_TEST_BACKEND === 'moto')('a live run killed between create and collect', () => {
  let api: SimulatorHandle;
  let cwd: string;
  beforeAll(async () => {
    // Real time and an hour per batch: the batch is running when the run is killed, until the test moves the clock.
    api = await startSimulator({ timeScale: 1, processingSeconds: 3_600 });
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-resume-'));
  });
  afterAll(async () => {
    await api?.stop();
    await rm(cwd, { recursive: true, force: true });
  });

  const env = (baseUrl = api.url) => ({
    ...process.env,
    ANTHROPIC_API_KEY: KEY,
    ANTHROPIC_BASE_URL: baseUrl,
    // Live time is real: the resumed chunk waits for the poller's next tick (a minute), or the Wait loop's shortest.
    BATCHLINE_POLL_MIN_SECONDS: '1',
  });

  function start(args: string[], at = { cwd, baseUrl: api.url }) {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/batchline.mjs'), ...args], { cwd: at.cwd, env: env(at.baseUrl) });
    const output = { stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output.stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (output.stderr += text));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const until = async (pattern: RegExp): Promise<RegExpMatchArray> => {
      for (;;) {
        const match = output.stdout.match(pattern);
        if (match) return match;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(
            `batchline ${args[0]} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${output.stdout}\n${output.stderr}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    return { child, output, exited, until };
  }

  it('resume collects the batch already created, creates none again, and ends every row once', async () => {
    const run = start(['run', EXAMPLE, '--live', '--yes']);
    const [, jobId] = await run.until(/^Job (\S+)$/m);
    const [, batchId] = await run.until(/chunk 0: attempt 1 submitted as (msgbatch_\w+)/);
    run.child.kill('SIGKILL');
    expect(await run.exited).toEqual([null, 'SIGKILL']);
    expect(api.stats().batchesCreated).toEqual([batchId]);

    // The batch ends at the API while nothing local runs.
    api.advance(3_600);
    const resume = start(['resume']);
    const [code] = await resume.exited;
    expect(resume.output.stdout).toContain(`Job ${jobId}: carried on from where it stood`);
    expect(resume.output.stdout).toMatch(new RegExp(`^Job ${jobId}: succeeded in `, 'm'));
    expect(code).toBe(0);
    expect(api.stats().batchesCreated).toEqual([batchId]);

    const input = (await readFile(EXAMPLE, 'utf8')).split('\n').filter((line) => line.trim() !== '');
    const ids = input.map((line) => (JSON.parse(line) as { custom_id: string }).custom_id);
    const results = (await readFile(path.join(cwd, 'batchline-out', jobId!, 'results.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { custom_id: string; status: string; batch_id: string });
    expect(results.map((row) => row.custom_id)).toEqual(ids);
    expect(new Set(results.map((row) => `${row.status} ${row.batch_id}`))).toEqual(new Set([`succeeded ${batchId}`]));
    const summary = JSON.parse(await readFile(path.join(cwd, 'batchline-out', jobId!, 'summary.json'), 'utf8')) as { counts: Record<string, number> };
    expect(summary.counts).toMatchObject({ succeeded: ids.length, errored: 0, expired: 0, canceled: 0, invalid: 0 });

    // Nothing is left to resume.
    const again = start(['resume']);
    expect(await again.exited).toEqual([0, null]);
    expect(again.output.stdout).toBe('Nothing to resume: no unfinished job in .batchline/state/.\n');
  }, 240_000);

  it('killed while its create was answered and before it read the answer, resume finds that batch and adopts it: one create', async () => {
    const own = await mkdtemp(path.join(tmpdir(), 'batchline-resume-create-'));
    // An API of its own: the first test moved its simulator's clock an hour on, and a batch of the same size
    // made there just before this intent would be a candidate for adoption (whose lines the nonce check refuses).
    const api = await startSimulator({ timeScale: 1, processingSeconds: 3_600 });
    // Between the run and the API: the create's answer is held back, and the test told, once the batch exists.
    let resolveCreated!: (batchId: string) => void;
    const created = new Promise<string>((resolve) => (resolveCreated = resolve));
    let holding = true;
    const gate = createServer((req: IncomingMessage, res: ServerResponse) => {
      const upstream = request(`${api.url}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          if (holding && req.method === 'POST' && req.url === '/v1/messages/batches') {
            resolveCreated((JSON.parse(body.toString('utf8')) as { id: string }).id);
            return; // never answered: the process is killed first
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers).end(body);
        });
      });
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
    const gateUrl = `http://127.0.0.1:${(gate.address() as AddressInfo).port}`;
    try {
      const run = start(['run', EXAMPLE, '--live', '--yes'], { cwd: own, baseUrl: gateUrl });
      const [, jobId] = await run.until(/^Job (\S+)$/m);
      const batchId = await created;
      run.child.kill('SIGKILL');
      expect(await run.exited).toEqual([null, 'SIGKILL']);
      expect(run.output.stdout).not.toContain(batchId);
      holding = false;

      api.advance(3_600);
      const resume = start(['resume'], { cwd: own, baseUrl: gateUrl });
      const [code] = await resume.exited;
      expect(resume.output.stdout).toMatch(new RegExp(`^Job ${jobId}: succeeded in `, 'm'));
      expect(code).toBe(0);
      // The batch the killed run created is the job's; none was created after it.
      expect(api.stats().batchesCreated).toEqual([batchId]);
      const results = (await readFile(path.join(own, 'batchline-out', jobId!, 'results.jsonl'), 'utf8')).trim().split('\n');
      expect(results).toHaveLength(30);
      expect(new Set(results.map((line) => (JSON.parse(line) as { batch_id: string }).batch_id))).toEqual(new Set([batchId]));
    } finally {
      gate.closeAllConnections();
      await new Promise((resolve) => gate.close(resolve));
      await api.stop();
      await rm(own, { recursive: true, force: true });
    }
  }, 240_000);
});
