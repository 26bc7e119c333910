/**
 * The poller's wiring (functions/poll-batches.ts, shared/jobs/poller.ts): an EventBridge Scheduler
 * schedule that ticks it every minute, one tick at a time (reserved concurrency 1, a late tick
 * dropped rather than queued or retried: the next one compares state afresh), and the right to
 * settle and heartbeat the job state machine's task tokens.
 */
import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { InvokeFunction, invokerRole } from './triggers';

/** The poller's period. EventBridge Scheduler's finest rate; shared/config.ts's pollerPeriodSeconds default matches it. */
export const POLLER_SCHEDULE = 'rate(1 minute)';

export interface PollerProps {
  stateMachine: sfn.IStateMachine;
  /** functions/poll-batches.ts. */
  pollerFunction: lambda.Function;
  /** Where a tick that could not be delivered goes. */
  deadLetterQueue: sqs.IQueue;
}

export class Poller extends Construct {
  readonly schedule: scheduler.Schedule;

  constructor(scope: Construct, id: string, props: PollerProps) {
    super(scope, id);
    const fn = props.pollerFunction;
    // One tick at a time: two at once would send the same wake twice (harmless, refused, but wasted).
    (fn.node.defaultChild as lambda.CfnFunction).reservedConcurrentExecutions = 1;
    // A tick not run within its minute is superseded by the next: no queueing, no retry.
    fn.configureAsyncInvoke({ maxEventAge: Duration.seconds(60), retryAttempts: 0 });
    // SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat on the job state machine only.
    props.stateMachine.grantTaskResponse(fn);

    this.schedule = new scheduler.Schedule(this, 'Tick', {
      description: 'batchline: the poller wakes chunks whose batch ended and heartbeats the rest',
      schedule: scheduler.ScheduleExpression.expression(POLLER_SCHEDULE),
      target: new InvokeFunction(fn, {
        role: invokerRole(this, 'TickRole'),
        deadLetterQueue: props.deadLetterQueue,
        // Scheduler's own retry would deliver a stale tick late: the next tick is a minute away.
        retryAttempts: 0,
        maxEventAge: Duration.seconds(60),
      }),
    });
  }
}
