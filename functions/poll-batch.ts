/** PollBatch: `{jobId, chunk, attempt, batchId, wake?}` → `{..., ended, waitSeconds, watch}`; records progress, forwards a cancel request. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig, readPollerConfig } from '../shared/config';
import { parsePollInput, type PollOutput } from '../shared/jobs/contract';
import { pollBatch } from '../shared/jobs/poll-batch';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('poll-batch', async (event: unknown, observer): Promise<PollOutput> => {
  const input = parsePollInput(event);
  api ??= createBatchesClientFromEnv();
  return pollBatch(input, { dynamo, api, config: readPipelineConfig(), poller: readPollerConfig(), observer });
});
