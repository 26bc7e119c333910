/**
 * Reading a chunk attempt's requests file (`{custom_id, params}` lines in input order, written by
 * Prepare for attempt 1 and by Collect for retries): raw lines for create, custom_ids for the rest.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { isBlank, splitLines, type RawLine } from '../jsonl/lines';
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

/** The raw request lines, as create's body items. */
export async function* requestLines(s3: S3Client, bucket: string, key: string): AsyncGenerator<Buffer> {
  for await (const line of objectLines(s3, bucket, key)) yield line.bytes;
}

export interface RequestEntry {
  customId: string;
  line: RawLine;
}

/** Each request with its custom_id. */
export async function* requestEntries(s3: S3Client, bucket: string, key: string): AsyncGenerator<RequestEntry> {
  for await (const line of objectLines(s3, bucket, key)) yield { customId: customIdOf(line, key), line };
}

/** custom_id → 0-based position among the file's requests (input order, for attempt 1's file). */
export async function requestPositions(s3: S3Client, bucket: string, key: string): Promise<Map<string, number>> {
  const positions = new Map<string, number>();
  for await (const { customId } of requestEntries(s3, bucket, key)) positions.set(customId, positions.size);
  return positions;
}

/** The custom_ids of a file's requests. */
export async function requestIds(s3: S3Client, bucket: string, key: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const { customId } of requestEntries(s3, bucket, key)) ids.add(customId);
  return ids;
}

function customIdOf(line: RawLine, key: string): string {
  const leading = leadingCustomId(line.bytes);
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

const CUSTOM_ID_KEY = Buffer.from('"custom_id"');
const UNICODE_ESCAPE = Buffer.from('\\u');

/**
 * The custom_id of a line that starts with it, read from the bytes without parsing the line (whose
 * params may be large): Prepare copies the input's lines as they came, and most start
 * `{"custom_id":"…",` (or `{"custom_id": "…", ` as Python writes them). Undefined, and the line
 * left to JSON.parse, when it does not, or when the key might come again later (another
 * `"custom_id"`, or a `\u` escape that could spell one): JSON.parse takes the last of duplicate keys,
 * and so did Prepare.
 */
function leadingCustomId(bytes: Buffer): string | undefined {
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== OPEN_BRACE) return undefined;
  i = skipSpace(bytes, i + 1);
  if (i + CUSTOM_ID_KEY.length > bytes.length || CUSTOM_ID_KEY.compare(bytes, i, i + CUSTOM_ID_KEY.length) !== 0) return undefined;
  i = skipSpace(bytes, i + CUSTOM_ID_KEY.length);
  if (bytes[i] !== COLON) return undefined;
  i = skipSpace(bytes, i + 1);
  if (bytes[i] !== QUOTE) return undefined;
  const start = i + 1;
  let end = start;
  while (end < bytes.length && isCustomIdByte(bytes[end]!)) end += 1;
  if (end === start || bytes[end] !== QUOTE) return undefined;
  const after = skipSpace(bytes, end + 1);
  if (bytes[after] !== COMMA && bytes[after] !== CLOSE_BRACE) return undefined;
  if (bytes.includes(CUSTOM_ID_KEY, after) || bytes.includes(UNICODE_ESCAPE, after)) return undefined;
  return bytes.toString('latin1', start, end);
}

/** [a-zA-Z0-9_-]: the bytes a custom_id is made of (DESIGN.md). */
export const isCustomIdByte = (b: number) =>
  (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b === 0x2d;

function skipSpace(bytes: Buffer, from: number): number {
  let i = from;
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x09 || bytes[i] === 0x0a || bytes[i] === 0x0d)) i += 1;
  return i;
}

const QUOTE = 0x22;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
