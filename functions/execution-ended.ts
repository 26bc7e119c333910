/**
 * Invoked by EventBridge with a `Step Functions Execution Status Change` event of the job state
 * machine: a job whose execution failed, timed out or was aborted is marked failed and its batches
 * in flight canceled (unless it had already ended). Replies with what it did.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SNSClient } from '@aws-sdk/client-sns';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readNotifyConfig, readPipelineConfig } from '../shared/config';
import { handleExecutionEnded, type ExecutionEndedResult, type ExecutionStatusChangeEvent } from '../shared/jobs/execution-ended';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
const events = new EventBridgeClient({});
const sns = new SNSClient({});
// Built on first use, still once per container: its settings are read from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('execution-ended', async (event: ExecutionStatusChangeEvent, observer): Promise<ExecutionEndedResult> => {
  const config = { table: readPipelineConfig().table, notify: readNotifyConfig() };
  api ??= createBatchesClientFromEnv();
  return handleExecutionEnded(event, { dynamo, api, events, sns, config, observer });
});
