import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
  StateMachineDoesNotExist,
} from '@aws-sdk/client-sfn';
import { AwsShimError, startAwsShim, type AwsShim, type ExecutionDescription } from '../../local/aws-shim';

const MACHINE = 'arn:aws:states:us-east-1:000000000000:stateMachine:Jobs';
const SECRET = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:ApiKey';

/** A backend that keeps executions by name, as Step Functions does. */
function fakeBackend() {
  const executions = new Map<string, ExecutionDescription>();
  return {
    secret: (id: string) => (id === SECRET ? 'sk-test-key' : undefined),
    startExecution(request: { stateMachineArn: string; name?: string; input?: string }): ExecutionDescription {
      if (request.stateMachineArn !== MACHINE) throw new AwsShimError('StateMachineDoesNotExist', 'no such machine');
      const executionArn = `arn:aws:states:us-east-1:000000000000:execution:Jobs:${request.name}`;
      if (executions.has(executionArn)) throw new AwsShimError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
      const execution: ExecutionDescription = {
        executionArn,
        stateMachineArn: MACHINE,
        name: request.name!,
        status: 'RUNNING',
        startDate: new Date('2026-01-02T03:04:05Z'),
        input: request.input ?? '{}',
      };
      executions.set(executionArn, execution);
      return execution;
    },
    describeExecution: (arn: string) => executions.get(arn),
    listExecutions: (arn: string) => (arn === MACHINE ? [...executions.values()] : []),
    async stopExecution(arn: string, reason: { error?: string; cause?: string }): Promise<ExecutionDescription> {
      const execution = executions.get(arn);
      if (!execution) throw new AwsShimError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
      return Object.assign(execution, { status: 'ABORTED', stopDate: new Date('2026-01-02T03:05:00Z'), ...reason });
    },
  };
}

describe('the local AWS shim, through the real SDK clients and their endpoint variables', () => {
  let shim: AwsShim;
  beforeAll(async () => {
    shim = await startAwsShim(fakeBackend());
    Object.assign(process.env, shim.env, { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' });
  });
  afterAll(async () => {
    await shim.stop();
  });

  it('answers GetSecretValue with the secret string, and ResourceNotFoundException for an unknown secret', async () => {
    const client = new SecretsManagerClient({});
    const got = await client.send(new GetSecretValueCommand({ SecretId: SECRET }));
    expect(got.SecretString).toBe('sk-test-key');
    expect(got.ARN).toBe(SECRET);
    await expect(client.send(new GetSecretValueCommand({ SecretId: 'other' }))).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });

  it('records an SNS Publish (query protocol) and answers with its MessageId', async () => {
    const client = new SNSClient({});
    const got = await client.send(
      new PublishCommand({
        TopicArn: 'arn:aws:sns:us-east-1:000000000000:Failures',
        Subject: 'job failed',
        Message: '{"jobId":"j1"}',
        MessageAttributes: { jobId: { DataType: 'String', StringValue: 'j1' } },
      }),
    );
    expect(got.MessageId).toBe(shim.published.at(-1)?.messageId);
    expect(shim.published.at(-1)).toMatchObject({
      topicArn: 'arn:aws:sns:us-east-1:000000000000:Failures',
      subject: 'job failed',
      message: '{"jobId":"j1"}',
      attributes: { jobId: 'j1' },
    });
  });

  it('rejects an SNS Publish without a message with the modeled InvalidParameter error', async () => {
    const client = new SNSClient({});
    await expect(client.send(new PublishCommand({ TopicArn: 'arn:aws:sns:us-east-1:000000000000:Failures', Message: '' }))).rejects.toMatchObject({
      name: 'InvalidParameterException',
    });
  });

  it('records EventBridge PutEvents entries and fails an entry whose Detail is not a JSON object', async () => {
    const client = new EventBridgeClient({});
    const got = await client.send(
      new PutEventsCommand({
        Entries: [
          { Source: 'batchline', DetailType: 'Job Ended', Detail: '{"jobId":"j1","status":"succeeded"}', EventBusName: 'default' },
          { Source: 'batchline', DetailType: 'Job Ended', Detail: 'not json' },
        ],
      }),
    );
    expect(got.FailedEntryCount).toBe(1);
    expect(got.Entries?.[1]?.ErrorCode).toBe('InvalidArgument');
    expect(shim.events.at(-1)).toMatchObject({
      eventId: got.Entries?.[0]?.EventId,
      source: 'batchline',
      detailType: 'Job Ended',
      detail: { jobId: 'j1', status: 'succeeded' },
      eventBusName: 'default',
    });
  });

  it('starts an execution, and a second with the same name is ExecutionAlreadyExists', async () => {
    const client = new SFNClient({});
    const first = await client.send(new StartExecutionCommand({ stateMachineArn: MACHINE, name: 'job-a', input: '{"a":1}' }));
    expect(first.executionArn).toBe('arn:aws:states:us-east-1:000000000000:execution:Jobs:job-a');
    expect(first.startDate).toEqual(new Date('2026-01-02T03:04:05Z'));
    const again = client.send(new StartExecutionCommand({ stateMachineArn: MACHINE, name: 'job-a', input: '{"a":1}' }));
    await expect(again).rejects.toBeInstanceOf(ExecutionAlreadyExists);
    const elsewhere = client.send(new StartExecutionCommand({ stateMachineArn: `${MACHINE}-x`, name: 'job-b' }));
    await expect(elsewhere).rejects.toBeInstanceOf(StateMachineDoesNotExist);
  });

  it('refuses an execution name Step Functions would refuse', async () => {
    const client = new SFNClient({});
    await expect(client.send(new StartExecutionCommand({ stateMachineArn: MACHINE, name: 'has space' }))).rejects.toMatchObject({ name: 'InvalidName' });
    await expect(client.send(new StartExecutionCommand({ stateMachineArn: MACHINE, name: 'x'.repeat(81) }))).rejects.toMatchObject({ name: 'InvalidName' });
  });

  it('describes and lists executions', async () => {
    const client = new SFNClient({});
    await client.send(new StartExecutionCommand({ stateMachineArn: MACHINE, name: 'job-c', input: '{"c":3}' }));
    const described = await client.send(new DescribeExecutionCommand({ executionArn: 'arn:aws:states:us-east-1:000000000000:execution:Jobs:job-c' }));
    expect(described).toMatchObject({ name: 'job-c', status: 'RUNNING', input: '{"c":3}', stateMachineArn: MACHINE });
    const listed = await client.send(new ListExecutionsCommand({ stateMachineArn: MACHINE }));
    expect(listed.executions?.map((e) => e.name).sort()).toEqual(['job-a', 'job-c']);
    await expect(client.send(new DescribeExecutionCommand({ executionArn: `${MACHINE}:nope` }))).rejects.toMatchObject({ name: 'ExecutionDoesNotExist' });
  });

  it('stops an execution with an error and a cause', async () => {
    const client = new SFNClient({});
    const { executionArn } = await client.send(new StartExecutionCommand({ stateMachineArn: MACHINE, name: 'job-d' }));
    const stopped = await client.send(new StopExecutionCommand({ executionArn, error: 'Operator', cause: 'stopped by hand' }));
    expect(stopped.stopDate).toEqual(new Date('2026-01-02T03:05:00Z'));
    expect(await client.send(new DescribeExecutionCommand({ executionArn }))).toMatchObject({ status: 'ABORTED', error: 'Operator', cause: 'stopped by hand' });
  });
});
