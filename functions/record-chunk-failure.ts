/** RecordChunkFailure: `{jobId, chunk, error: {Error, Cause}}` → `{jobId, chunk, ok: false}`; the chunk is failed, its batch canceled. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig } from '../shared/config';
import { recordChunkFailure } from '../shared/jobs/record-chunk-failure';
import { parseChunkFailureInput, type ChunkFailureOutput } from '../shared/jobs/contract';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesApi | undefined;

export const handler = instrument('record-chunk-failure', async (event: unknown, observer): Promise<ChunkFailureOutput> => {
  const input = parseChunkFailureInput(event);
  api ??= createBatchesClientFromEnv();
  return recordChunkFailure(input, { dynamo, api, config: readPipelineConfig(), observer });
});
