/**
 * Builds what the package ships (`npm pack` runs it as `prepack`) into dist/, in the repository's
 * shape so that code finding files beside itself finds them there too (dist/ is the package's root
 * for its own code):
 *
 *   dist/cli/main.js          the `batchline` command (bin/batchline.mjs loads it)
 *   dist/infra/index.js       the Batchline construct, and index.d.ts beside it
 *   dist/functions/<name>.js  the handlers: the local runtime imports them, the construct bundles them
 *   dist/chunks/              code they share
 *   dist/template.json        the default stack's template, so the CLI runs locally without the CDK
 *   dist/examples/            the example files (`batchline run` with no file runs one)
 *
 * Dependencies stay imports (the package declares them); only this repository's code is bundled.
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readProjectContext, synthTemplate } from '../infra/app';
import { ENTRY_METADATA } from '../infra/metadata';
import { PREBUILT_TEMPLATE_FILE, type PrebuiltTemplate } from '../infra/prebuilt-template';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = path.join(ROOT, 'dist');

await rm(DIST, { recursive: true, force: true });
const handlers = (await readdir(path.join(ROOT, 'functions'))).filter((name) => name.endsWith('.ts')).map((name) => name.slice(0, -3));
await build({
  absWorkingDir: ROOT,
  entryPoints: {
    'cli/main': 'cli/main.ts',
    'infra/index': 'infra/index.ts',
    ...Object.fromEntries(handlers.map((name) => [`functions/${name}`, `functions/${name}.ts`])),
  },
  outdir: DIST,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  // Stack traces name functions and classes; error names are matched by the workflow (Retry, Catch).
  keepNames: true,
  logLevel: 'warning',
});

// Beside the code, as package.json is beside cli/ in a clone: the version, and ESM for the .js files.
const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
await writeFile(path.join(DIST, 'package.json'), `${JSON.stringify({ type: 'module', version: manifest.version }, null, 2)}\n`);

// The template as the package runs it: entries name the built handlers.
const context = readProjectContext();
const template = synthTemplate({ context, bundling: false }) as PrebuiltTemplate['template'];
for (const resource of Object.values(template.Resources)) {
  const entry = resource.Metadata?.[ENTRY_METADATA];
  if (typeof entry === 'string') resource.Metadata![ENTRY_METADATA] = entry.replace(/\.ts$/, '.js');
}
const prebuilt: PrebuiltTemplate = { context, template };
await writeFile(path.join(DIST, PREBUILT_TEMPLATE_FILE), JSON.stringify(prebuilt));

await mkdir(path.join(DIST, 'examples'));
for (const name of await readdir(path.join(ROOT, 'examples'))) {
  if (name.endsWith('.jsonl') || name === 'README.md') await cp(path.join(ROOT, 'examples', name), path.join(DIST, 'examples', name));
}

// The construct's types: declarations of infra/index.ts and what it reaches, with the relative
// imports spelt as Node resolves them (./x.js), so apps on NodeNext resolution read them too.
const types = path.join(DIST, 'types');
execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', types], {
  cwd: ROOT,
  stdio: 'inherit',
});
for (const entry of await readdir(types, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = path.join(entry.parentPath, entry.name);
  const text = await readFile(file, 'utf8');
  await writeFile(
    file,
    text.replace(/(from\s+'|import\(')(\.{1,2}\/[^']+)(')/g, (_m, head: string, specifier: string, tail: string) => `${head}${specifier}.js${tail}`),
  );
}
console.log(`built ${path.relative(ROOT, DIST)}/: the CLI, the construct, ${handlers.length} handlers, the template`);
