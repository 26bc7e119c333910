import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { OPS_COMMANDS } from '../../cli/ops';
import { DEFAULT_STACK, StackNotFound, stackTarget } from '../../cli/ops/target';
import { STACK_NAME } from '../../infra/app';
import { LOCAL_CREDENTIALS } from '../../local/emulators';
import { useLocalAws } from '../support/aws';
import { freshTable, memoryIo, putJob } from './support';

/**
 * CloudFormation has no local engine: a loopback stub answers DescribeStacks in the service's
 * query-protocol XML, and the real SDK client talks to it.
 */
interface StackStub {
  endpoint: string;
  /** Stack name → its outputs; a name not here gets CloudFormation's "does not exist" error. */
  stacks: Map<string, Record<string, string>>;
  requests: Array<Record<string, string>>;
  stop(): Promise<void>;
}

async function startStackStub(): Promise<StackStub> {
  const stacks = new Map<string, Record<string, string>>();
  const requests: Array<Record<string, string>> = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
    requests.push(form);
    const name = form.StackName ?? '';
    const outputs = stacks.get(name);
    res.setHeader('content-type', 'text/xml');
    if (!outputs) {
      res.writeHead(400);
      res.end(
        `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code>` +
          `<Message>Stack with id ${name} does not exist</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`,
      );
      return;
    }
    const members = Object.entries(outputs)
      .map(([key, value]) => `<member><OutputKey>${key}</OutputKey><OutputValue>${value}</OutputValue></member>`)
      .join('');
    res.writeHead(200);
    res.end(
      `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member>` +
        `<StackName>${name}</StackName><StackId>arn:aws:cloudformation:eu-west-1:123456789012:stack/${name}/1</StackId>` +
        `<CreationTime>2026-01-01T00:00:00Z</CreationTime><StackStatus>UPDATE_COMPLETE</StackStatus><Outputs>${members}</Outputs>` +
        `</member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></DescribeStacksResponse>`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stacks,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('finding a deployed stack', () => {
  const aws = useLocalAws();
  let stub: StackStub;
  const saved = { ...process.env };
  beforeAll(async () => {
    stub = await startStackStub();
  });
  afterAll(async () => {
    await stub.stop();
  });
  afterEach(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
    stub.stacks.clear();
    stub.requests.length = 0;
  });

  /** The standard chain's environment: region, credentials, and the endpoints of the local engines. */
  function awsEnvironment(): void {
    Object.assign(process.env, aws.env, { AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL_CLOUDFORMATION: stub.endpoint });
  }

  const cloudFormation = () => new CloudFormationClient({ endpoint: stub.endpoint, region: 'eu-west-1', credentials: LOCAL_CREDENTIALS, maxAttempts: 1 });

  it('defaults to the stack name the CDK app deploys', () => {
    expect(DEFAULT_STACK).toBe(STACK_NAME);
  });

  it("takes the bucket and table from the stack's outputs", async () => {
    stub.stacks.set('Prod', { BucketName: 'prod-bucket', TableName: 'prod-table', InboxUri: 's3://prod-bucket/inbox/' });
    const client = cloudFormation();

    const target = await stackTarget('Prod', { cloudFormation: client });
    target.close();
    client.destroy();

    expect(target).toMatchObject({ kind: 'stack', label: 'stack Prod (eu-west-1)', bucket: 'prod-bucket', table: 'prod-table' });
    expect(stub.requests).toEqual([{ Action: 'DescribeStacks', StackName: 'Prod', Version: '2010-05-15' }]);
  });

  it("takes the prefixes from the stack's outputs, the defaults from a stack deployed before they were settings", async () => {
    stub.stacks.set('Shared', {
      BucketName: 'team-data',
      TableName: 'prod-table',
      InboxPrefix: 'ml/batchline/in/',
      WorkPrefix: 'ml/batchline/work/',
      ResultsPrefix: 'ml/out/',
    });
    stub.stacks.set('Older', { BucketName: 'prod-bucket', TableName: 'prod-table' });
    stub.stacks.set('Odd', { BucketName: 'b', TableName: 't', InboxPrefix: 'in/', ResultsPrefix: 'in/out/' });
    const client = cloudFormation();
    try {
      const shared = await stackTarget('Shared', { cloudFormation: client });
      const older = await stackTarget('Older', { cloudFormation: client });
      shared.close();
      older.close();
      expect(shared.prefixes).toEqual({ inbox: 'ml/batchline/in/', work: 'ml/batchline/work/', results: 'ml/out/' });
      expect(older.prefixes).toEqual({ inbox: 'inbox/', work: 'work/', results: 'results/' });
      await expect(stackTarget('Odd', { cloudFormation: client })).rejects.toThrow(
        new StackNotFound(
          `stack Odd's results prefix output "in/out/" is inside the inbox prefix "in/": every object created there starts a job: is it a batchline stack?`,
        ),
      );
    } finally {
      client.destroy();
    }
  });

  it('says a stack that does not exist, or has no batchline outputs, was not found', async () => {
    stub.stacks.set('Other', { SomethingElse: 'x' });
    const client = cloudFormation();
    try {
      await expect(stackTarget('Missing', { cloudFormation: client })).rejects.toThrow(
        new StackNotFound('stack Missing was not found in eu-west-1 (deploy it with "npx cdk deploy", or name yours with --stack / BATCHLINE_STACK)'),
      );
      await expect(stackTarget('Other', { cloudFormation: client })).rejects.toThrow(
        new StackNotFound('stack Other (UPDATE_COMPLETE) has no BucketName and TableName output: is it a batchline stack?'),
      );
    } finally {
      client.destroy();
    }
  });

  it('runs a command against the stack named by --stack, BATCHLINE_STACK or the default, with the standard credential chain', async () => {
    awsEnvironment();
    const own = await freshTable(aws);
    await putJob(own, 'deployed-job');
    for (const name of [DEFAULT_STACK, 'Named', 'FromEnv']) stub.stacks.set(name, { BucketName: own.bucket, TableName: own.table });

    const runJobs = async (args: string[], env: Record<string, string> = {}) => {
      const memory = memoryIo({ env });
      const code = await OPS_COMMANDS.jobs!.run(args, memory.io);
      return { code, out: memory.out(), err: memory.err() };
    };
    const byDefault = await runJobs([]);
    const named = await runJobs(['--stack', 'Named'], { BATCHLINE_STACK: 'FromEnv' });
    const fromEnv = await runJobs([], { BATCHLINE_STACK: 'FromEnv' });

    for (const result of [byDefault, named, fromEnv]) {
      expect(result.err).toBe('');
      expect(result.code).toBe(0);
      expect(result.out.split('\n')[1]).toMatch(/^deployed-job {2}succeeded /);
    }
    expect(stub.requests.map((r) => r.StackName)).toEqual([DEFAULT_STACK, 'Named', 'FromEnv']);
  });

  it('says in one line that a stack is missing, or that credentials or a region are', async () => {
    awsEnvironment();
    const runJobs = async (args: string[]) => {
      const memory = memoryIo();
      const code = await OPS_COMMANDS.jobs!.run(args, memory.io);
      return { code, out: memory.out(), err: memory.err() };
    };
    expect(await runJobs(['--stack', 'Gone'])).toEqual({
      code: 1,
      out: '',
      err: 'batchline jobs: stack Gone was not found in eu-west-1 (deploy it with "npx cdk deploy", or name yours with --stack / BATCHLINE_STACK)\n',
    });

    for (const name of [
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'AWS_SESSION_TOKEN',
      'AWS_PROFILE',
      'AWS_WEB_IDENTITY_TOKEN_FILE',
      'AWS_CONTAINER_CREDENTIALS_FULL_URI',
      'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
    ]) {
      delete process.env[name];
    }
    Object.assign(process.env, {
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
      AWS_CONFIG_FILE: '/nonexistent/config',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    expect(await runJobs([])).toEqual({
      code: 1,
      out: '',
      err: 'batchline jobs: no AWS credentials found: configure them as for the AWS CLI (AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or use --local DIR for a local stack\n',
    });

    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    expect(await runJobs([])).toEqual({
      code: 1,
      out: '',
      err: 'batchline jobs: no AWS region: set AWS_REGION, or a region in your AWS profile; or use --local DIR for a running "batchline serve"\n',
    });
  });
});
