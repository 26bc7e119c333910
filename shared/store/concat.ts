/**
 * One object made of others, joined inside S3: a multipart upload whose parts are copied from the
 * sources with UploadPartCopy, so the bytes never pass through the function and the time and
 * memory do not grow with the data. What S3 requires of the parts shapes it:
 *
 * - every part but the last is at least 5 MiB: pieces smaller than that (short sources, a source's
 *   tail) are read and gathered into an uploaded part of at least 5 MiB;
 * - a part is at most 5 GiB: a larger source is copied in ranges;
 * - at most 10,000 parts: each source adds at most two parts and one per 5 GiB, so 4,000 sources
 *   (400 million rows in 100,000-row chunks) fit; more is refused up front (TooManyParts).
 *
 * A result under 5 MiB in all is one PutObject of the gathered bytes. The sources must not change
 * while they are joined (they are work files batchline wrote and no longer writes).
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { JSONL_CONTENT_TYPE } from './s3';

/** S3's smallest part (but the last). */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
/** S3's most parts in one upload. */
export const MAX_PARTS = 10_000;
/** Part copies in flight at once. */
const COPY_CONCURRENCY = 8;

/** The join would need more parts than S3 allows in one object. */
export class TooManyParts extends Error {
  override readonly name = 'TooManyParts';
}

export interface ConcatSource {
  key: string;
  /** The object's size in bytes (known to the caller, which wrote it). */
  bytes: number;
}

export interface ConcatStats {
  bytes: number;
  /** Parts copied inside S3, and parts of gathered small pieces uploaded. */
  copiedParts: number;
  uploadedParts: number;
}

/** Writes `target` as the sources' bytes one after another. */
export async function concatObjects(
  s3: S3Client,
  bucket: string,
  sources: readonly ConcatSource[],
  target: string,
  options: { contentType?: string } = {},
): Promise<ConcatStats> {
  const contentType = options.contentType ?? JSONL_CONTENT_TYPE;
  const total = sources.reduce((sum, source) => sum + source.bytes, 0);
  const bound = sources.reduce((parts, source) => parts + 2 + Math.floor(source.bytes / MAX_PART_BYTES), 0);
  if (bound > MAX_PARTS) {
    throw new TooManyParts(`${target}: ${sources.length} sources of ${total} bytes could need more than ${MAX_PARTS} parts`);
  }
  if (total < MIN_PART_BYTES) {
    const pieces: Buffer[] = [];
    for (const source of sources) if (source.bytes > 0) pieces.push(await readRange(s3, bucket, source.key, 0, source.bytes));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: target, Body: Buffer.concat(pieces), ContentType: contentType }));
    return { bytes: total, copiedParts: 0, uploadedParts: 0 };
  }

  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: target, ContentType: contentType }));
  const uploadId = UploadId!;
  const join = new PartJoin(s3, bucket, target, uploadId);
  try {
    for (const source of sources) await join.add(source);
    const parts = await join.finish();
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: target, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    return { bytes: total, copiedParts: join.copied, uploadedParts: join.uploaded };
  } catch (error) {
    await join.settle();
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: target, UploadId: uploadId })).catch(() => undefined);
    throw error;
  }
}

/** The parts of one upload, in order: copies run a few at a time, gathered pieces as they fill. */
class PartJoin {
  private readonly parts: Array<Promise<CompletedPart>> = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;
  copied = 0;
  uploaded = 0;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly uploadId: string,
  ) {}

  async add(source: ConcatSource): Promise<void> {
    let at = 0;
    while (at < source.bytes) {
      const left = source.bytes - at;
      if (this.gatheredBytes > 0 || left < MIN_PART_BYTES) {
        // Top the gathered piece up to a part's minimum (or take all that is left of the source).
        const take = Math.min(left, MIN_PART_BYTES - this.gatheredBytes);
        this.gather(await readRange(this.s3, this.bucket, source.key, at, take));
        at += take;
        if (this.gatheredBytes >= MIN_PART_BYTES) await this.uploadGathered();
        continue;
      }
      // A copied part may not leave a tail under the minimum that no later source could top up,
      // but a short tail is fine: it is gathered, and the last part may be short.
      const size = Math.min(left, MAX_PART_BYTES);
      await this.start(this.copyPart(source.key, at, size));
      at += size;
    }
  }

  /** The parts, once every one is in. */
  async finish(): Promise<CompletedPart[]> {
    if (this.gatheredBytes > 0) await this.uploadGathered();
    return Promise.all(this.parts);
  }

  /** Waits for what is in flight, failed or not (before an abort). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.parts);
  }

  private gather(bytes: Buffer): void {
    this.gathered.push(bytes);
    this.gatheredBytes += bytes.length;
  }

  private async uploadGathered(): Promise<void> {
    const body = Buffer.concat(this.gathered);
    this.gathered = [];
    this.gatheredBytes = 0;
    const partNumber = this.parts.length + 1;
    this.uploaded += 1;
    await this.start(
      this.s3
        .send(new UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: partNumber, Body: body }))
        .then(({ ETag }) => ({ PartNumber: partNumber, ETag })),
    );
  }

  private copyPart(sourceKey: string, from: number, size: number): Promise<CompletedPart> {
    const partNumber = this.parts.length + 1;
    this.copied += 1;
    return this.s3
      .send(
        new UploadPartCopyCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          PartNumber: partNumber,
          CopySource: copySource(this.bucket, sourceKey),
          CopySourceRange: `bytes=${from}-${from + size - 1}`,
        }),
      )
      .then(({ CopyPartResult }) => ({ PartNumber: partNumber, ETag: CopyPartResult?.ETag }));
  }

  /** Adds a part in flight, waiting first while COPY_CONCURRENCY are. */
  private async start(part: Promise<CompletedPart>): Promise<void> {
    this.parts.push(part);
    const tracked: Promise<unknown> = part.then(
      () => this.inFlight.delete(tracked),
      () => this.inFlight.delete(tracked),
    );
    this.inFlight.add(tracked);
    // A failure is reported by finish() or settle(); until then it must not count as unhandled.
    part.catch(() => undefined);
    while (this.inFlight.size >= COPY_CONCURRENCY) await Promise.race(this.inFlight);
  }
}

/** `bucket/key` as CopySource wants it: the key URL-encoded, its slashes kept. */
export function copySource(bucket: string, key: string): string {
  return `${bucket}/${encodeURIComponent(key).replace(/%2F/g, '/')}`;
}

/** `length` bytes of an object from `from`. */
async function readRange(s3: S3Client, bucket: string, key: string, from: number, length: number): Promise<Buffer> {
  if (length === 0) return Buffer.alloc(0);
  const { Body } = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${from}-${from + length - 1}` }));
  const bytes = Buffer.from(await Body!.transformToByteArray());
  if (bytes.length !== length) throw new Error(`${key}: read ${bytes.length} bytes at ${from}, not ${length}`);
  return bytes;
}
