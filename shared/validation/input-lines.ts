/**
 * The one reader of an input file's lines, for Prepare and the CLI's estimate alike: lines split as
 * splitLines splits them, except that a line far past the largest request is skipped unread and
 * reported (a TooLongLine, then an invalid `request_too_large` line) instead of growing memory
 * without bound or ending the read.
 */
import { LineSplitter, LineTooLong, splitWith, type RawLine } from '../jsonl/lines';
import type { RejectedLine } from './request';

/**
 * Lines up to this much longer than the largest request are still read whole, so validateLine can
 * judge the request without its surrounding whitespace; longer ones are skipped unread.
 */
export const LINE_SLACK_BYTES = 64 * 1024;

/** The longest line read for a request of at most `maxRequestBytes`. */
export function maxLineBytesFor(maxRequestBytes: number): number {
  return maxRequestBytes + LINE_SLACK_BYTES;
}

export interface TooLongLine {
  tooLong: true;
  lineNumber: number;
}

/**
 * The source's lines (splitLines), except that a line longer than `maxLineBytes` is skipped and
 * reported as a TooLongLine instead of ending the stream: reading carries on after its `\n`.
 */
export function sourceLines(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<RawLine | TooLongLine> {
  return splitWith(source, new SourceLineReader(maxLineBytes));
}

/** sourceLines without an await per line (see LineSplitter): Prepare's loop reads every line of the file. */
export class SourceLineReader {
  private readonly splitter: LineSplitter;

  /** `from`: where the source starts, when it is read from mid-file (a Range request resuming at a line). */
  constructor(maxLineBytes: number, from: { offset: number; lineNumber: number } = { offset: 0, lineNumber: 1 }) {
    this.splitter = new LineSplitter({ maxLineBytes, startOffset: from.offset, firstLineNumber: from.lineNumber });
  }

  push(piece: Uint8Array): void {
    this.splitter.push(piece);
  }

  next(): RawLine | TooLongLine | undefined {
    try {
      return this.splitter.next();
    } catch (error) {
      if (!(error instanceof LineTooLong)) throw error;
      return { tooLong: true, lineNumber: error.lineNumber };
    }
  }

  end(): RawLine | undefined {
    return this.splitter.end();
  }
}

/** A too-long line as the invalid line it is. */
export function tooLongOutcome(entry: TooLongLine, maxRequestBytes: number): RejectedLine {
  const reason =
    `line ${entry.lineNumber} is more than ${maxLineBytesFor(maxRequestBytes).toLocaleString('en-US')} bytes; ` +
    `a request may be at most ${maxRequestBytes.toLocaleString('en-US')} bytes (one batch's size limit)`;
  return { ok: false, line: entry.lineNumber, code: 'request_too_large', reason };
}
