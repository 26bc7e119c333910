/** PrepareJob: `{jobId}` → `{jobId, outcome, chunks, validRows, invalidRows}`; validates and chunks the input file. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import { parseJobRef, type PrepareOutput } from '../shared/jobs/contract';
import { lambdaLimits, prepareJob } from '../shared/jobs/prepare-job';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});

export const handler = instrument(
  'prepare-job',
  // The limits: the function's memory and the invocation's time left, watched while the file is read.
  async (event: unknown, observer, context): Promise<PrepareOutput> =>
    prepareJob({ jobId: parseJobRef(event).jobId }, { s3, dynamo, config: readPipelineConfig(), observer, limits: lambdaLimits(context) }),
);
