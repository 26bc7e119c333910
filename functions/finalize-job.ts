/** FinalizeJob: `{jobId, outcome?, ...}` → `{jobId, status, counts}`; writes the job's outputs and announces its end. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import { readNotifyConfig, readPipelineConfig } from '../shared/config';
import { parseFinalizeJobInput, type FinalizeJobOutput } from '../shared/jobs/contract';
import { finalizeJob } from '../shared/jobs/finalize-job';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});
const events = new EventBridgeClient({});
const sns = new SNSClient({});

export const handler = instrument(
  'finalize-job',
  async (event: unknown, observer): Promise<FinalizeJobOutput> =>
    finalizeJob(parseFinalizeJobInput(event), {
      s3,
      dynamo,
      config: readPipelineConfig(),
      notify: { clients: { events, sns }, config: readNotifyConfig() },
      observer,
    }),
);
