import { describe, expect, it } from 'vitest';
import { localizeWaits, type AslDefinition } from '../../local/asl';
import { AwsShimError } from '../../local/aws-shim';
import { readPath, waitMs } from '../../local/runtime';
import { LocalStepFunctions } from '../../local/step-functions';

const MACHINE = 'arn:aws:states:us-east-1:000000000000:stateMachine:Jobs';

/** Work (a Task) → Pause (a Wait on $.seconds) → Check (fails when $.fail is true). */
const definition: AslDefinition = {
  StartAt: 'Work',
  States: {
    Work: {
      Type: 'Task',
      Resource: 'arn:aws:lambda:us-east-1:000000000000:function:Work',
      Parameters: { 'value.$': '$.value', 'fail.$': '$.fail', 'execution.$': '$$.Execution.Name', seconds: 60 },
      Next: 'Pause',
    },
    Pause: { Type: 'Wait', SecondsPath: '$.seconds', Next: 'Check' },
    Check: {
      Type: 'Choice',
      Choices: [{ Variable: '$.fail', BooleanEquals: true, Next: 'Broken' }],
      Default: 'Done',
    },
    Broken: { Type: 'Fail', Error: 'Broken', Cause: 'asked to fail' },
    Done: { Type: 'Succeed' },
  },
};

/** Built once: validating a definition costs the engine up to a few hundred ms. */
const waited: number[] = [];
const { definition: local, waits } = localizeWaits(definition);
const stepFunctions = new LocalStepFunctions({
  definition: local,
  stateMachineArn: MACHINE,
  taskHandlers: () => ({
    // A value of -1 holds the task until the execution is stopped.
    Work: async (input) => ((input as { value: number }).value === -1 ? new Promise(() => undefined) : input),
    Pause: async (input) => {
      waited.push(waitMs('Pause', waits.get('Pause')!, input, 600, () => 0));
      return input;
    },
  }),
});

describe('local Step Functions', () => {
  it("runs an execution to its output, with the execution's name in the context object", async () => {
    const execution = stepFunctions.start({ name: 'job-1', input: '{"value":7,"fail":false}' });
    expect(execution.executionArn).toBe('arn:aws:states:us-east-1:000000000000:execution:Jobs:job-1');
    const ended = await execution.done;
    expect(ended.status).toBe('SUCCEEDED');
    expect(JSON.parse(ended.output!)).toEqual({ value: 7, fail: false, execution: 'job-1', seconds: 60 });
    expect(waited).toEqual([100]);
  });

  it('records a failed execution with its error and cause', async () => {
    const ended = await stepFunctions.start({ name: 'job-2', input: '{"value":1,"fail":true}' }).done;
    expect(ended).toMatchObject({ status: 'FAILED', error: 'Broken', cause: 'asked to fail' });
  });

  it('refuses a name already used, unless it is the same input to a running execution', async () => {
    const first = stepFunctions.start({ name: 'job-3', input: '{"value":1,"fail":false}' });
    expect(stepFunctions.start({ name: 'job-3', input: '{"value":1,"fail":false}' })).toBe(first);
    expect(() => stepFunctions.start({ name: 'job-3', input: '{"value":2,"fail":false}' })).toThrow(AwsShimError);
    await first.done;
    expect(() => stepFunctions.start({ name: 'job-3', input: '{"value":1,"fail":false}' })).toThrow(/Execution Already Exists/);
    expect(stepFunctions.list().map((e) => e.name)).toEqual(['job-1', 'job-2', 'job-3']);
  });

  it('stops a running execution, which ends ABORTED with the reason given', async () => {
    const execution = stepFunctions.start({ name: 'job-4', input: '{"value":-1,"fail":false}' });
    const stopped = await stepFunctions.stop(execution.executionArn, { error: 'Operator', cause: 'stopped by hand' });
    expect(stopped).toMatchObject({ status: 'ABORTED', error: 'Operator', cause: 'stopped by hand' });
    expect(stopped.stopDate).toBeInstanceOf(Date);
  });

  it("refuses another state machine's ARN", () => {
    expect(() => stepFunctions.start({ stateMachineArn: `${MACHINE}2` })).toThrow(expect.objectContaining({ code: 'StateMachineDoesNotExist' }));
  });
});

describe("waits on the simulator's clock", () => {
  it('divides seconds by the time scale', () => {
    expect(waitMs('W', { SecondsPath: '$.wait.seconds' }, { wait: { seconds: 30 } }, 600, () => 0)).toBe(50);
    expect(waitMs('W', { Seconds: 3600 }, {}, 3600, () => 0)).toBe(1000);
  });

  it('waits until a timestamp on the given clock', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(waitMs('W', { TimestampPath: '$.at' }, { at: '2026-01-01T00:10:00Z' }, 600, () => now)).toBe(1000);
    expect(waitMs('W', { Timestamp: '2025-12-31T00:00:00Z' }, {}, 600, () => now)).toBe(0);
  });

  it('fails like the service when SecondsPath is not a whole number of seconds', () => {
    expect(() => waitMs('W', { SecondsPath: '$.s' }, { s: 1.5 }, 1, () => 0)).toThrow(expect.objectContaining({ name: 'States.Runtime' }));
    expect(() => waitMs('W', { SecondsPath: '$.s' }, {}, 1, () => 0)).toThrow(/\$\.s is undefined/);
  });

  it('reads plain field paths', () => {
    expect(readPath({ a: { 'b c': 2 } }, "$.a['b c']")).toBe(2);
    expect(readPath({ a: 1 }, '$')).toEqual({ a: 1 });
  });
});
