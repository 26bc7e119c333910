import '../../local/polyfills';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import {
  ConflictingEnvironment,
  FunctionNotRunnable,
  invokeLocal,
  LambdaFunctionError,
  loadHandler,
  mergedEnvironment,
  type LocalFunction,
} from '../../local/lambda';
import * as handlers from './fixtures/handlers';

const FIXTURES = path.dirname(fileURLToPath(import.meta.url));

function fn(overrides: Partial<LocalFunction> = {}): LocalFunction {
  return {
    logicalId: 'WorkFunction',
    name: 'WorkFunction',
    arn: 'arn:aws:lambda:us-east-1:000000000000:function:WorkFunction',
    entry: 'fixtures/handlers.ts',
    handlerExport: 'handler',
    timeoutSeconds: 30,
    memoryMb: 128,
    environment: {},
    ...overrides,
  };
}

describe('invoking a handler as Lambda does', () => {
  it('round-trips the event and the reply through JSON', async () => {
    const event = { a: 1 };
    const reply = await invokeLocal(fn(), handlers.echo as never, event);
    expect(reply).toEqual({ got: { a: 1, mutated: true }, at: '2026-01-02T03:04:05.000Z' });
    expect(event).toEqual({ a: 1 });
  });

  it("reports a thrown error with its name as errorType and Lambda's error payload as the message", async () => {
    handlers.failFirst(1);
    const failure = await invokeLocal(fn(), handlers.flaky as never, { value: 1 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(LambdaFunctionError);
    expect((failure as Error).name).toBe('ApiRetryable');
    expect(JSON.parse((failure as Error).message)).toMatchObject({ errorType: 'ApiRetryable', errorMessage: 'the API is overloaded' });
  });

  it("ends an invocation past the function's timeout as Sandbox.Timedout", async () => {
    const failure = await invokeLocal(fn({ timeoutSeconds: 0.05 }), handlers.slow as never, {}).catch((error: unknown) => error);
    expect((failure as Error).name).toBe('Sandbox.Timedout');
    expect(JSON.parse((failure as Error).message).errorMessage).toMatch(/Task timed out after 0.05 seconds$/);
  });

  it('gives the handler a context whose remaining time counts down from the timeout', async () => {
    const reply = (await invokeLocal(fn({ timeoutSeconds: 10 }), handlers.remaining as never, {})) as { remaining: number; functionName: string };
    expect(reply.functionName).toBe('WorkFunction');
    expect(reply.remaining).toBeGreaterThan(0);
    expect(reply.remaining).toBeLessThanOrEqual(10_000);
  });

  it('refuses a reply larger than a state may carry', async () => {
    await expect(invokeLocal(fn(), handlers.big as never, {})).rejects.toMatchObject({ name: 'States.DataLimitExceeded' });
  });

  it("reports a thrown non-Error by its typeof, as Node's Lambda runtime does", async () => {
    const failure = await invokeLocal(fn(), handlers.throwsString as never, {}).catch((error: unknown) => error);
    expect((failure as Error).name).toBe('string');
    expect(JSON.parse((failure as Error).message)).toMatchObject({ errorType: 'string', errorMessage: 'no more tokens' });
  });

  it("imports the handler named by the function's Handler setting from its entry file", async () => {
    const loaded = await loadHandler(fn({ handlerExport: 'remaining' }), FIXTURES);
    expect(loaded).toBe(handlers.remaining);
    await expect(loadHandler(fn({ handlerExport: 'nothing' }), FIXTURES)).rejects.toThrow(FunctionNotRunnable);
    await expect(loadHandler(fn({ entry: 'fixtures/missing.ts' }), FIXTURES)).rejects.toThrow(/cannot import fixtures\/missing.ts/);
  });
});

describe("the engine branching on a local function's errors", () => {
  const definition = (retry: boolean) =>
    ({
      StartAt: 'Call',
      States: {
        Call: {
          Type: 'Task',
          Resource: 'arn:aws:lambda:us-east-1:000000000000:function:WorkFunction',
          ...(retry ? { Retry: [{ ErrorEquals: ['ApiRetryable'], IntervalSeconds: 1, MaxAttempts: 2 }] } : {}),
          Catch: [{ ErrorEquals: ['ApiRetryable'], ResultPath: '$.error', Next: 'Caught' }],
          End: true,
        },
        Caught: { Type: 'Pass', End: true },
      },
    }) as StateMachineDefinition;
  const run = (machine: StateMachine) =>
    machine.run(
      { value: 1 },
      {
        overrides: {
          taskResourceLocalHandlers: { Call: (input) => invokeLocal(fn(), handlers.flaky as never, input) as never },
          retryIntervalOverrides: { Call: 0 },
        },
      },
    ).result;

  it('retries ApiRetryable by name, then succeeds', async () => {
    handlers.failFirst(2);
    await expect(run(new StateMachine(definition(true)))).resolves.toEqual({ value: 2 });
  });

  it('fails the execution with States.DataLimitExceeded past a States.ALL Retry and Catch, as AWS does', async () => {
    const machine = new StateMachine({
      StartAt: 'Call',
      States: {
        Call: {
          Type: 'Task',
          Resource: 'arn:aws:lambda:us-east-1:000000000000:function:WorkFunction',
          Retry: [{ ErrorEquals: ['States.ALL'], MaxAttempts: 3 }],
          Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
          End: true,
        },
        Caught: { Type: 'Pass', End: true },
      },
    } as StateMachineDefinition);
    let calls = 0;
    const result = machine.run(
      {},
      {
        overrides: {
          taskResourceLocalHandlers: {
            Call: (input) => {
              calls += 1;
              return invokeLocal(fn(), handlers.big as never, input) as never;
            },
          },
          retryIntervalOverrides: { Call: 0 },
        },
      },
    ).result;
    await expect(result).rejects.toMatchObject({ cause: { name: 'States.DataLimitExceeded' } });
    expect(calls).toBe(1);
  });

  it("catches ApiRetryable by name, with Lambda's error payload as the Cause", async () => {
    handlers.failFirst(1);
    const output = (await run(new StateMachine(definition(false)))) as { error: { Error: string; Cause: string } };
    expect(output.error.Error).toBe('ApiRetryable');
    expect(JSON.parse(output.error.Cause)).toMatchObject({ errorType: 'ApiRetryable', errorMessage: 'the API is overloaded' });
  });
});

describe('one process environment for every function', () => {
  it("is the union of the functions' variables", () => {
    const merged = mergedEnvironment([
      fn({ logicalId: 'A', environment: { BATCHLINE_BUCKET: 'b', BATCHLINE_TABLE: 't' } }),
      fn({ logicalId: 'B', environment: { BATCHLINE_BUCKET: 'b', BATCHLINE_TOPIC_ARN: 'arn:topic' } }),
    ]);
    expect(merged).toEqual({ BATCHLINE_BUCKET: 'b', BATCHLINE_TABLE: 't', BATCHLINE_TOPIC_ARN: 'arn:topic' });
  });

  it('is refused when two functions give one variable different values', () => {
    const conflicting = () => mergedEnvironment([fn({ logicalId: 'A', environment: { LIMIT: '10' } }), fn({ logicalId: 'B', environment: { LIMIT: '20' } })]);
    expect(conflicting).toThrow(ConflictingEnvironment);
    expect(conflicting).toThrow('LIMIT is "10" in A but "20" in B');
  });
});
