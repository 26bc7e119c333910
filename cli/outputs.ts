/** Copies a job's outputs (results/<jobId>/) out of the local bucket into a folder the user reads. */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { jobKeys } from '../shared/store/keys';
import { isBlank, splitLines } from '../shared/jsonl/lines';
import { isS3NotFound } from '../shared/store/s3';
import { count } from './format';

export const OUTPUT_FILES = ['results', 'errors', 'invalid', 'summary', 'summaryHtml'] as const;

/** The job's report for a person (shared/jobs/summary-html.ts), among the outputs. */
export const REPORT_FILE = 'summary.html';

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

/** An invalid.jsonl line's reason (which names its line number), or the line itself if it has none. */
function reasonOf(line: string): string {
  try {
    const parsed = JSON.parse(line) as { line?: unknown; reason?: unknown };
    return typeof parsed.reason === 'string' ? parsed.reason : `line ${String(parsed.line)}: ${line}`;
  } catch {
    return line;
  }
}

/** Invalid lines shown under a run's summary; the rest are counted, and are in invalid.jsonl. */
const INVALID_LINES_SHOWN = 5;

/**
 * The first invalid lines of a copied invalid.jsonl, as a compiler lists errors: each line's
 * reason (which names its line number), then how many more there are and where. Undefined when
 * there are none. Reads only the first lines of the file.
 */
export async function invalidLinesExcerpt(file: string, shownAs: string): Promise<string | undefined> {
  const reasons: string[] = [];
  let total = 0;
  const input = createReadStream(file);
  try {
    for await (const { bytes } of splitLines(input)) {
      if (isBlank(bytes)) continue;
      total += 1;
      if (reasons.length < INVALID_LINES_SHOWN) reasons.push(reasonOf(bytes.toString('utf8')));
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  } finally {
    input.destroy();
  }
  if (total === 0) return undefined;
  const more = total - reasons.length;
  return [
    `Invalid lines (${count(total)}):`,
    ...reasons.map((reason) => `  ${reason}`),
    ...(more > 0 ? [`  … and ${count(more)} more in ${shownAs}`] : []),
  ].join('\n');
}
