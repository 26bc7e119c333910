/**
 * The arm of a chunk's callback waits; its reply is not the state's output (the callback's is).
 * AwaitBatch: `{jobId, chunk, attempt, batchId, taskToken}` → stores the watch, or throws PollerUnavailable.
 * AwaitRetry: `{wait: 'retry', jobId, chunk, attempt, retryWaitSeconds, taskToken}` → stores the retry watch.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readPipelineConfig, readPollerConfig } from '../shared/config';
import { armRetryWatch, armWatch } from '../shared/jobs/await-batch';
import { parseArmInput, type ArmOutput } from '../shared/jobs/contract';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});

export const handler = instrument('await-batch', async (event: unknown, observer): Promise<ArmOutput> => {
  const input = parseArmInput(event);
  const { table } = readPipelineConfig();
  if ('wait' in input) return armRetryWatch(input, { dynamo, config: { table }, observer });
  return armWatch(input, { dynamo, config: { table, ...readPollerConfig() }, observer });
});
