/**
 * The one JSONL line streamer. Splits raw bytes on `\n` and only then decodes, so multi-byte
 * characters that straddle network chunks are never corrupted. Counts bytes and line numbers as
 * it goes: validation errors name the line, and resumption needs the byte offset.
 */

export interface RawLine {
  /** The line's bytes without its terminator (`\n` or `\r\n`). */
  bytes: Buffer;
  /** 1-based line number in the source (counting from `firstLineNumber`). */
  lineNumber: number;
  /** Byte offset of the line's first byte in the source (counting from `startOffset`). */
  offset: number;
  /** Bytes the line occupies in the source, terminator included. */
  length: number;
  /** False only for a last line that ended without `\n`. */
  terminated: boolean;
}

export interface SplitLinesOptions {
  /** Offset of the source's first byte, when the source starts mid-file (a Range request). */
  startOffset?: number;
  /** Line number of the source's first line. Default 1. */
  firstLineNumber?: number;
  /** Drop a UTF-8 byte order mark at the very start of the source. Default true when startOffset is 0. */
  stripBom?: boolean;
  /** A line longer than this (bytes) throws LineTooLong instead of growing memory without bound. */
  maxLineBytes?: number;
}

export class LineTooLong extends Error {
  override readonly name = 'LineTooLong';
  constructor(readonly lineNumber: number, readonly limit: number) {
    super(`line ${lineNumber} is longer than ${limit} bytes`);
  }
}

const NEWLINE = 0x0a;
const CR = 0x0d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Yields every line of a byte stream, blank lines included (callers decide what a blank line means). */
export async function* splitLines(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: SplitLinesOptions = {},
): AsyncGenerator<RawLine> {
  const startOffset = options.startOffset ?? 0;
  let stripBom = options.stripBom ?? startOffset === 0;
  const maxLineBytes = options.maxLineBytes ?? Number.POSITIVE_INFINITY;
  let lineNumber = options.firstLineNumber ?? 1;
  // Pending bytes of an unfinished line, kept as a list so long lines are not re-copied per chunk.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineStart = startOffset;

  const emit = (bytes: Buffer, terminatorBytes: number): RawLine => {
    const length = bytes.length + terminatorBytes;
    let content = bytes;
    if (terminatorBytes === 1 && content.length > 0 && content[content.length - 1] === CR) {
      content = content.subarray(0, content.length - 1);
    }
    const line: RawLine = { bytes: content, lineNumber, offset: lineStart, length, terminated: terminatorBytes > 0 };
    lineNumber += 1;
    lineStart += length;
    return line;
  };

  for await (const piece of source) {
    let chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    if (stripBom) {
      // The BOM may itself straddle chunks; wait until three bytes are known.
      const head = pendingBytes > 0 ? Buffer.concat([...pending, chunk]) : chunk;
      if (head.length < BOM.length && BOM.subarray(0, head.length).equals(head)) {
        pending = [head];
        pendingBytes = head.length;
        continue;
      }
      pending = [];
      pendingBytes = 0;
      stripBom = false;
      if (head.subarray(0, 3).equals(BOM)) {
        chunk = head.subarray(3);
        lineStart += 3;
      } else {
        chunk = head;
      }
    }
    let from = 0;
    for (;;) {
      const at = chunk.indexOf(NEWLINE, from);
      if (at === -1) break;
      const part = chunk.subarray(from, at);
      const bytes = pendingBytes > 0 ? Buffer.concat([...pending, part], pendingBytes + part.length) : part;
      pending = [];
      pendingBytes = 0;
      if (bytes.length > maxLineBytes) throw new LineTooLong(lineNumber, maxLineBytes);
      yield emit(bytes, 1);
      from = at + 1;
    }
    if (from < chunk.length) {
      const rest = chunk.subarray(from);
      pending.push(rest);
      pendingBytes += rest.length;
      if (pendingBytes > maxLineBytes) throw new LineTooLong(lineNumber, maxLineBytes);
    }
  }
  if (pendingBytes > 0) {
    yield emit(Buffer.concat(pending, pendingBytes), 0);
  }
}

/** True for a line that holds only whitespace (blank lines are skipped in input and results). */
export function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) {
    if (b !== 0x20 && b !== 0x09 && b !== CR) return false;
  }
  return true;
}
