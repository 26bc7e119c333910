import { Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SynthesizedTemplate } from '../../infra/app';
import { actionsOf, functionId, handlersGranted, logicalIds, synthesize, type PolicyStatement } from './fixture';

let template: Template;
let json: SynthesizedTemplate;
beforeAll(() => {
  ({ template, json } = synthesize());
});

const bucketId = () => logicalIds(json, 'AWS::S3::Bucket')[0]!;
const tableId = () => logicalIds(json, 'AWS::DynamoDB::Table')[0]!;
const secretId = () => logicalIds(json, 'AWS::SecretsManager::Secret')[0]!;
const topicId = () => logicalIds(json, 'AWS::SNS::Topic')[0]!;
const bucketArn = () => ({ 'Fn::GetAtt': [bucketId(), 'Arn'] });
const objectsUnder = (prefix: string) => ({ 'Fn::Join': ['', [bucketArn(), `/${prefix}*`]] });

const ALL_HANDLERS = [
  'collect-results',
  'fail-job',
  'finalize-job',
  'poll-batch',
  'prepare-job',
  'record-chunk-failure',
  'register-job',
  'submit-chunk',
  'sweep-prefix',
];

describe('the bucket', () => {
  it('is private, S3-encrypted, versioned, retained and sends its events to EventBridge', () => {
    template.resourceCountIs('AWS::S3::Bucket', 1);
    template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        VersioningConfiguration: { Status: 'Enabled' },
      }),
    });
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: bucketId() },
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
  });

  it('expires work/ after the configured days, old versions after 7, stale uploads after 2', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: [
          { Id: 'expire-work-files', Prefix: 'work/', ExpirationInDays: 14, Status: 'Enabled' },
          {
            Id: 'tidy-versions-and-uploads',
            NoncurrentVersionExpiration: { NoncurrentDays: 7 },
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 },
            ExpiredObjectDeleteMarker: true,
            Status: 'Enabled',
          },
        ],
      },
    });
  });

  it('refuses requests that are not over TLS 1.2 or later', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucketId() },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
          }),
        ]),
      },
    });
  });
});

describe('the table', () => {
  it('has the shared key schema, the byCreated index, on-demand billing, PITR and TTL, and is retained', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
          { AttributeName: 'gsi1pk', AttributeType: 'S' },
          { AttributeName: 'gsi1sk', AttributeType: 'S' },
        ],
        GlobalSecondaryIndexes: [
          {
            IndexName: 'byCreated',
            KeySchema: [
              { AttributeName: 'gsi1pk', KeyType: 'HASH' },
              { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'ALL' },
          },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      },
    });
  });
});

describe('the API key', () => {
  it('is a new secret holding a placeholder, never the key', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      SecretString: 'replace-me-with-an-anthropic-api-key',
    });
  });

  it('can be read only by the functions that call the Batches API', () => {
    const readsSecret = (statement: PolicyStatement) =>
      actionsOf(statement).includes('secretsmanager:GetSecretValue') &&
      JSON.stringify(statement.Resource) === JSON.stringify({ Ref: secretId() });
    expect(handlersGranted(json, readsSecret)).toEqual(['collect-results', 'fail-job', 'poll-batch', 'record-chunk-failure', 'submit-chunk']);

    const policiesNamingSecret = logicalIds(json, 'AWS::IAM::Policy').filter((id) =>
      JSON.stringify(json.Resources[id]).includes(`"Ref":"${secretId()}"`),
    );
    expect(policiesNamingSecret).toHaveLength(5);
  });

  it('reaches those functions only as the secret\'s ARN in BATCHLINE_API_KEY_SECRET', () => {
    const withSecretEnv = logicalIds(json, 'AWS::Lambda::Function')
      .filter((id) => environmentOf(json, id).BATCHLINE_API_KEY_SECRET !== undefined)
      .map((id) => json.Resources[id]?.Metadata?.['batchline:handler'])
      .sort();
    expect(withSecretEnv).toEqual(['collect-results', 'fail-job', 'poll-batch', 'record-chunk-failure', 'submit-chunk']);
    for (const name of withSecretEnv) {
      expect(environmentOf(json, functionId(json, String(name))).BATCHLINE_API_KEY_SECRET).toEqual({ Ref: secretId() });
    }
  });
});

describe('the functions', () => {
  const sizes: Record<string, { MemorySize: number; Timeout: number; EphemeralStorage?: { Size: number } }> = {
    'register-job': { MemorySize: 512, Timeout: 60 },
    'prepare-job': { MemorySize: 2048, Timeout: 900 },
    'submit-chunk': { MemorySize: 1024, Timeout: 900 },
    'poll-batch': { MemorySize: 256, Timeout: 60 },
    'collect-results': { MemorySize: 1769, Timeout: 900 },
    'finalize-job': { MemorySize: 2048, Timeout: 900, EphemeralStorage: { Size: 4096 } },
    'record-chunk-failure': { MemorySize: 1024, Timeout: 900 },
    'fail-job': { MemorySize: 512, Timeout: 300 },
    'sweep-prefix': { MemorySize: 512, Timeout: 300 },
  };

  it('are one per handler, each naming its source file in the template', () => {
    const handlers = logicalIds(json, 'AWS::Lambda::Function')
      .map((id) => json.Resources[id]?.Metadata)
      .filter((metadata) => metadata?.['batchline:entry'] !== undefined)
      .map((metadata) => [metadata?.['batchline:handler'], metadata?.['batchline:entry']]);
    expect(handlers.sort()).toEqual(ALL_HANDLERS.map((name) => [name, `functions/${name}.ts`]));
  });

  it.each(Object.entries(sizes))('%s runs Node 22 on arm64 with its own memory, timeout and traced JSON logs', (name, size) => {
    const properties = json.Resources[functionId(json, name)]?.Properties;
    expect(properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: size.MemorySize,
      Timeout: size.Timeout,
      TracingConfig: { Mode: 'Active' },
      LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: expect.any(String) } },
    });
    expect(properties?.EphemeralStorage).toEqual(size.EphemeralStorage);
  });

  it('each log to a log group of their own kept for a month', () => {
    const groups = ALL_HANDLERS.map(
      (name) => (json.Resources[functionId(json, name)]?.Properties as { LoggingConfig: { LogGroup: { Ref: string } } }).LoggingConfig.LogGroup.Ref,
    );
    expect(new Set(groups).size).toBe(ALL_HANDLERS.length);
    for (const group of groups) expect(json.Resources[group]).toMatchObject({ Type: 'AWS::Logs::LogGroup', Properties: { RetentionInDays: 30 } });
  });

  it('get the bucket, the table and the settings from cdk.json context as environment variables', () => {
    for (const name of ALL_HANDLERS) {
      expect(environmentOf(json, functionId(json, name))).toMatchObject({
        NODE_OPTIONS: '--enable-source-maps',
        BATCHLINE_BUCKET: { Ref: bucketId() },
        BATCHLINE_TABLE: { Ref: tableId() },
        BATCHLINE_MAX_REQUESTS_PER_CHUNK: '50000',
        BATCHLINE_VALIDATION_MODE: 'lenient',
        BATCHLINE_POLL_FRACTION: '0.05',
      });
    }
  });

  it('that call the API also get the API settings and base URL; the others do not', () => {
    const apiEnv = { BATCHLINE_API_TIMEOUT_MS: '120000', ANTHROPIC_BASE_URL: 'https://anthropic-proxy.example.com' };
    for (const name of ALL_HANDLERS) {
      const env = environmentOf(json, functionId(json, name));
      if (['submit-chunk', 'poll-batch', 'collect-results', 'record-chunk-failure', 'fail-job'].includes(name)) expect(env).toMatchObject(apiEnv);
      else expect(Object.keys(env).filter((key) => key.startsWith('ANTHROPIC_') || key.startsWith('BATCHLINE_API_'))).toEqual([]);
    }
  });

  it('finalize-job and fail-job get the topic and the event bus, and may publish to them', () => {
    const notifying = ALL_HANDLERS.filter((name) => environmentOf(json, functionId(json, name)).BATCHLINE_TOPIC_ARN !== undefined);
    expect(notifying).toEqual(['fail-job', 'finalize-job']);
    for (const name of notifying) {
      expect(environmentOf(json, functionId(json, name))).toMatchObject({
        BATCHLINE_TOPIC_ARN: { Ref: topicId() },
        BATCHLINE_EVENT_BUS: 'default',
      });
    }
    expect(handlersGranted(json, (s) => actionsOf(s).includes('sns:Publish'))).toEqual(['fail-job', 'finalize-job']);
    expect(handlersGranted(json, (s) => actionsOf(s).includes('events:PutEvents'))).toEqual(['fail-job', 'finalize-job']);
  });

  it('sweep-prefix knows the state machine and alone may start executions of it', () => {
    expect(environmentOf(json, functionId(json, 'sweep-prefix')).BATCHLINE_STATE_MACHINE_ARN).toEqual({ Ref: 'JobStateMachine' });
    expect(handlersGranted(json, (s) => actionsOf(s).includes('states:StartExecution'))).toEqual(['sweep-prefix']);
  });

  it('reach only their own parts of the bucket', () => {
    const reads = (prefix: string) => (s: PolicyStatement) =>
      actionsOf(s).includes('s3:GetObject*') && JSON.stringify(s.Resource).includes(JSON.stringify(objectsUnder(prefix)));
    const writes = (prefix: string) => (s: PolicyStatement) =>
      actionsOf(s).includes('s3:PutObject') && JSON.stringify(s.Resource) === JSON.stringify(objectsUnder(prefix));

    expect(handlersGranted(json, reads('inbox/'))).toEqual(['finalize-job', 'prepare-job', 'register-job']);
    expect(handlersGranted(json, reads('scheduled/nightly/'))).toEqual(['finalize-job', 'prepare-job', 'register-job', 'sweep-prefix']);
    expect(handlersGranted(json, reads('drops/eu/'))).toEqual(['finalize-job', 'prepare-job', 'register-job', 'sweep-prefix']);
    expect(handlersGranted(json, reads('work/'))).toEqual(['collect-results', 'finalize-job', 'submit-chunk']);
    expect(handlersGranted(json, reads('results/'))).toEqual([]);
    expect(handlersGranted(json, writes('work/'))).toEqual(['collect-results', 'prepare-job']);
    expect(handlersGranted(json, writes('results/'))).toEqual(['finalize-job']);
    // No S3 at all for these.
    const anyS3 = (s: PolicyStatement) => actionsOf(s).some((action) => action.startsWith('s3:'));
    expect(handlersGranted(json, anyS3)).toEqual(ALL_HANDLERS.filter((name) => !['fail-job', 'poll-batch', 'record-chunk-failure'].includes(name)));
    // No function gets the whole bucket's objects.
    expect(handlersGranted(json, (s) => JSON.stringify(s.Resource).includes(JSON.stringify({ 'Fn::Join': ['', [bucketArn(), '/*']] })))).toEqual([]);
  });

  it('all but sweep-prefix read and write the table', () => {
    const tableData = (s: PolicyStatement) =>
      actionsOf(s).includes('dynamodb:PutItem') && JSON.stringify(s.Resource).includes(JSON.stringify({ 'Fn::GetAtt': [tableId(), 'Arn'] }));
    expect(handlersGranted(json, tableData)).toEqual(ALL_HANDLERS.filter((name) => name !== 'sweep-prefix'));
  });
});

describe('the inbox trigger', () => {
  it('matches every Object Created event under inbox/ of this bucket', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: {
          bucket: { name: [{ Ref: bucketId() }] },
          object: { key: [{ prefix: 'inbox/' }] },
        },
      },
      State: 'ENABLED',
    });
  });

  it('starts the state machine with the whole event, retrying, then dead-lettering to an encrypted queue', () => {
    const queueId = logicalIds(json, 'AWS::SQS::Queue')[0]!;
    template.hasResourceProperties('AWS::Events::Rule', {
      Targets: [
        {
          Id: 'Target0',
          Arn: { Ref: 'JobStateMachine' },
          RoleArn: Match.anyValue(),
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queueId, 'Arn'] } },
          RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 14_400 },
        },
      ],
    });
    template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Action: 'sqs:SendMessage', Principal: { Service: 'events.amazonaws.com' } }),
        ]),
      },
    });
  });
});

describe('the schedules', () => {
  it('invoke sweep-prefix once per schedule in context, with its name and prefix', () => {
    const sweepArn = { 'Fn::GetAtt': [functionId(json, 'sweep-prefix'), 'Arn'] };
    template.resourceCountIs('AWS::Scheduler::Schedule', 2);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 23 * * ? *)',
      ScheduleExpressionTimezone: 'Etc/UTC',
      Target: Match.objectLike({ Arn: sweepArn, Input: JSON.stringify({ schedule: 'nightly', prefix: 'scheduled/nightly/' }) }),
    });
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 hour)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      Target: Match.objectLike({ Arn: sweepArn, Input: JSON.stringify({ schedule: 'eu-hourly', prefix: 'drops/eu/' }) }),
    });
  });
});

describe('notifications', () => {
  it('the failed-jobs topic is KMS-encrypted and refuses requests without TLS', () => {
    template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':kms:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alias/aws/sns']] },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId() }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
  });
});

describe('the outputs', () => {
  it('name the bucket, inbox, table, state machine, topic and secret', () => {
    expect(json.Outputs).toMatchObject({
      BucketName: { Value: { Ref: bucketId() } },
      InboxUri: { Value: { 'Fn::Join': ['', ['s3://', { Ref: bucketId() }, '/inbox/']] } },
      TableName: { Value: { Ref: tableId() } },
      StateMachineArn: { Value: { Ref: 'JobStateMachine' } },
      TopicArn: { Value: { Ref: topicId() } },
      ApiKeySecretName: { Value: expect.anything() },
    });
    expect(JSON.stringify(json.Outputs?.ApiKeySecretName?.Value)).toContain(`"Ref":"${secretId()}"`);
  });
});

function environmentOf(template: SynthesizedTemplate, logicalId: string): Record<string, unknown> {
  const properties = template.Resources[logicalId]?.Properties as { Environment?: { Variables?: Record<string, unknown> } };
  return properties.Environment?.Variables ?? {};
}
