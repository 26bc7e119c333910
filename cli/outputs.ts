/** Copies a job's outputs (`<resultsPrefix><jobId>/`) out of the bucket into a folder the user reads. */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { jobKeys, type Prefixes } from '../shared/store/keys';
import { isBlank, splitLines } from '../shared/jsonl/lines';
import { isS3NotFound } from '../shared/store/s3';
import { count } from './format';

export const OUTPUT_FILES = ['results', 'errors', 'invalid', 'summary', 'summaryHtml'] as const;

/** The job's report for a person (shared/jobs/summary-html.ts), among the outputs. */
export const REPORT_FILE = 'summary.html';

/** Streams each output that exists to `dir`; returns the files written. */
export async function copyOutputs(s3: S3Client, bucket: string, prefixes: Prefixes, jobId: string, dir: string): Promise<string[]> {
  const keys = jobKeys(jobId, prefixes);
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

/** One line of invalid.jsonl, as the CLI shows it: its line number, code and reason. */
export interface InvalidLineShown {
  line: number | null;
  code: string | null;
  reason: string;
}

/** An invalid.jsonl line as shown: its reason (which names its line number), or the line itself if it has none. */
function shownLine(text: string): InvalidLineShown {
  try {
    const parsed = JSON.parse(text) as { line?: unknown; code?: unknown; reason?: unknown };
    const line = typeof parsed.line === 'number' ? parsed.line : null;
    const code = typeof parsed.code === 'string' ? parsed.code : null;
    return { line, code, reason: typeof parsed.reason === 'string' ? parsed.reason : `line ${String(parsed.line)}: ${text}` };
  } catch {
    return { line: null, code: null, reason: text };
  }
}

/** Invalid lines shown under a run's summary; the rest are counted, and are in invalid.jsonl. */
export const INVALID_LINES_SHOWN = 5;

/**
 * The first `shown` lines of a copied invalid.jsonl and how many it has in all (it is read to the
 * end to count them, a line at a time); undefined when the file is not there.
 */
export async function firstInvalidLines(file: string, shown = INVALID_LINES_SHOWN): Promise<{ total: number; lines: InvalidLineShown[] } | undefined> {
  const lines: InvalidLineShown[] = [];
  let total = 0;
  const input = createReadStream(file);
  try {
    for await (const { bytes } of splitLines(input)) {
      if (isBlank(bytes)) continue;
      total += 1;
      if (lines.length < shown) lines.push(shownLine(bytes.toString('utf8')));
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  } finally {
    input.destroy();
  }
  return { total, lines };
}

/**
 * The first invalid lines of a copied invalid.jsonl, as a compiler lists errors: each line's
 * reason (which names its line number), then how many more there are and where. Undefined when
 * there are none.
 */
export async function invalidLinesExcerpt(file: string, shownAs: string): Promise<string | undefined> {
  const first = await firstInvalidLines(file);
  if (!first || first.total === 0) return undefined;
  const more = first.total - first.lines.length;
  return [
    `Invalid lines (${count(first.total)}):`,
    ...first.lines.map(({ reason }) => `  ${reason}`),
    ...(more > 0 ? [`  … and ${count(more)} more in ${shownAs}`] : []),
  ].join('\n');
}
