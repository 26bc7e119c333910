/**
 * The poller, once a minute (EventBridge Scheduler; reserved concurrency 1): wakes the chunks whose
 * batch has ended and heartbeats the rest (shared/jobs/poller.ts). Replies with the tick's counts.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendTaskHeartbeatCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig, readPollerConfig } from '../shared/config';
import { pollerTick, type TaskCallbacks, type TickReport } from '../shared/jobs/poller';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
const sfn = new SFNClient({});
const callbacks: TaskCallbacks = {
  success: async (taskToken, output) => void (await sfn.send(new SendTaskSuccessCommand({ taskToken, output }))),
  heartbeat: async (taskToken) => void (await sfn.send(new SendTaskHeartbeatCommand({ taskToken }))),
};
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('poll-batches', async (_event: unknown, observer): Promise<TickReport> => {
  const { table } = readPipelineConfig();
  api ??= createBatchesClientFromEnv();
  return pollerTick({ dynamo, api, callbacks, config: { table, ...readPollerConfig() }, observer });
});
