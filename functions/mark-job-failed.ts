/** MarkJobFailed: `{jobId?, error: {Error, Cause}, ...}` → `{jobId}`; marks the job failed, cancels its batches, tells the topic. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SNSClient } from '@aws-sdk/client-sns';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readNotifyConfig, readPipelineConfig } from '../shared/config';
import { parseMarkJobFailedInput } from '../shared/jobs/contract';
import { markJobFailed } from '../shared/jobs/mark-job-failed';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
const events = new EventBridgeClient({});
const sns = new SNSClient({});
// Built on first use, still once per container: its settings are read from the environment, which
// must not be needed merely to import this module.
let api: BatchesApi | undefined;

export const handler = instrument('mark-job-failed', async (event: unknown, observer): Promise<{ jobId: string | null }> => {
  api ??= createBatchesClientFromEnv();
  const config = { table: readPipelineConfig().table, notify: readNotifyConfig() };
  // The state's reply is {jobId} alone: the workflow drops it, and fails with the error it caught.
  const { jobId } = await markJobFailed(parseMarkJobFailedInput(event), { dynamo, api, events, sns, config, observer });
  return { jobId };
});
