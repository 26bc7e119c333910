/**
 * The Batchline construct in an app of someone else's: defaults, an existing bucket, an existing
 * alarm topic, a removal policy, and a bad prop. CDK assertions and cdk-nag on each.
 */
import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Batchline, type BatchlineProps } from '../../infra/batchline';
import { HANDLER_NAMES } from '../../infra/handler';

const outdirs: string[] = [];
afterEach(() => {
  for (const dir of outdirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A stack of the user's own holding the construct (bundling off: templates only). */
function userStack(props: (stack: Stack) => BatchlineProps = () => ({})): { app: App; stack: Stack; batchline: Batchline; template: Template } {
  const outdir = mkdtempSync(path.join(tmpdir(), 'batchline-construct-test-'));
  outdirs.push(outdir);
  const app = new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new Stack(app, 'TeamPipelines', { env: { account: '123456789012', region: 'eu-west-1' } });
  const batchline = new Batchline(stack, 'Batchline', props(stack));
  return { app, stack, batchline, template: Template.fromStack(stack) };
}

function nagFindings(app: App, stack: Stack): string[] {
  app.synth();
  return new AwsSolutionsChecks()
    .validateScope(stack)
    .violations.flatMap((violation) => violation.violatingResources.map((resource) => `${violation.ruleName} ${resource.constructPath ?? ''}`));
}

describe('new Batchline(scope, id, props)', () => {
  it('with no props, creates the whole pipeline: the bucket and its access logs, the table, a function per handler, the workflow, the topic', () => {
    const { template } = userStack();
    template.resourceCountIs('AWS::S3::Bucket', 2);
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.resourceCountIs('AWS::Scheduler::Schedule', 2); // the poller's and the daily reconciler's; no sweeps
    const handlers = Object.values(template.findResources('AWS::Lambda::Function')).map((fn) => fn.Metadata?.['batchline:handler']);
    expect(handlers.filter(Boolean).sort()).toEqual([...HANDLER_NAMES].sort());
    // Stateful resources outlive the stack by default.
    for (const type of ['AWS::S3::Bucket', 'AWS::DynamoDB::Table']) {
      for (const resource of Object.values(template.findResources(type))) expect(resource.DeletionPolicy).toBe('Retain');
    }
    // The user's stack gets no outputs of ours: the construct exposes what an app wires on.
    expect(template.toJSON().Outputs).toBeUndefined();
  });

  it('with no props, passes cdk-nag with nothing unacknowledged', () => {
    const { app, stack } = userStack();
    expect(nagFindings(app, stack)).toEqual([]);
  });

  it('with an existing bucket, creates no bucket: the trigger rule matches that bucket and the grants name its prefixes', () => {
    const { template, batchline } = userStack((stack) => ({ bucket: s3.Bucket.fromBucketName(stack, 'Data', 'team-data-bucket') }));
    template.resourceCountIs('AWS::S3::Bucket', 0);
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    expect(batchline.bucket.bucketName).toBe('team-data-bucket');
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({ source: ['aws.s3'], detail: Match.objectLike({ bucket: { name: ['team-data-bucket'] } }) }),
    });
    const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(policies).toContain(':s3:::team-data-bucket/inbox/*');
    expect(policies).toContain(':s3:::team-data-bucket/results/*');
    // Every function is told the bucket by name.
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function', { Metadata: { 'batchline:handler': Match.anyValue() } }))) {
      expect(fn.Properties?.Environment?.Variables?.BATCHLINE_BUCKET).toBe('team-data-bucket');
    }
  });

  it('with an existing bucket, passes cdk-nag with nothing unacknowledged', () => {
    const { app, stack } = userStack((scope) => ({ bucket: s3.Bucket.fromBucketName(scope, 'Data', 'team-data-bucket') }));
    expect(nagFindings(app, stack)).toEqual([]);
  });

  it('with an existing alarm topic, creates no topic: alarms and failed jobs go to that one', () => {
    const topicArn = 'arn:aws:sns:eu-west-1:123456789012:team-alarms';
    const { template, app, stack } = userStack((scope) => ({ alarmTopic: sns.Topic.fromTopicArn(scope, 'Alarms', topicArn) }));
    template.resourceCountIs('AWS::SNS::Topic', 0);
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThan(0);
    for (const alarm of alarms) expect(alarm.Properties?.AlarmActions).toEqual([topicArn]);
    template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ BATCHLINE_TOPIC_ARN: topicArn }) } });
    expect(nagFindings(app, stack)).toEqual([]);
  });

  it('with removalPolicy DESTROY, lets the stack delete the buckets and the table', () => {
    const { template } = userStack(() => ({ removalPolicy: RemovalPolicy.DESTROY }));
    for (const type of ['AWS::S3::Bucket', 'AWS::DynamoDB::Table']) {
      for (const resource of Object.values(template.findResources(type))) expect(resource.DeletionPolicy).toBe('Delete');
    }
  });

  it('hands the pipeline settings to the functions and the stack settings to the workflow', () => {
    const { template } = userStack(() => ({
      maxAttempts: 3,
      maxRequestsPerChunk: 5000,
      allowUnknownModels: true,
      timeoutMs: 120_000,
      maxConcurrentChunks: 4,
      schedules: [{ name: 'nightly', cron: 'cron(0 23 * * ? *)', prefix: 'scheduled/nightly/' }],
    }));
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          BATCHLINE_MAX_ATTEMPTS: '3',
          BATCHLINE_MAX_REQUESTS_PER_CHUNK: '5000',
          BATCHLINE_ALLOW_UNKNOWN_MODELS: 'true',
          BATCHLINE_API_TIMEOUT_MS: '120000',
        }),
      },
    });
    expect(JSON.stringify(template.findResources('AWS::StepFunctions::StateMachine'))).toContain('\\"MaxConcurrency\\":4');
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'cron(0 23 * * ? *)' });
  });

  it("sizes PrepareJob's memory by prepareMemoryMiB (default 2,048 MiB), leaving the other functions' as they are", () => {
    const memoryOf = (template: Template) =>
      Object.fromEntries(
        Object.values(template.findResources('AWS::Lambda::Function'))
          .filter((resource) => resource.Metadata?.['batchline:handler'] !== undefined)
          .map((resource) => [resource.Metadata['batchline:handler'], resource.Properties.MemorySize]),
      );
    const defaults = memoryOf(userStack().template);
    const raised = memoryOf(userStack(() => ({ prepareMemoryMiB: 6144 })).template);

    expect(defaults['prepare-job']).toBe(2048);
    expect(raised).toEqual({ ...defaults, 'prepare-job': 6144 });
  });

  it('twice in one stack, names its state machine, alarms, dashboard and log group apart: no name is used twice', () => {
    const app = new App({ outdir: mkdtempSync(path.join(tmpdir(), 'batchline-construct-test-')), context: { 'aws:cdk:bundling-stacks': [] } });
    outdirs.push(app.outdir);
    const stack = new Stack(app, 'TeamPipelines', { env: { account: '123456789012', region: 'eu-west-1' } });
    new Batchline(stack, 'Support');
    new Batchline(stack, 'Research');
    const template = Template.fromStack(stack);
    const names = (type: string, property: string) => Object.values(template.findResources(type)).map((resource) => resource.Properties?.[property]);
    const alarms = names('AWS::CloudWatch::Alarm', 'AlarmName');
    expect(alarms.length).toBeGreaterThan(2);
    expect(new Set(alarms).size).toBe(alarms.length);
    expect(alarms.some((name) => String(name).startsWith('TeamPipelines-Support-'))).toBe(true);
    expect(names('AWS::CloudWatch::Dashboard', 'DashboardName').sort()).toEqual(['TeamPipelines-Research-eu-west-1', 'TeamPipelines-Support-eu-west-1']);
    expect(Object.keys(template.findResources('AWS::StepFunctions::StateMachine')).sort()).toEqual(['ResearchJobStateMachine', 'SupportJobStateMachine']);
    const logGroups = names('AWS::Logs::LogGroup', 'LogGroupName').filter((name) => name !== undefined);
    expect(logGroups.sort()).toEqual(['/aws/vendedlogs/states/TeamPipelines-Research-jobs', '/aws/vendedlogs/states/TeamPipelines-Support-jobs']);
  });

  it('rejects a bad prop at synth, naming it', () => {
    expect(() => userStack(() => ({ inboxPrefix: 'uploads' }))).toThrow('batchline:settings.inboxPrefix must end with "/", got "uploads"');
    expect(() => userStack(() => ({ inboxPrefix: 'team/', resultsPrefix: 'team/out/' }))).toThrow(
      'batchline:settings.resultsPrefix "team/out/" is inside the inbox prefix "team/": every object created there starts a job',
    );
    expect(() => userStack(() => ({ maxAttempts: 0 }))).toThrow(/maxAttempts.*1.*10/);
    expect(() => userStack(() => ({ logRetentionDays: 31 }))).toThrow(/logRetentionDays must be one of CloudWatch Logs' periods/);
    expect(() => userStack(() => ({ prepareMemoryMiB: 16_384 }))).toThrow(
      'batchline:settings.prepareMemoryMiB must be a whole number from 128 to 10240, got 16384',
    );
    expect(() => userStack(() => ({ maxAtempts: 3 }) as BatchlineProps)).toThrow(/maxAtempts is not a setting/);
  });
});

describe('new Batchline(scope, id, { inboxPrefix, workPrefix, resultsPrefix })', () => {
  const prefixes = { inboxPrefix: 'team/batchline/in/', workPrefix: 'team/batchline/work/', resultsPrefix: 'team/results/' };
  const existing = (stack: Stack) => ({ ...prefixes, bucket: s3.Bucket.fromBucketName(stack, 'Data', 'team-data-bucket') });
  /** Every IAM policy's S3 object ARNs under the bucket, as `<prefix>*` (the part after the bucket ARN). */
  const objectPatterns = (template: Template) => {
    const found = new Set<string>();
    const text = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    for (const match of text.matchAll(/:s3:::team-data-bucket\/([^"]*)"/g)) found.add(match[1]!);
    return [...found].sort();
  };

  it('starts jobs from objects created under the inbox prefix only', () => {
    const { template } = userStack(() => prefixes);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({ detail: Match.objectLike({ object: { key: [{ prefix: 'team/batchline/in/' }] } }) }),
    });
    expect(JSON.stringify(template.findResources('AWS::Events::Rule'))).not.toContain('"inbox/"');
  });

  it('expires and tidies the work and results prefixes it was given, not the defaults', () => {
    const { template } = userStack(() => prefixes);
    const rules = Object.values(template.findResources('AWS::S3::Bucket'))
      .flatMap((bucket) => bucket.Properties?.LifecycleConfiguration?.Rules ?? [])
      .filter((rule: { Prefix?: string }) => rule.Prefix !== undefined)
      .map((rule: { Id: string; Prefix: string }) => [rule.Id, rule.Prefix]);
    expect(rules).toEqual([
      ['expire-work-files', 'team/batchline/work/'],
      ['tidy-work-versions', 'team/batchline/work/'],
      ['tidy-results-versions', 'team/results/'],
    ]);
  });

  it('grants each function objects under the given prefixes only, and tells every function the prefixes', () => {
    const { template } = userStack(existing);
    expect(objectPatterns(template)).toEqual(['team/batchline/in/*', 'team/batchline/work/*', 'team/results/*']);
    const handlers = Object.values(template.findResources('AWS::Lambda::Function', { Metadata: { 'batchline:handler': Match.anyValue() } }));
    expect(handlers).toHaveLength(HANDLER_NAMES.length);
    for (const fn of handlers) {
      expect(fn.Properties?.Environment?.Variables).toMatchObject({
        BATCHLINE_INBOX_PREFIX: 'team/batchline/in/',
        BATCHLINE_WORK_PREFIX: 'team/batchline/work/',
        BATCHLINE_RESULTS_PREFIX: 'team/results/',
      });
    }
  });

  it('with rootPrefix, puts inbox/, work/ and results/ under it', () => {
    const { template, batchline } = userStack((stack) => ({ rootPrefix: 'batchline/', bucket: s3.Bucket.fromBucketName(stack, 'Data', 'team-data-bucket') }));
    expect(batchline.prefixes).toEqual({ inbox: 'batchline/inbox/', work: 'batchline/work/', results: 'batchline/results/' });
    expect(objectPatterns(template)).toEqual(['batchline/inbox/*', 'batchline/results/*', 'batchline/work/*']);
  });

  it("lets the sweep list the schedules' prefixes, which may not overlap the given ones", () => {
    const schedules = [{ name: 'nightly', cron: 'cron(0 23 * * ? *)', prefix: 'team/drops/' }];
    const { template } = userStack((stack) => ({ ...existing(stack), schedules }));
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': ['team/drops/*'] } } })]),
      },
    });
    expect(() => userStack((stack) => ({ ...existing(stack), schedules: [{ ...schedules[0]!, prefix: 'team/batchline/' }] }))).toThrow(
      'batchline:schedules "nightly": prefix "team/batchline/" overlaps team/batchline/in/',
    );
  });

  it('passes cdk-nag with nothing unacknowledged, with a bucket of its own and with an existing one', () => {
    const own = userStack(() => prefixes);
    expect(nagFindings(own.app, own.stack)).toEqual([]);
    const shared = userStack(existing);
    expect(nagFindings(shared.app, shared.stack)).toEqual([]);
  });
});
