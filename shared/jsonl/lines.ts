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

/** Bytes of a too-long line's start that LineTooLong keeps: enough for a leading custom_id. */
export const LINE_HEAD_BYTES = 1024;

export class LineTooLong extends Error {
  override readonly name = 'LineTooLong';
  constructor(
    readonly lineNumber: number,
    readonly limit: number,
    /** Byte offset of the line's first byte in the source. */
    readonly offset = 0,
    /** The line's first bytes (at most LINE_HEAD_BYTES), e.g. to tell whose line it was. */
    readonly head: Buffer = Buffer.alloc(0),
  ) {
    super(`line ${lineNumber} is longer than ${limit} bytes`);
  }
}

const NEWLINE = 0x0a;
const CR = 0x0d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Yields every line of a byte stream, blank lines included (callers decide what a blank line means). */
export function splitLines(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: SplitLinesOptions = {}): AsyncGenerator<RawLine> {
  return splitWith(source, new LineSplitter(options));
}

/** A splitter fed piece by piece: LineSplitter, or one built on it. */
export interface PieceSplitter<T> {
  push(piece: Uint8Array): void;
  next(): T | undefined;
  end(): T | undefined;
}

/** Everything `splitter` makes of a byte stream, as an async generator. */
export async function* splitWith<T>(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, splitter: PieceSplitter<T>): AsyncGenerator<T> {
  for await (const piece of source) {
    splitter.push(piece);
    for (let entry = splitter.next(); entry !== undefined; entry = splitter.next()) yield entry;
  }
  const last = splitter.end();
  if (last !== undefined) yield last;
}

const EMPTY = Buffer.alloc(0);

/**
 * splitLines without an await per line, for loops that read millions of them: `push` a piece of
 * the source, take its lines with `next` until it returns undefined, push the next piece, and call
 * `end` once the source is done for its last, unterminated line.
 *
 * A line longer than `maxLineBytes` makes `next` throw LineTooLong (once); the splitter then skips
 * that line, and the lines after its `\n` follow with their own numbers and offsets.
 */
export class LineSplitter {
  private readonly maxLineBytes: number;
  private stripBom: boolean;
  private lineNumber: number;
  private lineStart: number;
  /** The piece being split, and where its unsplit bytes begin. */
  private piece: Buffer = EMPTY;
  private from = 0;
  // Pending bytes of an unfinished line, kept as a list so long lines are not re-copied per piece.
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Inside a line that proved too long: its bytes are dropped up to its `\n`. */
  private skipping = false;

  constructor(options: SplitLinesOptions = {}) {
    const startOffset = options.startOffset ?? 0;
    this.stripBom = options.stripBom ?? startOffset === 0;
    this.maxLineBytes = options.maxLineBytes ?? Number.POSITIVE_INFINITY;
    this.lineNumber = options.firstLineNumber ?? 1;
    this.lineStart = startOffset;
  }

  /** The source's next piece; the previous one must have been split to its end first. */
  push(piece: Uint8Array): void {
    let chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    if (this.stripBom) {
      // The BOM may itself straddle pieces; wait until three bytes are known.
      const head = this.pendingBytes > 0 ? Buffer.concat([...this.pending, chunk]) : chunk;
      if (head.length < BOM.length && BOM.subarray(0, head.length).equals(head)) {
        this.pending = [head];
        this.pendingBytes = head.length;
        return;
      }
      this.pending = [];
      this.pendingBytes = 0;
      this.stripBom = false;
      if (head.subarray(0, 3).equals(BOM)) {
        chunk = head.subarray(3);
        this.lineStart += 3;
      } else {
        chunk = head;
      }
    }
    this.piece = chunk;
    this.from = 0;
  }

  /** The next complete line of the pieces pushed so far, or undefined when they hold no more. */
  next(): RawLine | undefined {
    const chunk = this.piece;
    if (this.skipping) {
      const at = chunk.indexOf(NEWLINE, this.from);
      const end = at === -1 ? chunk.length : at + 1;
      this.lineStart += end - this.from;
      this.from = end;
      if (at === -1) return undefined;
      this.skipping = false;
      this.lineNumber += 1;
    }
    const at = chunk.indexOf(NEWLINE, this.from);
    if (at === -1) {
      if (this.from < chunk.length) {
        const rest = chunk.subarray(this.from);
        this.pending.push(rest);
        this.pendingBytes += rest.length;
        this.from = chunk.length;
        if (this.pendingBytes > this.maxLineBytes) {
          const error = new LineTooLong(this.lineNumber, this.maxLineBytes, this.lineStart, headOf(this.pending));
          this.lineStart += this.pendingBytes;
          this.dropPending();
          this.skipping = true;
          throw error;
        }
      }
      return undefined;
    }
    const part = chunk.subarray(this.from, at);
    const bytes = this.pendingBytes > 0 ? Buffer.concat([...this.pending, part], this.pendingBytes + part.length) : part;
    if (this.pendingBytes > 0) this.dropPending();
    this.from = at + 1;
    if (bytes.length > this.maxLineBytes) {
      const error = new LineTooLong(this.lineNumber, this.maxLineBytes, this.lineStart, headOf([bytes]));
      this.lineNumber += 1;
      this.lineStart += bytes.length + 1;
      throw error;
    }
    return this.emit(bytes, 1);
  }

  /** At the end of the source: its last line when that has no `\n`, else undefined. */
  end(): RawLine | undefined {
    if (this.skipping || this.pendingBytes === 0) return undefined;
    const bytes = Buffer.concat(this.pending, this.pendingBytes);
    this.dropPending();
    return this.emit(bytes, 0);
  }

  private dropPending(): void {
    this.pending = [];
    this.pendingBytes = 0;
  }

  private emit(bytes: Buffer, terminatorBytes: number): RawLine {
    const length = bytes.length + terminatorBytes;
    let content = bytes;
    if (terminatorBytes === 1 && content.length > 0 && content[content.length - 1] === CR) {
      content = content.subarray(0, content.length - 1);
    }
    const line: RawLine = { bytes: content, lineNumber: this.lineNumber, offset: this.lineStart, length, terminated: terminatorBytes > 0 };
    this.lineNumber += 1;
    this.lineStart += length;
    return line;
  }
}

/** A copy of the first LINE_HEAD_BYTES of `pieces` (without joining the rest). */
function headOf(pieces: readonly Buffer[]): Buffer {
  const head: Buffer[] = [];
  let size = 0;
  for (const piece of pieces) {
    if (size >= LINE_HEAD_BYTES) break;
    const part = piece.subarray(0, LINE_HEAD_BYTES - size);
    head.push(part);
    size += part.length;
  }
  return Buffer.concat(head, size);
}

/** True for a line that holds only whitespace (blank lines are skipped in input and results). */
export function isBlank(bytes: Buffer): boolean {
  // Indexed, not for…of: it runs on every line, and most lines end it at their first byte.
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b !== 0x20 && b !== 0x09 && b !== CR) return false;
  }
  return true;
}
