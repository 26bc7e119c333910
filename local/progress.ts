/**
 * A job's progress as its records in DynamoDB tell it, for the local runtime and the CLI's
 * progress display: the same totals `batchline status` shows (shared/jobs/queries.ts).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { JobNotFound } from '../shared/jobs/prepare';
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
