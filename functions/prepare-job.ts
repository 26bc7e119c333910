/** PrepareJob: `{jobId}` → `{jobId, outcome, chunks, validRows, invalidRows}`; validates and chunks the input file. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import { parseJobRef, type PrepareOutput } from '../shared/jobs/contract';
import { prepareJob } from '../shared/jobs/prepare-job';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});

export const handler = instrument(
  'prepare-job',
  async (event: unknown, observer): Promise<PrepareOutput> =>
    prepareJob({ jobId: parseJobRef(event).jobId }, { s3, dynamo, config: readPipelineConfig(), observer }),
);
