/**
 * The arm of a chunk's callback waits; its reply is not the state's output (the callback's is).
 * AwaitBatch: `{jobId, chunk, attempt, batchId, taskToken}` → stores the watch, or throws PollerUnavailable.
 * AwaitRetry: `{wait: 'retry', jobId, chunk, attempt, retryWaitSeconds, taskToken}` → stores the retry watch.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readPipelineConfig, readPollerConfig } from '../shared/config';
import { armRetryWatch, armWatch, type ArmResult } from '../shared/jobs/await';
import { InvalidStateInput, parseAttemptRef, parseChunkRef } from '../shared/jobs/chunk-state';
import { instrument } from '../shared/observability';

const dynamo = new DynamoDBClient({});

export const handler = instrument('await-batch', async (event: unknown, observer): Promise<ArmResult> => {
  const taskToken = (event as { taskToken?: unknown }).taskToken;
  if (typeof taskToken !== 'string' || taskToken === '') throw new InvalidStateInput('taskToken must be a non-empty string');
  const { table } = readPipelineConfig();
  if ((event as { wait?: unknown }).wait === 'retry') {
    const { jobId, chunk, attempt, retryWaitSeconds } = parseChunkRef(event);
    if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1) throw new InvalidStateInput('attempt must be a whole number ≥ 1');
    if (typeof retryWaitSeconds !== 'number' || !(retryWaitSeconds >= 0)) throw new InvalidStateInput('retryWaitSeconds must be a number ≥ 0');
    return armRetryWatch({ jobId, chunk, attempt, retryWaitSeconds, taskToken }, { dynamo, config: { table }, observer });
  }
  const ref = parseAttemptRef(event);
  return armWatch({ ...ref, taskToken }, { dynamo, config: { table, ...readPollerConfig() }, observer });
});
