/** S3 access the core shares: streamed reads, streamed multipart writes, small JSON objects. */
import { GetObjectCommand, HeadObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createReadStream } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { once } from 'node:events';

export const JSONL_CONTENT_TYPE = 'application/x-ndjson';

/** Parts of 16 MiB keep a 10,000-part upload able to reach ~160 GiB (docs/design.md: multipart limits). */
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;

/** Streams an object's bytes, optionally from a byte offset (a normal Range, never a suffix range). */
export async function readObject(
  s3: S3Client,
  bucket: string,
  key: string,
  options: { startOffset?: number } = {},
): Promise<AsyncIterable<Uint8Array> & Readable> {
  const range = options.startOffset ? `bytes=${options.startOffset}-` : undefined;
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }));
  if (!response.Body) throw new Error(`s3://${bucket}/${key} has no body`);
  return response.Body as unknown as AsyncIterable<Uint8Array> & Readable;
}

/**
 * Whether an S3 error says the object (or the version asked for) is not there. GetObject names it
 * NoSuchKey; HeadObject has no body, so only its 404 (the SDK calls it NotFound) tells.
 */
export function isS3NotFound(error: unknown): boolean {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return error instanceof NoSuchKey || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchVersion' || $metadata?.httpStatusCode === 404;
}

export async function headObject(s3: S3Client, bucket: string, key: string) {
  return s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

/** Whether the object is there (a HeadObject; any error but its 404 is thrown). */
export async function objectExists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await headObject(s3, bucket, key);
    return true;
  } catch (error) {
    if (isS3NotFound(error)) return false;
    throw error;
  }
}

export async function getJson<T>(s3: S3Client, bucket: string, key: string): Promise<T | undefined> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return JSON.parse(await response.Body!.transformToString('utf8')) as T;
  } catch (error) {
    if (isS3NotFound(error)) return undefined;
    throw error;
  }
}

export async function putJson(s3: S3Client, bucket: string, key: string, value: unknown): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: JSON.stringify(value, null, 2) + '\n', ContentType: 'application/json' }));
}

export interface FileUploadOptions {
  metadata?: Record<string, string>;
  contentType?: string;
  /** Called with the share uploaded so far, 0–100. */
  onProgress?: (percent: number) => void;
}

/** Streams a local file to `key` (multipart when large): how the CLI, the local stack and the benchmarks put input files. */
export async function uploadFile(
  s3: S3Client,
  bucket: string,
  key: string,
  file: string,
  options: FileUploadOptions = {},
): Promise<{ etag: string; versionId?: string }> {
  const upload = new Upload({
    client: s3,
    params: { Bucket: bucket, Key: key, Body: createReadStream(file), ContentType: options.contentType, Metadata: options.metadata },
    partSize: DEFAULT_PART_SIZE,
    queueSize: 4,
    leavePartsOnError: false,
  });
  const { onProgress } = options;
  if (onProgress) {
    upload.on('httpUploadProgress', ({ loaded, total }) => {
      if (loaded !== undefined && total) onProgress(Math.floor((100 * loaded) / total));
    });
  }
  const done = await upload.done();
  return { etag: done.ETag ?? '', versionId: done.VersionId };
}

/**
 * A streamed multipart upload: write buffers with backpressure, then `finish()`. Memory stays at a
 * few parts whatever the object's size. `abort()` discards what was uploaded.
 */
export class ObjectWriter {
  private readonly body = new PassThrough({ highWaterMark: 1024 * 1024 });
  private readonly upload: Upload;
  private readonly done: Promise<unknown>;
  private failure: unknown;
  bytes = 0;

  constructor(s3: S3Client, bucket: string, key: string, options: { partSize?: number; contentType?: string } = {}) {
    this.upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: this.body, ContentType: options.contentType ?? 'application/x-ndjson' },
      partSize: options.partSize ?? DEFAULT_PART_SIZE,
      queueSize: 2,
      leavePartsOnError: false,
    });
    this.done = this.upload.done().catch((error: unknown) => {
      this.failure = error;
      this.body.destroy();
      throw error;
    });
    // Observed through finish(); keep an early failure from being reported as unhandled.
    this.done.catch(() => undefined);
  }

  async write(chunk: Buffer | string): Promise<void> {
    if (this.failure) throw this.failure;
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    this.bytes += buffer.length;
    if (!this.body.write(buffer)) {
      await Promise.race([once(this.body, 'drain'), this.done]);
    }
  }

  /**
   * Writes bytes without an await per call: returns a promise only when the caller must wait for
   * the upload to drain (backpressure), so a tight loop pays for an await only then.
   */
  append(chunk: Uint8Array): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    this.bytes += chunk.byteLength;
    if (this.body.write(chunk)) return undefined;
    return Promise.race([once(this.body, 'drain'), this.done]).then(() => undefined);
  }

  /** Writes one JSONL line: a value is serialized, a Buffer is taken as an already-serialized line. */
  async writeLine(line: unknown): Promise<void> {
    if (Buffer.isBuffer(line)) {
      await this.write(line);
      await this.write(NEWLINE);
    } else {
      await this.write(JSON.stringify(line) + '\n');
    }
  }

  async finish(): Promise<{ bytes: number }> {
    this.body.end();
    await this.done;
    return { bytes: this.bytes };
  }

  async abort(): Promise<void> {
    await this.upload.abort().catch(() => undefined);
    this.body.destroy();
  }
}

const NEWLINE = Buffer.from('\n');
