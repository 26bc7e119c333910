import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator } from '../../simulator/server';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `batchline ARGS` as a user would, from the repository root. */
/**
 * A test that starts several CLI processes one after another: each compiles the CLI with tsx, a few
 * seconds alone and far more on a machine running other suites beside this one.
 */
const SPAWNS_TIMEOUT = 120_000;

function batchline(args: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'bin/batchline.mjs'), ...args],
      { cwd, timeout: 120_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe('the batchline command', () => {
  let out: string;
  let classification: Run;
  let rejected: Run;
  let lenient: Run;
  let unknownModel: Run;
  beforeAll(async () => {
    out = await mkdtemp(path.join(tmpdir(), 'batchline-cli-'));
    const misspelt = path.join(out, 'misspelt.jsonl');
    await writeFile(misspelt, misspeltModelFile());
    // Whole runs at once: each starts its own local stack in its own process.
    [classification, rejected, lenient, unknownModel] = await Promise.all([
      batchline(['run', 'examples/classification.jsonl', '--out', path.join(out, 'classification')]),
      batchline(['run', 'examples/with-invalid-rows.jsonl', '--out', path.join(out, 'rejected')]),
      batchline(['run', 'examples/with-invalid-rows.jsonl', '--lenient', '--out', path.join(out, 'lenient')]),
      batchline(['run', misspelt, '--allow-unknown-models', '--out', path.join(out, 'misspelt')]),
    ]);
  }, 180_000);
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('runs the example file, prints its summary and copies its outputs', async () => {
    expect(classification.stderr).not.toMatch(/Error|Warning/);
    expect(classification.code).toBe(0);
    expect(classification.stdout).toMatch(/^Job classification-[0-9a-f]+: succeeded in /m);
    expect(classification.stdout).toContain('rows      30 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
    expect(classification.stdout).toMatch(/cost {6}\$[0-9.]+ at batch rates \(\$[0-9.]+ without the batch discount/);
    const dir = path.join(out, 'classification');
    expect((await readdir(dir)).sort()).toEqual(['errors.jsonl', 'invalid.jsonl', 'results.jsonl', 'summary.html', 'summary.json']);
    const results = (await readFile(path.join(dir, 'results.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(results.map((row) => row.custom_id)).toEqual(Array.from({ length: 30 }, (_, i) => `ticket-${String(i + 1).padStart(4, '0')}`));
    const summary = JSON.parse(await readFile(path.join(dir, 'summary.json'), 'utf8'));
    expect(summary.counts).toEqual({ total: 30, succeeded: 30, errored: 0, expired: 0, canceled: 0, invalid: 0 });
    expect(classification.stdout).toContain(
      `Outputs in ${dir}/: results.jsonl, errors.jsonl, invalid.jsonl, summary.json, summary.html\nReport: ${dir}/summary.html\n`,
    );
    // A simulated run says so; the stack's plumbing (topic, event bus) is shown only with --verbose.
    expect(classification.stdout).toContain('  simulated replies, tokens and cost came from the Batches API simulator, not the real API (--live)');
    expect(classification.stdout).not.toMatch(/EventBridge event|SNS notification/);
  });

  it('exits 1 when strict validation rejects the file, and still writes the invalid-line report', async () => {
    expect(rejected.code).toBe(1);
    expect(rejected.stdout).toMatch(/^Job with-invalid-rows-[0-9a-f]+: rejected in /m);
    const invalid = (await readFile(path.join(out, 'rejected', 'invalid.jsonl'), 'utf8')).trim().split('\n');
    expect(invalid).toHaveLength(4);
    // Nobody canceled the valid rows: the screen says they were not submitted, summary.json says why.
    expect(rejected.stdout).toContain(
      '  rows      0 succeeded, 0 errored, 0 expired, 0 canceled, 4 invalid; 12 valid rows not submitted: the file was rejected',
    );
    const summary = JSON.parse(await readFile(path.join(out, 'rejected', 'summary.json'), 'utf8'));
    expect(summary.notSubmitted).toEqual({ rows: 12, reason: 'rejected' });
    expect(summary.counts).toMatchObject({ total: 16, canceled: 12, invalid: 4 });
    // The bad lines themselves, as a compiler lists errors.
    const shown = rejected.stdout.split('\n');
    const at = shown.indexOf('Invalid lines (4):');
    expect(at).toBeGreaterThan(0);
    expect(shown.slice(at + 1, at + 5)).toEqual([
      `  line 4 is not valid JSON: unexpected '}' where a value was expected at column 104`,
      '  line 7: custom_id has a character that is not allowed, " " at position 7 (allowed: letters, digits, "_" and "-")',
      '  line 10: params.max_tokens is missing',
      '  line 13: custom_id "review-01" is already used on line 1',
    ]);
  });

  it(
    'with no stack configured, jobs and status show the runs left in ./batchline-out/',
    async () => {
      // A folder where `batchline run` left two runs, and no AWS region or credentials at all.
      const cwd = await mkdtemp(path.join(tmpdir(), 'batchline-local-runs-'));
      try {
        const runs: Array<[string, Run]> = [
          ['classification', classification],
          ['lenient', lenient],
        ];
        const ids: string[] = [];
        for (const [name] of runs) {
          const summary = JSON.parse(await readFile(path.join(out, name, 'summary.json'), 'utf8')) as { jobId: string };
          ids.push(summary.jobId);
          await mkdir(path.join(cwd, 'batchline-out', summary.jobId), { recursive: true });
          await writeFile(path.join(cwd, 'batchline-out', summary.jobId, 'summary.json'), JSON.stringify(summary));
        }
        const noAws = {
          AWS_REGION: '',
          AWS_DEFAULT_REGION: '',
          AWS_PROFILE: '',
          AWS_CONFIG_FILE: path.join(cwd, 'none'),
          AWS_SHARED_CREDENTIALS_FILE: path.join(cwd, 'none'),
        };
        const jobs = await batchline(['jobs'], noAws, cwd);
        expect(jobs.code).toBe(0);
        expect(jobs.stdout.split('\n')[0]).toMatch(/^No deployed stack \(no AWS region: .*\)\.$/);
        expect(jobs.stdout).toContain('Local runs in batchline-out/, newest first:');
        for (const id of ids) expect(jobs.stdout).toMatch(new RegExp(`^${id} +(succeeded) +\\d+`, 'm'));
        const status = await batchline(['status', ids[1]!], noAws, cwd);
        expect(status.stdout).toContain('rows      12 succeeded, 0 errored, 0 expired, 0 canceled, 4 invalid');
        expect(status.stdout).toContain(`  outputs   batchline-out/${ids[1]}/`);
        expect(status.code).toBe(3);
        // A job that is neither there nor anywhere: the stack's error, as before.
        const missing = await batchline(['status', 'no-such-job'], noAws, cwd);
        expect(missing).toMatchObject({ code: 1, stdout: '' });
        expect(missing.stderr).toContain('no AWS region');
      } finally {
        await rm(cwd, { recursive: true, force: true });
      }
    },
    SPAWNS_TIMEOUT,
  );

  it('exits 3 when the job ran to the end but not every row succeeded (invalid lines under --lenient), and says why', () => {
    expect(lenient.stdout).toMatch(/^Job with-invalid-rows-[0-9a-f]+: succeeded in /m);
    expect(lenient.stdout).toContain('rows      12 succeeded, 0 errored, 0 expired, 0 canceled, 4 invalid');
    expect(lenient.stdout.trimEnd().split('\n').at(-1)).toBe('4 of 16 rows did not succeed (4 invalid): exit status 3');
    expect(lenient.code).toBe(3);
  });

  it('with --allow-unknown-models sends a misspelt model on, and the simulator errors its row not_found_error, as the API would: exit 3', async () => {
    expect(unknownModel.stdout).toContain('rows      2 succeeded, 1 errored, 0 expired, 0 canceled, 0 invalid');
    expect(unknownModel.stdout).toContain('errors    1 not_found_error');
    const errors = (await readFile(path.join(out, 'misspelt', 'errors.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(errors).toEqual([
      expect.objectContaining({ custom_id: 'typo', status: 'errored', error_type: 'not_found_error', message: 'model: claude-sonet-4-5' }),
    ]);
    expect(unknownModel.code).toBe(3);
  });

  it(
    'answers a port in use with one line on stderr and exit status 2',
    async () => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const { port } = taken.address() as { port: number };
      try {
        const run = await batchline(['serve', '--port', String(port)]);
        expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 2, stderr: `batchline serve: port ${port} is in use\n` });
      } finally {
        taken.close();
      }
    },
    SPAWNS_TIMEOUT,
  );
});

/** Three requests, the second for a misspelt model. */
function misspeltModelFile(): string {
  const row = (customId: string, model: string) =>
    JSON.stringify({ custom_id: customId, params: { model, max_tokens: 16, messages: [{ role: 'user', content: 'Say hi.' }] } });
  return [row('fine-1', 'claude-haiku-4-5'), row('typo', 'claude-sonet-4-5'), row('fine-2', 'claude-sonnet-4-5')].join('\n') + '\n';
}

describe('mistakes in how batchline is called', () => {
  const temps: string[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'batchline-mistakes-'));
    temps.push(dir);
    return dir;
  };
  afterAll(async () => {
    await Promise.all(temps.map((dir) => rm(dir, { recursive: true, force: true })));
  });
  const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

  it(
    'prints the package version for --version and -V',
    async () => {
      expect(await batchline(['--version'])).toEqual({ code: 0, stdout: `batchline ${VERSION}\n`, stderr: '' });
      expect(await batchline(['-V'])).toEqual({ code: 0, stdout: `batchline ${VERSION}\n`, stderr: '' });
    },
    SPAWNS_TIMEOUT,
  );

  it(
    'suggests the nearest command or flag for a misspelt one, with exit status 2',
    async () => {
      expect(await batchline(['rnu'])).toEqual({ code: 2, stdout: '', stderr: 'batchline: unknown command "rnu": did you mean run? (see batchline --help)\n' });
      expect(await batchline(['stauts', 'job-1'])).toEqual({
        code: 2,
        stdout: '',
        stderr: 'batchline: unknown command "stauts": did you mean status? (see batchline --help)\n',
      });
      expect(await batchline(['--verison'])).toEqual({
        code: 2,
        stdout: '',
        stderr: 'batchline: unknown option "--verison": did you mean --version? (see batchline --help)\n',
      });
      expect(await batchline(['run', 'examples/classification.jsonl', '--lenent'])).toEqual({
        code: 2,
        stdout: '',
        stderr: 'batchline run: unknown option --lenent: did you mean --lenient? (see batchline run --help)\n',
      });
      expect(await batchline(['jobs', '--loacl', '.'])).toEqual({
        code: 2,
        stdout: '',
        stderr: 'batchline jobs: unknown option --loacl: did you mean --local? (see batchline jobs --help)\n',
      });
      // Nothing near enough: no guess.
      expect(await batchline(['frobnicate'])).toEqual({ code: 2, stdout: '', stderr: 'batchline: unknown command "frobnicate" (see batchline --help)\n' });
    },
    SPAWNS_TIMEOUT,
  );

  it(
    'estimate reads the file as Prepare does: a line far past the largest request is reported, not buffered',
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'batchline-estimate-'));
      try {
        const file = path.join(dir, 'long.jsonl');
        const small = '{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}}';
        await writeFile(file, `${small}\n{"custom_id":"big","params":"${'x'.repeat(400 * 1024)}"}\n`);
        const run = await batchline(['estimate', file], { BATCHLINE_MAX_BYTES_PER_CHUNK: '300000' });
        expect(run.code).toBe(1);
        expect(run.stdout.split('\n').slice(0, 2)).toEqual([
          `${file}: 1 valid row, 1 invalid line`,
          "  line 2 is more than 365,501 bytes; a request may be at most 299,965 bytes (one batch's size limit) [request_too_large]",
        ]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    SPAWNS_TIMEOUT,
  );

  it(
    'estimate rejects a misspelt model with its line and the nearest known one (exit 1), unless unknown models are allowed',
    async () => {
      const file = path.join(await tempDir(), 'misspelt.jsonl');
      await writeFile(file, misspeltModelFile());

      const strict = await batchline(['estimate', file]);
      expect(strict.stdout.split('\n').slice(0, 3)).toEqual([
        `${file}: 2 valid rows, 1 invalid line`,
        '  line 2: unknown model claude-sonet-4-5: did you mean claude-sonnet-4-5? [unknown_model]',
        'Strict mode would reject this file; --lenient runs the 2 valid rows.',
      ]);
      expect(strict.code).toBe(1);

      const allowed = await batchline(['estimate', file, '--allow-unknown-models']);
      expect(allowed.stdout).toMatch(/^\S+: 3 valid rows, 0 invalid lines$/m);
      expect(allowed.code).toBe(0);
      expect((await batchline(['estimate', file], { BATCHLINE_ALLOW_UNKNOWN_MODELS: 'true' })).code).toBe(0);
    },
    SPAWNS_TIMEOUT,
  );

  it(
    'refuses a directory as the input file with exit status 2, before the local stack starts',
    async () => {
      for (const command of ['run', 'estimate', 'submit']) {
        const result = await batchline([command, 'examples']);
        expect({ command, ...result }).toEqual({ command, code: 2, stdout: '', stderr: `batchline ${command}: examples is a directory: give a .jsonl file\n` });
      }
    },
    SPAWNS_TIMEOUT,
  );

  // Root reads any file whatever its mode: there, a sysfs attribute that has no read operation stands in.
  const unreadable = async (): Promise<string | undefined> => {
    if (process.getuid?.() !== 0) {
      const file = path.join(await tempDir(), 'secret.jsonl');
      await writeFile(file, '{}\n');
      await chmod(file, 0o000);
      return file;
    }
    return ['/sys/bus/pci/rescan', '/sys/kernel/mm/ksm/run'].find((file) => {
      try {
        readFileSync(file);
        return false;
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === 'EACCES';
      }
    });
  };

  it(
    'refuses a file it cannot read with exit status 2, before the local stack starts',
    async (context) => {
      const file = await unreadable();
      if (file === undefined) return context.skip('no file this process cannot read');
      for (const command of ['run', 'estimate', 'submit']) {
        const result = await batchline([command, file]);
        expect({ command, ...result }).toEqual({ command, code: 2, stdout: '', stderr: `batchline ${command}: cannot read ${file}: permission denied\n` });
      }
    },
    SPAWNS_TIMEOUT,
  );
});

describe('no network with --live', () => {
  it('says at once that the API cannot be reached, and why, with exit status 1, before the local stack starts', async () => {
    // A port nothing listens on: the connection is refused, as with no network or a wrong base URL.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const base = `http://127.0.0.1:${port}`;
    const run = await batchline(['run', 'examples/classification.jsonl', '--live'], { ANTHROPIC_API_KEY: 'sk-ant-any', ANTHROPIC_BASE_URL: base });
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `batchline run: cannot reach ${base} (ECONNREFUSED): check the network, a proxy, or ANTHROPIC_BASE_URL; nothing was sent\n`,
    });
  }, 60_000);
});

// Not on moto: a live run keeps its state on disk (s3rver, dynalite), which moto does not (docs/local-state.md).
describe.skipIf(process.env.BATCHLINE_TEST_BACKEND === 'moto')('a key the API refuses', () => {
  it('with --live, says once that the API refused the key and what to check, with exit status 1 and no stack trace', async () => {
    // The API stands in as a simulator that accepts one key only; the run gives it another.
    const api = await startSimulator({ timeScale: 600, apiKeys: ['sk-ant-the-right-key'] });
    const out = await mkdtemp(path.join(tmpdir(), 'batchline-live-key-'));
    try {
      // In a folder of its own: a live run keeps its state in .batchline/state/ of its working folder.
      const run = await batchline(
        ['run', path.join(ROOT, 'examples/classification.jsonl'), '--live', '--yes', '--out', out],
        { ANTHROPIC_API_KEY: 'sk-ant-a-wrong-key', ANTHROPIC_BASE_URL: api.url },
        out,
      );

      expect(run.stdout).toMatch(/^Job classification-[0-9a-f]+: failed in /m);
      expect(run.stdout.split('\n').filter((line) => /refused|ApiAuthError|authentication/.test(line))).toEqual([
        '  failure   the API refused the key (401): check ANTHROPIC_API_KEY',
      ]);
      expect(run.stderr).not.toMatch(/ApiAuthError|refused|\n\s+at /);
      expect(run.code).toBe(1);
    } finally {
      await api.stop();
      await rm(out, { recursive: true, force: true });
    }
  }, 120_000);
});
