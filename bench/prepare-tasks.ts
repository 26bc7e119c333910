/**
 * The measured halves of the prepare benchmark, each run in its own child process (bench/child.ts):
 * Prepare's core on an input object, and the bare pass it is compared with — split on `\n` with
 * Buffer.indexOf and JSON.parse each line, over the same bytes read the same way (a GetObject body
 * from the same s3rver), or straight from the file on disk for context.
 */
import { createReadStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import { isBlank, LineSplitter, type RawLine } from '../shared/jsonl/lines';
import { CustomIdSet, validateLine } from '../shared/validation/request';
import { requestLines } from '../shared/jobs/chunk-files';
import { prepareJob } from '../shared/jobs/prepare-job';
import { registerJob } from '../shared/jobs/register-job';
import { localDynamoClient, localS3Client } from '../local/emulators';
import { AwsMeter, type MeterReading } from './aws-meter';

export interface ObjectRef {
  s3Endpoint: string;
  bucket: string;
  key: string;
}

export interface BarePass {
  ms: number;
  bytes: number;
  lines: number;
}

/** The baseline: nothing but splitting lines and parsing them. */
async function splitAndParse(source: AsyncIterable<Uint8Array>): Promise<Omit<BarePass, 'ms'>> {
  let bytes = 0;
  let lines = 0;
  let rest: Buffer | undefined;
  for await (const piece of source) {
    const incoming = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    bytes += incoming.length;
    const chunk = rest ? Buffer.concat([rest, incoming]) : incoming;
    let from = 0;
    for (let at = chunk.indexOf(0x0a, from); at !== -1; at = chunk.indexOf(0x0a, from)) {
      if (at > from) JSON.parse(chunk.toString('utf8', from, at));
      lines += 1;
      from = at + 1;
    }
    rest = from < chunk.length ? chunk.subarray(from) : undefined;
  }
  if (rest) {
    JSON.parse(rest.toString('utf8'));
    lines += 1;
  }
  return { bytes, lines };
}

export async function bareFromS3(input: ObjectRef): Promise<BarePass> {
  const s3 = localS3Client(input.s3Endpoint);
  const start = performance.now();
  const response = await s3.send(new GetObjectCommand({ Bucket: input.bucket, Key: input.key }));
  const counts = await splitAndParse(response.Body as AsyncIterable<Uint8Array>);
  const ms = performance.now() - start;
  s3.destroy();
  return { ms, ...counts };
}

export async function bareFromDisk(input: { path: string }): Promise<BarePass> {
  const start = performance.now();
  // 64 KiB reads, the size of an HTTP body's pieces.
  const counts = await splitAndParse(createReadStream(input.path, { highWaterMark: 64 * 1024 }));
  return { ms: performance.now() - start, ...counts };
}

/**
 * Prepare's reading half alone: the one line splitter and validateLine (with the custom_id set),
 * nothing written. Tells the cost of validation apart from the cost of writing chunk files.
 */
export async function validateFromS3(input: ObjectRef): Promise<BarePass & { valid: number }> {
  const s3 = localS3Client(input.s3Endpoint);
  const start = performance.now();
  const response = await s3.send(new GetObjectCommand({ Bucket: input.bucket, Key: input.key }));
  const customIds = new CustomIdSet();
  let lines = 0;
  let bytes = 0;
  let valid = 0;
  // Split as Prepare splits: synchronously within each network piece.
  const splitter = new LineSplitter();
  const take = (line: RawLine) => {
    lines += 1;
    bytes += line.length;
    if (!isBlank(line.bytes) && validateLine(line, { customIds }).ok) valid += 1;
  };
  for await (const piece of response.Body as AsyncIterable<Uint8Array>) {
    splitter.push(piece);
    for (let line = splitter.next(); line !== undefined; line = splitter.next()) take(line);
  }
  const last = splitter.end();
  if (last !== undefined) take(last);
  const ms = performance.now() - start;
  s3.destroy();
  return { ms, bytes, lines, valid };
}

export interface PrepareRun {
  jobId: string;
  ms: number;
  /** PrepareJob invocations the file took (prepareLinesPerInvocation). */
  invocations: number;
  outcome: string;
  chunks: number;
  validRows: number;
  invalidRows: number;
  aws: MeterReading;
}

/** Registers the object as a job (not timed), then times Prepare's core on it. */
export async function prepareObject(input: ObjectRef & { dynamoEndpoint: string; table: string }): Promise<PrepareRun> {
  const s3 = localS3Client(input.s3Endpoint);
  const dynamo = localDynamoClient(input.dynamoEndpoint);
  const meter = new AwsMeter();
  meter.attach(s3, 's3');
  meter.attach(dynamo, 'dynamodb');
  const config = readPipelineConfig({ BATCHLINE_BUCKET: input.bucket, BATCHLINE_TABLE: input.table });
  const { jobId } = await registerJob({ bucket: input.bucket, key: input.key }, { s3, dynamo, config });
  meter.reset();
  const start = performance.now();
  let result = await prepareJob({ jobId }, { s3, dynamo, config });
  // A file past prepareLinesPerInvocation: the workflow's InputLeft loop, timed as a whole.
  let invocations = 1;
  for (; result.outcome === 'partial'; invocations++) result = await prepareJob({ jobId }, { s3, dynamo, config });
  const ms = performance.now() - start;
  s3.destroy();
  dynamo.destroy();
  return {
    jobId,
    ms,
    invocations,
    outcome: result.outcome,
    chunks: result.chunks.length,
    validRows: result.validRows,
    invalidRows: result.invalidRows,
    aws: meter.reading(),
  };
}

/**
 * Every chunk's attempt 1 read back as Submit reads it (requestLines: the row index, then the
 * requests cut from the input's pinned byte range), nothing sent. Shows the readers stream.
 */
export async function readBackFromS3(input: ObjectRef & { jobId: string; chunks: number }): Promise<{ ms: number; requests: number; bytes: number }> {
  const s3 = localS3Client(input.s3Endpoint);
  const start = performance.now();
  let requests = 0;
  let bytes = 0;
  for (let chunk = 0; chunk < input.chunks; chunk++) {
    for await (const line of requestLines(s3, input.bucket, { jobId: input.jobId, chunk, attempt: 1 })) {
      requests += 1;
      bytes += line.length;
    }
  }
  const ms = performance.now() - start;
  s3.destroy();
  return { ms, requests, bytes };
}
