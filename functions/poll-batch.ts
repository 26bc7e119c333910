/** PollBatch: `{jobId, chunk, attempt, batchId, wake?}` → `{..., ended, waitSeconds, watch}`; records progress, forwards a cancel request. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig, readPollerConfig } from '../shared/config';
import { parseAttemptRef } from '../shared/jobs/chunk-state';
import { pollBatch, type PollOutput, type WakeOutput } from '../shared/jobs/poll';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('poll-batch', async (event: unknown, observer): Promise<PollOutput> => {
  const ref = parseAttemptRef(event);
  // AwaitBatch's wake, when the poller woke it ($.wake); a hint only.
  const wake = (event as { wake?: unknown }).wake;
  api ??= createBatchesClientFromEnv();
  return pollBatch(
    { ...ref, wake: typeof wake === 'object' && wake !== null ? (wake as WakeOutput) : undefined },
    { dynamo, api, config: readPipelineConfig(), poller: readPollerConfig(), observer },
  );
});
