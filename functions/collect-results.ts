/**
 * CollectResults: `{jobId, chunk, attempt, batchId | null}` → `{jobId, chunk, attempt, retry, retryWaitSeconds, stragglers}`.
 * RunStragglers runs here too (Payload `{run: 'stragglers', state}`): it needs what Collect has —
 * the API, the attempts' files, the row records — and sends the rows a deadline's cancel left.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi, MessagesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig } from '../shared/config';
import { collectResults } from '../shared/jobs/collect-results';
import { parseAttemptRef, parseStragglersInput, type CollectOutput, type StragglersOutput } from '../shared/jobs/contract';
import { runStragglers } from '../shared/jobs/stragglers';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: (BatchesApi & MessagesApi) | undefined;

export const handler = instrument('collect-results', async (event: unknown, observer): Promise<CollectOutput | StragglersOutput> => {
  api ??= createBatchesClientFromEnv();
  if (isStragglersRun(event)) return runStragglers(parseStragglersInput(event.state), { s3, dynamo, api, config: readPipelineConfig(), observer });
  const ref = parseAttemptRef(event, true);
  return collectResults(ref, { s3, dynamo, api, config: readPipelineConfig(), observer });
});

function isStragglersRun(event: unknown): event is { run: 'stragglers'; state: unknown } {
  return typeof event === 'object' && event !== null && (event as { run?: unknown }).run === 'stragglers';
}
