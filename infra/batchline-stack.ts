/**
 * The batchline stack: one per account and region, a thin app around the Batchline construct
 * (infra/batchline.ts) that takes its props from cdk.json's context and adds the outputs the CLI reads.
 */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Batchline, type BatchlineProps } from './batchline';
import { STACK_OUTPUTS } from './metadata';
import { propsFromContext } from './settings';

export interface BatchlineStackProps extends StackProps {
  /** Default: read from the app's context, i.e. cdk.json (and checked by the construct). */
  batchline?: BatchlineProps;
}

export class BatchlineStack extends Stack {
  readonly batchline: Batchline;

  constructor(scope: Construct, id: string, props: BatchlineStackProps = {}) {
    const { batchline, ...stackProps } = props;
    super(scope, id, {
      description: 'batchline: large Claude workloads through the Anthropic Message Batches API',
      ...stackProps,
    });
    // 'Default' keeps the construct out of every logical id: the resources of a stack deployed
    // before the construct existed keep theirs (the bucket and the table are not replaced).
    this.batchline = new Batchline(this, 'Default', batchline ?? (propsFromContext((key) => this.node.tryGetContext(key)) as BatchlineProps));

    const { bucket, prefixes, table, stateMachine, topic } = this.batchline;
    const output = (id: string, value: string, description: string) => new CfnOutput(this, id, { value, description });
    output(STACK_OUTPUTS.bucket, bucket.bucketName, `The bucket: drop JSONL files in ${prefixes.inbox}, read outputs in ${prefixes.results}<jobId>/`);
    output(STACK_OUTPUTS.inbox, `s3://${bucket.bucketName}/${prefixes.inbox}`, 'Where to upload input files');
    // The CLI reads these to find a job's files (cli/ops/target.ts); a stack without them uses the defaults.
    output(STACK_OUTPUTS.inboxPrefix, prefixes.inbox, 'Key prefix of the inputs: every object created under it starts a job');
    output(STACK_OUTPUTS.workPrefix, prefixes.work, "Key prefix of the jobs' work files (they expire)");
    output(STACK_OUTPUTS.resultsPrefix, prefixes.results, "Key prefix of the jobs' outputs, <prefix><jobId>/");
    output(STACK_OUTPUTS.table, table.tableName, 'Job, chunk and row records');
    output(STACK_OUTPUTS.stateMachine, stateMachine.stateMachineArn, 'The job workflow (one execution per input file)');
    output(STACK_OUTPUTS.topic, topic.topicArn, 'SNS topic told of every failed or rejected job, and of every alarm');
    output(STACK_OUTPUTS.dashboard, this.batchline.dashboardName, 'CloudWatch dashboard of jobs, rows, errors, cost and latency');
    output(STACK_OUTPUTS.apiKeySecret, this.batchline.apiKeySecretName, 'Secrets Manager secret holding the Anthropic API key');
  }
}
