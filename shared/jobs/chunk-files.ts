/**
 * Reading a chunk attempt's requests (`{custom_id, params}` lines in input order, written by Prepare
 * for attempt 1 and by Collect for retries): raw lines for create, custom_ids for the rest. Every
 * step reads an attempt's requests through here, by attempt, never by key: how an attempt's
 * requests are stored is this module's business.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { isBlank, splitLines, type RawLine } from '../jsonl/lines';
import { leadingCustomId } from '../jsonl/raw-json';
import { jobKeys } from '../store/keys';
import { readObject } from '../store/s3';

/** A requests file holds a line that is not a request (it was written by us, so it was damaged). */
export class ChunkFileCorrupt extends Error {
  override readonly name = 'ChunkFileCorrupt';
}

/** Non-blank lines of an object, streamed. */
export async function* objectLines(s3: S3Client, bucket: string, key: string): AsyncGenerator<RawLine> {
  const body = await readObject(s3, bucket, key);
  try {
    for await (const line of splitLines(body)) if (!isBlank(line.bytes)) yield line;
  } finally {
    body.destroy();
  }
}

/** One attempt of one chunk of a job. */
export interface AttemptRef {
  jobId: string;
  chunk: number;
  attempt: number;
}

/** Where an attempt's requests are stored (for messages; read them with the functions below). */
export function requestsKey(ref: AttemptRef): string {
  return jobKeys(ref.jobId).chunkRequests(ref.chunk, ref.attempt);
}

/** The raw request lines, as create's body items. */
export async function* requestLines(s3: S3Client, bucket: string, ref: AttemptRef): AsyncGenerator<Buffer> {
  for await (const line of objectLines(s3, bucket, requestsKey(ref))) yield line.bytes;
}

export interface RequestEntry {
  customId: string;
  line: RawLine;
}

/** Each request with its custom_id. */
export async function* requestEntries(s3: S3Client, bucket: string, ref: AttemptRef): AsyncGenerator<RequestEntry> {
  const key = requestsKey(ref);
  for await (const line of objectLines(s3, bucket, key)) yield { customId: customIdOf(line, key), line };
}

/** custom_id → 0-based position among the file's requests (input order, for attempt 1's file). */
export async function requestPositions(s3: S3Client, bucket: string, ref: AttemptRef): Promise<Map<string, number>> {
  const positions = new Map<string, number>();
  for await (const { customId } of requestEntries(s3, bucket, ref)) positions.set(customId, positions.size);
  return positions;
}

/** The custom_ids of a file's requests. */
export async function requestIds(s3: S3Client, bucket: string, ref: AttemptRef): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const { customId } of requestEntries(s3, bucket, ref)) ids.add(customId);
  return ids;
}

function customIdOf(line: RawLine, key: string): string {
  const leading = leadingCustomId(line.bytes, { mayRepeat: true });
  if (leading !== undefined) return leading;
  let customId: unknown;
  try {
    customId = (JSON.parse(line.bytes.toString('utf8')) as { custom_id?: unknown }).custom_id;
  } catch {
    throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} is not JSON`);
  }
  if (typeof customId !== 'string') throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} has no custom_id`);
  return customId;
}
