/**
 * Real local S3 and DynamoDB for a test file: start once in beforeAll, stop in afterAll.
 *   const aws = useLocalAws();  // then aws.s3, aws.dynamo, aws.bucket, aws.table inside tests
 */
import { afterAll, beforeAll } from 'vitest';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { createPipelineTable, localAwsEnv, startDynamo, startS3, type LocalDynamo, type LocalS3 } from '../../local/emulators';

export interface LocalAws {
  s3: S3Client;
  dynamo: DynamoDBClient;
  bucket: string;
  table: string;
  s3Server: LocalS3;
  dynamoServer: LocalDynamo;
  /** The variables handlers read (AWS endpoints, bucket, table). */
  env: Record<string, string>;
}

export function useLocalAws(options: { bucket?: string; table?: string } = {}): LocalAws {
  const state = {} as LocalAws;
  beforeAll(async () => {
    state.bucket = options.bucket ?? 'batchline-test';
    state.table = options.table ?? 'batchline-test';
    state.s3Server = await startS3({ buckets: [state.bucket] });
    state.dynamoServer = await startDynamo();
    state.s3 = state.s3Server.client;
    state.dynamo = state.dynamoServer.client;
    await createPipelineTable(state.dynamo, state.table);
    state.env = {
      ...localAwsEnv({ s3: state.s3Server.endpoint, dynamodb: state.dynamoServer.endpoint }),
      BATCHLINE_BUCKET: state.bucket,
      BATCHLINE_TABLE: state.table,
    };
  });
  afterAll(async () => {
    await state.s3Server?.stop();
    await state.dynamoServer?.stop();
  });
  return state;
}
