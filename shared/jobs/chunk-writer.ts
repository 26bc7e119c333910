/**
 * Writes Prepare's chunk files. A chunk file is at most one batch (≤ 256 MB), so it can be held
 * whole and sent as one PutObject once its length is known; a chunk that outgrows its spool goes on
 * as a multipart upload, the spool turning into a ring of part buffers.
 *
 * Why not ObjectWriter (lib-storage Upload): a multipart upload makes the store write every byte
 * twice where it joins the parts on completion (s3rver stores each part, then reads them all back
 * into the object, hashing both times), and lib-storage copies every byte again to assemble its
 * parts. On the 1,000,000-row benchmark file s3rver spent half the CPU time taking the chunks as
 * one PutObject each. The price is memory: a spool holds a whole chunk, and fresh pages cost a
 * fault each when first touched (3–12 ms a MiB on the benchmark's VM), which reusing the spools
 * from chunk to chunk confines to the first two chunks.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';

/** S3's smallest part (except the last). */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
const CONTENT_TYPE = 'application/x-ndjson';
const NEWLINE = 0x0a;

export interface ChunkWriterOptions {
  /** Bytes a chunk file may reach and still go as one PutObject; a whole number of parts. */
  spoolBytes: number;
  /** Part size once a chunk file outgrows its spool (≥ MIN_PART_BYTES). */
  partBytes: number;
  /** UploadParts in flight at once, at most spoolBytes / partBytes − 1. */
  queueSize: number;
}

/**
 * The spools of one Prepare, handed from one chunk file to the next: their pages, once touched,
 * stay mapped, so only the first two chunks pay the page faults of filling fresh memory.
 */
export class ChunkSpools {
  private readonly free: Buffer[] = [];

  constructor(readonly options: ChunkWriterOptions) {
    const { spoolBytes, partBytes, queueSize } = options;
    if (partBytes < MIN_PART_BYTES || spoolBytes % partBytes !== 0 || queueSize < 1 || queueSize > spoolBytes / partBytes - 1) {
      throw new RangeError(`bad chunk writer options: ${JSON.stringify(options)}`);
    }
  }

  take(): Buffer {
    // Not zero-filled: pages are mapped only as rows are copied in.
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.options.spoolBytes);
  }

  give(spool: Buffer): void {
    this.free.push(spool);
  }
}

/**
 * One chunk file: `appendLine` copies a line in (the caller's buffer is free again at once, or when
 * the returned promise settles), `finish` stores the object, `abort` leaves nothing behind.
 * `appendLine` returns a promise only when it must wait for S3, so most lines cost no await.
 */
export class ChunkWriter {
  private spool: Buffer | undefined;
  private readonly partBytes: number;
  private readonly slots: number;
  /** The slot being filled and the bytes in it; before going multipart, slots fill in order. */
  private slot = 0;
  private used = 0;
  private uploadId: string | undefined;
  private readonly parts: Array<Promise<CompletedPart>> = [];
  /** The upload of each slot's last part, awaited before the slot is filled again. */
  private readonly slotUploads: Array<Promise<unknown> | undefined>;
  private failure: unknown;
  /** Finished or aborted: the spool is given back. */
  private closed = false;
  bytes = 0;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly spools: ChunkSpools,
  ) {
    this.spool = spools.take();
    this.partBytes = spools.options.partBytes;
    this.slots = spools.options.spoolBytes / this.partBytes;
    this.slotUploads = new Array<Promise<unknown> | undefined>(this.slots);
  }

  /** Appends `line` and a `\n`. */
  appendLine(line: Uint8Array): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const spool = this.spool;
    if (spool === undefined) return Promise.reject(new Error(`chunk file ${this.key} is already finished`));
    const start = this.slot * this.partBytes + this.used;
    if (this.used + line.length + 1 <= this.partBytes) {
      spool.set(line, start);
      spool[start + line.length] = NEWLINE;
      this.used += line.length + 1;
      this.bytes += line.length + 1;
      return undefined;
    }
    return this.appendSlowly(line);
  }

  /** Fills the slot, moves to the next (uploading the full one once multipart) and goes on. */
  private async appendSlowly(line: Uint8Array): Promise<void> {
    let from = 0;
    let newline = true;
    while (from < line.length || newline) {
      if (this.used === this.partBytes) await this.nextSlot();
      // An abort while this line waited took the spool back.
      if (this.failure !== undefined) throw this.failure;
      const spool = this.spool!;
      const start = this.slot * this.partBytes + this.used;
      const take = Math.min(line.length - from, this.partBytes - this.used);
      spool.set(line.subarray(from, from + take), start);
      from += take;
      this.used += take;
      this.bytes += take;
      if (from === line.length && newline && this.used < this.partBytes) {
        spool[start + take] = NEWLINE;
        this.used += 1;
        this.bytes += 1;
        newline = false;
      }
    }
  }

  private async nextSlot(): Promise<void> {
    if (this.uploadId === undefined && this.slot < this.slots - 1) {
      this.slot += 1;
      this.used = 0;
      return;
    }
    if (this.uploadId === undefined) {
      // The spool is full: the file goes multipart, the spool's slots its first parts.
      const created = await this.s3.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, ContentType: CONTENT_TYPE }));
      this.uploadId = created.UploadId;
      for (let slot = 0; slot < this.slots; slot++) await this.sendPart(slot, this.partBytes);
    } else {
      await this.sendPart(this.slot, this.partBytes);
    }
    this.slot = (this.slot + 1) % this.slots;
    this.used = 0;
    await this.slotUploads[this.slot];
  }

  /** Starts the slot's upload as the next part, first waiting while `queueSize` parts are in flight. */
  private async sendPart(slot: number, length: number): Promise<void> {
    const queueSize = this.spools.options.queueSize;
    if (this.parts.length >= queueSize) await this.parts[this.parts.length - queueSize]!.catch(() => undefined);
    if (this.failure !== undefined) throw this.failure;
    const PartNumber = this.parts.length + 1;
    const offset = slot * this.partBytes;
    const part = this.s3
      .send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          PartNumber,
          Body: this.spool!.subarray(offset, offset + length),
          ContentLength: length,
        }),
      )
      .then((output) => ({ PartNumber, ETag: output.ETag }));
    // Seen by the next append or finish; until then a failure must not go unhandled.
    const settled = part.catch((error: unknown) => {
      this.failure ??= error;
    });
    this.parts.push(part);
    this.slotUploads[slot] = settled;
  }

  async finish(): Promise<void> {
    try {
      if (this.failure !== undefined) throw this.failure;
      if (this.uploadId === undefined) {
        const length = this.slot * this.partBytes + this.used;
        await this.s3.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.key,
            Body: this.spool!.subarray(0, length),
            ContentLength: length,
            ContentType: CONTENT_TYPE,
          }),
        );
      } else {
        if (this.used > 0) await this.sendPart(this.slot, this.used);
        const parts = await Promise.all(this.parts);
        await this.s3.send(
          new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId, MultipartUpload: { Parts: parts } }),
        );
      }
      this.release();
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Discards the file: nothing was stored before the spool filled, else the multipart upload is aborted. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failure ??= new Error(`chunk file ${this.key} was abandoned`);
    // Parts still in flight would land after the abort; S3 asks that they finish first.
    await Promise.allSettled(this.parts);
    if (this.uploadId !== undefined) {
      await this.s3
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId }))
        .catch(() => undefined);
    }
    this.giveBack();
  }

  private release(): void {
    this.closed = true;
    this.giveBack();
  }

  private giveBack(): void {
    if (this.spool === undefined) return;
    this.spools.give(this.spool);
    this.spool = undefined;
  }
}
