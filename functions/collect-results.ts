/**
 * CollectResults: `{jobId, chunk, attempt, batchId | null}` → `{jobId, chunk, attempt, retry, retryWaitSeconds, stragglers}`.
 * RunStragglers runs here too (Payload `{run: 'stragglers', state}`): it needs what Collect has —
 * the API, the attempts' files, the row records — and sends the rows a deadline's cancel left.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import type { BatchesClient } from '../shared/anthropic/client';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readPipelineConfig } from '../shared/config';
import { collectResults } from '../shared/jobs/collect-results';
import { parseAttemptRef, parseStragglersInput, type CollectOutput, type StragglersOutput } from '../shared/jobs/contract';
import { runStragglers } from '../shared/jobs/stragglers';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});
// Built on first use, still once per container: its settings come from the environment.
let api: BatchesClient | undefined;

/** RunStragglers watches the time its Lambda has left: it stops claiming, and aborts its calls, before it is stopped. */
export const handler = instrument('collect-results', async (event: unknown, observer, context): Promise<CollectOutput | StragglersOutput> => {
  api ??= createBatchesClientFromEnv();
  if (isStragglersRun(event)) {
    const remaining = context?.getRemainingTimeInMillis?.bind(context);
    const deps = { s3, dynamo, api, config: readPipelineConfig(), observer, timeLeftMs: remaining, callMs: api.timeoutMs };
    return runStragglers(parseStragglersInput(event.state), deps);
  }
  const ref = parseAttemptRef(event, true);
  return collectResults(ref, { s3, dynamo, api, config: readPipelineConfig(), observer });
});

function isStragglersRun(event: unknown): event is { run: 'stragglers'; state: unknown } {
  return typeof event === 'object' && event !== null && (event as { run?: unknown }).run === 'stragglers';
}
