/**
 * Collect's progress on one chunk attempt, kept as it goes, so a Collect that dies (killed at its
 * timeout, out of memory, or failed) is resumed by the next one instead of started over.
 *
 * - The attempt's results are stored in segments (`collectSegment`), a new one every
 *   `segmentBytes` or so, each cut after a whole line. After each segment a checkpoint
 *   (`collectCheckpoint`) says where Collect is in the API's results file (the byte after the last
 *   line it took into account), which segments hold what it stored, and the tallies the stored lines
 *   cannot tell again (lines left out as foreign, lines unreadable or unattributed).
 * - A segment's `bytes` are the bytes of whole lines taken into account: a line written after the
 *   last one whose end in the API's file is known (a stand-in for a too-long line) is not counted,
 *   and the next Collect meets that line again.
 * - Segment keys carry the writing invocation's token, so no invocation overwrites a segment another
 *   one's checkpoint names: a checkpoint is consistent whichever writer was last.
 * - Once the stream is read to its end the checkpoint says `complete`, and the segments are joined
 *   inside S3 (shared/store/concat.ts) into `chunkResults(chunk, attempt)`: every reader of that
 *   object is unchanged.
 *
 * A resumed Collect rebuilds its state by reading the segments (its own lines: user custom_ids and
 * `{custom_id, unreadable}` stand-ins) and deciding each row again with the one rule (rowFate), so
 * no row is counted twice and nothing of a result's text is kept in memory.
 */
import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { isBlank, splitLines } from '../jsonl/lines';
import { concatObjects, type ConcatSource } from '../store/concat';
import { jobKeys } from '../store/keys';
import { getJson, isS3NotFound, ObjectWriter, putJson } from '../store/s3';
import type { AttemptKey } from './contract';

/** A new segment about every 128 MiB: a killed Collect loses at most that much reading. */
export const DEFAULT_SEGMENT_BYTES = 128 * 1024 * 1024;

/** The counts of lines that leave no row behind in the stored results. */
export interface LineTallies {
  /** Lines that are not requests of the attempt, or repeat one. */
  foreign: number;
  /** Lines that could not be read. */
  unreadable: number;
  /** Unreadable lines that named no row either. */
  unattributed: number;
}

export interface CollectCheckpoint extends LineTallies {
  version: 1;
  batchId: string;
  /** Byte offset in the API's results file after the last line taken into account. */
  apiOffset: number;
  /** The results were read to their end. */
  complete: boolean;
  /** The stored segments in order, each with the bytes of it that count. */
  segments: ConcatSource[];
  updatedAt: string;
}

/** The checkpoint of an attempt's collection of `batchId`, if one was written. */
export async function readCheckpoint(s3: S3Client, bucket: string, ref: AttemptKey, batchId: string): Promise<CollectCheckpoint | undefined> {
  const found = await getJson<CollectCheckpoint>(s3, bucket, jobKeys(ref.jobId).collectCheckpoint(ref.chunk, ref.attempt));
  // Another batch's progress (never expected: an attempt has one batch) is not this one's.
  if (!found || found.version !== 1 || found.batchId !== batchId) return undefined;
  return found;
}

export interface SegmentedResultsOptions {
  segmentBytes?: number;
  now: () => number;
  /** The token in this invocation's segment keys (default random). */
  writer?: string;
}

/** One Collect's writing of an attempt's results: segments, checkpoints, the final join. */
export class SegmentedResults {
  private readonly keys: ReturnType<typeof jobKeys>;
  private readonly segmentBytes: number;
  private readonly writer: string;
  private readonly segments: ConcatSource[];
  /** Bytes of the closed segments. */
  private base: number;
  private current: ObjectWriter | undefined;
  private currentKey = '';
  /** Bytes of the current segment taken into account. */
  private committedBytes = 0;
  private committed: { apiOffset: number; tallies: LineTallies };

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly ref: AttemptKey,
    private readonly batchId: string,
    from: CollectCheckpoint | undefined,
    private readonly options: SegmentedResultsOptions,
  ) {
    this.keys = jobKeys(ref.jobId);
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.writer = options.writer ?? randomUUID().slice(0, 8);
    this.segments = from ? from.segments.map((segment) => ({ ...segment })) : [];
    this.base = this.segments.reduce((sum, segment) => sum + segment.bytes, 0);
    this.committed = {
      apiOffset: from?.apiOffset ?? 0,
      tallies: { foreign: from?.foreign ?? 0, unreadable: from?.unreadable ?? 0, unattributed: from?.unattributed ?? 0 },
    };
  }

  /** Where in the API's results file to go on from. */
  get apiOffset(): number {
    return this.committed.apiOffset;
  }

  /** Where the next line written will be in the joined results object. */
  get offset(): number {
    return this.base + (this.current?.bytes ?? 0);
  }

  /** Segments (as the checkpoint read names them): to rebuild from. */
  storedSegments(): readonly ConcatSource[] {
    return this.segments;
  }

  async writeLine(raw: Buffer): Promise<void> {
    if (!this.current) {
      this.currentKey = this.keys.collectSegment(this.ref.chunk, this.ref.attempt, this.writer, this.segments.length);
      this.current = new ObjectWriter(this.s3, this.bucket, this.currentKey);
      this.committedBytes = 0;
    }
    await this.current.writeLine(raw);
  }

  /**
   * Everything written so far is taken into account, up to `apiOffset` of the API's file, with
   * these tallies. Closes the segment (and writes a checkpoint) once it is large enough.
   */
  async commit(apiOffset: number, tallies: LineTallies): Promise<void> {
    this.committed = { apiOffset, tallies: { ...tallies } };
    this.committedBytes = this.current?.bytes ?? 0;
    if (this.current && this.current.bytes >= this.segmentBytes) {
      await this.closeSegment();
      await this.saveCheckpoint(false);
    }
  }

  /** The stream was read to its end: everything written counts. */
  async finishStream(apiOffset: number, tallies: LineTallies): Promise<void> {
    this.committed = { apiOffset, tallies: { ...tallies } };
    this.committedBytes = this.current?.bytes ?? 0;
    await this.closeSegment();
    await this.saveCheckpoint(true);
  }

  /** Joins the segments into the attempt's results object; returns its bytes. */
  async join(): Promise<number> {
    const stats = await concatObjects(this.s3, this.bucket, this.segments, this.keys.chunkResults(this.ref.chunk, this.ref.attempt));
    return stats.bytes;
  }

  /**
   * After a failure: the current segment is stored and a checkpoint written, so the next Collect
   * goes on from here. A segment that cannot be finished is discarded (the last checkpoint stands).
   * True when the checkpoint was written.
   */
  async keepAfterFailure(): Promise<boolean> {
    try {
      await this.closeSegment();
      await this.saveCheckpoint(false);
      return true;
    } catch {
      await this.current?.abort().catch(() => undefined);
      this.current = undefined;
      return false;
    }
  }

  /** Deletes the checkpoint and the segments it names (best effort: work/ expires anyway). */
  async remove(): Promise<void> {
    const keys = [this.keys.collectCheckpoint(this.ref.chunk, this.ref.attempt), ...this.segments.map((segment) => segment.key)];
    await Promise.all(keys.map((key) => this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })).catch(() => undefined)));
  }

  private async closeSegment(): Promise<void> {
    const current = this.current;
    if (!current) return;
    this.current = undefined;
    await current.finish();
    if (this.committedBytes > 0) {
      this.segments.push({ key: this.currentKey, bytes: this.committedBytes });
      this.base += this.committedBytes;
    }
    this.committedBytes = 0;
  }

  private async saveCheckpoint(complete: boolean): Promise<void> {
    const checkpoint: CollectCheckpoint = {
      version: 1,
      batchId: this.batchId,
      apiOffset: this.committed.apiOffset,
      complete,
      segments: this.segments,
      ...this.committed.tallies,
      updatedAt: new Date(this.options.now()).toISOString(),
    };
    await putJson(this.s3, this.bucket, this.keys.collectCheckpoint(this.ref.chunk, this.ref.attempt), checkpoint);
  }
}

/**
 * The stored lines of `segments`, in order, each with its offset in the joined object: only the
 * bytes that count (a segment's `bytes`), so a line written past them is not read.
 */
export async function* storedLines(
  s3: S3Client,
  bucket: string,
  segments: readonly ConcatSource[],
): AsyncGenerator<{ raw: Buffer; offset: number; length: number }> {
  let base = 0;
  for (const segment of segments) {
    if (segment.bytes > 0) {
      let body: AsyncIterable<Uint8Array> & { destroy(): void };
      try {
        const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: segment.key, Range: `bytes=0-${segment.bytes - 1}` }));
        body = got.Body as unknown as AsyncIterable<Uint8Array> & { destroy(): void };
      } catch (error) {
        if (isS3NotFound(error)) throw new SegmentMissing(`${segment.key}, named by the collect checkpoint, is missing`);
        throw error;
      }
      try {
        for await (const line of splitLines(body, { stripBom: false })) {
          if (line.offset >= segment.bytes) break;
          if (isBlank(line.bytes)) continue;
          yield { raw: line.bytes, offset: base + line.offset, length: line.length };
        }
      } finally {
        body.destroy();
      }
    }
    base += segment.bytes;
  }
}

/** A segment a checkpoint names is gone (work/ expired, or deleted by hand): the attempt is collected from the start. */
export class SegmentMissing extends Error {
  override readonly name = 'SegmentMissing';
}
