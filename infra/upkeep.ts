/**
 * What keeps job records true when a workflow dies: a rule that hands every failed, timed-out or
 * aborted job execution to execution-ended (which cancels the job's batches in flight and marks it
 * failed), and a daily schedule of reconcile-jobs (which settles whatever a dead workflow left:
 * batches ended but never collected, batches running for nobody, jobs never finalized).
 */
import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ABNORMAL_STATUSES, EXECUTION_STATUS_CHANGE, STATES_SOURCE } from '../shared/jobs/events';
import { InvokeFunction, invokerRole, sendFailuresTo } from './triggers';

export interface UpkeepProps {
  stateMachine: sfn.IStateMachine;
  /** functions/reconcile-jobs.ts. */
  reconcileFunction: lambda.IFunction;
  /** functions/execution-ended.ts. */
  executionEndedFunction: lambda.IFunction;
  /** Where events that cannot be delivered, and invocations that keep failing, go. */
  deadLetterQueue: sqs.IQueue;
  /** When reconcile-jobs runs, as EventBridge Scheduler takes it. Default `rate(1 day)`. */
  reconcileSchedule?: string;
  /** Delivery attempts before an event goes to the dead-letter queue. Default 8. */
  retryAttempts?: number;
  /** Give up on an event this old. Default 4 hours. */
  maxEventAge?: Duration;
}

export class Upkeep extends Construct {
  readonly executionEndedRule: events.Rule;
  readonly reconcileSchedule: scheduler.Schedule;

  constructor(scope: Construct, id: string, props: UpkeepProps) {
    super(scope, id);
    const retryAttempts = props.retryAttempts ?? 8;
    const maxEventAge = props.maxEventAge ?? Duration.hours(4);

    // A failure the workflow caught ends in MarkJobFailed, then FAILED here too: execution-ended
    // leaves a job that has already ended alone.
    this.executionEndedRule = new events.Rule(this, 'ExecutionEnded', {
      description: 'Hands each job execution that failed, timed out or was aborted to execution-ended',
      eventPattern: {
        source: [STATES_SOURCE],
        detailType: [EXECUTION_STATUS_CHANGE],
        detail: {
          status: [...ABNORMAL_STATUSES],
          stateMachineArn: [props.stateMachine.stateMachineArn],
        },
      },
    });
    this.executionEndedRule.addTarget(
      new eventsTargets.LambdaFunction(props.executionEndedFunction, { deadLetterQueue: props.deadLetterQueue, retryAttempts, maxEventAge }),
    );
    sendFailuresTo(props.executionEndedFunction, props.deadLetterQueue);

    this.reconcileSchedule = new scheduler.Schedule(this, 'Reconcile', {
      description: 'batchline: settles the batches and jobs of workflows that died',
      schedule: scheduler.ScheduleExpression.expression(props.reconcileSchedule ?? 'rate(1 day)'),
      target: new InvokeFunction(props.reconcileFunction, {
        role: invokerRole(this, 'ReconcileRole'),
        deadLetterQueue: props.deadLetterQueue,
        retryAttempts,
        maxEventAge,
      }),
    });
    sendFailuresTo(props.reconcileFunction, props.deadLetterQueue);
  }
}
