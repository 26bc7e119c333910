/**
 * End-to-end tests run the synthesized state machine through the local runtime: one local stack per
 * test file (started in beforeAll), request files built here, outputs read back from local S3 and
 * DynamoDB.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { CHUNK_SK_PREFIX, jobPk, type ChunkItem, type RowRecord } from '../../shared/store/items';
import { queryPartition } from '../../shared/store/dynamo';
import { attemptOf, readChunk, readJob } from '../../shared/jobs/chunk-state';
import { requestCustomIds } from '../../shared/jobs/chunk-files';
import { readRowRecord } from '../../shared/jobs/row-records';
import type { BatchResultLine } from '../../shared/anthropic/types';
import { LOCAL_API_KEY, startLocalStack, type LocalEvent, type LocalStack, type LocalStackOptions } from '../../local/runtime';
import { localBackend } from '../../local/emulators';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { bareEtag } from '../../shared/jobs/job-id';
import { jobForUpload, type UploadedObject } from '../../shared/jobs/queries';

/** BATCHLINE_TEST_BACKEND=moto (npm run test:moto): S3 on moto_server, whose buckets here version objects as the deployed one does. */
export const versionedBucket = localBackend() === 'moto';

/** The first start synthesizes the CDK app (cached afterwards), which takes several seconds. */
const START_TIMEOUT_MS = 120_000;

export interface StackUnderTest {
  stack: LocalStack;
  /** Every event the runtime emitted so far. */
  events: LocalEvent[];
  /** A scratch folder for request files. */
  dir: string;
}

export function useLocalStack(options: LocalStackOptions = {}): StackUnderTest {
  const state = { events: [] as LocalEvent[] } as StackUnderTest;
  beforeAll(async () => {
    state.dir = await mkdtemp(path.join(tmpdir(), 'batchline-e2e-'));
    state.stack = await startLocalStack(options);
    state.stack.on((event) => state.events.push(event));
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await state.stack?.stop();
    if (state.dir) await rm(state.dir, { recursive: true, force: true });
  });
  return state;
}

export interface RequestRow {
  custom_id: string;
  params: { model: string; max_tokens: number; messages: Array<{ role: string; content: string }> };
}

/** A valid request: a short classification prompt, different for each id. */
export const request = (customId: string): RequestRow => ({
  custom_id: customId,
  params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: `Classify ticket ${customId}: the app crashes.` }] },
});

/** `prefix-001` … `prefix-NNN`. */
export const ids = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${String(i + 1).padStart(3, '0')}`);

/** Writes lines (rows as JSON, strings as they are) to a file in the scratch folder. */
export async function writeRequests(under: StackUnderTest, name: string, lines: Array<RequestRow | string>): Promise<string> {
  const file = path.join(under.dir, name);
  await writeFile(file, lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n') + '\n');
  return file;
}

export async function readText(stack: LocalStack, key: string): Promise<string> {
  const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.bucket, Key: key }));
  return got.Body!.transformToString();
}

export async function readJsonl<T = Record<string, unknown>>(stack: LocalStack, key: string): Promise<T[]> {
  return (await readText(stack, key))
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

export async function rowRecord(stack: LocalStack, jobId: string, customId: string): Promise<RowRecord | undefined> {
  return readRowRecord(stack.dynamo, stack.table, await readJob(stack.dynamo, stack.table, jobId), customId);
}

/** Resolves with the first event (already seen or to come) that passes the test. */
export function nextEvent<E extends LocalEvent>(under: StackUnderTest, test: (event: LocalEvent) => event is E): Promise<E> {
  const seen = under.events.find(test);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const off = under.stack.on((event) => {
      if (test(event)) {
        off();
        resolve(event);
      }
    });
  });
}

/** The job's chunk records, in chunk order (attempts with their batch ids and nonces). */
export async function chunksOf(stack: LocalStack, jobId: string): Promise<ChunkItem[]> {
  const chunks: ChunkItem[] = [];
  for await (const chunk of queryPartition<ChunkItem>(stack.dynamo, stack.table, jobPk(jobId), CHUNK_SK_PREFIX)) chunks.push(chunk);
  return chunks;
}

/** One line of a batch's results as the API served it, with the user's custom_id in place of the wire id. */
export interface ServedLine {
  /** The user's custom_id: the requests file's line the wire id names. */
  customId: string;
  /** The custom_id the API saw and served: `<nonce>-<line index, base 36>` (shared/jobs/wire-ids.ts). */
  wireId: string;
  /** The line as served, every byte kept but the custom_id's value, which is the user's. */
  raw: string;
  line: BatchResultLine;
}

/**
 * The results the simulator serves for the batch of one chunk attempt (as recorded on the chunk),
 * mapped back to the user's custom_ids. Submit sends request n of the attempt's requests
 * (shared/jobs/chunk-files.ts) as `<attempt nonce>-<n base 36>`; every served line must carry that
 * nonce and name one of the requests, once. `text` is the served file with only each custom_id's
 * value swapped for the user's: what Collect stores, byte for byte.
 */
export async function servedResults(
  stack: LocalStack,
  jobId: string,
  chunk: number,
  attempt: number,
): Promise<{ batchId: string; text: string; lines: ServedLine[] }> {
  const { record } = attemptOf(await readChunk(stack.dynamo, stack.table, jobId, chunk), attempt);
  const { batchId, nonce } = record;
  if (!batchId || !nonce) throw new Error(`chunk ${chunk} attempt ${attempt} of ${jobId} has no batch with a nonce recorded`);
  const sent: string[] = [];
  for await (const customId of requestCustomIds(stack.s3, stack.bucket, { jobId, chunk, attempt })) sent.push(customId);
  const response = await fetch(`${stack.simulator!.url}/v1/messages/batches/${batchId}/results`, {
    headers: { 'x-api-key': LOCAL_API_KEY, 'anthropic-version': '2023-06-01' },
  });
  if (!response.ok) throw new Error(`results of ${batchId}: HTTP ${response.status}`);
  const lines: ServedLine[] = [];
  const seen = new Set<number>();
  const text = (await response.text())
    .split('\n')
    .map((raw) => {
      if (raw === '') return raw;
      const wireId = (JSON.parse(raw) as BatchResultLine).custom_id;
      const wire = /^([0-9a-f]{16})-([0-9a-z]+)$/.exec(wireId);
      const index = wire ? parseInt(wire[2]!, 36) : -1;
      if (wire?.[1] !== nonce || sent[index] === undefined || seen.has(index)) {
        throw new Error(
          `${batchId} served custom_id ${wireId}: not a request of chunk ${chunk} attempt ${attempt} (nonce ${nonce}, ${sent.length} requests), or served twice`,
        );
      }
      seen.add(index);
      const prefix = `{"custom_id":${JSON.stringify(wireId)}`;
      if (!raw.startsWith(prefix)) throw new Error(`${batchId} served a line that does not start with its custom_id: ${raw.slice(0, 80)}`);
      const customId = sent[index]!;
      const mapped = `{"custom_id":${JSON.stringify(customId)}${raw.slice(prefix.length)}`;
      lines.push({ customId, wireId, raw: mapped, line: { ...(JSON.parse(raw) as BatchResultLine), custom_id: customId } });
      return mapped;
    })
    .join('\n');
  return { batchId, text, lines };
}

/**
 * The results of one chunk attempt's batch as the simulator serves them (see servedResults):
 * the user's custom_id → outcome (`errored:<type>` for errors).
 */
export async function batchOutcomes(stack: LocalStack, jobId: string, chunk: number, attempt: number): Promise<Map<string, string>> {
  const outcomes = new Map<string, string>();
  for (const { customId, line } of (await servedResults(stack, jobId, chunk, attempt)).lines) {
    const { result } = line;
    outcomes.set(customId, result.type === 'errored' ? `errored:${result.error.error.type}` : result.type);
  }
  return outcomes;
}

/** The custom_ids whose outcome is `outcome`, sorted. */
export const withOutcome = (outcomes: Map<string, string>, outcome: string): string[] =>
  [...outcomes]
    .filter(([, value]) => value === outcome)
    .map(([customId]) => customId)
    .sort();

/** Resolves once `condition` holds, checking every 50 ms (the test's timeout bounds the wait). */
export async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Puts `rows` under `inbox/<name>` with the object metadata given, and waits for the job it starts: its id. */
export async function uploadRows(
  under: StackUnderTest,
  name: string,
  rows: ReadonlyArray<{ custom_id: string; params: unknown }>,
  metadata: Record<string, string> = {},
): Promise<string> {
  const key = `inbox/${name}`;
  const put = await under.stack.s3.send(
    new PutObjectCommand({ Bucket: under.stack.bucket, Key: key, Body: rows.map((row) => JSON.stringify(row)).join('\n'), Metadata: metadata }),
  );
  return jobOf(under, { bucket: under.stack.bucket, key, etag: bareEtag(put.ETag!), versionId: put.VersionId });
}

/** The job an upload started, once Register has recorded it. */
export async function jobOf(under: StackUnderTest, uploaded: UploadedObject): Promise<string> {
  let jobId: string | undefined;
  await until(async () => {
    jobId = (await jobForUpload(under.stack, uploaded, { since: '1970-01-01T00:00:00Z' }))?.jobId;
    return jobId !== undefined;
  });
  return jobId!;
}
