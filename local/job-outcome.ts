/** How a local job ended: its record, its execution and its summary, once it has ended. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { JobSummary } from '../shared/jobs/finalize-job';
import { hasEnded } from '../shared/jobs/queries';
import { getItem } from '../shared/store/dynamo';
import { JOB_SK, jobPk, type JobItem } from '../shared/store/items';
import { getJson } from '../shared/store/s3';
import { jobKeys, type JobKeys, type Prefixes } from '../shared/store/keys';
import type { ExecutionDescription } from './aws-shim';
import { LocalStackError } from './errors';

export interface JobOutcome {
  jobId: string;
  /** The job record's status (succeeded, rejected, canceled, failed). */
  status: JobItem['status'] | undefined;
  /** How the job's execution ended. */
  execution: Pick<ExecutionDescription, 'executionArn' | 'status' | 'error' | 'cause'> | undefined;
  job: JobItem | undefined;
  /** results/<jobId>/summary.json, when the job wrote one. */
  summary: JobSummary | undefined;
  keys: JobKeys;
}

/**
 * Resolves once the job record says the job has ended, for a job whose execution this stack did not
 * start (or whose event was delivered twice). A rejected job has its final status before Finalize
 * has written its outputs: its endedAt is what is waited for.
 */
export async function untilJobEnded(dynamo: DynamoDBClient, table: string, jobId: string): Promise<undefined> {
  for (;;) {
    const record = await getItem<JobItem>(dynamo, table, { pk: jobPk(jobId), sk: JOB_SK });
    if (!record) throw new LocalStackError(`there is no job ${jobId}`);
    if (hasEnded(record)) return undefined;
    await sleep(100);
  }
}

export async function jobOutcome(
  stores: { s3: S3Client; bucket: string; dynamo: DynamoDBClient; table: string; prefixes: Prefixes },
  jobId: string,
  ended: ExecutionDescription | undefined,
): Promise<JobOutcome> {
  const keys = jobKeys(jobId, stores.prefixes);
  const job = await getItem<JobItem>(stores.dynamo, stores.table, { pk: jobPk(jobId), sk: JOB_SK });
  const summary = await getJson<JobSummary>(stores.s3, stores.bucket, keys.summary);
  return {
    jobId,
    status: job?.status,
    execution: ended && { executionArn: ended.executionArn, status: ended.status, error: ended.error, cause: ended.cause },
    job,
    summary,
    keys,
  };
}
