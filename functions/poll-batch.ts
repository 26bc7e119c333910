/** PollBatch: `{jobId, chunk, attempt, batchId}` → `{..., ended, waitSeconds}`; records progress, forwards a cancel request. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig } from '../shared/config';
import { parseAttemptRef } from '../shared/jobs/chunk-state';
import { pollBatch, type PollOutput } from '../shared/jobs/poll';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('poll-batch', async (event: unknown, observer): Promise<PollOutput> => {
  const ref = parseAttemptRef(event);
  api ??= createBatchesClientFromEnv();
  return pollBatch(ref, { dynamo, api, config: readPipelineConfig(), observer });
});
