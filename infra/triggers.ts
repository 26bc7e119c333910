/**
 * What starts jobs: a file landing in inbox/ (an EventBridge rule on the bucket's events), and
 * EventBridge Scheduler sweeps of other prefixes (sweep-prefix starts one execution per object).
 * Deliveries that keep failing land in one dead-letter queue.
 */
import { Duration, TimeZone } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { INBOX_PREFIX } from '../shared/store/keys';
import type { ScheduleSetting } from './settings';

export interface TriggersProps {
  bucket: s3.IBucket;
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

  constructor(scope: Construct, id: string, props: TriggersProps) {
    super(scope, id);
    const retryAttempts = props.retryAttempts ?? 8;
    const maxEventAge = props.maxEventAge ?? Duration.hours(4);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });

    // "Object Created" for any reason: a PutObject-only filter would miss multipart uploads.
    this.inboxRule = new events.Rule(this, 'InboxRule', {
      description: `Starts a batchline job for each object created under ${INBOX_PREFIX}`,
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [props.bucket.bucketName] },
          object: { key: [{ prefix: INBOX_PREFIX }] },
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

    this.schedules = (props.schedules ?? []).map(
      (schedule) =>
        new scheduler.Schedule(this, `Schedule-${schedule.name}`, {
          description: `batchline sweep "${schedule.name}" of ${schedule.prefix}`,
          schedule: scheduler.ScheduleExpression.expression(
            schedule.cron,
            schedule.timezone === undefined ? undefined : TimeZone.of(schedule.timezone),
          ),
          target: new schedulerTargets.LambdaInvoke(props.sweepFunction, {
            input: scheduler.ScheduleTargetInput.fromObject({ schedule: schedule.name, prefix: schedule.prefix }),
            deadLetterQueue: this.deadLetterQueue,
            retryAttempts,
            maxEventAge,
          }),
        }),
    );
  }
}
