/** PrepareJob: `{jobId}` → `{jobId, outcome, chunks, validRows, invalidRows}`; validates and chunks the input file. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import { prepareJob, type PrepareResult } from '../shared/jobs/prepare';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});

export async function handler(event: { jobId: string }): Promise<PrepareResult> {
  return prepareJob({ jobId: event.jobId }, { s3, dynamo, config: readPipelineConfig() });
}
