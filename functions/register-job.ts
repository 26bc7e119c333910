/**
 * RegisterJob: `{event, executionArn}` as the workflow sends it (its Parameters), where `event` is an S3
 * `Object Created` event, a schedule's event or a direct `{bucket, key}`; or such an event bare →
 * `{jobId, duplicate}`. shared/jobs/events.ts parseRegisterEvent reads every shape.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import type { RegisterOutput } from '../shared/jobs/contract';
import { registerJob } from '../shared/jobs/register-job';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});

export const handler = instrument(
  'register-job',
  async (event: unknown, observer): Promise<RegisterOutput> => registerJob(event, { s3, dynamo, config: readPipelineConfig(), observer }),
);
