/**
 * Jobs set up the way Prepare leaves them (job record, chunk records, attempt 1 of each chunk as a
 * row index over a source object, the invalid-line report), and a driver that runs a chunk's lifecycle against the simulator, for
 * the tests of Submit, Poll, Collect and Finalize.
 *
 *   const job = await seedJob(aws, { chunks: [requests(3, 'a'), requests(2, 'b')] });
 *   const chunk = await driveChunk(ctx, job.jobId, 0);   // submit → poll … → collect, retries included
 */
import { randomUUID } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BatchesClient } from '../../shared/anthropic/client';
import type { BatchRequest } from '../../shared/anthropic/types';
import type { PipelineConfig } from '../../shared/config';
import { requestLines, RowIndex, storeRowIndex } from '../../shared/jobs/chunk-files';
import { splitLines } from '../../shared/jsonl/lines';
import { leadingCustomId } from '../../shared/jsonl/raw-json';
import { getItem, putItem } from '../../shared/store/dynamo';
import { chunkSk, JOB_SK, JOBS_GSI_PK, jobPk, type ChunkItem, type JobItem } from '../../shared/store/items';
import { readRowRecord } from '../../shared/jobs/row-records';
import { jobKeys, type JobKeys } from '../../shared/store/keys';
import { BATCH_BODY_OVERHEAD } from '../../shared/validation/request';
import { startSimulator } from '../../simulator/server';
import type { SimulatorHandle, SimulatorOptions } from '../../simulator/options';
import { collectResults } from '../../shared/jobs/collect-results';
import type { AttemptKey, CollectOutput, SubmitOutput } from '../../shared/jobs/contract';
import { pollBatch } from '../../shared/jobs/poll-batch';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import type { LocalAws } from './aws';

export const TEST_API_KEY = 'sk-test-chunks';

export interface SeedOptions {
  /** The valid requests of each chunk, in input order. */
  chunks: BatchRequest[][];
  jobId?: string;
  /** Lines of Prepare's invalid-line report (counted as invalid rows). */
  invalid?: Array<{ line: number; custom_id?: string; code: string; reason: string }>;
  validationMode?: 'strict' | 'lenient';
  /** What Prepare concluded; 'rejected' writes no chunk records (as Prepare does). */
  outcome?: 'ready' | 'rejected' | 'empty';
  cancelRequested?: boolean;
  input?: { bucket?: string; key?: string };
  /** The input file itself (written to the input key; the job records its ETag). */
  inputText?: string;
  /** Buckets the job's row records are spread over (Prepare's rowShards; default 1). */
  rowShards?: number;
}

export interface SeededJob {
  jobId: string;
  keys: JobKeys;
  chunks: BatchRequest[][];
  input: { bucket: string; key: string };
}

export const uniqueJobId = (prefix = 'job') => `${prefix}-${randomUUID().slice(0, 8)}`;

export const serialize = (requests: readonly BatchRequest[]) => requests.map((r) => JSON.stringify(r) + '\n').join('');

/** Body bytes of a create with these requests, as Prepare counts them. */
export const createBytes = (requests: readonly BatchRequest[]) =>
  BATCH_BODY_OVERHEAD + requests.reduce((sum, r) => sum + Buffer.byteLength(JSON.stringify(r)), 0) + Math.max(0, requests.length - 1);

export async function seedJob(aws: LocalAws, options: SeedOptions): Promise<SeededJob> {
  const jobId = options.jobId ?? uniqueJobId();
  const keys = jobKeys(jobId);
  const outcome = options.outcome ?? (options.chunks.length === 0 ? 'empty' : 'ready');
  const input = { bucket: options.input?.bucket ?? aws.bucket, key: options.input?.key ?? `inbox/${jobId}.jsonl` };
  const invalid = options.invalid ?? [];
  const validRows = options.chunks.reduce((sum, rows) => sum + rows.length, 0);
  const createdAt = '2026-01-02T03:04:05.000Z';
  let etag = 'etag-1';
  if (options.inputText !== undefined) {
    const put = await aws.s3.send(new PutObjectCommand({ Bucket: input.bucket, Key: input.key, Body: options.inputText }));
    etag = put.ETag!.replace(/"/g, '');
  }
  const job: JobItem = {
    pk: jobPk(jobId),
    sk: JOB_SK,
    type: 'job',
    jobId,
    status: outcome === 'rejected' ? 'rejected' : 'running',
    bucket: input.bucket,
    key: input.key,
    etag,
    sourceToken: etag,
    validationMode: options.validationMode ?? (invalid.length > 0 && outcome !== 'rejected' ? 'lenient' : 'strict'),
    createdAt,
    updatedAt: createdAt,
    totalRows: validRows + invalid.length,
    validRows,
    invalidRows: invalid.length,
    chunkCount: outcome === 'rejected' ? 0 : options.chunks.length,
    rowShards: options.rowShards ?? 1,
    cancelRequested: options.cancelRequested,
    gsi1pk: JOBS_GSI_PK,
    gsi1sk: `${createdAt}#${jobId}`,
  };
  await putItem(aws.dynamo, aws.table, job);
  await putText(aws, keys.invalidWork, invalid.map((line) => JSON.stringify(line) + '\n').join(''));
  if (outcome !== 'rejected') {
    for (const [chunk, rows] of options.chunks.entries()) {
      await putAttemptOne(aws, jobId, chunk, serialize(rows));
      const bytes = createBytes(rows);
      const item: ChunkItem = {
        pk: jobPk(jobId),
        sk: chunkSk(chunk),
        type: 'chunk',
        jobId,
        chunk,
        status: 'pending',
        rows: rows.length,
        bytes,
        firstLine: 1,
        lastLine: rows.length,
        currentAttempt: 1,
        attempts: [{ attempt: 1, rows: rows.length, bytes, intentAt: '' }],
        updatedAt: createdAt,
      };
      await putItem(aws.dynamo, aws.table, item);
    }
  }
  return { jobId, keys, chunks: options.chunks, input };
}

/**
 * Attempt 1 of a chunk as Prepare stores it: `text` (request lines; blank ones are skipped) becomes
 * a source object of its own, and the chunk's row index names each line's request in it.
 */
export async function putAttemptOne(aws: LocalAws, jobId: string, chunk: number, text: string | Buffer): Promise<void> {
  const key = `seeded/${jobId}/chunk-${chunk}.jsonl`;
  const put = await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: key, Body: text }));
  const index = new RowIndex();
  for await (const line of splitLines([Buffer.from(text)])) {
    const start = line.bytes.findIndex((byte) => !WHITESPACE.has(byte));
    if (start === -1) continue;
    let end = line.bytes.length;
    while (WHITESPACE.has(line.bytes[end - 1]!)) end -= 1;
    const request = line.bytes.subarray(start, end);
    const customId = leadingCustomId(request, { mayRepeat: true }) ?? (JSON.parse(request.toString('utf8')) as { custom_id: string }).custom_id;
    index.add(line.offset + start, request.length, customId);
  }
  const source = { bucket: aws.bucket, key, versionId: put.VersionId, etag: put.ETag!.replace(/"/g, '') };
  await storeRowIndex(aws.s3, aws.bucket, jobId, chunk, source, index);
}

const WHITESPACE = new Set([0x20, 0x09, 0x0d, 0x0a]);

/** An attempt's requests as create would send them (before wire ids), one a line: what a requests file of it would hold. */
export async function attemptText(aws: LocalAws, ref: AttemptKey): Promise<string> {
  let text = '';
  for await (const line of requestLines(aws.s3, aws.bucket, ref)) text += line.toString('utf8') + '\n';
  return text;
}

export async function putText(aws: LocalAws, key: string, body: string | Buffer): Promise<void> {
  await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: key, Body: body }));
}

/** An object's text, or undefined when it does not exist. */
export async function readText(aws: LocalAws, key: string): Promise<string | undefined> {
  try {
    const response = await aws.s3.send(new GetObjectCommand({ Bucket: aws.bucket, Key: key }));
    return await response.Body!.transformToString('utf8');
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
    throw error;
  }
}

/** An object's JSONL lines, parsed. */
export async function readJsonl<T = Record<string, unknown>>(aws: LocalAws, key: string): Promise<T[]> {
  const text = await readText(aws, key);
  if (text === undefined) throw new Error(`${key} does not exist`);
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

export const readChunkItem = async (aws: LocalAws, jobId: string, chunk: number) =>
  (await getItem<ChunkItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: chunkSk(chunk) }))!;

export const readJobItem = async (aws: LocalAws, jobId: string) => (await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK }))!;

export const readRow = async (aws: LocalAws, jobId: string, customId: string) => readRowRecord(aws.dynamo, aws.table, await readJobItem(aws, jobId), customId);

export interface ApiContext {
  sim: SimulatorHandle;
  api: BatchesClient;
}

/** A simulator and our client pointed at it (retries without waiting). */
export async function startApi(options: SimulatorOptions = {}): Promise<ApiContext> {
  const sim = await startSimulator({ timeScale: 1, processingSeconds: 60, ...options });
  const api = new BatchesClient({ apiKey: TEST_API_KEY, baseUrl: sim.url, sleep: async () => undefined });
  return { sim, api };
}

export async function stopApi(context: ApiContext | undefined): Promise<void> {
  await context?.api.close();
  await context?.sim.stop();
}

/** A local clock that moves only with the simulator's: `advance` moves both, so local and API times agree to the millisecond. */
export function sharedClock(sim: SimulatorHandle): { now: () => number; advance(seconds: number): void } {
  let now = sim.now();
  return {
    now: () => now,
    advance(seconds: number) {
      sim.advance(seconds);
      now += seconds * 1000;
    },
  };
}

export interface ChunkContext {
  aws: LocalAws;
  sim: SimulatorHandle;
  api: BatchesClient;
  config: PipelineConfig;
}

export interface DrivenChunk {
  submits: SubmitOutput[];
  polls: number;
  collects: CollectOutput[];
}

/**
 * Runs a chunk's lifecycle as the workflow does — Submit, Wait/Poll until ended, Collect, and again
 * for each retry — moving the simulator's clock instead of sleeping.
 */
export async function driveChunk(ctx: ChunkContext, jobId: string, chunk: number, maxRounds = 10): Promise<DrivenChunk> {
  const deps = { s3: ctx.aws.s3, dynamo: ctx.aws.dynamo, api: ctx.api, config: ctx.config };
  const driven: DrivenChunk = { submits: [], polls: 0, collects: [] };
  for (let round = 0; round < maxRounds; round++) {
    const submitted = await submitChunk({ jobId, chunk }, deps);
    driven.submits.push(submitted);
    if (submitted.batchId !== null) {
      let wait = submitted.waitSeconds;
      for (;;) {
        ctx.sim.advance(wait);
        const polled = await pollBatch({ jobId, chunk, attempt: submitted.attempt, batchId: submitted.batchId }, deps);
        driven.polls += 1;
        if (polled.ended) break;
        wait = polled.waitSeconds;
      }
    }
    const collected = await collectResults({ jobId, chunk, attempt: submitted.attempt, batchId: submitted.batchId }, deps);
    driven.collects.push(collected);
    if (!collected.retry) return driven;
  }
  throw new Error(`chunk ${chunk} of ${jobId} still retrying after ${maxRounds} rounds`);
}
