/**
 * Before a live run pays: `run --live` shows the estimate and asks (or refuses, with no terminal to
 * ask on, unless --yes), and `batchline doctor` checks the key, the API's reachability and the
 * limits it reports without creating anything. Real CLI processes against the simulator and the
 * replay server over HTTP; each counts what was created.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { confirmPaying, NotConfirmed } from '../../cli/confirm';
import { startSimulator, type SimulatorHandle } from '../../simulator/server';
import { loadRecording, startReplay } from '../support/replay';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const EXAMPLE = path.join(ROOT, 'examples/classification.jsonl');
const KEY = 'sk-ant-live-checks';
const RECORDING = loadRecording(fileURLToPath(new URL('../anthropic/fixtures/recorded-conversation.json', import.meta.url)));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `batchline ARGS` as a process, stdin a pipe (no terminal), in a folder of the test's own. */
function batchline(args: string[], env: Record<string, string | undefined>, cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [path.join(ROOT, 'bin/batchline.mjs'), ...args],
      { cwd, timeout: 120_000, env: { ...process.env, ANTHROPIC_API_KEY: undefined, ANTHROPIC_BASE_URL: undefined, ...env } },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

describe('run --live before paying', () => {
  let api: SimulatorHandle;
  let cwd: string;
  beforeAll(async () => {
    api = await startSimulator({ timeScale: 600 });
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-live-'));
  });
  afterAll(async () => {
    await api?.stop();
    await rm(cwd, { recursive: true, force: true });
  });

  it('shows the estimate, then refuses without --yes when stdin is no terminal: exit 2, nothing created, no stack started', async () => {
    const run = await batchline(['run', EXAMPLE, '--live'], { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: api.url }, cwd);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^\S*classification\.jsonl: 30 valid rows, 0 invalid lines$/m);
    expect(run.stderr).toMatch(/^Estimated cost at batch rates: \$[0-9.]+ expected /m);
    expect(run.stderr.trimEnd().split('\n').at(-1)).toBe(
      'batchline run: --live sends batches the account pays for: with no terminal to ask on, confirm with --yes',
    );
    expect(run.stderr).not.toContain('Starting the local stack');
    expect(api.stats().batchesCreated).toEqual([]);
    expect(await readdir(cwd)).toEqual([]);
  }, 60_000);

  it('says when an earlier live run left jobs unfinished in the folder, and how to carry them on', async () => {
    const own = await mkdtemp(path.join(tmpdir(), 'batchline-live-unfinished-'));
    try {
      await mkdir(path.join(own, '.batchline/state'), { recursive: true });
      const started = { type: 'started', name: 'an-execution', input: '{}', at: '2026-12-01T10:00:00.000Z' };
      await writeFile(path.join(own, '.batchline/state/executions.jsonl'), `${JSON.stringify(started)}\n`);
      const run = await batchline(['run', EXAMPLE, '--live'], { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: api.url }, own);
      expect(run.stderr.split('\n')[0]).toBe('1 job of an earlier live run is unfinished here: "batchline resume" carries them on.');
      expect(run.code).toBe(2);
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  }, 60_000);

  it('with no key, says what is missing: exit 2', async () => {
    const run = await batchline(['run', EXAMPLE, '--live', '--yes'], {}, cwd);
    expect(run).toEqual({ code: 2, stdout: '', stderr: 'batchline run: --live needs ANTHROPIC_API_KEY in the environment\n' });
  }, 60_000);
});

describe('the confirmation', () => {
  const terminal = (answer: string) => {
    const input = new PassThrough() as PassThrough & { isTTY: boolean };
    input.isTTY = true;
    input.end(answer);
    return input as unknown as NodeJS.ReadStream;
  };
  const output = () => {
    const shown = { text: '' };
    const stream = new Writable({
      write(chunk, _encoding, done) {
        shown.text += String(chunk);
        done();
      },
    });
    return { shown, stream };
  };

  it('asks on the terminal and goes on at "y"; anything else is NotConfirmed', async () => {
    const yes = output();
    await confirmPaying('Send?', { yes: false, input: terminal('y\n'), output: yes.stream });
    expect(yes.shown.text).toBe('Send? [y/N] ');
    for (const answer of ['n\n', '\n', 'maybe\n']) {
      await expect(confirmPaying('Send?', { yes: false, input: terminal(answer), output: output().stream })).rejects.toBeInstanceOf(NotConfirmed);
    }
  });

  it('asks nothing with --yes', async () => {
    const shown = output();
    await confirmPaying('Send?', { yes: true, input: terminal(''), output: shown.stream });
    expect(shown.shown.text).toBe('');
  });
});

describe('batchline doctor', () => {
  let cwd: string;
  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-doctor-'));
  });
  afterAll(async () => {
    await rm(cwd, { recursive: true, force: true });
  });

  it('against the API as recorded: the key accepted, its organization and workspace, the rate limits; one free call', async () => {
    const listed = RECORDING.exchanges.find((e) => e.request.path === '/v1/messages/batches?limit=1' && e.response.status === 200)!;
    const replay = await startReplay({ ...RECORDING, exchanges: [listed] }, 'sequence');
    try {
      const run = await batchline(['doctor'], { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: replay.url }, cwd);
      const h = listed.response.headers;
      expect(run.stdout.split('\n')).toEqual([
        `✓ ANTHROPIC_API_KEY is set (${KEY.length} characters; not shown)`,
        `✓ ${replay.url} answers (HTTP 200, request-id ${h['request-id']})`,
        `✓ the API accepts the key (organization ${h['anthropic-organization-id']}, workspace ${h['anthropic-workspace-id']})`,
        '✓ limits the API reports:',
        `    requests: limit 4000, 3999 left, resets ${h['anthropic-ratelimit-requests-reset']}`,
        '  newest batch: msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d (ended, created 2026-11-24T12:00:00.412907Z)',
        '',
      ]);
      expect(run.stdout).not.toContain(KEY);
      expect(run.code).toBe(0);
      expect(replay.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/messages/batches?limit=1']);
      expect(replay.mismatches).toEqual([]);
    } finally {
      await replay.stop();
    }
  }, 60_000);

  it('says the API refused the key, and what to check: exit 1', async () => {
    const api = await startSimulator({ apiKeys: ['sk-ant-the-right-key'] });
    try {
      const run = await batchline(['doctor'], { ANTHROPIC_API_KEY: 'sk-ant-a-wrong-key', ANTHROPIC_BASE_URL: api.url }, cwd);
      expect(run.code).toBe(1);
      expect(run.stdout.trimEnd().split('\n').at(-1)).toBe(
        '✗ the API refused ANTHROPIC_API_KEY (401 authentication_error): check that the key is whole, current and not revoked',
      );
      expect(api.stats().batchesCreated).toEqual([]);
    } finally {
      await api.stop();
    }
  }, 60_000);

  it('says when there is no key, or no API to reach: exit 1', async () => {
    const noKey = await batchline(['doctor'], {}, cwd);
    expect(noKey.code).toBe(1);
    expect(noKey.stdout).toMatch(/^✗ ANTHROPIC_API_KEY is not set/);

    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const base = `http://127.0.0.1:${port}`;
    const unreachable = await batchline(['doctor'], { ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: base }, cwd);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stdout.trimEnd().split('\n').at(-1)).toBe(
      `✗ cannot reach ${base} (ECONNREFUSED): check the network, a proxy, or ANTHROPIC_BASE_URL; nothing was sent`,
    );
  }, 60_000);
});
