/**
 * The batchline pipeline as one construct, for any CDK app: `new Batchline(scope, 'Batchline', props)`.
 * Every prop is checked at synth time by the same reader as the cdk.json settings (settings.ts), so
 * a bad value fails `cdk synth` naming it. infra/README.md documents every prop.
 */
import { Aspects, Stack, type RemovalPolicy } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import type { Prefixes } from '../shared/store/keys';
import { ApiKey } from './api-key';
import { DependOnRolePolicyOnly } from './depends-on';
import { dataKey } from './encryption';
import { Functions } from './functions';
import { Notifications } from './notifications';
import { Observability } from './observability';
import { Poller } from './poller';
import { CONTEXT_KEYS, readSettings, type EncryptionKeySetting, type ScheduleSetting } from './settings';
import { Storage } from './storage';
import { Triggers } from './triggers';
import { Upkeep } from './upkeep';
import { JobWorkflow, STATE_MACHINE_LOGICAL_ID, WORKFLOW_HANDLERS, type WorkflowHandler } from './workflow';

export type { EncryptionKeySetting, Prefixes, ScheduleSetting };

/**
 * Where in the bucket batchline keeps its files: a bucket shared with other data places it under
 * prefixes of its own. Each is a key prefix ending with "/" and not starting with one; none of the
 * three may be inside another (an output under the inbox would start a job). Give `rootPrefix`, or
 * any of the three in full, not both. The trigger, the grants, the lifecycle rules, the schedules'
 * checks and the stack outputs the CLI reads all follow them.
 */
export interface BatchlinePrefixProps {
  /** One root for all three: `<rootPrefix>inbox/`, `<rootPrefix>work/`, `<rootPrefix>results/`. @default - none: the three below */
  readonly rootPrefix?: string;
  /** Every object created under it starts a job. @default 'inbox/' */
  readonly inboxPrefix?: string;
  /** Chunk files and raw batch results, per job (`<workPrefix><jobId>/`); they expire (`workRetentionDays`). @default 'work/' */
  readonly workPrefix?: string;
  /** The outputs a user reads, per job: `<resultsPrefix><jobId>/results.jsonl`, errors, summary. @default 'results/' */
  readonly resultsPrefix?: string;
}

/** The pipeline's settings: what each function is told (shared/config.ts reads them). */
export interface BatchlinePipelineProps extends BatchlinePrefixProps {
  /** Requests per batch, at most 100,000 (the API's limit). @default 100000 */
  readonly maxRequestsPerChunk?: number;
  /** Request body bytes per batch, at most 256 MB (the API's limit). @default 250000000 */
  readonly maxBytesPerChunk?: number;
  /** Attempts per row in all, the first included (1 to 10): transient errors and expired rows are retried. @default 2 */
  readonly maxAttempts?: number;
  /** Seconds to wait before a retry batch is submitted, doubled per attempt. @default 60 */
  readonly retryBackoffSeconds?: number;
  /** What a file with invalid lines does when its object metadata does not say (`batchline-mode`). @default 'strict' */
  readonly validationMode?: 'strict' | 'lenient';
  /** Shortest wait between two polls of a batch, in seconds. @default 30 */
  readonly pollMinSeconds?: number;
  /** Longest wait between two polls of a batch, in seconds (at least 120). @default 900 */
  readonly pollMaxSeconds?: number;
  /** A poll waits this fraction of the batch's age, between the two bounds above. @default 0.1 */
  readonly pollFraction?: number;
  /** Days a row's record stays in the table (0: for ever). @default 90 */
  readonly rowTtlDays?: number;
  /** Rows per table partition of a job's row records. @default 1000 */
  readonly rowsPerShard?: number;
  /** Prices added to or overriding the built-in table, by model id (docs in infra/README.md). @default - the built-in table */
  readonly pricesJson?: string | Record<string, unknown>;
  /** Send models batchline does not know instead of rejecting their lines. @default false */
  readonly allowUnknownModels?: boolean;
  /**
   * For a job with a deadline (`batchline-deadline`): a batch still running this many seconds before
   * it is canceled, and its unfinished rows sent as synchronous Messages calls. @default 1800
   */
  readonly deadlineMarginSeconds?: number;
  /**
   * Lines of the input Prepare reads in one invocation before it leaves a checkpoint and the workflow
   * invokes it again: a file is read across invocations (at most 1,000). @default 2000000
   */
  readonly prepareLinesPerInvocation?: number;
  /** Seconds a create whose response was lost waits to be found before it counts as unknown. @default 960 */
  readonly adoptGraceSeconds?: number;
  /** The `anthropic-version` header sent to the API. @default '2023-06-01' */
  readonly anthropicVersion?: string;
  /** Retries of one API call on a network error or a 5xx, 429 or 529 reply. @default 2 */
  readonly maxRetries?: number;
  /** Timeout of one API call, in milliseconds. @default 600000 */
  readonly timeoutMs?: number;
  /** Where the API functions send their requests (a proxy, or the simulator). @default 'https://api.anthropic.com' */
  readonly anthropicBaseUrl?: string;
}

/** What the construct itself builds with (no function reads these). */
export interface BatchlineInfraProps {
  /** Chunks of one job in flight at once (the workflow's Map). @default 10 */
  readonly maxConcurrentChunks?: number;
  /** Days before objects under the work prefix (chunk files, raw results) expire, at least 7. Ignored with an existing bucket. @default 30 */
  readonly workRetentionDays?: number;
  /** Days the functions' and the workflow's logs are kept: one of CloudWatch Logs' periods. @default 30 */
  readonly logRetentionDays?: number;
  /**
   * PrepareJob's memory in MiB (128 to 10,240): one invocation holds the custom_ids of the lines it
   * reads (prepareLinesPerInvocation) and a filter of the earlier ones'. An invocation that would not
   * fit fails the job with InputTooLarge, which names the value to set (docs/performance.md §6).
   * @default 2048
   */
  readonly prepareMemoryMiB?: number;
  /**
   * What encrypts the bucket, the table and the logs: `aws-owned` keys (no KMS charges), `stack` (a
   * customer-managed key the construct creates) or the ARN of a KMS key of yours.
   * @default 'aws-owned'
   */
  readonly encryptionKey?: EncryptionKeySetting;
  /** The errored-rows alarm fires above this share of errored rows in an hour (0.01 to 0.99). @default 0.2 */
  readonly erroredRowRateThreshold?: number;
  /** ...in an hour with at least this many succeeded + errored rows. @default 100 */
  readonly erroredRowAlarmMinRows?: number;
  /** The overdue-job alarm fires when a job's execution has run longer than this many hours. @default 30 */
  readonly jobDeadlineHours?: number;
  /** A function's error alarm fires at this many errors in five minutes. @default 1 */
  readonly functionErrorThreshold?: number;
  /** The one-a-minute poller of batches in flight; false: each chunk polls on its own. @default true */
  readonly poller?: boolean;
  /** Sweeps of a prefix at set times: every object under it becomes a job. @default - none */
  readonly schedules?: ScheduleSetting[];
  /** An existing Secrets Manager secret (by name) holding the API key. @default - a secret the construct creates, with a placeholder value */
  readonly apiKeySecretName?: string;
}

export interface BatchlineProps extends BatchlinePipelineProps, BatchlineInfraProps {
  /**
   * An existing bucket to use for the inbox, work and results prefixes. It must send its events to
   * EventBridge (S3 event notifications, "Amazon EventBridge: on"), and its lifecycle rules,
   * versioning, encryption and access logs stay yours.
   * @default - a new versioned, encrypted bucket with lifecycle rules and an access-log bucket
   */
  readonly bucket?: s3.IBucket;
  /**
   * The SNS topic told of every failed or rejected job and of every alarm. Its policy must let
   * CloudWatch alarms of the account publish (and its key, when encrypted, let them and the functions use it).
   * @default - a new topic, encrypted with a key of its own
   */
  readonly alarmTopic?: sns.ITopic;
  /** What deleting the stack does to the bucket it created, its access-log bucket and the table. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

const CONSTRUCT_ONLY_PROPS = ['bucket', 'alarmTopic', 'removalPolicy', 'schedules', 'apiKeySecretName', 'anthropicBaseUrl'] as const;

export class Batchline extends Construct {
  /** The bucket: files dropped under the inbox prefix start jobs; outputs land under `<resultsPrefix><jobId>/`. */
  readonly bucket: s3.IBucket;
  /** Where in the bucket the inputs, work files and outputs are (the props' prefixes, checked). */
  readonly prefixes: Prefixes;
  /** Job, chunk and row records. */
  readonly table: dynamodb.ITable;
  /** The job workflow: one execution per input file. */
  readonly stateMachine: sfn.StateMachine;
  /** Told of every failed or rejected job and of every alarm. */
  readonly topic: sns.ITopic;
  /** The Secrets Manager secret the API functions read the key from. */
  readonly apiKeySecretName: string;
  /** The CloudWatch dashboard of jobs, rows, errors, cost and latency. */
  readonly dashboardName: string;

  readonly storage: Storage;
  readonly apiKey: ApiKey;
  readonly notifications: Notifications;
  readonly functions: Functions;
  readonly workflow: JobWorkflow;
  readonly triggers: Triggers;
  readonly upkeep: Upkeep;
  readonly observability: Observability;
  /** undefined when the `poller` prop is false. */
  readonly poller: Poller | undefined;

  constructor(scope: Construct, id: string, props: BatchlineProps = {}) {
    super(scope, id);
    const settings = readSettings(contextOf(props));
    // The names the account sees (alarms, dashboard, a log group) start with the stack's name, and the
    // construct's id unless it is 'Default' (the stack of this repository's app): two pipelines in one stack do not collide.
    const stackName = Stack.of(this).stackName;
    const namePrefix = id === 'Default' ? stackName : `${stackName}-${id}`;
    // The state machine's logical id is fixed (infra/README.md), prefixed by the id beside other pipelines.
    const machineId = id === 'Default' ? undefined : `${id.replace(/[^A-Za-z0-9]/g, '')}${STATE_MACHINE_LOGICAL_ID}`;
    Aspects.of(this).add(new DependOnRolePolicyOnly());

    // The encryptionKey setting: a customer-managed key for the bucket, the table and the logs, or none.
    const key = dataKey(this, 'DataKey', settings.encryptionKey);
    this.storage = new Storage(this, 'Storage', {
      prefixes: settings.prefixes,
      workRetentionDays: settings.workRetentionDays,
      encryptionKey: key,
      existingBucket: props.bucket,
      removalPolicy: props.removalPolicy,
    });
    this.apiKey = new ApiKey(this, 'ApiKey', { existingSecretName: settings.apiKeySecretName });
    this.notifications = new Notifications(this, 'Notifications', { existingTopic: props.alarmTopic });
    const scheduledPrefixes = settings.schedules.map((schedule) => schedule.prefix);
    this.functions = new Functions(this, 'Functions', {
      bucket: this.storage.bucket,
      table: this.storage.table,
      apiKey: this.apiKey,
      notifications: this.notifications,
      prefixes: settings.prefixes,
      pipelineEnv: settings.pipelineEnv,
      apiEnv: settings.apiEnv,
      scheduledPrefixes,
      logRetentionDays: settings.logRetentionDays,
      prepareMemoryMiB: settings.prepareMemoryMiB,
      logKey: key,
    });
    const fns = this.functions.handlers;
    this.workflow = new JobWorkflow(this, 'Workflow', {
      namePrefix,
      logicalId: machineId,
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
      inboxPrefix: settings.prefixes.inbox,
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
      namePrefix,
      stateMachine,
      functions: Object.fromEntries(Object.entries(fns).map(([name, handler]) => [name, handler.fn])),
      deadLetterQueue: this.triggers.deadLetterQueue,
      topic: this.notifications.topic,
      alarms: settings.alarms,
      pollerFunction: this.poller ? fns['poll-batches'].fn : undefined,
    });

    this.bucket = this.storage.bucket;
    this.prefixes = settings.prefixes;
    this.table = this.storage.table;
    this.stateMachine = stateMachine;
    this.topic = this.notifications.topic;
    this.apiKeySecretName = this.apiKey.secret.secretName;
    this.dashboardName = this.observability.dashboard.dashboardName;
  }
}

/**
 * The props as the context values settings.ts reads (cdk.json's shape), so that one reader checks
 * both: the construct's props and the thin app's context.
 */
function contextOf(props: BatchlineProps): (key: string) => unknown {
  const settings: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || (CONSTRUCT_ONLY_PROPS as readonly string[]).includes(name)) continue;
    // Every other prop is a setting; readSettings rejects a name it does not know.
    settings[name] = value;
  }
  const context: Record<string, unknown> = {
    [CONTEXT_KEYS.settings]: settings,
    [CONTEXT_KEYS.schedules]: props.schedules,
    [CONTEXT_KEYS.apiKeySecretName]: props.apiKeySecretName,
    [CONTEXT_KEYS.anthropicBaseUrl]: props.anthropicBaseUrl,
  };
  return (key) => context[key];
}
