/**
 * Staging a chunk's result lines on local disk by input position, so they can be written in input
 * order in bounded memory (the API returns results in any order).
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WorkFileMissing } from './work-files';

/**
 * Rows are written a window at a time, their result lines read together: at most this many rows,
 * fewer once their lines reach this many bytes (a window holds at most that and one more line).
 */
export const WINDOW_ROWS = 2_000;
export const WINDOW_BYTES = 16 * 1024 * 1024;

/** Where a staged line is: its file (StagedLines' files) and its bytes there. */
interface LineAt {
  file: number;
  offset: number;
  length: number;
}

/**
 * Lines of one file nearer than this are read together: the bytes between are read and dropped.
 * A window spends at most its row count times this on such bytes.
 */
const READ_GAP_BYTES = 4 * 1024;
/** The most one read takes in (a longer line is read whole). */
const READ_MAX_BYTES = 8 * 1024 * 1024;
/** Reads in flight at once (libuv's thread pool has 4 threads). */
const READ_CONCURRENCY = 4;

/**
 * A chunk's result lines, one per row (at its position in input order), staged in temp
 * files by position: rows [k·WINDOW_ROWS, (k+1)·WINDOW_ROWS) go to file k. The API returns results in
 * any order (the simulator shuffles them), yet the lines of a window of rows then lie together in
 * a file or two, read in a few large reads rather than one small read per row. Memory holds the
 * rows' locations and a buffer per file; result text only as the windows being read and written.
 */
export class StagedLines {
  private readonly files: StagingFile[] = [];
  private readonly lines: Array<LineAt | undefined>;

  constructor(
    private readonly dir: string,
    rows: number,
  ) {
    this.lines = new Array<LineAt | undefined>(rows);
  }

  /** Stages the line of the row in `position`, unless the row has one already (the first line wins). */
  add(position: number, line: Buffer): Promise<void> | undefined {
    if (this.lines[position]) return undefined;
    const file = Math.floor(position / WINDOW_ROWS);
    const staging = (this.files[file] ??= new StagingFile(path.join(this.dir, `rows-${file}.jsonl`)));
    this.lines[position] = { file, offset: staging.size, length: line.length };
    return staging.add(line);
  }

  /** Writes what is still buffered: reads see every line staged so far. */
  async flush(): Promise<void> {
    for (const file of this.files) await file?.flush();
  }

  lengthOf(position: number): number {
    return this.lines[position]?.length ?? 0;
  }

  /**
   * The staged lines of `positions` (undefined for a row without one), in the same order. They are
   * sorted by file and offset, and runs of nearby lines read in one piece.
   */
  async read(positions: readonly number[]): Promise<Array<Buffer | undefined>> {
    const wanted: Array<{ i: number; at: LineAt }> = [];
    positions.forEach((position, i) => {
      const at = this.lines[position];
      if (at) wanted.push({ i, at });
    });
    wanted.sort((a, b) => a.at.file - b.at.file || a.at.offset - b.at.offset);

    // wanted[from, to) is read as one range [start, end) of one file.
    const runs: Array<{ file: number; start: number; end: number; from: number; to: number }> = [];
    let run: (typeof runs)[number] | undefined;
    wanted.forEach(({ at }, k) => {
      const end = at.offset + at.length;
      if (run && at.file === run.file && at.offset - run.end <= READ_GAP_BYTES && end - run.start <= READ_MAX_BYTES) {
        run.end = Math.max(run.end, end);
        run.to = k + 1;
      } else {
        run = { file: at.file, start: at.offset, end, from: k, to: k + 1 };
        runs.push(run);
      }
    });

    const lines = new Array<Buffer | undefined>(positions.length);
    let next = 0;
    const reader = async () => {
      for (let r = next++; r < runs.length; r = next++) {
        const { file, start, end, from, to } = runs[r]!;
        const bytes = await this.files[file]!.read(start, end - start);
        for (const { i, at } of wanted.slice(from, to)) lines[i] = bytes.subarray(at.offset - start, at.offset - start + at.length);
      }
    };
    // All settled before returning: no read is left in flight on a file about to be closed.
    const settled = await Promise.allSettled(Array.from({ length: Math.min(READ_CONCURRENCY, runs.length) }, reader));
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
    return lines;
  }

  async remove(): Promise<void> {
    for (const file of this.files) await file?.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Bytes a staging file gathers before it writes them. */
const STAGING_BUFFER_BYTES = 64 * 1024;

/** A temp file that lines are appended to through a buffer, then read back by position. */
class StagingFile {
  private handle: FileHandle | undefined;
  private readonly buffer = Buffer.allocUnsafe(STAGING_BUFFER_BYTES);
  private used = 0;
  private written = 0;
  /** Where the next line lands: the bytes added so far, buffered ones included. */
  size = 0;

  constructor(private readonly path: string) {}

  /** Appends bytes; a promise only when the buffer had to be written out first. */
  add(bytes: Buffer): Promise<void> | undefined {
    this.size += bytes.length;
    if (bytes.length <= this.buffer.length - this.used) {
      this.used += bytes.copy(this.buffer, this.used);
      return undefined;
    }
    return this.spill(bytes);
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await this.write(this.buffer.subarray(0, this.used));
    this.used = 0;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle!.read(buffer, filled, length - filled, offset + filled);
      if (bytesRead === 0) throw new WorkFileMissing(`a staged results file ended at ${offset + filled}, before ${offset + length}`);
      filled += bytesRead;
    }
    return buffer;
  }

  async close(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
  }

  private async spill(bytes: Buffer): Promise<void> {
    await this.flush();
    if (bytes.length > this.buffer.length) await this.write(bytes);
    else this.used = bytes.copy(this.buffer, 0);
  }

  private async write(bytes: Buffer): Promise<void> {
    this.handle ??= await open(this.path, 'w+');
    let done = 0;
    while (done < bytes.length) done += (await this.handle.write(bytes, done, bytes.length - done, this.written + done)).bytesWritten;
    this.written += bytes.length;
  }
}
