/**
 * The CDK app, synthesized in this process with bundling skipped (the local runtime imports the
 * handlers from source and needs no bundles). A synth still takes seconds, so the template is
 * cached under .batchline/cache/, keyed by everything it depends on: the sources of infra/ and
 * shared/ (infra imports shared), the handler file names, cdk.json, the lockfile and the context.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CfnTemplate } from './template';
import { applyContext, PREBUILT_TEMPLATE_FILE, type PrebuiltTemplate } from '../infra/prebuilt-template';

export interface SynthOptions {
  /** The repository root. */
  root: string;
  /** Merged over cdk.json's context; `batchline:settings` is merged key by key. */
  context?: Record<string, unknown>;
  /** Reuse a template synthesized from the same inputs. Default true. */
  cache?: boolean;
  /** Called when the app is really synthesized (no cached template), which takes seconds. */
  onSynth?: () => void;
}

const SETTINGS_CONTEXT = 'batchline:settings';

export async function synthesizeTemplate(options: SynthOptions): Promise<CfnTemplate> {
  // An installed package ships its template and no CDK (infra/prebuilt-template.ts).
  const shipped = await readFile(path.join(options.root, PREBUILT_TEMPLATE_FILE), 'utf8').catch(() => undefined);
  if (shipped !== undefined) {
    const prebuilt = JSON.parse(shipped) as PrebuiltTemplate;
    return applyContext(prebuilt, mergeContext(prebuilt.context, options.context ?? {})) as unknown as CfnTemplate;
  }
  const projectContext = JSON.parse(await readFile(path.join(options.root, 'cdk.json'), 'utf8')) as { context?: Record<string, unknown> };
  const context = mergeContext(projectContext.context ?? {}, options.context ?? {});
  const cacheFile = path.join(options.root, '.batchline', 'cache', `template-${await inputsDigest(options.root, context)}.json`);
  if (options.cache !== false) {
    const cached = await readFile(cacheFile, 'utf8').catch(() => undefined);
    if (cached !== undefined) return JSON.parse(cached) as CfnTemplate;
  }
  options.onSynth?.();
  // Imported only on a cache miss: loading aws-cdk-lib alone takes a second or two.
  const { synthTemplate } = await import('../infra/app');
  const outdir = await mkdtemp(path.join(tmpdir(), 'batchline-cdk-'));
  let template: CfnTemplate;
  try {
    template = synthTemplate({ context, bundling: false, outdir }) as unknown as CfnTemplate;
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
  if (options.cache !== false) {
    await mkdir(path.dirname(cacheFile), { recursive: true });
    // Written aside and renamed: two processes synthesizing at once never read half a file.
    const partial = `${cacheFile}.${process.pid}.tmp`;
    await writeFile(partial, JSON.stringify(template));
    await rename(partial, cacheFile);
    await pruneCache(path.dirname(cacheFile));
  }
  return template;
}

/** Templates kept: one per combination of settings in use, and a few stale ones after edits to infra/. */
const CACHE_ENTRIES = 20;

async function pruneCache(dir: string): Promise<void> {
  const files = await readdir(dir).then((names) => names.filter((name) => /^template-[0-9a-f]+\.json$/.test(name)));
  if (files.length <= CACHE_ENTRIES) return;
  const dated = await Promise.all(files.map(async (name) => ({ name, mtime: (await stat(path.join(dir, name))).mtimeMs })));
  dated.sort((a, b) => b.mtime - a.mtime);
  await Promise.all(dated.slice(CACHE_ENTRIES).map(({ name }) => rm(path.join(dir, name), { force: true })));
}

export function mergeContext(project: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const merged = { ...project, ...overrides };
  const settings = overrides[SETTINGS_CONTEXT];
  if (settings !== undefined) {
    const base = project[SETTINGS_CONTEXT];
    merged[SETTINGS_CONTEXT] = { ...(typeof base === 'object' && base !== null ? base : {}), ...(settings as object) };
  }
  return merged;
}

async function inputsDigest(root: string, context: Record<string, unknown>): Promise<string> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(context));
  for (const file of ['cdk.json', 'package-lock.json']) {
    hash.update(file).update(await readFile(path.join(root, file)).catch(() => Buffer.alloc(0)));
  }
  for (const dir of ['infra', 'shared']) {
    for (const file of await sourceFiles(path.join(root, dir))) {
      hash.update(path.relative(root, file)).update(await readFile(file));
    }
  }
  // Only the names of the handlers matter to the template (each must exist).
  hash.update((await sourceFiles(path.join(root, 'functions'))).map((file) => path.relative(root, file)).join('\n'));
  return hash.digest('hex').slice(0, 32);
}

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}
