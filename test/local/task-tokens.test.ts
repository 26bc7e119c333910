import './../../local/polyfills';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SendTaskFailureCommand, SendTaskHeartbeatCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { findUnsupported, localizeCallbacks, type AslDefinition } from '../../local/asl';
import { startAwsShim, type AwsShim } from '../../local/aws-shim';
import { LocalTaskTokens, TOKEN_PLACEHOLDER } from '../../local/task-tokens';

/**
 * A callback Task (`lambda:invoke.waitForTaskToken`) on the real local engine, through the per-state
 * override of local/task-tokens.ts, settled with the real SFN client through the local AWS shim.
 * Timeouts are simulated seconds at time scale 1000 (900 s → 0.9 s).
 */
const definition: AslDefinition = {
  StartAt: 'Await',
  States: {
    Await: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
      Parameters: { FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:arm', Payload: { 'id.$': '$.id', 'taskToken.$': '$$.Task.Token' } },
      HeartbeatSeconds: 900,
      TimeoutSeconds: 5_000,
      ResultPath: '$.wake',
      Catch: [
        { ErrorEquals: ['States.HeartbeatTimeout', 'States.Timeout'], ResultPath: '$.timedOut', Next: 'TimedOut' },
        { ErrorEquals: ['Refused'], ResultPath: '$.refused', Next: 'Refused' },
      ],
      End: true,
    },
    TimedOut: { Type: 'Pass', End: true },
    Refused: { Type: 'Pass', End: true },
  },
};

describe('local task tokens', () => {
  const tokens = new LocalTaskTokens(1000);
  const { definition: local, callbacks } = localizeCallbacks(definition);
  const machine = new StateMachine(local as unknown as StateMachineDefinition);
  let shim: AwsShim;
  let sfn: SFNClient;
  beforeAll(async () => {
    shim = await startAwsShim({
      secret: () => undefined,
      startExecution: () => {
        throw new Error('unused');
      },
      describeExecution: () => undefined,
      listExecutions: () => [],
      taskTokens: tokens,
    });
    sfn = new SFNClient({ endpoint: shim.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'l', secretAccessKey: 'l' }, maxAttempts: 1 });
  });
  afterAll(async () => {
    sfn?.destroy();
    await shim?.stop();
  });

  /** Starts an execution whose arm hands its token out; `arm` may throw to fail the task. */
  function start(arm: (payload: { id: string; taskToken: string }) => Promise<void> = async () => undefined) {
    const controller = new AbortController();
    let resolveToken!: (token: string) => void;
    const token = new Promise<string>((resolve) => (resolveToken = resolve));
    const run = machine.run(
      { id: 'a' },
      {
        overrides: {
          taskResourceLocalHandlers: {
            Await: (input: unknown) =>
              tokens.run(
                'Await',
                callbacks.get('Await')!,
                input,
                async (payload) => {
                  resolveToken((payload as { taskToken: string }).taskToken);
                  await arm(payload as { id: string; taskToken: string });
                },
                controller.signal,
              ),
          } as never,
        },
        context: { Task: { Token: TOKEN_PLACEHOLDER } } as never,
      },
    );
    return {
      result: run.result,
      token,
      abort: () => {
        controller.abort();
        run.abort();
      },
    };
  }
  const code = (promise: Promise<unknown>) =>
    promise.then(
      () => 'ok',
      (error: Error) => error.name,
    );

  it("lifts the callback's timeouts out of the engine, and refuses a callback task without the token or with *Path timeouts", () => {
    expect(callbacks.get('Await')).toEqual({ HeartbeatSeconds: 900, TimeoutSeconds: 5_000 });
    expect(local.States.Await).toMatchObject({ TimeoutSeconds: 2_000_000 });
    expect(local.States.Await!.HeartbeatSeconds).toBeUndefined();
    const broken = structuredClone(definition);
    Object.assign(broken.States.Await!, {
      Parameters: { FunctionName: 'arm', Payload: {} },
      HeartbeatSecondsPath: '$.h',
      Catch: [{ ErrorEquals: ['States.Timeout'], Next: 'TimedOut' }],
    });
    expect(findUnsupported(broken, () => true)).toEqual([
      'callback Task Await does not pass $$.Task.Token in its Payload, so nothing could settle it',
      'callback Task Await sets HeartbeatSecondsPath; use a constant (the local engine reads the path against the effective input)',
      'callback Task Await has a heartbeat and a Retry or Catch on States.Timeout without States.HeartbeatTimeout',
    ]);
    expect(findUnsupported(definition, () => true)).toEqual([]);
  });

  it('takes a TimeoutSecondsPath from the Payload, which must carry the same field; anything but a positive whole number fails the task', async () => {
    const timed = structuredClone(definition);
    Object.assign(timed.States.Await!, { TimeoutSecondsPath: '$.seconds' });
    delete timed.States.Await!.TimeoutSeconds;
    expect(findUnsupported(timed, () => true)).toEqual([
      'callback Task Await sets TimeoutSecondsPath "$.seconds"; the local engine needs a top-level $.field that its Payload also passes as "field.$"',
    ]);
    (timed.States.Await!.Parameters as { Payload: Record<string, unknown> }).Payload['seconds.$'] = '$.seconds';
    expect(findUnsupported(timed, () => true)).toEqual([]);
    const spec = localizeCallbacks(timed).callbacks.get('Await')!;
    expect(spec).toEqual({ HeartbeatSeconds: 900, TimeoutSecondsPath: '$.seconds' });
    const never = new AbortController();
    // 300 simulated seconds at time scale 1000, well inside the 900 s heartbeat: the timeout ends it.
    await expect(
      tokens.run('Await', spec, { Payload: { seconds: 300, taskToken: TOKEN_PLACEHOLDER } }, async () => undefined, never.signal),
    ).rejects.toMatchObject({
      name: 'States.Timeout',
    });
    await expect(
      tokens.run('Await', spec, { Payload: { seconds: 0, taskToken: TOKEN_PLACEHOLDER } }, async () => undefined, never.signal),
    ).rejects.toMatchObject({
      name: 'States.Runtime',
    });
    expect(tokens.openTokens()).toEqual([]);
  });

  it('resumes on SendTaskSuccess with the output at ResultPath; a second send is TaskTimedOut', async () => {
    const run = start();
    const token = await run.token;
    expect(token).toMatch(/^local-[0-9a-f-]{36}$/);
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{"reason":"ended"}' }));
    await expect(run.result).resolves.toEqual({ id: 'a', wake: { reason: 'ended' } });
    expect(await code(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).toBe('TaskTimedOut');
    expect(await code(sfn.send(new SendTaskHeartbeatCommand({ taskToken: token })))).toBe('TaskTimedOut');
  });

  it("answers AWS's codes for a malformed token, one never issued, and output that is not JSON", async () => {
    expect(await code(sfn.send(new SendTaskSuccessCommand({ taskToken: 'nonsense', output: '{}' })))).toBe('InvalidToken');
    expect(await code(sfn.send(new SendTaskSuccessCommand({ taskToken: 'local-00000000-0000-4000-8000-000000000000', output: '{}' })))).toBe(
      'TaskDoesNotExist',
    );
    const run = start();
    const token = await run.token;
    expect(await code(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: 'not json' })))).toBe('InvalidOutput');
    await sfn.send(new SendTaskFailureCommand({ taskToken: token, error: 'Refused', cause: 'no' }));
    await expect(run.result).resolves.toMatchObject({ refused: { Error: 'Refused' } });
  });

  it('times out without heartbeats (States.HeartbeatTimeout, caught), and heartbeats keep a task waiting', async () => {
    const quiet = start();
    await expect(quiet.result).resolves.toMatchObject({ timedOut: { Error: 'States.HeartbeatTimeout' } });
    const beating = start();
    const token = await beating.token;
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      await sfn.send(new SendTaskHeartbeatCommand({ taskToken: token }));
    }
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{"beat":true}' }));
    await expect(beating.result).resolves.toMatchObject({ wake: { beat: true } });
  });

  it('fails the task when its function fails, closing the token; a stopped execution closes its token too', async () => {
    const refused = start(async () => {
      throw Object.assign(new Error('poller down'), { name: 'Refused' });
    });
    const token = await refused.token;
    await expect(refused.result).resolves.toMatchObject({ refused: { Error: 'Refused' } });
    expect(await code(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).toBe('TaskTimedOut');

    const stopped = start();
    const late = await stopped.token;
    stopped.abort();
    await stopped.result.catch(() => undefined);
    expect(await code(sfn.send(new SendTaskSuccessCommand({ taskToken: late, output: '{}' })))).toBe('TaskTimedOut');
    expect(tokens.openTokens()).toEqual([]);
  });
});
