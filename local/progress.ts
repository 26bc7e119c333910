/**
 * A job's progress as its records in DynamoDB tell it (shared/store/items.ts): the job record's
 * row counts and status, and each chunk's attempts (batches created, per-attempt outcomes).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { getItem, queryPartition } from '../shared/store/dynamo';
import { CHUNK_SK_PREFIX, JOB_SK, jobPk, type ChunkItem, type JobItem, type JobStatus, type RowCounts } from '../shared/store/items';

export interface JobProgress {
  jobId: string;
  /** undefined until RegisterJob has written the job record. */
  status: JobStatus | undefined;
  totalRows?: number;
  validRows?: number;
  invalidRows?: number;
  chunks?: number;
  chunksDone: number;
  chunksFailed: number;
  /** Batches created, every attempt counted. */
  batches: number;
  /** Chunk attempts after the first (retry batches). */
  retries: number;
  /** Outcomes of ended batch attempts, summed: a row retried after an error counts once per attempt. */
  attemptOutcomes: { succeeded: number; errored: number; expired: number; canceled: number };
  /** The job's final counts, once it has ended. */
  counts?: RowCounts;
  costUsd?: number;
}

export const TERMINAL_JOB_STATUSES: ReadonlySet<JobStatus> = new Set(['succeeded', 'rejected', 'canceled', 'failed']);

export async function readJobProgress(dynamo: DynamoDBClient, table: string, jobId: string): Promise<JobProgress> {
  const job = await getItem<JobItem>(dynamo, table, { pk: jobPk(jobId), sk: JOB_SK });
  const progress: JobProgress = {
    jobId,
    status: job?.status,
    totalRows: job?.totalRows,
    validRows: job?.validRows,
    invalidRows: job?.invalidRows,
    chunks: job?.chunkCount,
    chunksDone: 0,
    chunksFailed: 0,
    batches: 0,
    retries: 0,
    attemptOutcomes: { succeeded: 0, errored: 0, expired: 0, canceled: 0 },
    counts: job?.counts,
    costUsd: job?.costUsd,
  };
  if (!job) return progress;
  for await (const chunk of queryPartition<ChunkItem>(dynamo, table, jobPk(jobId), CHUNK_SK_PREFIX)) {
    if (chunk.status === 'done') progress.chunksDone += 1;
    if (chunk.status === 'failed') progress.chunksFailed += 1;
    for (const attempt of chunk.attempts ?? []) {
      if (attempt.batchId) {
        progress.batches += 1;
        if (attempt.attempt > 1) progress.retries += 1;
      }
      for (const outcome of ['succeeded', 'errored', 'expired', 'canceled'] as const) {
        progress.attemptOutcomes[outcome] += attempt.counts?.[outcome] ?? 0;
      }
    }
  }
  return progress;
}
