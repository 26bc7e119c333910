/** Invoked by EventBridge Scheduler with `{schedule, prefix}`: starts one job execution per object under the prefix. */
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import type { SweepEvent } from '../shared/jobs/events';
import { readSweepConfig, sfnStarter, sweepPrefix, type SweepResult } from '../shared/jobs/sweep';
import { instrument } from '../shared/observability';

const s3 = new S3Client({});
const sfn = new SFNClient({});

export const handler = instrument('sweep-prefix', async (event: SweepEvent, observer): Promise<SweepResult> => {
  const config = readSweepConfig();
  return sweepPrefix(event, { s3, bucket: config.bucket, startExecution: sfnStarter(sfn, config.stateMachineArn), observer });
});
