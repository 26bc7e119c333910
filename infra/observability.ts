/**
 * The pipeline seen from CloudWatch: one dashboard (jobs, rows by status, errors by type, cost,
 * batch latency, the functions, the dead-letter queue) and the alarms that tell the topic when a
 * person is needed. Rows, cost and latency are the handlers' EMF metrics (shared/observability.ts):
 * namespace `Batchline`, one dimension only, `service=batchline`, so there is one series per metric
 * whatever the number of jobs.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { TRANSIENT_ERROR_TYPES } from '../shared/anthropic/types';
import { METRICS_NAMESPACE, rowsErroredMetric, SERVICE, type MetricName } from '../shared/observability';
import type { AlarmSettings } from './settings';

/** Rows by what happened to them, as the handlers count them. */
export const ROW_METRICS = [
  'RowsSubmitted',
  'RowsSucceeded',
  'RowsErrored',
  'RowsExpired',
  'RowsCanceled',
  'RowsRetried',
  'RowsInvalid',
] as const satisfies readonly MetricName[];

/** Error types with a line of their own: those worth a retry, and the one that points at the input. */
export const DASHBOARD_ERROR_TYPES: readonly string[] = [...TRANSIENT_ERROR_TYPES, 'invalid_request_error'];

const FIVE_MINUTES = Duration.minutes(5);
const HOUR = Duration.hours(1);
const MS_PER_HOUR = 3_600_000;

export interface ObservabilityProps {
  /** Starts the alarms' and the dashboard's names, unique in the account and region. Default: the stack's name. */
  namePrefix?: string;
  stateMachine: sfn.IStateMachine;
  /** Every handler's function, by handler name. */
  functions: Readonly<Record<string, lambda.IFunction>>;
  deadLetterQueue: sqs.IQueue;
  /** The alarms notify it. */
  topic: sns.ITopic;
  alarms: AlarmSettings;
  /** functions/poll-batches.ts, when the stack has the poller: its throttles and missing ticks alarm. */
  pollerFunction?: lambda.IFunction;
}

export class Observability extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly failedExecutionsAlarm: cloudwatch.Alarm;
  readonly erroredRowsAlarm: cloudwatch.Alarm;
  readonly overdueJobAlarm: cloudwatch.Alarm;
  readonly deadLettersAlarm: cloudwatch.Alarm;
  readonly apiKeyRefusedAlarm: cloudwatch.Alarm;
  /** By handler name. */
  readonly functionErrorAlarms: Record<string, cloudwatch.Alarm>;
  /** The poller's alarms (its errors are among functionErrorAlarms); empty without the poller. */
  readonly pollerAlarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const stackName = props.namePrefix ?? Stack.of(this).stackName;
    const machine = props.stateMachine;
    const settings = props.alarms;
    const notify = new cloudwatchActions.SnsAction(props.topic);
    const alarm = (alarmId: string, name: string, alarmProps: Omit<cloudwatch.AlarmProps, 'alarmName' | 'treatMissingData'>) => {
      // No data is no news: these metrics only exist while jobs run.
      const created = new cloudwatch.Alarm(this, alarmId, {
        alarmName: `${stackName}-${name}`,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...alarmProps,
      });
      created.addAlarmAction(notify);
      return created;
    };

    const executions = (period: Duration) => ({
      started: machine.metricStarted({ period, label: 'Started' }),
      succeeded: machine.metricSucceeded({ period, label: 'Succeeded' }),
      failed: machine.metricFailed({ period, label: 'Failed' }),
      timedOut: machine.metricTimedOut({ period, label: 'Timed out' }),
      aborted: machine.metricAborted({ period, label: 'Aborted' }),
    });

    const { failed, timedOut, aborted } = executions(FIVE_MINUTES);
    this.failedExecutionsAlarm = alarm('FailedExecutions', 'failed-executions', {
      alarmDescription:
        "A job execution failed, timed out or was aborted. The topic has the job's failure already; look in the execution's history and the job's summary. A rejected input (strict validation) fails its execution too.",
      // FILL: a sum with one series missing would be missing, and a lone failure would go unseen.
      metric: new cloudwatch.MathExpression({
        expression: 'FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)',
        usingMetrics: { failed, timedOut, aborted },
        period: FIVE_MINUTES,
        label: 'Failed, timed-out and aborted executions',
      }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });

    const erroredRate = erroredRowRate(settings.erroredRowAlarmMinRows);
    this.erroredRowsAlarm = alarm('ErroredRows', 'errored-rows', {
      alarmDescription: `More than ${percent(settings.erroredRowRateThreshold)} of the rows that ended in the last hour errored (counted once at least ${settings.erroredRowAlarmMinRows} rows ended). See the errored-rows-by-type graph on the dashboard, and the jobs' errors.jsonl.`,
      metric: erroredRate,
      threshold: settings.erroredRowRateThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });

    this.overdueJobAlarm = alarm('OverdueJob', 'overdue-job', {
      alarmDescription: `A job execution took more than ${settings.jobDeadlineHours} h. Step Functions reports an execution's time when it ends, so this fires as an overdue job ends (or times out, or is stopped), not while it still runs.`,
      metric: machine.metricTime({ statistic: cloudwatch.Stats.MAXIMUM, period: HOUR }),
      threshold: settings.jobDeadlineHours * MS_PER_HOUR,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });

    this.deadLettersAlarm = alarm('DeadLetters', 'dead-letters', {
      alarmDescription:
        'Events that could not be delivered (a file in inbox/ that started no job, a schedule that did not run) or asynchronous invocations that kept failing wait in the dead-letter queue. Read them, act, then delete them.',
      metric: props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ statistic: cloudwatch.Stats.MAXIMUM, period: FIVE_MINUTES }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });

    this.apiKeyRefusedAlarm = alarm('ApiKeyRefused', 'api-key-refused', {
      alarmDescription:
        'The Anthropic API refused the key (401/403) while batches run: they run on, and are billed, at the API, and their jobs wait for a valid key (until a batch is an hour past its expiry). Put a valid key in the secret (ApiKeySecretName output); the jobs go on within about 20 minutes.',
      metric: pipelineMetric('ApiKeyRefused', 'polls refused', cloudwatch.Stats.SUM).with({ period: FIVE_MINUTES }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });

    this.functionErrorAlarms = Object.fromEntries(
      Object.entries(props.functions).map(([name, fn]) => [
        name,
        alarm(`Errors-${name}`, `errors-${name}`, {
          alarmDescription: `functions/${name}.ts failed ${settings.functionErrorThreshold} time(s) or more in five minutes. Its log group has the error (name and message). The workflow retries transient errors; this says they happen.`,
          metric: fn.metricErrors({ statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES }),
          threshold: settings.functionErrorThreshold,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
        }),
      ]),
    );

    if (props.pollerFunction) {
      const poller = props.pollerFunction;
      this.pollerAlarms.push(
        alarm('PollerThrottled', 'poller-throttled', {
          alarmDescription:
            'The poller (functions/poll-batches.ts, reserved concurrency 1) was throttled: a tick ran long or overlapped. Chunks still wake (the next tick, or their 15-minute heartbeat timeout), later.',
          metric: poller.metricThrottles({ statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES }),
          threshold: 0,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: 1,
        }),
        // Missing data is the news here: the poller ticks every minute, idle or not.
        new cloudwatch.Alarm(this, 'PollerSilent', {
          alarmName: `${stackName}-poller-silent`,
          alarmDescription:
            'The poller has not ticked for 5 minutes (schedule disabled or deleted, function failing before it counts). Chunks fall back to the adaptive Wait loop: slower to notice ended batches, never lost. Check the Poller schedule and the poll-batches logs.',
          metric: pipelineMetric('PollerTicks', 'poller ticks', cloudwatch.Stats.SUM).with({ period: FIVE_MINUTES }),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        }),
      );
      this.pollerAlarms[1]!.addAlarmAction(notify);
    }

    const hourly = executions(HOUR);
    const allAlarms = [
      this.failedExecutionsAlarm,
      this.erroredRowsAlarm,
      this.overdueJobAlarm,
      this.deadLettersAlarm,
      this.apiKeyRefusedAlarm,
      ...Object.values(this.functionErrorAlarms),
      ...this.pollerAlarms,
    ];
    const perFunction = (title: string, metric: (fn: lambda.IFunction, label: string) => cloudwatch.IMetric) =>
      new cloudwatch.GraphWidget({ title, width: 8, height: 6, left: Object.entries(props.functions).map(([name, fn]) => metric(fn, name)) });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      // Dashboards are global to the account, and the stack may be deployed in several regions.
      dashboardName: `${stackName}-${Stack.of(this).region}`,
      defaultInterval: Duration.days(7),
      widgets: [
        [
          new cloudwatch.TextWidget({
            width: 24,
            height: 2,
            markdown:
              "# batchline\nJobs are the job state machine's executions. Rows, errors, cost and batch latency are counted by the handlers (namespace `Batchline`, `service=batchline`), per hour. Alarms notify the stack's SNS topic (`TopicArn` output).",
          }),
        ],
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', width: 24, height: 4, alarms: allAlarms })],
        [
          new cloudwatch.GraphWidget({ title: 'Jobs: executions per hour', width: 12, height: 6, left: Object.values(hourly) }),
          new cloudwatch.GraphWidget({
            title: 'Jobs running',
            width: 6,
            height: 6,
            left: [
              new cloudwatch.MathExpression({
                expression: 'RUNNING_SUM(FILL(started, 0) - FILL(succeeded, 0) - FILL(failed, 0) - FILL(timedOut, 0) - FILL(aborted, 0))',
                usingMetrics: hourly,
                period: HOUR,
                // CloudWatch has no running-executions metric for Standard workflows.
                label: 'Started − ended, counted from the left edge of the graph',
              }),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'Jobs ended (by the handlers)',
            width: 6,
            height: 6,
            left: [pipelineMetric('JobsEnded', 'Ended'), pipelineMetric('JobsFailed', 'Failed')],
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Rows by status, per hour',
            width: 12,
            height: 6,
            left: ROW_METRICS.map((name) => pipelineMetric(name, name.replace(/^Rows/, ''))),
          }),
          new cloudwatch.GraphWidget({
            title: 'Errored rows by error type, per hour',
            width: 12,
            height: 6,
            left: DASHBOARD_ERROR_TYPES.map((type) => pipelineMetric(rowsErroredMetric(type), type)),
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Errored-row rate (the errored-rows alarm)',
            width: 8,
            height: 6,
            left: [erroredRate],
            leftAnnotations: [{ value: settings.erroredRowRateThreshold, label: 'alarm threshold' }],
            leftYAxis: { min: 0, max: 1 },
          }),
          new cloudwatch.GraphWidget({ title: 'Cost (USD), per hour', width: 8, height: 6, left: [pipelineMetric('CostUsd', 'Cost (USD)')] }),
          new cloudwatch.SingleValueWidget({
            title: 'Over the whole range',
            width: 8,
            height: 6,
            setPeriodToTimeRange: true,
            metrics: [
              pipelineMetric('CostUsd', 'Cost (USD)'),
              pipelineMetric('RowsSucceeded', 'Rows succeeded'),
              pipelineMetric('RowsErrored', 'Rows errored'),
              pipelineMetric('JobsEnded', 'Jobs ended'),
            ],
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Batch latency: seconds from submit to end',
            width: 12,
            height: 6,
            left: [
              pipelineMetric('BatchWaitSeconds', 'p50', cloudwatch.Stats.p(50)),
              pipelineMetric('BatchWaitSeconds', 'p90', cloudwatch.Stats.p(90)),
              pipelineMetric('BatchWaitSeconds', 'max', cloudwatch.Stats.MAXIMUM),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'Job duration in hours (as executions end)',
            width: 12,
            height: 6,
            left: [
              hours('longest', machine.metricTime({ statistic: cloudwatch.Stats.MAXIMUM, period: HOUR })),
              hours('average', machine.metricTime({ statistic: cloudwatch.Stats.AVERAGE, period: HOUR })),
            ],
            leftAnnotations: [{ value: settings.jobDeadlineHours, label: 'overdue-job alarm' }],
          }),
        ],
        [
          perFunction('Function errors', (fn, label) => fn.metricErrors({ statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES, label })),
          perFunction('Function throttles', (fn, label) => fn.metricThrottles({ statistic: cloudwatch.Stats.SUM, period: FIVE_MINUTES, label })),
          perFunction('Function duration p90 (ms)', (fn, label) => fn.metricDuration({ statistic: cloudwatch.Stats.p(90), period: FIVE_MINUTES, label })),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Dead-letter queue',
            width: 12,
            height: 6,
            left: [
              props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
                statistic: cloudwatch.Stats.MAXIMUM,
                period: FIVE_MINUTES,
                label: 'Messages waiting',
              }),
            ],
          }),
        ],
      ],
    });
  }
}

/** A handler metric: Batchline namespace, service dimension, summed per hour unless said otherwise. */
export function pipelineMetric(name: MetricName, label: string, statistic: string = cloudwatch.Stats.SUM): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName: name, dimensionsMap: { service: SERVICE }, statistic, period: HOUR, label });
}

/** errored / (succeeded + errored) per hour; 0 in an hour with fewer than `minRows` such rows. */
function erroredRowRate(minRows: number): cloudwatch.MathExpression {
  return new cloudwatch.MathExpression({
    // FILL: an hour with errors and no successes (or the reverse) must still give a rate.
    expression: `IF((FILL(succeeded, 0) + FILL(errored, 0)) >= ${minRows}, FILL(errored, 0) / (FILL(succeeded, 0) + FILL(errored, 0)), 0)`,
    usingMetrics: { succeeded: pipelineMetric('RowsSucceeded', 'Succeeded'), errored: pipelineMetric('RowsErrored', 'Errored') },
    period: HOUR,
    label: 'Errored / (succeeded + errored)',
  });
}

/** A millisecond metric in hours; `label` (a lowercase word) also names its id in the graph. */
function hours(label: string, milliseconds: cloudwatch.IMetric): cloudwatch.MathExpression {
  const id = `${label}Ms`;
  return new cloudwatch.MathExpression({ expression: `${id} / ${MS_PER_HOUR}`, usingMetrics: { [id]: milliseconds }, period: HOUR, label });
}

function percent(fraction: number): string {
  return `${Math.round(fraction * 1000) / 10}%`;
}
