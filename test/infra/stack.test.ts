import { Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SynthesizedTemplate } from '../../infra/app';
import {
  actionsOf,
  dataBucketId,
  functionId,
  handlersGranted,
  logicalIds,
  roleOf,
  statementsOfRole,
  synthesize,
  TEST_CONTEXT,
  type PolicyStatement,
} from './fixture';

let template: Template;
let json: SynthesizedTemplate;
beforeAll(() => {
  ({ template, json } = synthesize());
});

const bucketId = () => dataBucketId(json);
const accessLogsId = () => logicalIds(json, 'AWS::S3::Bucket').find((id) => id !== bucketId())!;
const queueId = () => logicalIds(json, 'AWS::SQS::Queue')[0]!;
const tableId = () => logicalIds(json, 'AWS::DynamoDB::Table')[0]!;
const secretId = () => logicalIds(json, 'AWS::SecretsManager::Secret')[0]!;
const topicId = () => logicalIds(json, 'AWS::SNS::Topic')[0]!;
const bucketArn = () => ({ 'Fn::GetAtt': [bucketId(), 'Arn'] });
const objectsUnder = (prefix: string) => ({ 'Fn::Join': ['', [bucketArn(), `/${prefix}*`]] });
const fnArn = (name: string) => ({ 'Fn::GetAtt': [functionId(json, name), 'Arn'] });
const jobExecutions = (suffix: string) => ({
  'Fn::Join': [
    '',
    [
      'arn:',
      { Ref: 'AWS::Partition' },
      ':states:',
      { Ref: 'AWS::Region' },
      ':',
      { Ref: 'AWS::AccountId' },
      ':execution:',
      { 'Fn::Select': [6, { 'Fn::Split': [':', { Ref: 'JobStateMachine' }] }] },
      suffix,
    ],
  ],
});
/** What a role EventBridge Scheduler assumes trusts: the scheduler, for this account's default group. */
const SCHEDULER_TRUST = {
  Statement: [
    {
      Action: 'sts:AssumeRole',
      Effect: 'Allow',
      Principal: { Service: 'scheduler.amazonaws.com' },
      Condition: {
        StringEquals: {
          'aws:SourceAccount': { Ref: 'AWS::AccountId' },
          'aws:SourceArn': {
            'Fn::Join': [
              '',
              ['arn:', { Ref: 'AWS::Partition' }, ':scheduler:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':schedule-group/default'],
            ],
          },
        },
      },
    },
  ],
  Version: '2012-10-17',
};

const ALL_HANDLERS = [
  'await-batch',
  'collect-results',
  'execution-ended',
  'finalize-chunk',
  'finalize-job',
  'mark-job-failed',
  'poll-batch',
  'poll-batches',
  'prepare-job',
  'reconcile-jobs',
  'record-chunk-failure',
  'register-job',
  'submit-chunk',
  'sweep-prefix',
];
const API_CALLERS = [
  'collect-results',
  'execution-ended',
  'mark-job-failed',
  'poll-batch',
  'poll-batches',
  'reconcile-jobs',
  'record-chunk-failure',
  'submit-chunk',
];
const NOTIFIERS = ['execution-ended', 'finalize-job', 'mark-job-failed', 'reconcile-jobs'];

describe('the bucket', () => {
  it('is private, S3-encrypted, versioned, retained, access-logged and sends its events to EventBridge', () => {
    template.resourceCountIs('AWS::S3::Bucket', 2);
    expect(json.Resources[bucketId()]).toMatchObject({
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        VersioningConfiguration: { Status: 'Enabled' },
        LoggingConfiguration: { DestinationBucketName: { Ref: accessLogsId() }, LogFilePrefix: 'data-bucket/' },
      },
    });
  });

  it("turns EventBridge notifications on itself, with no custom resource or function of CDK's to do it", () => {
    expect(json.Resources[bucketId()]?.Properties?.NotificationConfiguration).toEqual({ EventBridgeConfiguration: { EventBridgeEnabled: true } });
    expect(Object.values(json.Resources).filter((resource) => resource.Type.startsWith('Custom::'))).toEqual([]);
    // Every function is a handler of functions/.
    expect(logicalIds(json, 'AWS::Lambda::Function').filter((id) => json.Resources[id]?.Metadata?.['batchline:handler'] === undefined)).toEqual([]);
  });

  it('expires work/ after the configured days, old input versions with it, other old versions after 7, stale uploads after 2', () => {
    expect(json.Resources[bucketId()]?.Properties).toMatchObject({
      LifecycleConfiguration: {
        Rules: [
          { Id: 'expire-work-files', Prefix: 'work/', ExpirationInDays: 14, Status: 'Enabled' },
          {
            // Attempt 1 of a chunk is read from the input version the job was made from, for as long as the job's work files live.
            Id: 'tidy-versions-and-uploads',
            NoncurrentVersionExpiration: { NoncurrentDays: 14 },
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 },
            ExpiredObjectDeleteMarker: true,
            Status: 'Enabled',
          },
          { Id: 'tidy-work-versions', Prefix: 'work/', NoncurrentVersionExpiration: { NoncurrentDays: 7 }, Status: 'Enabled' },
          { Id: 'tidy-results-versions', Prefix: 'results/', NoncurrentVersionExpiration: { NoncurrentDays: 7 }, Status: 'Enabled' },
        ],
      },
    });
  });

  it('logs access into a private, encrypted, versioned, retained bucket of its own that keeps logs 90 days and takes them from the data bucket only', () => {
    expect(json.Resources[accessLogsId()]).toMatchObject({
      DeletionPolicy: 'Retain',
      Properties: {
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
        // A log deleted or overwritten before its time can be read for 7 more days.
        VersioningConfiguration: { Status: 'Enabled' },
        LifecycleConfiguration: {
          Rules: [
            { Id: 'expire-access-logs', ExpirationInDays: 90, Status: 'Enabled' },
            { Id: 'tidy-versions', NoncurrentVersionExpiration: { NoncurrentDays: 7 }, ExpiredObjectDeleteMarker: true, Status: 'Enabled' },
          ],
        },
      },
    });
    expect(json.Resources[accessLogsId()]?.Properties?.AccessControl).toBeUndefined();
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: accessLogsId() },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          {
            Effect: 'Allow',
            Principal: { Service: 'logging.s3.amazonaws.com' },
            Action: 's3:PutObject',
            Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [accessLogsId(), 'Arn'] }, '/data-bucket/*']] },
            Condition: {
              ArnLike: { 'aws:SourceArn': { 'Fn::GetAtt': [bucketId(), 'Arn'] } },
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            },
          },
        ]),
      },
    });
    // No function reads or writes the logs.
    const logsArn = JSON.stringify({ 'Fn::GetAtt': [accessLogsId(), 'Arn'] });
    expect(handlersGranted(json, (s) => JSON.stringify(s.Resource).includes(logsArn))).toEqual([]);
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
      actionsOf(statement).includes('secretsmanager:GetSecretValue') && JSON.stringify(statement.Resource) === JSON.stringify({ Ref: secretId() });
    expect(handlersGranted(json, readsSecret)).toEqual(API_CALLERS);

    const policiesNamingSecret = logicalIds(json, 'AWS::IAM::Policy').filter((id) => JSON.stringify(json.Resources[id]).includes(`"Ref":"${secretId()}"`));
    expect(policiesNamingSecret).toHaveLength(API_CALLERS.length);
  });

  it("reaches those functions only as the secret's ARN in BATCHLINE_API_KEY_SECRET", () => {
    const withSecretEnv = logicalIds(json, 'AWS::Lambda::Function')
      .filter((id) => environmentOf(json, id).BATCHLINE_API_KEY_SECRET !== undefined)
      .map((id) => json.Resources[id]?.Metadata?.['batchline:handler'])
      .sort();
    expect(withSecretEnv).toEqual(API_CALLERS);
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
    'finalize-chunk': { MemorySize: 2048, Timeout: 900, EphemeralStorage: { Size: 4096 } },
    'finalize-job': { MemorySize: 2048, Timeout: 900, EphemeralStorage: { Size: 4096 } },
    'record-chunk-failure': { MemorySize: 1024, Timeout: 900 },
    'mark-job-failed': { MemorySize: 512, Timeout: 300 },
    'sweep-prefix': { MemorySize: 512, Timeout: 300 },
    'reconcile-jobs': { MemorySize: 2048, Timeout: 900, EphemeralStorage: { Size: 4096 } },
    'execution-ended': { MemorySize: 512, Timeout: 300 },
    'await-batch': { MemorySize: 256, Timeout: 30 },
    'poll-batches': { MemorySize: 128, Timeout: 50 },
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

  it("each log to a log group of their own kept for a month, under CloudWatch Logs' own encryption", () => {
    const groups = ALL_HANDLERS.map(
      (name) => (json.Resources[functionId(json, name)]?.Properties as { LoggingConfig: { LogGroup: { Ref: string } } }).LoggingConfig.LogGroup.Ref,
    );
    expect(new Set(groups).size).toBe(ALL_HANDLERS.length);
    for (const group of groups) expect(json.Resources[group]).toMatchObject({ Type: 'AWS::Logs::LogGroup', Properties: { RetentionInDays: 30 } });
    for (const group of logicalIds(json, 'AWS::Logs::LogGroup')) expect(json.Resources[group]?.Properties?.KmsKeyId).toBeUndefined();
  });

  it("depend on their role's policy, not again on the role their Role property already names (cfn-lint W3005)", () => {
    for (const name of ALL_HANDLERS) {
      const fn = functionId(json, name);
      const policy = logicalIds(json, 'AWS::IAM::Policy').filter((id) =>
        ((json.Resources[id]?.Properties as { Roles?: Array<{ Ref: string }> }).Roles ?? []).some((role) => role.Ref === roleOf(json, fn)),
      );
      expect((json.Resources[fn] as { DependsOn?: unknown }).DependsOn, name).toEqual(policy);
    }
  });

  it('each run as a role of their own, with no managed policy, that may write logs to their own group only', () => {
    const roles = ALL_HANDLERS.map((name) => roleOf(json, functionId(json, name)));
    expect(new Set(roles).size).toBe(ALL_HANDLERS.length);
    for (const name of ALL_HANDLERS) {
      const fn = functionId(json, name);
      const role = json.Resources[roleOf(json, fn)];
      expect(role?.Properties).toEqual({
        AssumeRolePolicyDocument: {
          Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } }],
          Version: '2012-10-17',
        },
        Description: `batchline ${name}`,
      });
      const group = (json.Resources[fn]?.Properties as { LoggingConfig: { LogGroup: { Ref: string } } }).LoggingConfig.LogGroup.Ref;
      const logStatements = statementsOfRole(json, roleOf(json, fn)).filter((s) => actionsOf(s).some((action) => action.startsWith('logs:')));
      expect(logStatements).toEqual([{ Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: { 'Fn::GetAtt': [group, 'Arn'] } }]);
    }
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
      if (API_CALLERS.includes(name)) expect(env).toMatchObject(apiEnv);
      else expect(Object.keys(env).filter((key) => key.startsWith('ANTHROPIC_') || key.startsWith('BATCHLINE_API_'))).toEqual([]);
    }
  });

  it('finalize-job, mark-job-failed, execution-ended and reconcile-jobs get the topic and the event bus, and may publish to them', () => {
    const notifying = ALL_HANDLERS.filter((name) => environmentOf(json, functionId(json, name)).BATCHLINE_TOPIC_ARN !== undefined);
    expect(notifying).toEqual(NOTIFIERS);
    for (const name of notifying) {
      expect(environmentOf(json, functionId(json, name))).toMatchObject({
        BATCHLINE_TOPIC_ARN: { Ref: topicId() },
        BATCHLINE_EVENT_BUS: 'default',
      });
    }
    expect(handlersGranted(json, (s) => actionsOf(s).includes('sns:Publish'))).toEqual(NOTIFIERS);
    expect(handlersGranted(json, (s) => actionsOf(s).includes('events:PutEvents'))).toEqual(NOTIFIERS);
    // The topic is encrypted with a key of the stack's: publishing needs its data keys.
    const topicKey = JSON.stringify({ 'Fn::GetAtt': [logicalIds(json, 'AWS::KMS::Key')[0]!, 'Arn'] });
    const usesTopicKey = (s: PolicyStatement) => actionsOf(s).includes('kms:GenerateDataKey*') && JSON.stringify(s.Resource) === topicKey;
    expect(handlersGranted(json, usesTopicKey)).toEqual(NOTIFIERS);
  });

  it('sweep-prefix and reconcile-jobs know the state machine; sweep-prefix alone may start executions, reconcile-jobs alone describe them', () => {
    const knowing = ALL_HANDLERS.filter((name) => environmentOf(json, functionId(json, name)).BATCHLINE_STATE_MACHINE_ARN !== undefined);
    expect(knowing).toEqual(['reconcile-jobs', 'sweep-prefix']);
    for (const name of knowing) expect(environmentOf(json, functionId(json, name)).BATCHLINE_STATE_MACHINE_ARN).toEqual({ Ref: 'JobStateMachine' });
    expect(handlersGranted(json, (s) => actionsOf(s).includes('states:StartExecution'))).toEqual(['sweep-prefix']);

    const describes = (s: PolicyStatement) => actionsOf(s).includes('states:DescribeExecution');
    expect(handlersGranted(json, describes)).toEqual(['reconcile-jobs']);
    const statement = statementsOfRole(json, roleOf(json, functionId(json, 'reconcile-jobs'))).find(describes);
    expect(statement).toEqual({ Effect: 'Allow', Action: 'states:DescribeExecution', Resource: jobExecutions(':*') });
  });

  it('reach only their own parts of the bucket', () => {
    const reads = (prefix: string) => (s: PolicyStatement) =>
      actionsOf(s).includes('s3:GetObject*') && JSON.stringify(s.Resource).includes(JSON.stringify(objectsUnder(prefix)));
    const writes = (prefix: string) => (s: PolicyStatement) =>
      actionsOf(s).includes('s3:PutObject') && JSON.stringify(s.Resource) === JSON.stringify(objectsUnder(prefix));

    // Register and Prepare read the input, Submit and Collect attempt 1's byte range of it (chunk-files.ts);
    // Finalize (and the reconciler's re-finalize) read only what Prepare kept in work/.
    const inputReaders = ['collect-results', 'prepare-job', 'register-job', 'submit-chunk'];
    expect(handlersGranted(json, reads('inbox/'))).toEqual(inputReaders);
    expect(handlersGranted(json, reads('scheduled/nightly/'))).toEqual(inputReaders);
    expect(handlersGranted(json, reads('drops/eu/'))).toEqual(inputReaders);
    // Prepare: its checkpoints, the earlier invocations' custom_ids and report pieces (a file read across invocations).
    expect(handlersGranted(json, reads('work/'))).toEqual([
      'collect-results',
      'finalize-chunk',
      'finalize-job',
      'prepare-job',
      'reconcile-jobs',
      'submit-chunk',
    ]);
    // results/: a job that reuses another's rows reads that job's results.jsonl (Prepare, and Finalize's merge).
    expect(handlersGranted(json, reads('results/'))).toEqual(['finalize-job', 'prepare-job', 'reconcile-jobs']);
    // finalize-job writes work/ only for a chunk it orders itself (its FinalizeChunk failed).
    expect(handlersGranted(json, writes('work/'))).toEqual(['collect-results', 'finalize-chunk', 'finalize-job', 'prepare-job', 'reconcile-jobs']);
    // Collect deletes its segments and checkpoint once an attempt is collected (it or the reconciler's Collect); nothing else deletes objects.
    const deletes = (prefix: string) => (s: PolicyStatement) =>
      actionsOf(s).includes('s3:DeleteObject') && JSON.stringify(s.Resource) === JSON.stringify(objectsUnder(prefix));
    expect(handlersGranted(json, deletes('work/'))).toEqual(['collect-results', 'reconcile-jobs']);
    expect(handlersGranted(json, (s) => actionsOf(s).some((action) => action.startsWith('s3:Delete')))).toEqual(['collect-results', 'reconcile-jobs']);
    expect(handlersGranted(json, writes('results/'))).toEqual(['finalize-job', 'reconcile-jobs']);
    // No S3 at all for these.
    const anyS3 = (s: PolicyStatement) => actionsOf(s).some((action) => action.startsWith('s3:'));
    expect(handlersGranted(json, anyS3)).toEqual(
      ALL_HANDLERS.filter(
        (name) => !['await-batch', 'execution-ended', 'mark-job-failed', 'poll-batch', 'poll-batches', 'record-chunk-failure'].includes(name),
      ),
    );
    // No function gets the whole bucket's objects.
    expect(handlersGranted(json, (s) => JSON.stringify(s.Resource).includes(JSON.stringify({ 'Fn::Join': ['', [bucketArn(), '/*']] })))).toEqual([]);
  });

  it('list the bucket only as they need: sweep-prefix its scheduled prefixes, readers the bucket so a missing key is a 404', () => {
    const lists = (s: PolicyStatement) => actionsOf(s).some((action) => action.startsWith('s3:List'));
    expect(handlersGranted(json, (s) => actionsOf(s).some((action) => action === 's3:List*' || action === 's3:GetBucket*'))).toEqual([]);
    expect(statementsOfRole(json, roleOf(json, functionId(json, 'sweep-prefix'))).filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')))).toEqual([
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: bucketArn(),
        Condition: { StringLike: { 's3:prefix': ['scheduled/nightly/*', 'drops/eu/*'] } },
      },
    ]);
    // S3 answers 403 instead of 404 for a missing key without s3:ListBucket, and Register, Prepare,
    // Finalize and Reconcile branch on "not found".
    const objectReaders = handlersGranted(json, (s) => actionsOf(s).includes('s3:GetObject*'));
    expect(objectReaders).toEqual(['collect-results', 'finalize-chunk', 'finalize-job', 'prepare-job', 'reconcile-jobs', 'register-job', 'submit-chunk']);
    for (const name of objectReaders) {
      expect(statementsOfRole(json, roleOf(json, functionId(json, name))).filter(lists), name).toEqual([
        { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn() },
      ]);
    }
  });

  it('all but sweep-prefix read and write the table, with the calls the core makes; only prepare-job deletes', () => {
    const tableArns = [{ 'Fn::GetAtt': [tableId(), 'Arn'] }, { 'Fn::Join': ['', [{ 'Fn::GetAtt': [tableId(), 'Arn'] }, '/index/*']] }];
    const onTable = (s: PolicyStatement) => JSON.stringify(s.Resource).includes(JSON.stringify(tableArns[0]));
    expect(handlersGranted(json, onTable)).toEqual(ALL_HANDLERS.filter((name) => name !== 'sweep-prefix'));
    const readWrite = ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:BatchWriteItem'];
    for (const name of ALL_HANDLERS.filter((handler) => handler !== 'sweep-prefix')) {
      expect(statementsOfRole(json, roleOf(json, functionId(json, name))).filter(onTable), name).toEqual([
        { Effect: 'Allow', Action: ['prepare-job', 'poll-batches'].includes(name) ? [...readWrite, 'dynamodb:DeleteItem'] : readWrite, Resource: tableArns },
      ]);
    }
    // Nothing calls Scan, BatchGetItem, DescribeTable or the table's stream.
    const unused = [
      'dynamodb:Scan',
      'dynamodb:BatchGetItem',
      'dynamodb:GetRecords',
      'dynamodb:GetShardIterator',
      'dynamodb:DescribeStream',
      'dynamodb:DescribeTable',
      'dynamodb:ConditionCheckItem',
    ];
    expect(handlersGranted(json, (s) => actionsOf(s).some((action) => unused.includes(action)))).toEqual([]);
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
    template.resourceCountIs('AWS::SQS::Queue', 1);
    template.hasResourceProperties('AWS::Events::Rule', {
      Targets: [
        {
          Id: 'Target0',
          Arn: { Ref: 'JobStateMachine' },
          RoleArn: Match.anyValue(),
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queueId(), 'Arn'] } },
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
    const sweepArn = fnArn('sweep-prefix');
    const sweeps = logicalIds(json, 'AWS::Scheduler::Schedule').filter(
      (id) => JSON.stringify((json.Resources[id]?.Properties as { Target: { Arn: unknown } }).Target.Arn) === JSON.stringify(sweepArn),
    );
    expect(sweeps).toHaveLength(2);
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

  it("invoke it as a role that trusts this account's scheduler and may invoke sweep-prefix and dead-letter, nothing more", () => {
    const [first, second] = logicalIds(json, 'AWS::Scheduler::Schedule')
      .filter((id) => JSON.stringify(json.Resources[id]).includes(functionId(json, 'sweep-prefix')))
      .map((id) => (json.Resources[id]?.Properties as { Target: { RoleArn: { 'Fn::GetAtt': [string, string] } } }).Target.RoleArn['Fn::GetAtt'][0]);
    expect(first).toBe(second);
    expect(json.Resources[first!]?.Properties).toEqual({ AssumeRolePolicyDocument: SCHEDULER_TRUST });
    expect(statementsOfRole(json, first!)).toEqual([
      // The function itself, unqualified, as the schedules call it: no `:*` for versions and aliases.
      { Action: 'lambda:InvokeFunction', Effect: 'Allow', Resource: fnArn('sweep-prefix') },
      { Action: 'sqs:SendMessage', Effect: 'Allow', Resource: { 'Fn::GetAtt': [queueId(), 'Arn'] } },
    ]);
  });
});

describe('upkeep', () => {
  it('hands every failed, timed-out or aborted execution of the job state machine to execution-ended, retrying, then dead-lettering', () => {
    const rule = logicalIds(json, 'AWS::Events::Rule').find((id) => JSON.stringify(json.Resources[id]).includes('aws.states'))!;
    expect(json.Resources[rule]?.Properties).toMatchObject({
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['FAILED', 'TIMED_OUT', 'ABORTED'], stateMachineArn: [{ Ref: 'JobStateMachine' }] },
      },
      State: 'ENABLED',
      Targets: [
        {
          Id: 'Target0',
          Arn: fnArn('execution-ended'),
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queueId(), 'Arn'] } },
          RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 14_400 },
        },
      ],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: fnArn('execution-ended'),
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [rule, 'Arn'] },
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: 'sqs:SendMessage',
            Principal: { Service: 'events.amazonaws.com' },
            Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [rule, 'Arn'] } } },
          }),
        ]),
      },
    });
  });

  it('runs reconcile-jobs once a day, as a role that may invoke it and dead-letter only', () => {
    const [schedule, ...others] = logicalIds(json, 'AWS::Scheduler::Schedule').filter((id) =>
      JSON.stringify(json.Resources[id]).includes(functionId(json, 'reconcile-jobs')),
    );
    expect(others).toEqual([]);
    const properties = json.Resources[schedule!]?.Properties as { Target: { RoleArn: { 'Fn::GetAtt': [string, string] } } };
    expect(properties).toMatchObject({
      ScheduleExpression: 'rate(1 day)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: {
        Arn: fnArn('reconcile-jobs'),
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [queueId(), 'Arn'] } },
        RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 14_400 },
      },
    });
    const role = properties.Target.RoleArn['Fn::GetAtt'][0];
    expect(json.Resources[role]?.Properties).toEqual({ AssumeRolePolicyDocument: SCHEDULER_TRUST });
    expect(statementsOfRole(json, role)).toEqual([
      { Action: 'lambda:InvokeFunction', Effect: 'Allow', Resource: fnArn('reconcile-jobs') },
      { Action: 'sqs:SendMessage', Effect: 'Allow', Resource: { 'Fn::GetAtt': [queueId(), 'Arn'] } },
    ]);
  });

  it('sends invocations of the asynchronously invoked functions that still fail after two retries to the dead-letter queue', () => {
    const configs = logicalIds(json, 'AWS::Lambda::EventInvokeConfig').map((id) => json.Resources[id]?.Properties as { FunctionName: { Ref: string } });
    // The poller's ticks are dropped, not retried (see 'the poller').
    const byHandler = Object.fromEntries(
      configs
        .map((config) => [json.Resources[config.FunctionName.Ref]?.Metadata?.['batchline:handler'], config] as const)
        .filter(([handler]) => handler !== 'poll-batches'),
    );
    expect(Object.keys(byHandler).sort()).toEqual(['execution-ended', 'reconcile-jobs', 'sweep-prefix']);
    for (const config of Object.values(byHandler)) {
      expect(config).toMatchObject({
        Qualifier: '$LATEST',
        MaximumRetryAttempts: 2,
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId(), 'Arn'] } } },
      });
    }
    const sends = (s: PolicyStatement) => actionsOf(s).includes('sqs:SendMessage');
    expect(handlersGranted(json, sends)).toEqual(['execution-ended', 'reconcile-jobs', 'sweep-prefix']);
  });
});

describe('notifications', () => {
  const keyId = () => logicalIds(json, 'AWS::KMS::Key')[0]!;

  it('the topic key lets only AWS services create grants on it, for their own resources (Control Tower CT.KMS.PR.3)', () => {
    expect((json.Resources[keyId()]?.Properties as { KeyPolicy: { Statement: unknown[] } }).KeyPolicy.Statement).toContainEqual(DENY_GRANTS);
  });

  it('the topic is encrypted with a rotated key of its own and refuses requests without TLS', () => {
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [keyId(), 'Arn'] } });
    expect(json.Resources[keyId()]?.Properties).toMatchObject({ EnableKeyRotation: true });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId() }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
  });

  it("lets CloudWatch alarms of this account publish: the topic's policy allows them and the key's lets them encrypt", () => {
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId() }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Sid: 'AllowCloudWatchAlarmsOfThisAccount',
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Resource: { Ref: topicId() },
            Condition: {
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
              ArnLike: {
                'aws:SourceArn': {
                  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alarm:*']],
                },
              },
            },
          },
        ]),
      },
    });
    expect((json.Resources[keyId()]?.Properties as { KeyPolicy: { Statement: unknown[] } }).KeyPolicy.Statement).toContainEqual({
      Sid: 'AllowCloudWatchAlarmsToPublish',
      Effect: 'Allow',
      Principal: { Service: 'cloudwatch.amazonaws.com' },
      Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      Resource: '*',
      Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
    });
  });
});

/** What every KMS key of the stack's carries (infra/encryption.ts). */
const DENY_GRANTS = {
  Sid: 'DenyGrantsExceptForAwsResources',
  Effect: 'Deny',
  Principal: { AWS: '*' },
  Action: 'kms:CreateGrant',
  Resource: '*',
  Condition: { BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' } },
};

describe('the encryptionKey and logRetentionDays settings', () => {
  const withSettings = (settings: Record<string, unknown>) => synthesize({ ...TEST_CONTEXT, 'batchline:settings': settings }).json;
  const logGroups = (t: SynthesizedTemplate) => logicalIds(t, 'AWS::Logs::LogGroup').map((id) => t.Resources[id]?.Properties);
  const encryptionOf = (t: SynthesizedTemplate, id: string) =>
    (t.Resources[id]?.Properties as { BucketEncryption: { ServerSideEncryptionConfiguration: unknown[] } }).BucketEncryption.ServerSideEncryptionConfiguration;

  it('"stack": a rotated key of the stack\'s, kept with the data, encrypts the bucket (with Bucket Keys), the table and every log group', () => {
    const t = withSettings({ encryptionKey: 'stack', logRetentionDays: 365 });
    const [key, ...others] = logicalIds(t, 'AWS::KMS::Key').filter((id) => id.startsWith('DataKey'));
    expect(others).toEqual([]);
    const keyArn = { 'Fn::GetAtt': [key, 'Arn'] };
    expect(t.Resources[key!]).toMatchObject({ DeletionPolicy: 'Retain', Properties: { EnableKeyRotation: true } });
    const statements = (t.Resources[key!]?.Properties as { KeyPolicy: { Statement: unknown[] } }).KeyPolicy.Statement;
    expect(statements).toContainEqual(DENY_GRANTS);
    expect(statements).toContainEqual({
      Sid: 'AllowCloudWatchLogsOfThisAccount',
      Effect: 'Allow',
      Principal: { Service: { 'Fn::Join': ['', ['logs.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } },
      Action: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      Resource: '*',
      Condition: {
        ArnLike: {
          'kms:EncryptionContext:aws:logs:arn': {
            'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':logs:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':log-group:*']],
          },
        },
      },
    });
    const bucket = dataBucketId(t);
    expect(encryptionOf(t, bucket)).toEqual([{ BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: keyArn } }]);
    // S3 writes the access logs itself; they stay under SSE-S3.
    const accessLogs = logicalIds(t, 'AWS::S3::Bucket').find((id) => id !== bucket)!;
    expect(encryptionOf(t, accessLogs)).toEqual([{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }]);
    const table = logicalIds(t, 'AWS::DynamoDB::Table')[0]!;
    expect(t.Resources[table]?.Properties?.SSESpecification).toEqual({ SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: keyArn });
    // Every function's group and the state machine's.
    expect(logGroups(t)).toHaveLength(ALL_HANDLERS.length + 1);
    for (const group of logGroups(t)) expect(group).toMatchObject({ KmsKeyId: keyArn, RetentionInDays: 365 });
    // Functions that use the table may use its key; sweep-prefix, which does not, may not.
    const usesKey = (s: PolicyStatement) => JSON.stringify(s.Resource) === JSON.stringify(keyArn) && actionsOf(s).includes('kms:GenerateDataKey*');
    expect(handlersGranted(t, usesKey)).toEqual(ALL_HANDLERS.filter((name) => name !== 'sweep-prefix'));
  });

  it("a key ARN: that key, and no key of the stack's", () => {
    const arn = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const t = withSettings({ encryptionKey: arn });
    expect(logicalIds(t, 'AWS::KMS::Key').filter((id) => id.startsWith('DataKey'))).toEqual([]);
    expect(encryptionOf(t, dataBucketId(t))).toEqual([
      { BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: arn } },
    ]);
    for (const group of logGroups(t)) expect(group).toMatchObject({ KmsKeyId: arn, RetentionInDays: 30 });
  });

  it("unset: no data key, SSE-S3, DynamoDB's own key, and the retention asked for on every log group", () => {
    const t = withSettings({ logRetentionDays: 90 });
    expect(logicalIds(t, 'AWS::KMS::Key')).toHaveLength(1);
    expect(encryptionOf(t, dataBucketId(t))).toEqual([{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }]);
    expect(t.Resources[logicalIds(t, 'AWS::DynamoDB::Table')[0]!]?.Properties?.SSESpecification).toBeUndefined();
    for (const group of logGroups(t)) expect(group).toMatchObject({ RetentionInDays: 90 });
  });
});

describe('the template', () => {
  it('has no DependsOn that a Ref or Fn::GetAtt in the same resource already implies (cfn-lint W3005)', () => {
    const redundant = Object.entries(json.Resources).flatMap(([id, resource]) => {
      const dependsOn = (resource as { DependsOn?: string | string[] }).DependsOn ?? [];
      const properties = JSON.stringify(resource.Properties ?? {});
      return [dependsOn]
        .flat()
        .filter((target) => properties.includes(`{"Ref":"${target}"}`) || properties.includes(`{"Fn::GetAtt":["${target}",`))
        .map((target) => `${id} -> ${target}`);
    });
    expect(redundant).toEqual([]);
    // Still ordered after its role's policy: the first run must not miss a permission.
    expect((json.Resources.JobStateMachine as { DependsOn?: unknown }).DependsOn).toEqual([
      logicalIds(json, 'AWS::IAM::Policy').find((id) => id.startsWith('WorkflowStateMachineRoleDefaultPolicy')),
    ]);
  });
});

describe('the outputs', () => {
  it('name the bucket, inbox, prefixes, table, state machine, topic, secret and dashboard', () => {
    expect(json.Outputs).toMatchObject({
      BucketName: { Value: { Ref: bucketId() } },
      InboxUri: { Value: { 'Fn::Join': ['', ['s3://', { Ref: bucketId() }, '/inbox/']] } },
      // The CLI finds a job's files by these (cli/ops/target.ts).
      InboxPrefix: { Value: 'inbox/' },
      WorkPrefix: { Value: 'work/' },
      ResultsPrefix: { Value: 'results/' },
      TableName: { Value: { Ref: tableId() } },
      StateMachineArn: { Value: { Ref: 'JobStateMachine' } },
      TopicArn: { Value: { Ref: topicId() } },
      ApiKeySecretName: { Value: expect.anything() },
      DashboardName: { Value: { Ref: logicalIds(json, 'AWS::CloudWatch::Dashboard')[0] } },
    });
    expect(JSON.stringify(json.Outputs?.ApiKeySecretName?.Value)).toContain(`"Ref":"${secretId()}"`);
  });

  it('name the prefixes of cdk.json, and the inbox under its own', () => {
    const custom = synthesize({ 'batchline:settings': { rootPrefix: 'teams/ml/' } }).json;
    const bucket = logicalIds(custom, 'AWS::S3::Bucket').find((id) => !id.includes('AccessLogs'));
    expect(custom.Outputs).toMatchObject({
      InboxUri: { Value: { 'Fn::Join': ['', ['s3://', { Ref: bucket }, '/teams/ml/inbox/']] } },
      InboxPrefix: { Value: 'teams/ml/inbox/' },
      WorkPrefix: { Value: 'teams/ml/work/' },
      ResultsPrefix: { Value: 'teams/ml/results/' },
    });
  });
});

function environmentOf(template: SynthesizedTemplate, logicalId: string): Record<string, unknown> {
  const properties = template.Resources[logicalId]?.Properties as { Environment?: { Variables?: Record<string, unknown> } };
  return properties.Environment?.Variables ?? {};
}
