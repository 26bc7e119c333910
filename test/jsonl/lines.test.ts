import { describe, expect, it } from 'vitest';
import { LineSplitter, LineTooLong, splitLines, type RawLine, type SplitLinesOptions } from '../../shared/jsonl/lines';

/** A line as `number:text@offset+length`, with `(open)` when it had no `\n`. */
const show = (line: RawLine) => `${line.lineNumber}:${line.bytes.toString()}@${line.offset}+${line.length}${line.terminated ? '' : ' (open)'}`;
const pieces = (...texts: Array<string | number[]>) => texts.map((text) => (typeof text === 'string' ? Buffer.from(text) : Buffer.from(text)));

async function split(source: Buffer[], options?: SplitLinesOptions): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const line of splitLines(source, options)) out.push(show(line));
  } catch (error) {
    out.push(error instanceof LineTooLong ? `too long: line ${error.lineNumber}` : String(error));
  }
  return out;
}

describe('splitLines', () => {
  it('splits on \\n across pieces, dropping \\r before it, numbering lines and counting their bytes', async () => {
    expect(await split(pieces('ab\ncd', '\r\n\nef'))).toEqual(['1:ab@0+3', '2:cd@3+4', '3:@7+1', '4:ef@8+2 (open)']);
  });

  it('drops a BOM at the start, even one split across pieces, and counts its bytes', async () => {
    expect(await split(pieces([0xef], [0xbb], [0xbf, 0x61, 0x0a]))).toEqual(['1:a@3+2']);
    expect(await split(pieces([0xef, 0xbb]))).toEqual([`1:${Buffer.from([0xef, 0xbb]).toString()}@0+2 (open)`]);
  });

  it('starts from the given offset and line number, keeping a BOM there', async () => {
    expect(await split(pieces([0xef, 0xbb, 0xbf, 0x61, 0x0a]), { startOffset: 100, firstLineNumber: 7 })).toEqual([
      `7:${Buffer.from([0xef, 0xbb, 0xbf, 0x61]).toString()}@100+5`,
    ]);
  });

  it('ends with LineTooLong at a line over the limit, found at its \\n or while it is still open', async () => {
    expect(await split(pieces('ok\n123456\nnext\n'), { maxLineBytes: 5 })).toEqual(['1:ok@0+3', 'too long: line 2']);
    expect(await split(pieces('ok\n1234', '56'), { maxLineBytes: 5 })).toEqual(['1:ok@0+3', 'too long: line 2']);
  });
});

describe('LineSplitter', () => {
  it('hands out the lines of the pieces pushed so far, then the open last line at the end', () => {
    const splitter = new LineSplitter();
    splitter.push(Buffer.from('a\nb'));
    expect(show(splitter.next()!)).toBe('1:a@0+2');
    expect(splitter.next()).toBeUndefined();
    splitter.push(Buffer.from('c\nd'));
    expect(show(splitter.next()!)).toBe('2:bc@2+3');
    expect(splitter.next()).toBeUndefined();
    expect(show(splitter.end()!)).toBe('3:d@5+1 (open)');
  });

  it('skips a line once it has reported it too long, and goes on after its \\n', () => {
    const splitter = new LineSplitter({ maxLineBytes: 4 });
    const out: string[] = [];
    for (const piece of pieces('ok\n12', '345', '6\nnext\n', '999999')) {
      splitter.push(piece);
      for (;;) {
        try {
          const line = splitter.next();
          if (line === undefined) break;
          out.push(show(line));
        } catch (error) {
          out.push(`too long: line ${(error as LineTooLong).lineNumber}`);
        }
      }
    }
    expect(splitter.end()).toBeUndefined();
    expect(out).toEqual(['1:ok@0+3', 'too long: line 2', '3:next@10+5', 'too long: line 4']);
  });

  it('tells where a too-long line starts and what its first bytes are, found at its \\n or while still open', () => {
    const splitter = new LineSplitter({ maxLineBytes: 4 });
    const errors: LineTooLong[] = [];
    for (const piece of pieces('ok\n12', '345', '6\nnext\n', 'abcdefgh\n')) {
      splitter.push(piece);
      for (;;) {
        try {
          if (splitter.next() === undefined) break;
        } catch (error) {
          errors.push(error as LineTooLong);
        }
      }
    }
    expect(errors.map((e) => [e.lineNumber, e.offset, e.head.toString()])).toEqual([
      [2, 3, '12345'],
      [4, 15, 'abcdefgh'],
    ]);
  });
});
