/**
 * The package as a user gets it: `npm pack` (which builds dist/), installed into an empty folder
 * offline, then the quick start, `estimate`, `serve` with the deployed-stack commands pointed at
 * it, and the construct in a CDK app of the user's. Slow (a pack, two installs, real CLI
 * processes): one file, and timeouts that are margins for a loaded machine.
 *
 * Offline from the npm cache that `npm ci` filled: that cache holds the tarballs of the
 * repository's lockfile but not the registry's package lists that a lockfile-less `npm i` reads,
 * so the folder gets a lockfile made of the repository's own entries for what it installs (the
 * same exact versions a registry install of this package.json would resolve to).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SLOW = 600_000;

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  dev?: boolean;
  link?: boolean;
  [key: string]: unknown;
}

/** What a user's shell would have: no npm script variables of this repository's, no test settings. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    const npmScript = key.startsWith('npm_') && !key.startsWith('npm_config_');
    if (
      npmScript ||
      key === 'npm_config_local_prefix' ||
      key === 'INIT_CWD' ||
      key.startsWith('AWS_') ||
      key.startsWith('POWERTOOLS_') ||
      key.startsWith('BATCHLINE_')
    )
      continue;
    if (key.startsWith('VITEST') || key === 'NODE_OPTIONS' || key === 'TEST') continue;
    env[key] = value;
  }
  return env;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string): Promise<Run> {
  const child = spawn(command, args, { cwd, env: userEnv() });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  return once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

/** The lockfile entries (`node_modules/...`) that installing `names` at the top pulls in, resolved as Node does. */
function closure(packages: Record<string, LockEntry>, names: string[]): Set<string> {
  const found = new Set<string>();
  const resolve = (from: string, name: string): string | undefined => {
    for (let dir = from; ; dir = dir.slice(0, Math.max(dir.lastIndexOf('/node_modules/'), 0))) {
      const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (packages[candidate]) return candidate;
      if (dir === '') return undefined;
    }
  };
  const visit = (key: string) => {
    if (found.has(key)) return;
    found.add(key);
    const entry = packages[key]!;
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) {
      const dependency = resolve(key, name);
      if (dependency) visit(dependency);
      else if (!entry.optionalDependencies?.[name]) throw new Error(`${key} needs ${name}, which the lockfile does not hold`);
    }
  };
  for (const name of names) visit(`node_modules/${name}`);
  return found;
}

async function directorySize(dir: string): Promise<number> {
  let bytes = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) bytes += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return bytes;
}

describe('the npm package', () => {
  let work: string;
  let project: string;
  let tarball: string;
  let lock: { packages: Record<string, LockEntry> };
  let manifest: { version: string; dependencies: Record<string, string>; bin: Record<string, string> };
  let serving: ChildProcess | undefined;

  /** Installs the tarball (and `more` of the repository's locked packages) into the project, offline. */
  async function install(more: string[]): Promise<void> {
    const tgz = `file:${path.basename(tarball)}`;
    const integrity = `sha512-${createHash('sha512')
      .update(await readFile(tarball))
      .digest('base64')}`;
    const ownDependencies = Object.keys(manifest.dependencies);
    const entries: Record<string, LockEntry> = {
      '': {
        name: 'quickstart',
        dependencies: { batchline: tgz, ...Object.fromEntries(more.map((name) => [name, lock.packages[`node_modules/${name}`]!.version!])) },
      },
      'node_modules/batchline': {
        version: manifest.version,
        resolved: tgz,
        integrity,
        dependencies: manifest.dependencies,
        bin: manifest.bin,
      },
    };
    for (const key of closure(lock.packages, [...ownDependencies, ...more])) {
      const { dev: _dev, ...entry } = lock.packages[key]!;
      entries[key] = entry;
    }
    await writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'quickstart', private: true, dependencies: entries['']!.dependencies }, null, 2),
    );
    await writeFile(
      path.join(project, 'package-lock.json'),
      JSON.stringify({ name: 'quickstart', lockfileVersion: 3, requires: true, packages: entries }, null, 2),
    );
    const installed = await run('npm', ['i', '--offline', '--no-audit', '--no-fund'], project);
    expect(installed.code, installed.stderr).toBe(0);
  }

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'batchline-package-'));
    project = path.join(work, 'quickstart');
    await mkdir(project);
    manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
    lock = JSON.parse(await readFile(path.join(ROOT, 'package-lock.json'), 'utf8'));
    const packed = await run('npm', ['pack', '--pack-destination', work], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    tarball = path.join(work, `batchline-${manifest.version}.tgz`);
    await copyFile(tarball, path.join(project, path.basename(tarball)));
    tarball = path.join(project, path.basename(tarball));
    await install([]);
  }, SLOW);
  afterAll(async () => {
    // A serve the test failed to stop must not outlive it.
    if (serving?.exitCode === null && serving.signalCode === null) process.kill(-serving.pid!, 'SIGKILL');
    if (work) await rm(work, { recursive: true, force: true });
  }, SLOW);

  it(
    'installs the CLI with its runtime dependencies and no CDK, TypeScript or build tools',
    async () => {
      const modules = path.join(project, 'node_modules');
      const names = new Set(await readdir(modules));
      for (const runtime of ['s3rver', 'dynalite', 'aws-local-stepfunctions', 'undici']) expect(names.has(runtime), runtime).toBe(true);
      for (const absent of ['aws-cdk-lib', 'aws-cdk', 'constructs', 'cdk-nag', 'tsx', 'typescript', 'esbuild', 'vitest'])
        expect(names.has(absent), absent).toBe(false);
      // Compiled JavaScript, no TypeScript source.
      const shipped = await readdir(path.join(modules, 'batchline'), { recursive: true });
      expect(shipped.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))).toEqual([]);
      expect(shipped).toContain(path.join('dist', 'cli', 'main.js'));

      const own = await directorySize(path.join(modules, 'batchline'));
      const all = await directorySize(modules);
      console.log(
        `installed size: batchline ${(own / 1e6).toFixed(1)} MB, with its dependencies ${(all / 1e6).toFixed(1)} MB (${(await stat(tarball)).size} bytes packed)`,
      );
      expect(own).toBeLessThan(5e6);
    },
    SLOW,
  );

  it(
    'runs the quick start: npx batchline run FILE, locally on the simulator',
    async () => {
      await copyFile(path.join(ROOT, 'examples/classification.jsonl'), path.join(project, 'tickets.jsonl'));
      const result = await run('npx', ['--offline', 'batchline', 'run', 'tickets.jsonl'], project);
      expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
      expect(result.stdout).toContain('rows      30 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
      const jobId = result.stdout.match(/Outputs in batchline-out\/(tickets-[0-9a-f]+)\//)?.[1];
      expect(jobId, result.stdout).toBeDefined();
      const out = path.join(project, 'batchline-out', jobId!);
      expect((await readdir(out)).sort()).toEqual(['errors.jsonl', 'invalid.jsonl', 'results.jsonl', 'summary.html', 'summary.json']);
      const inputIds = (await readFile(path.join(project, 'tickets.jsonl'), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { custom_id: string }).custom_id);
      const results = (await readFile(path.join(out, 'results.jsonl'), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { custom_id: string; status: string });
      expect(results.map((row) => row.custom_id)).toEqual(inputIds);
      expect(new Set(results.map((row) => row.status))).toEqual(new Set(['succeeded']));
      // Nothing was written into the installed package.
      await expect(stat(path.join(project, 'node_modules/batchline/.batchline'))).rejects.toMatchObject({ code: 'ENOENT' });
    },
    SLOW,
  );

  it(
    'applies pipeline settings from the environment to the shipped template',
    async () => {
      const child = spawn('npx', ['--offline', 'batchline', 'run', 'tickets.jsonl'], {
        cwd: project,
        env: { ...userEnv(), BATCHLINE_MAX_REQUESTS_PER_CHUNK: '10' },
      });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
      const [code] = await once(child, 'close');
      expect(code, stdout).toBe(0);
      expect(stdout).toContain('30 rows valid, 0 invalid; 3 chunks');
      expect(stdout).toContain('batches   3 (0 retry attempts, 0 rows retried)');
    },
    SLOW,
  );

  it(
    'estimates a file, and says what it is',
    async () => {
      const estimate = await run('npx', ['--offline', 'batchline', 'estimate', 'tickets.jsonl'], project);
      expect(estimate.code, estimate.stderr).toBe(0);
      expect(estimate.stdout).toMatch(/Estimated cost at batch rates: \$\d[0-9.]* expected /);
      const version = await run('npx', ['--offline', 'batchline', '--version'], project);
      expect(version.stdout.trim()).toBe(`batchline ${manifest.version}`);
    },
    SLOW,
  );

  it(
    'serves a folder, and the stack commands (submit, status, get, results) operate it',
    async () => {
      // The installed command itself (npx would stand between it and Ctrl-C, and report the signal
      // rather than its exit status), in its own process group as in a terminal.
      const serve = spawn(path.join(project, 'node_modules/.bin/batchline'), ['serve', '--dir', 'inbox', '--out', 'served'], {
        cwd: project,
        env: userEnv(),
        detached: true,
      });
      serving = serve;
      let stdout = '';
      serve.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
      try {
        for (;;) {
          if (stdout.includes('Drop a .jsonl file')) break;
          if (serve.exitCode !== null) throw new Error(`serve exited:\n${stdout}`);
          await once(serve.stdout, 'data');
        }
        const submitted = await run('npx', ['--offline', 'batchline', 'submit', 'tickets.jsonl', '--local', '.'], project);
        expect(submitted.code, `${submitted.stdout}\n${submitted.stderr}`).toBe(0);
        const jobId = `${submitted.stdout}\n${submitted.stderr}`.match(/\b(tickets-[0-9a-f]{16})\b/)?.[1];
        expect(jobId, submitted.stdout).toBeDefined();

        const status = await run('npx', ['--offline', 'batchline', 'status', jobId!, '--local', '.'], project);
        expect(status.code, status.stderr).toBe(0);
        expect(status.stdout).toContain('succeeded');
        const row = await run('npx', ['--offline', 'batchline', 'get', jobId!, 'ticket-0001', '--local', '.'], project);
        expect(row.code, row.stderr).toBe(0);
        expect(row.stdout).toContain('succeeded');
        const results = await run('npx', ['--offline', 'batchline', 'results', jobId!, '--local', '.', '--out', 'downloaded'], project);
        expect(results.code, results.stderr).toBe(0);
        expect((await readdir(path.join(project, 'downloaded'))).sort()).toEqual([
          'errors.jsonl',
          'invalid.jsonl',
          'results.jsonl',
          'summary.html',
          'summary.json',
        ]);
      } finally {
        const exited = once(serve, 'exit');
        if (serve.exitCode === null) process.kill(-serve.pid!, 'SIGINT');
        const [code] = serve.exitCode === null ? await exited : [serve.exitCode];
        expect(code, stdout).toBe(0);
        await expect(stat(path.join(project, '.batchline/local.json'))).rejects.toMatchObject({ code: 'ENOENT' });
      }
    },
    SLOW,
  );

  it(
    "exports the Batchline construct: a CDK app of the user's synthesizes the pipeline from the package",
    async () => {
      // What a CDK app has: the CDK, and esbuild for NodejsFunction's bundling.
      await install(['aws-cdk-lib', 'constructs', 'esbuild']);
      await writeFile(
        path.join(project, 'app.mjs'),
        `import { App, Stack } from 'aws-cdk-lib';
import { Batchline } from 'batchline';
// Asset metadata as the cdk CLI asks for it: where each function's bundle is.
const app = new App({ outdir: 'cdk.out', context: { 'aws:cdk:enable-asset-metadata': true } });
const stack = new Stack(app, 'Pipelines');
new Batchline(stack, 'Batchline', { maxAttempts: 3 });
const template = app.synth().getStackByName('Pipelines').template;
const functions = Object.values(template.Resources).filter((resource) => resource.Metadata?.['batchline:entry']);
console.log(JSON.stringify(functions.map((fn) => ({
  entry: fn.Metadata['batchline:entry'],
  asset: fn.Metadata['aws:asset:path'],
  maxAttempts: fn.Properties.Environment.Variables.BATCHLINE_MAX_ATTEMPTS,
}))));
`,
      );
      const synth = await run(process.execPath, ['app.mjs'], project);
      expect(synth.code, synth.stderr).toBe(0);
      const functions = JSON.parse(synth.stdout.trim().split('\n').at(-1)!) as Array<{ entry: string; asset: string; maxAttempts: string }>;
      expect(functions).toHaveLength(14);
      // Each bundle, alone in a folder with no node_modules above it, loads and exports its handler:
      // everything it imports is inside it, as in the zip a deploy uploads.
      const alone = await mkdtemp(path.join(tmpdir(), 'batchline-bundles-'));
      try {
        for (const fn of functions) {
          expect(fn.maxAttempts).toBe('3');
          expect(fn.entry).toMatch(/^functions\/[a-z-]+\.js$/);
          await copyFile(path.join(project, 'cdk.out', fn.asset, 'index.js'), path.join(alone, `${path.basename(fn.entry, '.js')}.cjs`));
        }
        const load = `const out = {};
for (const file of require('node:fs').readdirSync('.')) {
  try { out[file] = typeof require('./' + file).handler; } catch (error) { out[file] = String(error.code ?? error.message); }
}
console.log(JSON.stringify(out));`;
        const loaded = await run(process.execPath, ['-e', load], alone);
        expect(loaded.code, loaded.stderr).toBe(0);
        const handlers = JSON.parse(loaded.stdout.trim().split('\n').at(-1)!) as Record<string, string>;
        expect(Object.keys(handlers)).toHaveLength(14);
        for (const [file, type] of Object.entries(handlers)) expect(type, file).toBe('function');
      } finally {
        await rm(alone, { recursive: true, force: true });
      }

      // The declarations serve a TypeScript app on NodeNext resolution: props are typed, a typo is an error
      // (which also proves they resolve: an import that did not would type them as any).
      await writeFile(
        path.join(project, 'typed.ts'),
        `import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Batchline, type BatchlineProps } from 'batchline';

const stack = new Stack(new App(), 'Pipelines');
const props: BatchlineProps = {
  bucket: s3.Bucket.fromBucketName(stack, 'Data', 'team-data'),
  maxAttempts: 3,
  validationMode: 'lenient',
  removalPolicy: RemovalPolicy.DESTROY,
  schedules: [{ name: 'hourly', cron: 'rate(1 hour)', prefix: 'drops/' }],
};
export const bucketName: string = new Batchline(stack, 'Batchline', props).bucket.bucketName;
// @ts-expect-error: not a prop
new Batchline(stack, 'Typo', { maxAtempts: 3 });
// @ts-expect-error: not a mode
new Batchline(stack, 'Mode', { validationMode: 'loose' });
`,
      );
      const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
      const typed = await run(
        process.execPath,
        [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', 'typed.ts'],
        project,
      );
      expect(typed.code, typed.stdout).toBe(0);
    },
    SLOW,
  );
});
