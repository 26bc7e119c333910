import { beforeAll, describe, expect, it } from 'vitest';
import type { SynthesizedTemplate } from '../../infra/app';
import { functionId, logicalIds, synthesize, TEST_CONTEXT } from './fixture';

let json: SynthesizedTemplate;
beforeAll(() => {
  ({ json } = synthesize());
});

const HANDLERS = [
  'register-job',
  'prepare-job',
  'submit-chunk',
  'poll-batch',
  'collect-results',
  'finalize-chunk',
  'finalize-job',
  'record-chunk-failure',
  'mark-job-failed',
  'sweep-prefix',
  'reconcile-jobs',
  'execution-ended',
  'await-batch',
  'poll-batches',
];
const STATE_MACHINE = '<JobStateMachine>';
const HOUR = 3600;
const FIVE_MINUTES = 300;

interface Widget {
  type: string;
  properties: { title?: string; metrics?: unknown[][]; alarms?: string[]; annotations?: unknown; setPeriodToTimeRange?: boolean };
}

/** A dashboard graph's line: a metric (namespace, name, dimensions, options) or a math expression. */
interface Line {
  namespace?: string;
  name?: string;
  dimensions: Record<string, string>;
  options: Record<string, unknown>;
}

/** The dashboard's body, its tokens written `<Id>` (Ref) and `<Id.Attr>` (GetAtt). */
function dashboard(template: SynthesizedTemplate): { name: unknown; start: string; widgets: Widget[] } {
  const [id] = logicalIds(template, 'AWS::CloudWatch::Dashboard');
  const properties = template.Resources[id!]?.Properties as { DashboardName: unknown; DashboardBody: { 'Fn::Join': [string, unknown[]] } };
  const text = properties.DashboardBody['Fn::Join'][1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const token = part as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
      if (token.Ref !== undefined) return `<${token.Ref}>`;
      if (token['Fn::GetAtt']) return `<${token['Fn::GetAtt'].join('.')}>`;
      throw new Error(`unexpected token ${JSON.stringify(part)}`);
    })
    .join('');
  const body = JSON.parse(text) as { start: string; widgets: Widget[] };
  return { name: properties.DashboardName, start: body.start, widgets: body.widgets };
}

function widget(title: string): Widget {
  const found = dashboard(json).widgets.filter((w) => w.properties.title === title);
  expect(found, `one widget titled "${title}"`).toHaveLength(1);
  return found[0]!;
}

function lines(w: Widget): Line[] {
  return (w.properties.metrics ?? []).map((entry) => {
    const last = entry.at(-1);
    const options = typeof last === 'object' && last !== null ? (last as Record<string, unknown>) : {};
    const parts = entry.filter((part) => typeof part === 'string');
    if (parts.length === 0) return { dimensions: {}, options };
    const [namespace, name, ...pairs] = parts;
    const dimensions: Record<string, string> = {};
    for (let i = 0; i + 1 < pairs.length; i += 2) dimensions[pairs[i]!] = pairs[i + 1]!;
    return { namespace, name, dimensions, options };
  });
}

/** A line's statistic: a dashboard graph's default, Average, is left out of the body. */
const statOf = (line: Line) => String(line.options.stat ?? 'Average');

/** The visible lines of a graph: metric name and statistic, or the expression. */
const shown = (w: Widget) =>
  lines(w)
    .filter((line) => line.options.visible !== false)
    .map((line) => (line.name === undefined ? String(line.options.expression) : `${line.name} ${statOf(line)}`));

const fnRef = (name: string) => `<${functionId(json, name)}>`;

describe('the dashboard', () => {
  it('is one, named after the stack and its region (dashboard names are global to the account), showing a week', () => {
    expect(logicalIds(json, 'AWS::CloudWatch::Dashboard')).toHaveLength(1);
    expect(dashboard(json).name).toEqual({ 'Fn::Join': ['', ['Batchline-', { Ref: 'AWS::Region' }]] });
    expect(dashboard(json).start).toBe('-P7D');
  });

  it("shows jobs as the job state machine's executions: started, succeeded, failed, timed out, aborted, and running", () => {
    const executions = widget('Jobs: executions per hour');
    expect(shown(executions)).toEqual([
      'ExecutionsStarted Sum',
      'ExecutionsSucceeded Sum',
      'ExecutionsFailed Sum',
      'ExecutionsTimedOut Sum',
      'ExecutionsAborted Sum',
    ]);
    for (const line of lines(executions)) {
      expect(line).toMatchObject({ namespace: 'AWS/States', dimensions: { StateMachineArn: STATE_MACHINE }, options: { period: HOUR } });
    }
    const running = widget('Jobs running');
    expect(shown(running)).toEqual(['RUNNING_SUM(FILL(started, 0) - FILL(succeeded, 0) - FILL(failed, 0) - FILL(timedOut, 0) - FILL(aborted, 0))']);
    expect(
      lines(running)
        .filter((line) => line.options.visible === false)
        .map((line) => [line.options.id, line.name]),
    ).toEqual([
      ['started', 'ExecutionsStarted'],
      ['succeeded', 'ExecutionsSucceeded'],
      ['failed', 'ExecutionsFailed'],
      ['timedOut', 'ExecutionsTimedOut'],
      ['aborted', 'ExecutionsAborted'],
    ]);
    expect(shown(widget('Jobs ended (by the handlers)'))).toEqual(['JobsEnded Sum', 'JobsFailed Sum']);
  });

  it('shows rows by status and errored rows by error type, per hour', () => {
    expect(shown(widget('Rows by status, per hour'))).toEqual([
      'RowsSubmitted Sum',
      'RowsSucceeded Sum',
      'RowsErrored Sum',
      'RowsExpired Sum',
      'RowsCanceled Sum',
      'RowsRetried Sum',
      'RowsInvalid Sum',
    ]);
    const byType = widget('Errored rows by error type, per hour');
    expect(shown(byType)).toEqual([
      'RowsErrored_api_error Sum',
      'RowsErrored_overloaded_error Sum',
      'RowsErrored_rate_limit_error Sum',
      'RowsErrored_timeout_error Sum',
      'RowsErrored_invalid_request_error Sum',
    ]);
    expect(lines(byType).map((line) => line.options.label)).toEqual([
      'api_error',
      'overloaded_error',
      'rate_limit_error',
      'timeout_error',
      'invalid_request_error',
    ]);
  });

  it('shows the errored-row rate against its alarm threshold', () => {
    const rate = widget('Errored-row rate (the errored-rows alarm)');
    expect(shown(rate)).toEqual(['IF((FILL(succeeded, 0) + FILL(errored, 0)) >= 100, FILL(errored, 0) / (FILL(succeeded, 0) + FILL(errored, 0)), 0)']);
    expect(rate.properties.annotations).toEqual({ horizontal: [{ value: 0.2, label: 'alarm threshold', yAxis: 'left' }] });
  });

  it('shows cost per hour and, over the whole range, cost, rows and jobs', () => {
    expect(shown(widget('Cost (USD), per hour'))).toEqual(['CostUsd Sum']);
    const totals = widget('Over the whole range');
    expect(totals.properties.setPeriodToTimeRange).toBe(true);
    expect(shown(totals)).toEqual(['CostUsd Sum', 'RowsSucceeded Sum', 'RowsErrored Sum', 'JobsEnded Sum']);
  });

  it('shows batch latency (p50, p90, max) and job duration in hours against the deadline', () => {
    expect(shown(widget('Batch latency: seconds from submit to end'))).toEqual(['BatchWaitSeconds p50', 'BatchWaitSeconds p90', 'BatchWaitSeconds Maximum']);
    const duration = widget('Job duration in hours (as executions end)');
    expect(shown(duration)).toEqual(['longestMs / 3600000', 'averageMs / 3600000']);
    expect(
      lines(duration)
        .filter((line) => line.name !== undefined)
        .map((line) => `${line.name} ${statOf(line)}`),
    ).toEqual(['ExecutionTime Maximum', 'ExecutionTime Average']);
    expect(duration.properties.annotations).toEqual({ horizontal: [{ value: 30, label: 'overdue-job alarm', yAxis: 'left' }] });
  });

  it('reads every handler metric from namespace Batchline with the one dimension service=batchline', () => {
    const handlerLines = dashboard(json)
      .widgets.flatMap((w) => lines(w))
      .filter((line) => line.namespace === 'Batchline');
    expect(handlerLines.length).toBeGreaterThan(20);
    for (const line of handlerLines) expect(line.dimensions).toEqual({ service: 'batchline' });
  });

  it.each([
    ['Function errors', 'AWS/Lambda Errors Sum'],
    ['Function throttles', 'AWS/Lambda Throttles Sum'],
    ['Function duration p90 (ms)', 'AWS/Lambda Duration p90'],
  ])('shows %s, one line per function', (title, metric) => {
    const perFunction = lines(widget(title));
    expect(perFunction.map((line) => line.dimensions.FunctionName)).toEqual(HANDLERS.map(fnRef));
    expect(perFunction.map((line) => line.options.label)).toEqual(HANDLERS);
    for (const line of perFunction) expect(`${line.namespace} ${line.name} ${statOf(line)}`).toBe(metric);
  });

  it('shows the dead-letter queue and the state of every alarm', () => {
    const queue = logicalIds(json, 'AWS::SQS::Queue')[0]!;
    expect(lines(widget('Dead-letter queue'))).toEqual([
      {
        namespace: 'AWS/SQS',
        name: 'ApproximateNumberOfMessagesVisible',
        dimensions: { QueueName: `<${queue}.QueueName>` },
        // Five minutes, the dashboard's default period, is left out of the body.
        options: { label: 'Messages waiting', stat: 'Maximum' },
      },
    ]);
    expect(widget('Alarms').properties.alarms?.sort()).toEqual(
      logicalIds(json, 'AWS::CloudWatch::Alarm')
        .map((id) => `<${id}.Arn>`)
        .sort(),
    );
  });
});

interface AlarmProperties {
  AlarmName: string;
  AlarmActions: unknown[];
  OKActions?: unknown;
  ComparisonOperator: string;
  Threshold: number;
  EvaluationPeriods: number;
  TreatMissingData: string;
  Metrics?: Array<{
    Id: string;
    Expression?: string;
    ReturnData: boolean;
    MetricStat?: { Metric: { Namespace: string; MetricName: string; Dimensions: unknown[] }; Period: number; Stat: string };
  }>;
  Namespace?: string;
  MetricName?: string;
  Dimensions?: unknown[];
  Statistic?: string;
  Period?: number;
}

function alarms(template: SynthesizedTemplate): Record<string, AlarmProperties> {
  return Object.fromEntries(
    logicalIds(template, 'AWS::CloudWatch::Alarm').map((id) => {
      const properties = template.Resources[id]?.Properties as unknown as AlarmProperties;
      return [properties.AlarmName, properties];
    }),
  );
}

/** An alarm's metric-math inputs, by id: namespace, name, statistic and period. */
const inputs = (alarm: AlarmProperties | undefined) =>
  Object.fromEntries(
    (alarm?.Metrics ?? [])
      .filter((metric) => metric.MetricStat !== undefined)
      .map((metric) => [
        metric.Id,
        `${metric.MetricStat!.Metric.Namespace} ${metric.MetricStat!.Metric.MetricName} ${metric.MetricStat!.Stat} ${metric.MetricStat!.Period}`,
      ]),
  );
const expressionOf = (alarm: AlarmProperties | undefined) => alarm?.Metrics?.find((metric) => metric.ReturnData)?.Expression;

describe('the alarms', () => {
  it('are the five of the pipeline and one per function, each notifying the topic only, quiet when there is no data', () => {
    const all = alarms(json);
    expect(Object.keys(all).sort()).toEqual(
      [
        'Batchline-api-key-refused',
        'Batchline-dead-letters',
        'Batchline-errored-rows',
        'Batchline-failed-executions',
        'Batchline-overdue-job',
        'Batchline-poller-throttled',
        'Batchline-poller-silent',
        ...HANDLERS.map((name) => `Batchline-errors-${name}`),
      ].sort(),
    );
    const topic = logicalIds(json, 'AWS::SNS::Topic')[0]!;
    for (const [name, alarm] of Object.entries(all)) {
      expect(alarm.AlarmActions).toEqual([{ Ref: topic }]);
      expect(alarm.OKActions).toBeUndefined();
      // The poller ticks every minute, idle or not: its silence is the news.
      expect(alarm.TreatMissingData).toBe(name === 'Batchline-poller-silent' ? 'breaching' : 'notBreaching');
      expect(alarm.EvaluationPeriods).toBe(1);
    }
  });

  it('fire on any poll the API answered with a refused key (401/403) in five minutes', () => {
    const alarm = alarms(json)['Batchline-api-key-refused'];
    expect(Object.values(inputs(alarm))).toEqual(['Batchline ApiKeyRefused Sum 300']);
    expect(alarm).toMatchObject({ ComparisonOperator: 'GreaterThanThreshold', Threshold: 0 });
  });

  it('fire on any failed, timed-out or aborted job execution in five minutes', () => {
    const alarm = alarms(json)['Batchline-failed-executions'];
    expect(expressionOf(alarm)).toBe('FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)');
    expect(inputs(alarm)).toEqual({
      failed: 'AWS/States ExecutionsFailed Sum 300',
      timedOut: 'AWS/States ExecutionsTimedOut Sum 300',
      aborted: 'AWS/States ExecutionsAborted Sum 300',
    });
    for (const metric of alarm!.Metrics!.filter((m) => m.MetricStat)) {
      expect(metric.MetricStat!.Metric.Dimensions).toEqual([{ Name: 'StateMachineArn', Value: { Ref: 'JobStateMachine' } }]);
    }
    expect(alarm).toMatchObject({ ComparisonOperator: 'GreaterThanThreshold', Threshold: 0 });
  });

  it("fire when more than 20% of an hour's ended rows errored, once 100 rows ended", () => {
    const alarm = alarms(json)['Batchline-errored-rows'];
    expect(expressionOf(alarm)).toBe('IF((FILL(succeeded, 0) + FILL(errored, 0)) >= 100, FILL(errored, 0) / (FILL(succeeded, 0) + FILL(errored, 0)), 0)');
    expect(inputs(alarm)).toEqual({ succeeded: 'Batchline RowsSucceeded Sum 3600', errored: 'Batchline RowsErrored Sum 3600' });
    for (const metric of alarm!.Metrics!.filter((m) => m.MetricStat))
      expect(metric.MetricStat!.Metric.Dimensions).toEqual([{ Name: 'service', Value: 'batchline' }]);
    expect(alarm).toMatchObject({ ComparisonOperator: 'GreaterThanThreshold', Threshold: 0.2 });
  });

  it('fire when a job execution took longer than 30 hours', () => {
    expect(alarms(json)['Batchline-overdue-job']).toMatchObject({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionTime',
      Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: 'JobStateMachine' } }],
      Statistic: 'Maximum',
      Period: HOUR,
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 30 * 3_600_000,
    });
  });

  it('fire when the dead-letter queue holds a message', () => {
    const queue = logicalIds(json, 'AWS::SQS::Queue')[0]!;
    expect(alarms(json)['Batchline-dead-letters']).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queue, 'QueueName'] } }],
      Statistic: 'Maximum',
      Period: FIVE_MINUTES,
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
    });
  });

  it.each(HANDLERS)('fire when %s fails once in five minutes', (name) => {
    expect(alarms(json)[`Batchline-errors-${name}`]).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId(json, name) } }],
      Statistic: 'Sum',
      Period: FIVE_MINUTES,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
    });
  });

  it('take their thresholds from the settings', () => {
    const { json: tuned } = synthesize({
      ...TEST_CONTEXT,
      'batchline:settings': {
        ...TEST_CONTEXT['batchline:settings'],
        erroredRowRateThreshold: 0.05,
        erroredRowAlarmMinRows: 500,
        jobDeadlineHours: 72,
        functionErrorThreshold: 3,
      },
    });
    const all = alarms(tuned);
    expect(all['Batchline-errored-rows']?.Threshold).toBe(0.05);
    expect(expressionOf(all['Batchline-errored-rows'])).toContain('>= 500,');
    expect(all['Batchline-overdue-job']?.Threshold).toBe(72 * 3_600_000);
    for (const name of HANDLERS) expect(all[`Batchline-errors-${name}`]?.Threshold).toBe(3);
    const annotations = dashboard(tuned)
      .widgets.filter((w) => w.properties.annotations !== undefined)
      .map((w) => [w.properties.title, (w.properties.annotations as { horizontal: Array<{ value: number }> }).horizontal[0]?.value]);
    expect(annotations).toEqual([
      ['Errored-row rate (the errored-rows alarm)', 0.05],
      ['Job duration in hours (as executions end)', 72],
    ]);
  });

  it('can reach the topic: its policy lets CloudWatch publish, and its key lets CloudWatch encrypt', () => {
    const topic = logicalIds(json, 'AWS::SNS::Topic')[0]!;
    const key = (json.Resources[topic]?.Properties as { KmsMasterKeyId: { 'Fn::GetAtt': [string, string] } }).KmsMasterKeyId['Fn::GetAtt'][0];
    const keyStatements = (json.Resources[key]?.Properties as { KeyPolicy: { Statement: Array<Record<string, unknown>> } }).KeyPolicy.Statement;
    expect(keyStatements).toContainEqual(
      expect.objectContaining({ Effect: 'Allow', Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] }),
    );
    const topicStatements = logicalIds(json, 'AWS::SNS::TopicPolicy')
      .map((id) => json.Resources[id]?.Properties as { Topics: unknown[]; PolicyDocument: { Statement: Array<Record<string, unknown>> } })
      .filter((policy) => JSON.stringify(policy.Topics) === JSON.stringify([{ Ref: topic }]))
      .flatMap((policy) => policy.PolicyDocument.Statement);
    expect(topicStatements).toContainEqual(
      expect.objectContaining({ Effect: 'Allow', Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: 'sns:Publish', Resource: { Ref: topic } }),
    );
  });
});
