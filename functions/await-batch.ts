/** AwaitBatch's arm: `{jobId, chunk, attempt, batchId, taskToken}` → stores the watch, or throws PollerUnavailable. Its reply is not the state's output (the callback's is). */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readPipelineConfig, readPollerConfig } from '../shared/config';
import { armWatch, type ArmResult } from '../shared/jobs/await';
import { InvalidStateInput, parseAttemptRef } from '../shared/jobs/chunk-state';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});

export const handler = instrument('await-batch', async (event: unknown, observer): Promise<ArmResult> => {
  const ref = parseAttemptRef(event);
  const taskToken = (event as { taskToken?: unknown }).taskToken;
  if (typeof taskToken !== 'string' || taskToken === '') throw new InvalidStateInput('taskToken must be a non-empty string');
  const { table } = readPipelineConfig();
  return armWatch({ ...ref, taskToken }, { dynamo, config: { table, ...readPollerConfig() }, observer });
});
