/** SubmitChunk: `{jobId, chunk}` → `{jobId, chunk, attempt, batchId | null, canceled, waitSeconds}`; creates (or adopts) the attempt's batch. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import type { BatchesClient } from '../shared/anthropic/client';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig } from '../shared/config';
import { parseChunkRef, type SubmitOutput } from '../shared/jobs/contract';
import { submitChunk } from '../shared/jobs/submit-chunk';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesClient | undefined;

export const handler = instrument('submit-chunk', async (event: unknown, observer): Promise<SubmitOutput> => {
  const { jobId, chunk } = parseChunkRef(event);
  api ??= createBatchesClientFromEnv();
  return submitChunk({ jobId, chunk }, { s3, dynamo, api, messages: api, config: readPipelineConfig(), observer });
});
