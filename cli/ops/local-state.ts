/**
 * How a running local stack can be found from another process: `batchline serve` writes
 * `.batchline/local.json` in its working folder when the stack is up and removes it when it stops;
 * `--local DIR` (or BATCHLINE_LOCAL) reads it. The endpoints are loopback emulators, the
 * credentials are theirs (S3RVER), so the file holds nothing secret.
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LOCAL_REGION } from '../../local/emulators';
import { processAlive } from '../../local/state';
import { DEFAULT_PREFIXES, prefixesProblem, type Prefixes } from '../../shared/config';

export const LOCAL_STATE_DIR = '.batchline';
export const LOCAL_STATE_FILE = 'local.json';

export interface LocalStackState {
  version: 1;
  /** The process that runs the stack: a state file whose process is gone is stale. */
  pid: number;
  startedAt: string;
  region: string;
  s3Endpoint: string;
  dynamodbEndpoint: string;
  bucket: string;
  table: string;
  /** Absent in a file an older version wrote: the defaults. */
  prefixes?: Prefixes;
}

/** What writeLocalState needs of a started local stack (local/runtime.ts LocalStack has it all). */
export interface RunningLocalStack {
  s3Endpoint: string;
  bucket: string;
  table: string;
  prefixes: Prefixes;
  /** The handlers' environment: AWS_ENDPOINT_URL_DYNAMODB and AWS_REGION come from here. */
  env: Record<string, string>;
}

/** The local stack could not be found or reached. */
export class LocalStackUnavailable extends Error {
  override readonly name = 'LocalStackUnavailable';
}

export const localStatePath = (dir: string) => path.join(dir, LOCAL_STATE_DIR, LOCAL_STATE_FILE);

/** For `batchline serve`: records the running stack under `dir`; returns the file written. */
export async function writeLocalState(dir: string, stack: RunningLocalStack, now: () => Date = () => new Date()): Promise<string> {
  const dynamodbEndpoint = stack.env.AWS_ENDPOINT_URL_DYNAMODB;
  if (!dynamodbEndpoint) throw new LocalStackUnavailable('the local stack has no AWS_ENDPOINT_URL_DYNAMODB in its environment');
  const state: LocalStackState = {
    version: 1,
    pid: process.pid,
    startedAt: now().toISOString(),
    region: stack.env.AWS_REGION ?? LOCAL_REGION,
    s3Endpoint: stack.s3Endpoint,
    dynamodbEndpoint,
    bucket: stack.bucket,
    table: stack.table,
    prefixes: stack.prefixes,
  };
  const file = localStatePath(dir);
  await mkdir(path.dirname(file), { recursive: true });
  // Written whole, then renamed: a reader never sees half a file.
  const partial = `${file}.${process.pid}.tmp`;
  await writeFile(partial, JSON.stringify(state, null, 2) + '\n');
  await rename(partial, file);
  return file;
}

/** For `batchline serve` as it stops: removes the state file if this process wrote it. */
export async function removeLocalState(dir: string): Promise<void> {
  const file = localStatePath(dir);
  const state = await readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as Partial<LocalStackState>,
    () => undefined,
  );
  if (state?.pid === process.pid) await rm(file, { force: true });
}

/** Reads the state of the stack serving in `location` (its folder, or the state file itself). */
export async function readLocalState(location: string): Promise<LocalStackState & { file: string; prefixes: Prefixes }> {
  const isFile = await stat(location).then(
    (s) => s.isFile(),
    () => false,
  );
  const file = isFile ? location : localStatePath(location);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new LocalStackUnavailable(`no local stack is serving in ${location} (${file} does not exist; start one there with "batchline serve")`);
  }
  let state: Partial<LocalStackState>;
  try {
    state = JSON.parse(text) as Partial<LocalStackState>;
  } catch {
    throw new LocalStackUnavailable(`${file} is not JSON`);
  }
  for (const field of ['s3Endpoint', 'dynamodbEndpoint', 'bucket', 'table'] as const) {
    if (typeof state[field] !== 'string' || state[field] === '') throw new LocalStackUnavailable(`${file} has no ${field}`);
  }
  if (typeof state.pid === 'number' && !processAlive(state.pid)) {
    throw new LocalStackUnavailable(`the local stack recorded in ${file} is no longer running (process ${state.pid} has exited)`);
  }
  const prefixes = state.prefixes ?? DEFAULT_PREFIXES;
  const wrong = prefixesProblem({ inbox: prefixes.inbox, work: prefixes.work, results: prefixes.results });
  if (wrong) throw new LocalStackUnavailable(`${file}: its ${wrong.which} prefix ${wrong.problem}`);
  return { ...(state as LocalStackState), region: state.region ?? LOCAL_REGION, file, prefixes };
}
