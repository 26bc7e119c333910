/** Copies a job's outputs (results/<jobId>/) out of the local bucket into a folder the user reads. */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { jobKeys } from '../shared/store/keys';
import { isS3NotFound } from '../shared/store/s3';

export const OUTPUT_FILES = ['results', 'errors', 'invalid', 'summary'] as const;

/** Streams each output that exists to `dir`; returns the files written. */
export async function copyOutputs(s3: S3Client, bucket: string, jobId: string, dir: string): Promise<string[]> {
  const keys = jobKeys(jobId);
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const output of OUTPUT_FILES) {
    const key = keys[output];
    let body: Readable;
    try {
      body = (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body as Readable;
    } catch (error) {
      if (isS3NotFound(error)) continue;
      throw error;
    }
    const file = path.join(dir, path.basename(key));
    await pipeline(body, createWriteStream(file));
    written.push(file);
  }
  return written;
}
