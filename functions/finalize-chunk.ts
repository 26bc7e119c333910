/** FinalizeChunk: `{jobId, chunk, ...}` → `{jobId, chunk, rows, failed}`; writes the chunk's rows in input order, with their final state. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import { parseChunkRef, type FinalizeChunkOutput } from '../shared/jobs/contract';
import { finalizeChunk } from '../shared/jobs/finalize-chunk';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});

export const handler = instrument(
  'finalize-chunk',
  async (event: unknown, observer): Promise<FinalizeChunkOutput> => finalizeChunk(parseChunkRef(event), { s3, dynamo, config: readPipelineConfig(), observer }),
);
