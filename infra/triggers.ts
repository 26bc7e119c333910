/**
 * What starts jobs: a file landing in the inbox (an EventBridge rule on the bucket's events), and
 * EventBridge Scheduler sweeps of other prefixes (sweep-prefix starts one execution per object).
 * Deliveries that keep failing land in one dead-letter queue, the stack's only one: the upkeep's
 * rule and schedule, and the functions invoked asynchronously, send their failures there too.
 */
import { ArnFormat, Duration, Stack, TimeZone } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as lambdaDestinations from 'aws-cdk-lib/aws-lambda-destinations';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { OBJECT_CREATED, S3_SOURCE } from '../shared/jobs/events';
import { acceptFinding } from './nag';
import type { ScheduleSetting } from './settings';

export interface TriggersProps {
  bucket: s3.IBucket;
  /** Every object created under it starts a job. */
  inboxPrefix: string;
  stateMachine: sfn.IStateMachine;
  /** functions/sweep-prefix.ts, invoked by the schedules with `{schedule, prefix}`. */
  sweepFunction: lambda.IFunction;
  schedules?: ScheduleSetting[];
  /** Delivery attempts before an event goes to the dead-letter queue. Default 8. */
  retryAttempts?: number;
  /** Give up on an event this old. Default 4 hours. */
  maxEventAge?: Duration;
}

export class Triggers extends Construct {
  readonly inboxRule: events.Rule;
  readonly deadLetterQueue: sqs.Queue;
  readonly schedules: scheduler.Schedule[];
  /** The role the schedules invoke sweep-prefix with; none without schedules. */
  readonly scheduleRole: iam.Role | undefined;

  constructor(scope: Construct, id: string, props: TriggersProps) {
    super(scope, id);
    const retryAttempts = props.retryAttempts ?? 8;
    const maxEventAge = props.maxEventAge ?? Duration.hours(4);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    acceptFinding(
      this.deadLetterQueue,
      'SQS3',
      'This queue is the dead-letter queue (of the inbox rule, the schedules and the asynchronously invoked functions); a DLQ of a DLQ would have no consumer either',
    );

    // "Object Created" for any reason: a PutObject-only filter would miss multipart uploads.
    this.inboxRule = new events.Rule(this, 'InboxRule', {
      description: `Starts a batchline job for each object created under ${props.inboxPrefix}`,
      eventPattern: {
        source: [S3_SOURCE],
        detailType: [OBJECT_CREATED],
        detail: {
          bucket: { name: [props.bucket.bucketName] },
          object: { key: [{ prefix: props.inboxPrefix }] },
        },
      },
    });
    // The whole event is the input: RegisterJob reads bucket, key, etag and version from it.
    this.inboxRule.addTarget(
      new eventsTargets.SfnStateMachine(props.stateMachine, {
        deadLetterQueue: this.deadLetterQueue,
        retryAttempts,
        maxEventAge,
      }),
    );

    const schedules = props.schedules ?? [];
    this.scheduleRole = schedules.length > 0 ? invokerRole(this, 'ScheduleRole') : undefined;
    if (schedules.length > 0) sendFailuresTo(props.sweepFunction, this.deadLetterQueue);
    this.schedules = schedules.map(
      (schedule) =>
        new scheduler.Schedule(this, `Schedule-${schedule.name}`, {
          description: `batchline sweep "${schedule.name}" of ${schedule.prefix}`,
          schedule: scheduler.ScheduleExpression.expression(schedule.cron, schedule.timezone === undefined ? undefined : TimeZone.of(schedule.timezone)),
          target: new InvokeFunction(props.sweepFunction, {
            input: scheduler.ScheduleTargetInput.fromObject({ schedule: schedule.name, prefix: schedule.prefix }),
            role: this.scheduleRole,
            deadLetterQueue: this.deadLetterQueue,
            retryAttempts,
            maxEventAge,
          }),
        }),
    );
  }
}

/**
 * A role EventBridge Scheduler assumes, for schedules of this account's default group only, to
 * invoke `fn` (InvokeFunction adds the invoke and dead-letter permissions to it).
 */
export function invokerRole(scope: Construct, id: string): iam.Role {
  const stack = Stack.of(scope);
  return new iam.Role(scope, id, {
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
      conditions: {
        StringEquals: {
          'aws:SourceAccount': stack.account,
          'aws:SourceArn': stack.formatArn({
            service: 'scheduler',
            resource: 'schedule-group',
            resourceName: 'default',
            arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
          }),
        },
      },
    }),
  });
}

/**
 * A schedule that invokes a function by its unqualified ARN, as the role may: CDK's LambdaInvoke
 * also grants `<function>:*` (every version and alias), which no schedule here calls.
 */
export class InvokeFunction extends schedulerTargets.LambdaInvoke {
  constructor(
    private readonly fn: lambda.IFunction,
    props: schedulerTargets.ScheduleTargetBaseProps,
  ) {
    super(fn, props);
  }

  protected override addTargetActionToRole(role: iam.IRole): void {
    iam.Grant.addToPrincipal({ grantee: role, actions: ['lambda:InvokeFunction'], resourceArns: [this.fn.functionArn] });
  }
}

/**
 * Scheduler and EventBridge invoke a function asynchronously: once Lambda's own two retries fail,
 * the event goes to the dead-letter queue (and its alarm) instead of vanishing.
 */
export function sendFailuresTo(fn: lambda.IFunction, queue: sqs.IQueue): void {
  fn.configureAsyncInvoke({ onFailure: new lambdaDestinations.SqsDestination(queue), retryAttempts: 2 });
}
