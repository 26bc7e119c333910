/**
 * The stack commands find the prefixes of the stack they talk to: `batchline serve` runs a local
 * stack under prefixes of its own (from BATCHLINE_*_PREFIX), and `submit`, `get`, `results` and
 * `rerun`, real processes told nothing of them, upload into its inbox and read from its work and
 * results prefixes.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchline, startBatchline, type Running } from '../support/cli';

const SERVE_ENV = { BATCHLINE_INBOX_PREFIX: 'team/in/', BATCHLINE_WORK_PREFIX: 'team/work/', BATCHLINE_RESULTS_PREFIX: 'team/out/' };
const request = (id: string) =>
  JSON.stringify({ custom_id: id, params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: `Classify ticket ${id}.` }] } });

describe('the stack commands against a stack under prefixes of its own', () => {
  let cwd: string;
  let serve: Running;
  let jobId: string;
  // The commands get none of the serving process's prefix variables: only what its state file says.
  const plain = Object.fromEntries(Object.keys(SERVE_ENV).map((name) => [name, '']));

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-cli-prefixes-'));
    serve = startBatchline(['serve', '--dir', 'drop', '--out', 'out'], { cwd, env: SERVE_ENV });
    await serve.matched(/Drop a \.jsonl file/);
  }, 120_000);
  afterAll(async () => {
    if (serve?.running) serve.signal('SIGKILL');
    await rm(cwd, { recursive: true, force: true });
  });

  it('serve records the prefixes in its state file and watches into the inbox prefix', async () => {
    const state = JSON.parse(await readFile(path.join(cwd, '.batchline/local.json'), 'utf8'));
    expect(state.prefixes).toEqual({ inbox: 'team/in/', work: 'team/work/', results: 'team/out/' });
    expect(serve.stdout).toMatch(/→ s3:\/\/[^/]+\/team\/in\//);
  });

  it('submit uploads into the inbox prefix and points at the outputs under the results prefix', async () => {
    const file = path.join(cwd, 'tickets.jsonl');
    await writeFile(file, `${['t-1', 't-2', 't-3'].map(request).join('\n')}\n`);

    const run = await batchline(['submit', '--local', cwd, 'tickets.jsonl'], { cwd, env: plain });

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Uploading tickets\.jsonl to s3:\/\/[^/]+\/team\/in\/tickets\.jsonl \(strict\)$/m);
    jobId = /^Job (\S+)$/m.exec(run.stdout)![1]!;
    expect(run.stdout).toMatch(new RegExp(`^Outputs in s3://[^/]+/team/out/${jobId}/ `, 'm'));
  });

  it("get reads a row's result line from the work prefix", async () => {
    const run = await batchline(['get', '--local', cwd, jobId, 't-2', '--json'], { cwd, env: plain });
    expect(run.code).toBe(0);
    const document = JSON.parse(run.stdout);
    expect(document).toMatchObject({ customId: 't-2', status: 'succeeded', resultLocation: { key: expect.stringMatching(/^team\/work\//) } });
    expect(document.result).toMatchObject({ custom_id: 't-2', result: { type: 'succeeded' } });
    expect(document.resultUnavailable).toBeNull();
  });

  it('results downloads the outputs from the results prefix', async () => {
    const run = await batchline(['results', '--local', cwd, jobId, '--out', 'downloaded'], { cwd, env: plain });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect((await readdir(path.join(cwd, 'downloaded'))).sort()).toEqual(['errors.jsonl', 'invalid.jsonl', 'results.jsonl', 'summary.html', 'summary.json']);
    const rows = (await readFile(path.join(cwd, 'downloaded', 'results.jsonl'), 'utf8')).trim().split('\n');
    expect(rows.map((line) => JSON.parse(line).custom_id)).toEqual(['t-1', 't-2', 't-3']);
  });

  it("rerun copies the input into the inbox prefix and reuses the job's outputs", async () => {
    const run = await batchline(['rerun', '--local', cwd, jobId], { cwd, env: plain });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^Rerunning job ${jobId}: s3://[^/]+/team/in/tickets\\.rerun-\\S+\\.jsonl$`, 'm'));
    expect(run.stdout).toMatch(/^Outputs in s3:\/\/[^/]+\/team\/out\/\S+\/ /m);
  });
});
