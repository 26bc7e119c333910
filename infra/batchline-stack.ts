/** The batchline stack: one per account and region. */
import { Aspects, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { INBOX_PREFIX } from '../shared/store/keys';
import { ApiKey } from './api-key';
import { DependOnRolePolicyOnly } from './depends-on';
import { dataKey } from './encryption';
import { Functions } from './functions';
import { Notifications } from './notifications';
import { Observability } from './observability';
import { Poller } from './poller';
import { readSettings, type BatchlineSettings } from './settings';
import { Storage } from './storage';
import { Triggers } from './triggers';
import { STACK_OUTPUTS } from './metadata';
import { Upkeep } from './upkeep';
import { JobWorkflow, WORKFLOW_HANDLERS, type WorkflowHandler } from './workflow';

export interface BatchlineStackProps extends StackProps {
  /** Default: read (and checked) from the app's context, i.e. cdk.json. */
  settings?: BatchlineSettings;
}

export class BatchlineStack extends Stack {
  readonly storage: Storage;
  readonly apiKey: ApiKey;
  readonly notifications: Notifications;
  readonly functions: Functions;
  readonly workflow: JobWorkflow;
  readonly triggers: Triggers;
  readonly upkeep: Upkeep;
  readonly observability: Observability;
  /** undefined when the `poller` setting is false. */
  readonly poller: Poller | undefined;

  constructor(scope: Construct, id: string, props: BatchlineStackProps = {}) {
    const { settings: given, ...stackProps } = props;
    super(scope, id, {
      description: 'batchline: large Claude workloads through the Anthropic Message Batches API',
      ...stackProps,
    });
    const settings = given ?? readSettings((key) => this.node.tryGetContext(key));
    Aspects.of(this).add(new DependOnRolePolicyOnly());

    // The encryptionKey setting: a customer-managed key for the bucket, the table and the logs, or none.
    const key = dataKey(this, 'DataKey', settings.encryptionKey);
    this.storage = new Storage(this, 'Storage', { workRetentionDays: settings.workRetentionDays, encryptionKey: key });
    this.apiKey = new ApiKey(this, 'ApiKey', { existingSecretName: settings.apiKeySecretName });
    this.notifications = new Notifications(this, 'Notifications');
    const scheduledPrefixes = settings.schedules.map((schedule) => schedule.prefix);
    this.functions = new Functions(this, 'Functions', {
      bucket: this.storage.bucket,
      table: this.storage.table,
      apiKey: this.apiKey,
      notifications: this.notifications,
      pipelineEnv: settings.pipelineEnv,
      apiEnv: settings.apiEnv,
      scheduledPrefixes,
      logRetentionDays: settings.logRetentionDays,
      logKey: key,
    });
    const fns = this.functions.handlers;
    this.workflow = new JobWorkflow(this, 'Workflow', {
      functions: Object.fromEntries(WORKFLOW_HANDLERS.map((name) => [name, fns[name].fn])) as Record<WorkflowHandler, lambda.Function>,
      maxConcurrentChunks: settings.maxConcurrentChunks,
      logRetention: settings.logRetentionDays as logs.RetentionDays,
      logKey: key,
      poller: settings.poller,
    });
    const stateMachine = this.workflow.stateMachine;
    this.functions.grantJobExecutions(stateMachine);

    this.triggers = new Triggers(this, 'Triggers', {
      bucket: this.storage.bucket,
      stateMachine,
      sweepFunction: fns['sweep-prefix'].fn,
      schedules: settings.schedules,
    });

    this.upkeep = new Upkeep(this, 'Upkeep', {
      stateMachine,
      reconcileFunction: fns['reconcile-jobs'].fn,
      executionEndedFunction: fns['execution-ended'].fn,
      deadLetterQueue: this.triggers.deadLetterQueue,
    });

    this.poller = settings.poller
      ? new Poller(this, 'Poller', { stateMachine, pollerFunction: fns['poll-batches'].fn, deadLetterQueue: this.triggers.deadLetterQueue })
      : undefined;

    this.observability = new Observability(this, 'Observability', {
      stateMachine,
      functions: Object.fromEntries(Object.entries(fns).map(([name, handler]) => [name, handler.fn])),
      deadLetterQueue: this.triggers.deadLetterQueue,
      topic: this.notifications.topic,
      alarms: settings.alarms,
      pollerFunction: this.poller ? fns['poll-batches'].fn : undefined,
    });

    const output = (id: string, value: string, description: string) => new CfnOutput(this, id, { value, description });
    output(STACK_OUTPUTS.bucket, this.storage.bucket.bucketName, 'The bucket: drop JSONL files in inbox/, read outputs in results/<jobId>/');
    output(STACK_OUTPUTS.inbox, `s3://${this.storage.bucket.bucketName}/${INBOX_PREFIX}`, 'Where to upload input files');
    output(STACK_OUTPUTS.table, this.storage.table.tableName, 'Job, chunk and row records');
    output(STACK_OUTPUTS.stateMachine, stateMachine.stateMachineArn, 'The job workflow (one execution per input file)');
    output(STACK_OUTPUTS.topic, this.notifications.topic.topicArn, 'SNS topic told of every failed or rejected job, and of every alarm');
    output(STACK_OUTPUTS.dashboard, this.observability.dashboard.dashboardName, 'CloudWatch dashboard of jobs, rows, errors, cost and latency');
    output(STACK_OUTPUTS.apiKeySecret, this.apiKey.secret.secretName, 'Secrets Manager secret holding the Anthropic API key');
  }
}
