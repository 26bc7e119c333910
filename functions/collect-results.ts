/** CollectResults: `{jobId, chunk, attempt, batchId | null}` → `{jobId, chunk, attempt, retry, retryWaitSeconds}`. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig } from '../shared/config';
import { collectResults } from '../shared/jobs/collect-results';
import { parseAttemptRef, type CollectOutput } from '../shared/jobs/contract';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('collect-results', async (event: unknown, observer): Promise<CollectOutput> => {
  const ref = parseAttemptRef(event, true);
  api ??= createBatchesClientFromEnv();
  return collectResults(ref, { s3, dynamo, api, config: readPipelineConfig(), observer });
});
