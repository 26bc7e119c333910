import { beforeAll, describe, expect, it } from 'vitest';
import type { SynthesizedTemplate } from '../../infra/app';
import { STATE_MACHINE_LOGICAL_ID } from '../../infra/workflow';
import { resolveDefinition, type AslDefinition } from '../../local/asl';
import { LocalNames, type CfnTemplate } from '../../local/template';
import { actionsOf, functionId, handlersGranted, logicalIds, statementsOfRole, synthesize, TEST_CONTEXT, type PolicyStatement } from './fixture';

/** What a deploy creates for the poller (infra/poller.ts, infra/observability.ts), and what the `poller` setting turns off. */
let json: SynthesizedTemplate;
beforeAll(() => {
  ({ json } = synthesize());
});
const poller = () => functionId(json, 'poll-batches');
const schedulesOf = (t: SynthesizedTemplate, fn: string) =>
  logicalIds(t, 'AWS::Scheduler::Schedule').filter((id) => JSON.stringify(t.Resources[id]).includes(fn));

describe('the poller', () => {
  it('ticks every minute on EventBridge Scheduler, a late tick dropped rather than retried', () => {
    const [schedule, ...others] = schedulesOf(json, poller());
    expect(others).toEqual([]);
    expect(json.Resources[schedule!]?.Properties).toMatchObject({
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: { 'Fn::GetAtt': [poller(), 'Arn'] }, RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 } },
    });
    const role = (json.Resources[schedule!]?.Properties as { Target: { RoleArn: { 'Fn::GetAtt': [string, string] } } }).Target.RoleArn['Fn::GetAtt'][0];
    expect(statementsOfRole(json, role).map((s) => [s.Action, s.Resource])).toEqual([
      ['lambda:InvokeFunction', { 'Fn::GetAtt': [poller(), 'Arn'] }],
      ['sqs:SendMessage', { 'Fn::GetAtt': [logicalIds(json, 'AWS::SQS::Queue')[0]!, 'Arn'] }],
    ]);
  });

  it('runs one tick at a time (reserved concurrency 1), under a minute, with no async retry', () => {
    expect(json.Resources[poller()]?.Properties).toMatchObject({ ReservedConcurrentExecutions: 1, Timeout: 50, MemorySize: 128 });
    const config = logicalIds(json, 'AWS::Lambda::EventInvokeConfig')
      .map((id) => json.Resources[id]?.Properties as { FunctionName: { Ref: string } })
      .find((properties) => properties.FunctionName.Ref === poller());
    expect(config).toMatchObject({ MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 });
  });

  it("alone may settle and heartbeat the job state machine's task tokens, and only that machine's", () => {
    const responds = (s: PolicyStatement) => actionsOf(s).some((action) => action.startsWith('states:SendTask'));
    expect(handlersGranted(json, responds)).toEqual(['poll-batches']);
    const roles = logicalIds(json, 'AWS::IAM::Role');
    const statements = roles.flatMap((role) => statementsOfRole(json, role)).filter(responds);
    expect(statements).toEqual([
      {
        Effect: 'Allow',
        Action: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
        Resource: { Ref: STATE_MACHINE_LOGICAL_ID },
      },
    ]);
  });

  it('is watched by a throttles alarm and a silence alarm (no tick in five minutes, missing data breaching)', () => {
    const alarm = (name: string) =>
      logicalIds(json, 'AWS::CloudWatch::Alarm')
        .map((id) => json.Resources[id]?.Properties as Record<string, unknown>)
        .find((properties) => properties.AlarmName === name);
    expect(alarm('Batchline-poller-throttled')).toMatchObject({
      MetricName: 'Throttles',
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: poller() } }],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
    });
    const silent = alarm('Batchline-poller-silent') as {
      Metrics: Array<{ MetricStat?: { Metric: { Namespace: string; MetricName: string }; Period: number; Stat: string } }>;
    };
    expect(
      silent.Metrics.flatMap((m) =>
        m.MetricStat ? [`${m.MetricStat.Metric.Namespace} ${m.MetricStat.Metric.MetricName} ${m.MetricStat.Stat} ${m.MetricStat.Period}`] : [],
      ),
    ).toEqual(['Batchline PollerTicks Sum 300']);
    expect(silent).toMatchObject({
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
    });
  });
});

describe('the poller setting off', () => {
  it('leaves the Wait loop alone: no AwaitBatch in the chunk lifecycle, no poller schedule, no token grants', () => {
    const off = synthesize({ ...TEST_CONTEXT, 'batchline:settings': { ...TEST_CONTEXT['batchline:settings'], poller: false } }).json;
    const asl = resolveDefinition(new LocalNames(off as CfnTemplate), STATE_MACHINE_LOGICAL_ID);
    const states = (asl.States.ForEachChunk!.ItemProcessor as AslDefinition).States;
    expect(states.AwaitBatch).toBeUndefined();
    expect(states.SubmitCanceled?.Default).toBe('WaitForBatch');
    expect(states.BatchEnded?.Choices).toEqual([{ Variable: '$.ended', BooleanEquals: true, Next: 'CollectResults' }]);
    expect(schedulesOf(off, functionId(off, 'poll-batches'))).toEqual([]);
    expect(handlersGranted(off, (s) => actionsOf(s).some((action) => action.startsWith('states:SendTask')))).toEqual([]);
  });
});
