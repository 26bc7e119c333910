/**
 * `batchline run` and `batchline serve` on a file whose name needs encoding in a URL: the job ends,
 * the summary is printed, the outputs are copied out and `run` exits, as for any other name.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin/batchline.mjs');
const EXAMPLE = path.join(ROOT, 'examples/classification.jsonl');
/** A space, a plus, a non-ASCII letter, a lone percent sign and the URL delimiters # ? & =, in one name. */
const NAME = 'my data+ü 100% #?&=.jsonl';
const OUTPUTS = ['errors.jsonl', 'invalid.jsonl', 'results.jsonl', 'summary.html', 'summary.json'];

// Not on moto (npm run test:moto): each CLI process starts a moto_server of its own, and under load
// two in a row outran the limits; the same names run through the pipeline on moto in file-names.test.ts.
describe.skipIf(process.env.BATCHLINE_TEST_BACKEND === 'moto')('the batchline command on a file name that needs encoding', () => {
  let cwd: string;
  let run: { code: number | null; stdout: string; stderr: string };
  let serve: ChildProcess;
  let served = '';
  let servedJob: string | undefined;

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-names-'));
    await mkdir(path.join(cwd, 'inbox'));
    await copyFile(EXAMPLE, path.join(cwd, NAME));
    // One after the other: each starts a local stack (a synth of the app). Alone this takes seconds;
    // the limits are for a machine running other suites beside it, where it took minutes.
    run = await new Promise<typeof run>((resolve) => {
      const child = execFile(process.execPath, [BIN, 'run', NAME, '--out', 'ran'], { cwd, timeout: 280_000 }, (_error, stdout, stderr) =>
        resolve({ code: child.exitCode, stdout, stderr }),
      );
    });
    serve = spawn(process.execPath, [BIN, 'serve', '--dir', 'inbox', '--out', 'served'], { cwd });
    serve.stdout!.setEncoding('utf8').on('data', (text: string) => (served += text));
    const serving = (async () => {
      await printed(/Drop a \.jsonl file/);
      await copyFile(EXAMPLE, path.join(cwd, 'inbox', NAME));
      servedJob = (await printed(/outputs {3}served\/(my-data-u-100-[0-9a-f]+)\//))[1];
    })();
    // A job that never ends should fail the test below, not time out this hook.
    await Promise.race([serving.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 280_000))]);
  }, 600_000);

  afterAll(async () => {
    if (serve && serve.exitCode === null) {
      serve.kill('SIGINT');
      await Promise.race([once(serve, 'exit'), new Promise((resolve) => setTimeout(resolve, 10_000))]);
      if (serve.exitCode === null) serve.kill('SIGKILL');
    }
    await rm(cwd, { recursive: true, force: true });
  });

  /** Resolves once serve's stdout has matched `pattern`. */
  function printed(pattern: RegExp): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = served.match(pattern);
        if (!match) return;
        serve.stdout!.off('data', check);
        serve.off('exit', gone);
        resolve(match);
      };
      const gone = () => reject(new Error(`serve exited before printing ${pattern}:\n${served}`));
      serve.stdout!.on('data', check);
      serve.once('exit', gone);
      check();
    });
  }

  it('run exits 0 with the summary and copies the outputs, which name the input as stored', async () => {
    expect(run.stderr).not.toMatch(/Error|Warning/);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Job my-data-u-100-[0-9a-f]+: succeeded in /m);
    expect(run.stdout).toContain('rows      30 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
    expect((await readdir(path.join(cwd, 'ran'))).sort()).toEqual(OUTPUTS);
    const summary = JSON.parse(await readFile(path.join(cwd, 'ran', 'summary.json'), 'utf8'));
    expect(summary.input.key).toBe(`inbox/${NAME}`);
  });

  it('serve runs the file dropped in its folder and copies its outputs out', async () => {
    expect(served).toContain(`${NAME} → job ${servedJob}`);
    expect(served).toContain('rows      30 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
    expect((await readdir(path.join(cwd, 'served', servedJob!))).sort()).toEqual(OUTPUTS);
    const summary = JSON.parse(await readFile(path.join(cwd, 'served', servedJob!, 'summary.json'), 'utf8'));
    expect(summary.input.key).toBe(`inbox/${NAME}`);
  });
});
