/**
 * Reading a chunk attempt's requests (`{custom_id, params}` in input order): raw lines for create,
 * custom_ids for the rest. Every step reads an attempt's requests through here, by attempt, never
 * by key: how an attempt's requests are stored is this module's business.
 *
 * Attempt 1 is not a copy. Its requests are a byte range of the job's input, read pinned to the
 * upload Prepare read (its VersionId, or If-Match on its ETag where the object has no version), and
 * a row index Prepare writes says which bytes of the range are the chunk's requests (invalid, blank
 * and too-long lines of a lenient file lie between them) and what their custom_ids are. Reading
 * only custom_ids reads only the index, never the input. Retry attempts (≥ 2) are files Collect
 * writes, one request a line.
 *
 * The row index (`jobKeys(jobId).chunkRowIndex(chunk)`), text:
 *
 *   {"source":{"bucket":…,"key":…,"versionId":…,"etag":…},"start":S,"end":E,"rows":R}
 *   <gap> <length> <custom_id>          one line per request, in input order
 *
 * where a request's bytes start `gap` bytes after the previous request's end (the first: after S)
 * and are `length` long: exactly the request validateLine accepted (the line without surrounding
 * whitespace or a BOM), which is what create sends. E is the last request's end.
 */
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { isBlank, splitLines, type RawLine } from '../jsonl/lines';
import { leadingCustomId } from '../jsonl/raw-json';
import { jobKeys } from '../store/keys';
import { isS3NotFound, readObject } from '../store/s3';
import { bareEtag } from './job-id';
import { SourceChanged, SourceNotFound } from './register-job';
import type { AttemptKey } from './contract';

/** A requests file or row index holds something we did not write (it was damaged). */
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
/**
 * Where an attempt's requests are recorded (for messages and for telling a missing work file; read
 * them with the functions below): attempt 1's row index, a retry's requests file.
 */
export function requestsKey(ref: AttemptKey): string {
  const keys = jobKeys(ref.jobId);
  return ref.attempt === 1 ? keys.chunkRowIndex(ref.chunk) : keys.chunkRequests(ref.chunk, ref.attempt);
}

/** The raw request lines, as create's body items. */
export async function* requestLines(s3: S3Client, bucket: string, ref: AttemptKey): AsyncGenerator<Buffer> {
  for await (const { line } of requestEntries(s3, bucket, ref)) yield line.bytes;
}

export interface RequestEntry {
  customId: string;
  /** The request's bytes; `lineNumber` is its 1-based place among the attempt's requests. */
  line: RawLine;
}

/** Each request with its custom_id. */
export async function* requestEntries(s3: S3Client, bucket: string, ref: AttemptKey): AsyncGenerator<RequestEntry> {
  const key = requestsKey(ref);
  if (ref.attempt === 1) {
    yield* indexedEntries(s3, bucket, key);
    return;
  }
  for await (const line of objectLines(s3, bucket, key)) yield { customId: customIdOf(line, key), line };
}

/** The custom_ids of an attempt's requests, in order; for attempt 1, read from its row index alone. */
export async function* requestCustomIds(s3: S3Client, bucket: string, ref: AttemptKey): AsyncGenerator<string> {
  if (ref.attempt !== 1) {
    for await (const { customId } of requestEntries(s3, bucket, ref)) yield customId;
    return;
  }
  const key = requestsKey(ref);
  const index = await openRowIndex(s3, bucket, key);
  try {
    for await (const row of index.rows) yield row.customId;
  } finally {
    await index.close();
  }
}

/** custom_id → 0-based position among the attempt's requests (input order, for attempt 1). */
export async function requestPositions(s3: S3Client, bucket: string, ref: AttemptKey): Promise<Map<string, number>> {
  const positions = new Map<string, number>();
  for await (const customId of requestCustomIds(s3, bucket, ref)) positions.set(customId, positions.size);
  return positions;
}

/** The custom_ids of an attempt's requests. */
export async function requestIds(s3: S3Client, bucket: string, ref: AttemptKey): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const customId of requestCustomIds(s3, bucket, ref)) ids.add(customId);
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

// ---------------------------------------------------------------------------------------------
// Attempt 1: the row index and the input's byte range

/** The upload a job was made from, as Prepare read it. */
export interface SourceRef {
  bucket: string;
  key: string;
  /** Present when the bucket versions its objects: the range is read from this version. */
  versionId?: string;
  /** Bare ETag: without a version, If-Match on it makes an overwritten object fail instead of sending other bytes. */
  etag: string;
}

interface RowIndexHeader {
  source: SourceRef;
  start: number;
  end: number;
  rows: number;
}

export interface IndexRow {
  /** Bytes between the previous request's end (the range's start, for the first) and this one's start. */
  gap: number;
  length: number;
  customId: string;
}

/**
 * Attempt 1 of one chunk as Prepare finds it: `add` each request's place in the source as it is
 * accepted, then `text` is the row index. Holds the custom_id and about 8 bytes a request (one
 * chunk's, at most), in one growing buffer: Prepare adds a row for every valid line of the file.
 */
export class RowIndex {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private start = 0;
  private end = 0;
  rows = 0;

  /** A request at byte `offset` of the source, `length` bytes long; `customId` is ASCII (validated). */
  add(offset: number, length: number, customId: string): void {
    if (this.rows === 0) this.start = this.end = offset;
    if (offset < this.end) throw new RangeError(`request at ${offset} starts before the previous one ends (${this.end})`);
    // Two numbers of at most 16 digits, two spaces, the id and a newline.
    const room = 35 + customId.length;
    if (this.used + room > this.buffer.length) this.grow(room);
    const buffer = this.buffer;
    let at = writeDecimal(buffer, this.used, offset - this.end);
    buffer[at++] = SPACE;
    at = writeDecimal(buffer, at, length);
    buffer[at++] = SPACE;
    for (let i = 0; i < customId.length; i++) buffer[at++] = customId.charCodeAt(i);
    buffer[at++] = NEWLINE;
    this.used = at;
    this.end = offset + length;
    this.rows += 1;
  }

  private grow(room: number): void {
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.used + room));
    this.buffer.copy(grown, 0, 0, this.used);
    this.buffer = grown;
  }

  text(source: SourceRef): Buffer {
    const { bucket, key, versionId, etag } = source;
    const header: RowIndexHeader = {
      source: versionId ? { bucket, key, versionId, etag } : { bucket, key, etag },
      start: this.start,
      end: this.end,
      rows: this.rows,
    };
    return Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), this.buffer.subarray(0, this.used)]);
  }
}

const SPACE = 0x20;
const NEWLINE = 0x0a;
const DIGITS = Buffer.alloc(16);

/** Writes a whole number ≥ 0 in decimal at `at`; returns the offset after it. */
function writeDecimal(buffer: Buffer, at: number, n: number): number {
  if (n < 10) {
    buffer[at] = 0x30 + n;
    return at + 1;
  }
  let count = 0;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 10)) DIGITS[count++] = 0x30 + (rest % 10);
  while (count > 0) buffer[at++] = DIGITS[--count]!;
  return at;
}

/** Stores attempt 1 of `chunk`: its row index, naming `source`. */
export async function storeRowIndex(s3: S3Client, bucket: string, jobId: string, chunk: number, source: SourceRef, index: RowIndex): Promise<void> {
  await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: jobKeys(jobId).chunkRowIndex(chunk), Body: index.text(source), ContentType: 'text/plain; charset=utf-8' }),
  );
}

/** A row index's header alone (its rows, and where they end in the input): what a progress display reads while Prepare runs. */
export async function readRowIndexHeader(s3: S3Client, bucket: string, key: string): Promise<{ rows: number; start: number; end: number }> {
  const index = await openRowIndex(s3, bucket, key);
  await index.close();
  const { rows, start, end } = index.header;
  return { rows, start, end };
}

/** The index's header, then its rows; `close` ends the read whether or not the rows were read. */
async function openRowIndex(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<{ header: RowIndexHeader; rows: AsyncGenerator<IndexRow>; close: () => Promise<void> }> {
  const lines = objectLines(s3, bucket, key);
  const first = await lines.next();
  const header = first.done ? undefined : parseHeader(first.value, key);
  if (!header) {
    await lines.return(undefined);
    throw new ChunkFileCorrupt(`${key} does not start with its source`);
  }
  async function* rows(): AsyncGenerator<IndexRow> {
    let count = 0;
    let at = header!.start;
    try {
      for await (const line of lines) {
        const row = parseRow(line, key);
        at += row.gap + row.length;
        if (at > header!.end) throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} runs past the range's end`);
        count += 1;
        yield row;
      }
    } finally {
      await lines.return(undefined);
    }
    if (count !== header!.rows) throw new ChunkFileCorrupt(`${key} lists ${count} requests, its header ${header!.rows}`);
  }
  const close = async () => {
    await lines.return(undefined);
  };
  return { header, rows: rows(), close };
}

function parseHeader(line: RawLine, key: string): RowIndexHeader | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line.bytes.toString('utf8'));
  } catch {
    throw new ChunkFileCorrupt(`${key} line 1 is not JSON`);
  }
  const header = value as Partial<RowIndexHeader> | null;
  const source = header?.source;
  const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (
    !header ||
    !source ||
    typeof source.bucket !== 'string' ||
    typeof source.key !== 'string' ||
    typeof source.etag !== 'string' ||
    (source.versionId !== undefined && typeof source.versionId !== 'string') ||
    !isCount(header.start) ||
    !isCount(header.end) ||
    !isCount(header.rows) ||
    header.end < header.start
  ) {
    return undefined;
  }
  return header as RowIndexHeader;
}

function parseRow(line: RawLine, key: string): IndexRow {
  const bytes = line.bytes;
  const first = bytes.indexOf(SPACE);
  const second = first === -1 ? -1 : bytes.indexOf(SPACE, first + 1);
  const gap = first > 0 ? Number(bytes.toString('latin1', 0, first)) : NaN;
  const length = second > first + 1 ? Number(bytes.toString('latin1', first + 1, second)) : NaN;
  if (!Number.isSafeInteger(gap) || gap < 0 || !Number.isSafeInteger(length) || length < 1 || second + 1 >= bytes.length) {
    throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} is not "<gap> <length> <custom_id>"`);
  }
  return { gap, length, customId: bytes.toString('latin1', second + 1) };
}

/** Attempt 1's requests: the row index, and the bytes it names cut from the pinned source range. */
async function* indexedEntries(s3: S3Client, bucket: string, key: string): AsyncGenerator<RequestEntry> {
  const index = await openRowIndex(s3, bucket, key);
  const { source, start, end } = index.header;
  let body: (Readable & AsyncIterable<Uint8Array>) | undefined;
  try {
    body = end > start ? await openRange(s3, source, start, end) : undefined;
    let lineNumber = 0;
    let offset = start;
    for await (const { row, bytes } of cutRows(body ?? [], index.rows, describe(source))) {
      lineNumber += 1;
      offset += row.gap;
      // Pinning makes this impossible; a damaged index must not send one request as another.
      const leading = leadingCustomId(bytes, { mayRepeat: true });
      if (leading !== undefined && leading !== row.customId) {
        throw new ChunkFileCorrupt(`${key} request ${lineNumber} is ${row.customId}, but its bytes in ${describe(source)} are ${leading}'s`);
      }
      yield { customId: row.customId, line: { bytes, lineNumber, offset, length: row.length, terminated: true } };
      offset += row.length;
    }
  } finally {
    body?.destroy();
    await index.close();
  }
}

function describe(source: SourceRef): string {
  return `s3://${source.bucket}/${source.key}${source.versionId ? ` (version ${source.versionId})` : ''}`;
}

/** Bytes [start, end) of the upload `source` names, or a named error: never another upload's bytes. */
async function openRange(s3: S3Client, source: SourceRef, start: number, end: number): Promise<Readable & AsyncIterable<Uint8Array>> {
  const where = describe(source);
  try {
    const response = await s3.send(
      new GetObjectCommand({
        Bucket: source.bucket,
        Key: source.key,
        VersionId: source.versionId,
        IfMatch: source.versionId ? undefined : `"${source.etag}"`,
        Range: `bytes=${start}-${end - 1}`,
      }),
    );
    const body = response.Body as unknown as (Readable & AsyncIterable<Uint8Array>) | undefined;
    if (!body) throw new Error(`${where} has no body`);
    // Checked here too: not every S3 (s3rver, for one) honours If-Match. (A version never changes.)
    if (!source.versionId && response.ETag && bareEtag(response.ETag) !== source.etag) {
      body.destroy();
      throw new SourceChanged(`${where} was overwritten after the job was prepared (ETag ${source.etag}, now ${bareEtag(response.ETag)})`);
    }
    return body;
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 412) throw new SourceChanged(`${where} was overwritten after the job was prepared (ETag ${source.etag})`);
    if (isS3NotFound(error)) throw new SourceNotFound(`${where} no longer exists: the job's requests were read from it`);
    // 416: the object is shorter than the range, so it is not the upload Prepare read.
    if (status === 416) throw new SourceChanged(`${where} is shorter than when the job was prepared`);
    throw error;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The requests `rows` name, cut from a source range's pieces: each row skips its gap and takes its
 * length (a view of the piece, or a copy when it straddles pieces).
 */
export async function* cutRows(
  pieces: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  rows: AsyncIterable<IndexRow>,
  where = 'the source',
): AsyncGenerator<{ row: IndexRow; bytes: Buffer }> {
  const source = (Symbol.asyncIterator in pieces ? pieces[Symbol.asyncIterator]() : pieces[Symbol.iterator]()) as
    | AsyncIterator<Uint8Array>
    | Iterator<Uint8Array>;
  let piece: Buffer = EMPTY;
  let at = 0;
  const pull = async (): Promise<void> => {
    const next = await source.next();
    if (next.done) throw new SourceChanged(`${where} ended before the job's requests did: it is not the upload the job was prepared from`);
    const value = next.value;
    piece = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    at = 0;
  };
  for await (const row of rows) {
    let skip = row.gap;
    while (skip > 0) {
      if (at === piece.length) await pull();
      const n = Math.min(skip, piece.length - at);
      at += n;
      skip -= n;
    }
    if (at === piece.length) await pull();
    if (piece.length - at >= row.length) {
      yield { row, bytes: piece.subarray(at, at + row.length) };
      at += row.length;
      continue;
    }
    const parts: Buffer[] = [];
    let need = row.length;
    while (need > 0) {
      if (at === piece.length) await pull();
      const n = Math.min(need, piece.length - at);
      parts.push(piece.subarray(at, at + n));
      at += n;
      need -= n;
    }
    yield { row, bytes: Buffer.concat(parts, row.length) };
  }
}
