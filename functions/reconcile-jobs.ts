/**
 * Run daily by EventBridge Scheduler: collects, cancels and finalizes what jobs whose workflow died
 * left behind (shared/jobs/reconcile-jobs.ts). Replies `{examined, collected, canceled, finalized, ...}`.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import type { BatchesApi } from '../shared/anthropic/api';
import { createBatchesClientFromEnv } from '../shared/anthropic/from-env';
import { readNotifyConfig, readPipelineConfig } from '../shared/config';
import { readReconcileConfig, RECONCILE_BUDGET_MS, reconcileJobs, type ReconcileReport } from '../shared/jobs/reconcile-jobs';
import { instrument, type InvocationContext } from '../shared/observability';

const s3 = new S3Client({});
const dynamo = new DynamoDBClient({});
const sfn = new SFNClient({});
const events = new EventBridgeClient({});
const sns = new SNSClient({});
// Built on first use, still once per container: its settings are read from the environment.
let api: BatchesApi | undefined;

/** Kept back from the function's timeout for the step that is running when the budget ends. */
const RESERVE_MS = 3 * 60_000;

async function describeExecution(executionArn: string): Promise<string | undefined> {
  try {
    return (await sfn.send(new DescribeExecutionCommand({ executionArn }))).status;
  } catch (error) {
    if ((error as { name?: string }).name === 'ExecutionDoesNotExist') return undefined;
    throw error;
  }
}

const run = instrument('reconcile-jobs', async ({ budgetMs }: { budgetMs: number }, observer): Promise<ReconcileReport> => {
  const config = readPipelineConfig();
  const { stateMachineArn } = readReconcileConfig();
  api ??= createBatchesClientFromEnv();
  return reconcileJobs({
    s3,
    dynamo,
    api,
    config,
    notify: { clients: { events, sns }, config: readNotifyConfig() },
    describeExecution,
    stateMachineArn,
    budgetMs,
    observer,
  });
});

/** The schedule's event carries nothing the run needs; the budget comes from the time Lambda has left. */
export async function handler(_event: unknown, context?: InvocationContext): Promise<ReconcileReport> {
  const remaining = context?.getRemainingTimeInMillis?.();
  const budgetMs = remaining === undefined ? RECONCILE_BUDGET_MS : Math.min(RECONCILE_BUDGET_MS, Math.max(0, remaining - RESERVE_MS));
  return run({ budgetMs }, context);
}
