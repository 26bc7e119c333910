/** RegisterJob: an S3 `Object Created` event, a schedule's event or a direct `{bucket, key}` → `{jobId, duplicate}`. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import type { RegisterEvent } from '../shared/jobs/events';
import { registerJob, type RegisterResult } from '../shared/jobs/register';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});

export async function handler(event: RegisterEvent): Promise<RegisterResult> {
  return registerJob(event, { s3, dynamo, config: readPipelineConfig() });
}
