/**
 * A job's progress as its records in DynamoDB tell it, for the local runtime and the CLI's
 * progress display: the same totals `batchline status` shows (shared/jobs/queries.ts).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { HeadObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { readRowIndexHeader } from '../shared/jobs/chunk-files';
import { JobNotFound } from '../shared/jobs/prepare-job';
import type { ChunkItem, JobItem } from '../shared/store/items';
import { jobKeys, type Prefixes } from '../shared/store/keys';
import { hasEnded, jobProgress, noAttempts, type ProgressTotals } from '../shared/jobs/queries';

export interface JobProgress extends Omit<ProgressTotals, 'status'> {
  /** undefined until RegisterJob has written the job record. */
  status: ProgressTotals['status'];
  /** True once the job has a final status and its outputs are written (endedAt is set). */
  ended?: boolean;
}

export async function readJobProgress(dynamo: DynamoDBClient, table: string, jobId: string): Promise<JobProgress> {
  try {
    const { job, totals } = await jobProgress({ dynamo, table }, jobId);
    return { ...totals, ended: hasEnded(job) };
  } catch (error) {
    if (!(error instanceof JobNotFound)) throw error;
    return { jobId, status: undefined, ended: false, ...noAttempts() };
  }
}

/** What the progress line shows besides the totals: validation as it goes, batches as they run, rows processed. */
export interface LiveProgress extends JobProgress {
  /** While Prepare validates (no row counts yet): valid rows indexed so far, and how far into the input. */
  validating?: ValidationProgress;
  /** Batches created whose results are not collected yet, and since when (this side's clock: when Submit set out). */
  running: Array<{ chunk: number; attempt: number; batchId: string; since: string }>;
  /** Batches the API has ended (collected, or seen ended by a poll). */
  batchesEnded: number;
  /** Rows the API has processed (collected counts, or a running batch's request counts) of the rows sent in batches. */
  rowsProcessed: number;
  rowsSent: number;
}

export interface ValidationProgress {
  /** Valid rows in the chunks indexed so far (the chunk being cut is not counted yet). */
  rows: number;
  /** Where the last indexed chunk ends in the input (bytes), and the input's size when known. */
  bytes: number;
  inputBytes: number | undefined;
}

/** The batches and rows of a job's chunk records, as the progress line tells them. */
export function batchProgress(chunks: readonly ChunkItem[]): Pick<LiveProgress, 'running' | 'batchesEnded' | 'rowsProcessed' | 'rowsSent'> {
  const progress: ReturnType<typeof batchProgress> = { running: [], batchesEnded: 0, rowsProcessed: 0, rowsSent: 0 };
  for (const chunk of chunks) {
    for (const attempt of chunk.attempts) {
      if (!attempt.batchId) continue;
      progress.rowsSent += attempt.rows;
      const ended = attempt.collectedAt !== undefined || attempt.processingStatus === 'ended';
      if (ended) progress.batchesEnded += 1;
      else
        progress.running.push({ chunk: chunk.chunk, attempt: attempt.attempt, batchId: attempt.batchId, since: attempt.intentAt || attempt.createdAt || '' });
      const counts = attempt.counts ?? attempt.requestCounts;
      if (counts) progress.rowsProcessed += counts.succeeded + counts.errored + counts.expired + counts.canceled;
    }
  }
  return progress;
}

/**
 * Prepare's progress while it validates, from the row indexes it writes in chunk order: each new
 * index's header says its rows and where they end in the input. Reads each index's header once.
 */
export class ValidationWatch {
  private lastKey: string | undefined;
  private rows = 0;
  private bytes = 0;
  private inputBytes: number | undefined;
  private sized = false;
  /** A read under way: snapshots asked for meanwhile share it, so no header is counted twice. */
  private reading: Promise<ValidationProgress> | undefined;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly jobId: string,
    private readonly prefixes: Prefixes,
  ) {}

  read(job: Pick<JobItem, 'bucket' | 'key' | 'versionId'>): Promise<ValidationProgress> {
    this.reading ??= this.readNew(job).finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async readNew(job: Pick<JobItem, 'bucket' | 'key' | 'versionId'>): Promise<ValidationProgress> {
    if (!this.sized) {
      this.sized = true;
      try {
        const head = await this.s3.send(new HeadObjectCommand({ Bucket: job.bucket, Key: job.key, VersionId: job.versionId }));
        this.inputBytes = head.ContentLength;
      } catch {
        // The size only makes a percentage: without it, the rows and the rate still show.
      }
    }
    const keys = jobKeys(this.jobId, this.prefixes);
    const prefix = keys.chunksPrefix;
    let token: string | undefined;
    do {
      const page = await this.s3.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, StartAfter: token ? undefined : this.lastKey }),
      );
      for (const object of page.Contents ?? []) {
        const key = object.Key!;
        const chunk = Number(key.slice(prefix.length).split('/')[0]);
        if (!Number.isInteger(chunk) || key !== keys.chunkRowIndex(chunk)) continue;
        const header = await readRowIndexHeader(this.s3, this.bucket, key);
        this.rows += header.rows;
        this.bytes = Math.max(this.bytes, header.end);
        this.lastKey = key;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return { rows: this.rows, bytes: this.bytes, inputBytes: this.inputBytes };
  }
}

/** The job's progress with its batches, and, while Prepare validates, how far it has got (`watch`). */
export async function readLiveProgress(deps: { dynamo: DynamoDBClient; table: string }, jobId: string, watch?: ValidationWatch): Promise<LiveProgress> {
  let report;
  try {
    report = await jobProgress(deps, jobId);
  } catch (error) {
    if (!(error instanceof JobNotFound)) throw error;
    return { jobId, status: undefined, ended: false, ...noAttempts(), ...batchProgress([]) };
  }
  const { job, chunks, totals } = report;
  const live: LiveProgress = { ...totals, ended: hasEnded(job), ...batchProgress(chunks) };
  if (watch && job.validRows === undefined && !live.ended) live.validating = await watch.read(job);
  return live;
}
