import '../../local/polyfills';
import type { Template } from 'aws-cdk-lib/assertions';
import { ExecutionError, StateMachine, type RunOptions, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SynthesizedTemplate } from '../../infra/app';
import { ApiRetryable, OutcomeUnknown } from '../../shared/anthropic/errors';
import {
  API_RETRYABLE_ERRORS,
  CREATE_REFUSED_ERRORS,
  CREATE_SLOT_BUSY_ERRORS,
  OUTCOME_UNKNOWN_ERRORS,
  QUEUE_FULL_ERRORS,
  parseJobRef,
  STORAGE_THROTTLED_ERRORS,
} from '../../shared/jobs/contract';
import { CreateSlotBusy } from '../../shared/jobs/create-slot';
import { CreateOutcomeUnknown, CreateRefused } from '../../shared/jobs/submit-chunk';
import { InputTooLarge, MAX_CHUNKS } from '../../shared/jobs/prepare-job';
import { BatchQueueFull } from '../../shared/jobs/submit-chunk';
import { UnprocessedWrites } from '../../shared/store/dynamo';
import { STATE_MACHINE_LOGICAL_ID } from '../../infra/workflow';
import { findJobStateMachine, findUnsupported, forEachState, resolveDefinition, taskTarget, type AslDefinition, type AslState } from '../../local/asl';
import { findFunction, localFunctions, type LocalFunction } from '../../local/lambda';
import { LocalNames, type CfnTemplate } from '../../local/template';
import { logicalIds, synthesize } from './fixture';

// The definition as the local runtime reads it: its own resolver, so both see the same ASL.
let template: Template;
let json: SynthesizedTemplate;
let asl: AslDefinition;
let functions: LocalFunction[];
let chunkStates: Record<string, AslState>;
beforeAll(() => {
  ({ template, json } = synthesize());
  const names = new LocalNames(json as CfnTemplate);
  asl = resolveDefinition(names, STATE_MACHINE_LOGICAL_ID);
  functions = localFunctions(json as CfnTemplate, names);
  chunkStates = (asl.States.ForEachChunk?.ItemProcessor as AslDefinition).States;
});

/** Every state, those inside the Map's item processor included. */
function allStates(definition: AslDefinition): Array<[string, AslState]> {
  const states: Array<[string, AslState]> = [];
  forEachState(definition, (name, state) => states.push([name, state]));
  return states;
}

/** The functions/ entry a Task state runs. */
function entryOf(name: string, state: AslState): string | undefined {
  const target = taskTarget(name, state);
  if ('problem' in target || target.integration === 'invoke') return undefined;
  return findFunction(functions, target.functionRef)?.entry;
}

// AWS's recommended four ("Handle Lambda service exceptions"), and throttling.
const LAMBDA_RETRY = {
  ErrorEquals: [
    'Lambda.ClientExecutionTimeoutException',
    'Lambda.ServiceException',
    'Lambda.AWSLambdaException',
    'Lambda.SdkClientException',
    'Lambda.TooManyRequestsException',
  ],
  IntervalSeconds: 2,
  BackoffRate: 2,
  MaxAttempts: 6,
  JitterStrategy: 'FULL',
};
// A killed function (timeout, out of memory, crash) is retried: every task is safe to re-run. Lambda
// names it by errorType; Step Functions reports what it cannot name (OOM and timeouts included) as Lambda.Unknown.
const CRASH_RETRY = {
  ErrorEquals: ['Sandbox.Timedout', 'Runtime.ExitError', 'Runtime.OutOfMemory', 'Runtime.Unknown', 'Lambda.Unknown'],
  IntervalSeconds: 5,
  BackoffRate: 2,
  MaxAttempts: 2,
  JitterStrategy: 'FULL',
};
const STORAGE_RETRY = {
  ErrorEquals: ['UnprocessedWrites', 'ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded', 'SlowDown'],
  IntervalSeconds: 10,
  BackoffRate: 2,
  MaxAttempts: 5,
  JitterStrategy: 'FULL',
};
const QUEUE_FULL_RETRY = {
  ErrorEquals: ['BatchQueueFull'],
  IntervalSeconds: 300,
  BackoffRate: 1,
  MaxAttempts: 96,
  JitterStrategy: 'NONE',
};
const RECORD_FAILURE_RETRY = {
  ErrorEquals: ['States.ALL'],
  IntervalSeconds: 5,
  BackoffRate: 2,
  MaxAttempts: 4,
  JitterStrategy: 'FULL',
};
const API_RETRYABLE_RETRY = {
  ErrorEquals: ['ApiRetryable'],
  IntervalSeconds: 30,
  BackoffRate: 2,
  MaxAttempts: 5,
  MaxDelaySeconds: 600,
  JitterStrategy: 'FULL',
};
const OUTCOME_UNKNOWN_RETRY = {
  ErrorEquals: ['OutcomeUnknown'],
  IntervalSeconds: 15,
  BackoffRate: 2,
  MaxAttempts: 8,
  MaxDelaySeconds: 300,
  JitterStrategy: 'NONE',
};
const CREATE_SLOT_BUSY_RETRY = {
  ErrorEquals: ['CreateSlotBusy'],
  IntervalSeconds: 30,
  BackoffRate: 1,
  MaxAttempts: 80,
  JitterStrategy: 'NONE',
};
const CREATE_REFUSED_RETRY = {
  ErrorEquals: ['CreateRefused'],
  IntervalSeconds: 60,
  BackoffRate: 1.5,
  MaxDelaySeconds: 600,
  MaxAttempts: 16,
  JitterStrategy: 'FULL',
};
const KEY_REFUSED_RETRY = {
  ErrorEquals: ['ApiKeyRefused'],
  IntervalSeconds: 600,
  BackoffRate: 1.5,
  MaxDelaySeconds: 3600,
  MaxAttempts: 30,
  JitterStrategy: 'FULL',
};
/** AwaitBatch's stand-in: woken at once, as a poller's SendTaskSuccess would (its output at $.wake). */
const WOKEN = (_input: Record<string, unknown>): unknown => ({ reason: 'ended' });
const catchTo = (next: string) => [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: next }];

/** Every transition out of a state: Next, Choice branches and Default, Catch targets. */
function transitions(state: AslState): string[] {
  const choices = (state.Choices as Array<{ Next: string }> | undefined) ?? [];
  const catches = (state.Catch as Array<{ Next: string }> | undefined) ?? [];
  return [state.Next, ...choices.map((c) => c.Next), state.Default, ...catches.map((c) => c.Next)].filter((next): next is string => typeof next === 'string');
}

describe('the job state machine', () => {
  it('is the one Standard state machine, logged at level ALL without execution data, and traced', () => {
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    expect(findJobStateMachine(json as CfnTemplate)).toBe('JobStateMachine');
    expect(json.Resources.JobStateMachine?.Properties).toMatchObject({
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: {
        Level: 'ALL',
        IncludeExecutionData: false,
        Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [expect.any(String), 'Arn'] } } }],
      },
    });
  });

  it('has exactly the job states of the contract, with its transitions', () => {
    const edges = Object.fromEntries(Object.entries(asl.States).map(([name, state]) => [name, [state.Type, ...transitions(state)]]));
    expect(asl.StartAt).toBe('RegisterJob');
    expect(edges).toEqual({
      RegisterJob: ['Task', 'IsDuplicate', 'MarkJobFailed'],
      IsDuplicate: ['Choice', 'DuplicateEvent', 'PrepareJob'],
      DuplicateEvent: ['Succeed'],
      PrepareJob: ['Task', 'InputLeft', 'MarkJobFailed'],
      InputLeft: ['Choice', 'PrepareJob', 'HasChunks'],
      HasChunks: ['Choice', 'ForEachChunk', 'FinalizeJob'],
      ForEachChunk: ['Map', 'FinalizeJob', 'MarkJobFailed'],
      FinalizeJob: ['Task', 'WasRejected', 'MarkJobFailed'],
      WasRejected: ['Choice', 'JobRejected', 'JobDone'],
      JobRejected: ['Fail'],
      JobDone: ['Succeed'],
      MarkJobFailed: ['Task', 'JobFailed'],
      JobFailed: ['Fail'],
    });
  });

  it('has exactly the chunk lifecycle states of the contract, with its transitions', () => {
    const processor = asl.States.ForEachChunk?.ItemProcessor as AslDefinition;
    const edges = Object.fromEntries(Object.entries(chunkStates).map(([name, state]) => [name, [state.Type, ...transitions(state)]]));
    expect(processor.StartAt).toBe('SubmitChunk');
    expect(edges).toEqual({
      SubmitChunk: ['Task', 'SubmitCanceled', 'RecordChunkFailure'],
      SubmitCanceled: ['Choice', 'CollectResults', 'AwaitBatch'],
      AwaitBatch: ['Task', 'PollBatch', 'PollBatch', 'WaitForBatch', 'RecordChunkFailure'],
      WaitForBatch: ['Wait', 'PollBatch'],
      PollBatch: ['Task', 'BatchEnded', 'RecordChunkFailure'],
      BatchEnded: ['Choice', 'CollectResults', 'AwaitBatch', 'WaitForBatch'],
      CollectResults: ['Task', 'RetryNeeded', 'RecordChunkFailure'],
      RetryNeeded: ['Choice', 'AwaitRetry', 'RunStragglers', 'FinalizeChunk'],
      RunStragglers: ['Task', 'StragglersLeft', 'RecordChunkFailure'],
      StragglersLeft: ['Choice', 'RunStragglers', 'FinalizeChunk'],
      AwaitRetry: ['Task', 'SubmitChunk', 'SubmitChunk', 'WaitBeforeRetry'],
      WaitBeforeRetry: ['Wait', 'SubmitChunk'],
      RecordChunkFailure: ['Task', 'FinalizeChunk'],
      FinalizeChunk: ['Task', 'ChunkOutcome', 'ChunkLeftToFinalizeJob'],
      ChunkOutcome: ['Choice', 'ChunkFailed', 'ChunkDone'],
      ChunkDone: ['Pass'],
      ChunkFailed: ['Pass'],
      ChunkLeftToFinalizeJob: ['Pass'],
    });
  });

  it('branches on the fields the contract names', () => {
    const choice = (state: AslState | undefined) => ({ Choices: state?.Choices, Default: state?.Default });
    expect(choice(asl.States.IsDuplicate)).toEqual({
      Choices: [{ Variable: '$.duplicate', BooleanEquals: true, Next: 'DuplicateEvent' }],
      Default: 'PrepareJob',
    });
    expect(choice(asl.States.InputLeft)).toEqual({
      Choices: [{ Variable: '$.outcome', StringEquals: 'partial', Next: 'PrepareJob' }],
      Default: 'HasChunks',
    });
    expect(choice(asl.States.HasChunks)).toEqual({
      Choices: [{ Variable: '$.outcome', StringEquals: 'ready', Next: 'ForEachChunk' }],
      Default: 'FinalizeJob',
    });
    expect(choice(asl.States.WasRejected)).toEqual({
      Choices: [{ Variable: '$.status', StringEquals: 'rejected', Next: 'JobRejected' }],
      Default: 'JobDone',
    });
    expect(choice(chunkStates.SubmitCanceled)).toEqual({
      Choices: [{ Variable: '$.canceled', BooleanEquals: true, Next: 'CollectResults' }],
      Default: 'AwaitBatch',
    });
    expect(choice(chunkStates.BatchEnded)).toEqual({
      Choices: [
        { Variable: '$.ended', BooleanEquals: true, Next: 'CollectResults' },
        { Variable: '$.watch', BooleanEquals: true, Next: 'AwaitBatch' },
      ],
      Default: 'WaitForBatch',
    });
    expect(choice(chunkStates.RetryNeeded)).toEqual({
      Choices: [
        { Variable: '$.retry', BooleanEquals: true, Next: 'AwaitRetry' },
        { Variable: '$.stragglers', BooleanEquals: true, Next: 'RunStragglers' },
      ],
      Default: 'FinalizeChunk',
    });
    expect(choice(chunkStates.StragglersLeft)).toEqual({
      Choices: [{ Variable: '$.done', BooleanEquals: false, Next: 'RunStragglers' }],
      Default: 'FinalizeChunk',
    });
    expect(choice(chunkStates.ChunkOutcome)).toEqual({
      Choices: [{ Variable: '$.failed', BooleanEquals: true, Next: 'ChunkFailed' }],
      Default: 'ChunkDone',
    });
  });

  it("runs each Task on its handler, as the function's direct ARN (payloadResponseOnly), with a timeout past the function's", () => {
    const summary = Object.fromEntries(
      allStates(asl)
        .filter(([, state]) => state.Type === 'Task')
        .map(([name, state]) => [name, { entry: entryOf(name, state), timeout: state.TimeoutSeconds, parameters: state.Parameters }]),
    );
    expect(summary).toEqual({
      RegisterJob: {
        entry: 'functions/register-job.ts',
        timeout: 120,
        parameters: { 'event.$': '$', 'executionArn.$': '$$.Execution.Id' },
      },
      PrepareJob: { entry: 'functions/prepare-job.ts', timeout: 960, parameters: undefined },
      FinalizeJob: { entry: 'functions/finalize-job.ts', timeout: 960, parameters: undefined },
      MarkJobFailed: { entry: 'functions/mark-job-failed.ts', timeout: 360, parameters: undefined },
      SubmitChunk: { entry: 'functions/submit-chunk.ts', timeout: 960, parameters: undefined },
      PollBatch: { entry: 'functions/poll-batch.ts', timeout: 120, parameters: undefined },
      // The callback Task: its Lambda stores the token; the wait is bounded by the heartbeat and 25 h.
      AwaitBatch: {
        entry: 'functions/await-batch.ts',
        timeout: 90_000,
        parameters: {
          FunctionName: expect.stringMatching(/AwaitBatch/),
          Payload: { 'jobId.$': '$.jobId', 'chunk.$': '$.chunk', 'attempt.$': '$.attempt', 'batchId.$': '$.batchId', 'taskToken.$': '$$.Task.Token' },
        },
      },
      // The retry backoff: the same arm stores a retry watch; the backoff is the task's own timeout.
      AwaitRetry: {
        entry: 'functions/await-batch.ts',
        timeout: undefined,
        parameters: {
          FunctionName: expect.stringMatching(/AwaitBatch/),
          Payload: {
            wait: 'retry',
            'jobId.$': '$.jobId',
            'chunk.$': '$.chunk',
            'attempt.$': '$.attempt',
            'retryWaitSeconds.$': '$.retryWaitSeconds',
            'taskToken.$': '$$.Task.Token',
          },
        },
      },
      CollectResults: { entry: 'functions/collect-results.ts', timeout: 960, parameters: undefined },
      // The deadline fallback runs in Collect's function, told so by its Payload.
      RunStragglers: { entry: 'functions/collect-results.ts', timeout: 960, parameters: { run: 'stragglers', 'state.$': '$' } },
      RecordChunkFailure: { entry: 'functions/record-chunk-failure.ts', timeout: 960, parameters: undefined },
      FinalizeChunk: { entry: 'functions/finalize-chunk.ts', timeout: 960, parameters: undefined },
    });
  });

  it('retries transient Lambda errors (TooManyRequests included) on every Task, and API errors where the contract says', () => {
    const retries = Object.fromEntries(
      allStates(asl)
        .filter(([, s]) => s.Type === 'Task')
        .map(([name, s]) => [name, s.Retry]),
    );
    expect(retries).toEqual({
      RegisterJob: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY],
      PrepareJob: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY],
      FinalizeJob: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY],
      MarkJobFailed: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY],
      SubmitChunk: [
        LAMBDA_RETRY,
        CRASH_RETRY,
        STORAGE_RETRY,
        API_RETRYABLE_RETRY,
        OUTCOME_UNKNOWN_RETRY,
        CREATE_SLOT_BUSY_RETRY,
        CREATE_REFUSED_RETRY,
        QUEUE_FULL_RETRY,
      ],
      PollBatch: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY, API_RETRYABLE_RETRY],
      AwaitBatch: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY],
      CollectResults: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY, API_RETRYABLE_RETRY, KEY_REFUSED_RETRY],
      RunStragglers: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY, API_RETRYABLE_RETRY],
      RecordChunkFailure: [LAMBDA_RETRY, CRASH_RETRY, STORAGE_RETRY, RECORD_FAILURE_RETRY],
      // One short retrier: a failure costs only time (FinalizeJob orders the chunk), and retries are history.
      FinalizeChunk: [
        {
          ErrorEquals: [...LAMBDA_RETRY.ErrorEquals, ...CRASH_RETRY.ErrorEquals, ...STORAGE_RETRY.ErrorEquals],
          IntervalSeconds: 5,
          BackoffRate: 2,
          MaxAttempts: 2,
          JitterStrategy: 'FULL',
        },
      ],
    });
  });

  it('retries the errors by the names the handlers give them', () => {
    const thrown = (error: Error) => error.name;
    expect(API_RETRYABLE_ERRORS).toContain(thrown(new ApiRetryable('529')));
    expect(OUTCOME_UNKNOWN_ERRORS).toContain(thrown(new OutcomeUnknown('lost', { requests: 1, bytes: 1, sentAt: 0 })));
    expect(QUEUE_FULL_ERRORS).toContain(thrown(new BatchQueueFull('429')));
    expect(CREATE_SLOT_BUSY_ERRORS).toContain(thrown(new CreateSlotBusy('busy')));
    expect(CREATE_REFUSED_ERRORS).toContain(thrown(new CreateRefused('529')));
    // Submit's give-up is final: no Retry of any state takes it.
    const retried = allStates(asl).flatMap(([, state]) => ((state.Retry as Array<{ ErrorEquals: string[] }> | undefined) ?? []).flatMap((r) => r.ErrorEquals));
    expect(retried).not.toContain(thrown(new CreateOutcomeUnknown('gave up')));
    // Nor Prepare's stop before its memory or time runs out: a re-run would hit the same wall (MarkJobFailed catches it).
    expect(retried).not.toContain(thrown(new InputTooLarge('too large')));
    expect(STORAGE_THROTTLED_ERRORS).toContain(thrown(new UnprocessedWrites(1, 8)));
  });

  it('catches everything into MarkJobFailed (job) or RecordChunkFailure (chunk), keeping the input with the error at $.error', () => {
    const catches = Object.fromEntries(
      allStates(asl)
        .filter(([, s]) => s.Catch !== undefined)
        .map(([name, s]) => [name, s.Catch]),
    );
    expect(catches).toEqual({
      RegisterJob: catchTo('MarkJobFailed'),
      PrepareJob: catchTo('MarkJobFailed'),
      ForEachChunk: catchTo('MarkJobFailed'),
      FinalizeJob: catchTo('MarkJobFailed'),
      SubmitChunk: catchTo('RecordChunkFailure'),
      PollBatch: catchTo('RecordChunkFailure'),
      CollectResults: catchTo('RecordChunkFailure'),
      RunStragglers: catchTo('RecordChunkFailure'),
      // A missed heartbeat (or the 25 h bound) polls directly; a stale poller sends the chunk to the Wait loop.
      AwaitBatch: [
        { ErrorEquals: ['States.HeartbeatTimeout', 'States.Timeout'], ResultPath: '$.wakeError', Next: 'PollBatch' },
        { ErrorEquals: ['PollerUnavailable'], ResultPath: '$.wakeError', Next: 'WaitForBatch' },
        ...catchTo('RecordChunkFailure'),
      ],
      // The backoff's end is its timeout: on to SubmitChunk; an arm that failed waits on the plain Wait.
      AwaitRetry: [
        { ErrorEquals: ['States.HeartbeatTimeout', 'States.Timeout'], ResultPath: '$.wakeError', Next: 'SubmitChunk' },
        { ErrorEquals: ['States.ALL'], ResultPath: '$.wakeError', Next: 'WaitBeforeRetry' },
      ],
      // A chunk whose rows could not be ordered is ordered by FinalizeJob instead.
      FinalizeChunk: catchTo('ChunkLeftToFinalizeJob'),
    });
    expect(chunkStates.AwaitBatch).toMatchObject({ HeartbeatSeconds: 900, TimeoutSeconds: 90_000, ResultPath: '$.wake', Next: 'PollBatch' });
    expect(chunkStates.AwaitRetry).toMatchObject({ TimeoutSecondsPath: '$.retryWaitSeconds', ResultPath: '$.wake', Next: 'SubmitChunk' });
    expect(chunkStates.AwaitRetry!.HeartbeatSeconds).toBeUndefined();
  });

  it('runs each chunk as a Standard child execution of a Distributed Map over $.chunks, pairing each index with the jobId, with no ItemReader', () => {
    const { ItemProcessor, ...map } = asl.States.ForEachChunk!;
    expect(map).toEqual({
      Type: 'Map',
      ItemsPath: '$.chunks',
      ItemSelector: { 'jobId.$': '$.jobId', 'chunk.$': '$$.Map.Item.Value' },
      MaxConcurrency: 4,
      ResultPath: null,
      Next: 'FinalizeJob',
      Catch: catchTo('MarkJobFailed'),
    });
    expect((ItemProcessor as { ProcessorConfig: unknown }).ProcessorConfig).toEqual({ Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
  });

  it('waits as long as the handlers say, and ends the way the contract says', () => {
    expect(chunkStates.WaitForBatch).toEqual({ Type: 'Wait', SecondsPath: '$.waitSeconds', Next: 'PollBatch' });
    expect(chunkStates.WaitBeforeRetry).toEqual({ Type: 'Wait', SecondsPath: '$.retryWaitSeconds', Next: 'SubmitChunk' });
    expect(chunkStates.ChunkDone).toEqual({ Type: 'Pass', OutputPath: null, End: true });
    expect(chunkStates.ChunkFailed).toEqual({ Type: 'Pass', OutputPath: null, End: true });
    expect(chunkStates.ChunkLeftToFinalizeJob).toEqual({ Type: 'Pass', OutputPath: null, End: true });
    expect(asl.States.JobRejected).toEqual({ Type: 'Fail', ErrorPath: '$.rejection.Error', CausePath: '$.rejection.Cause' });
    // MarkJobFailed's reply is dropped so the execution fails with the error it caught.
    expect(asl.States.MarkJobFailed).toMatchObject({ ResultPath: null, Next: 'JobFailed' });
    expect(asl.States.JobFailed).toEqual({ Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
  });

  it('uses nothing the local engine cannot run: no JSONata, variables, ItemReader or service integrations', () => {
    // The one integration besides plain Lambda: the callback, which the local runtime runs (local/task-tokens.ts).
    const text = JSON.stringify(asl).replaceAll('"arn:aws:states:::lambda:invoke.waitForTaskToken"', '');
    for (const unsupported of ['QueryLanguage', 'JSONata', '"Assign"', '"Arguments"', '"Output"', 'ItemReader', 'ResultWriter', 'arn:aws:states:::']) {
      expect(text).not.toContain(unsupported);
    }
    expect(findUnsupported(asl, (ref) => findFunction(functions, ref) !== undefined)).toEqual([]);
  });

  it('lets itself start and stop its own child executions', () => {
    const statements = logicalIds(json, 'AWS::IAM::Policy').flatMap(
      (id) => (json.Resources[id]?.Properties as { PolicyDocument: { Statement: Array<{ Action: unknown; Resource: unknown }> } }).PolicyDocument.Statement,
    );
    expect(statements).toContainEqual(expect.objectContaining({ Action: 'states:StartExecution', Resource: { Ref: 'JobStateMachine' } }));
    const childExecutions = statements.find(
      (s) => JSON.stringify(s.Action) === JSON.stringify(['states:DescribeExecution', 'states:StopExecution']) && JSON.stringify(s.Resource).includes('"/*"'),
    );
    expect(JSON.stringify(childExecutions?.Resource)).toContain(':execution:');
  });
});

describe("the Distributed Map's output", () => {
  // Without a ResultWriter the Map's result is the array of every child's output, which ResultPath
  // null drops from the state but not from the Map; past 256 KiB it fails the execution with
  // States.DataLimitExceeded, which no Catch takes (concepts-error-handling in the Step Functions guide).
  const PAYLOAD_QUOTA_BYTES = 256 * 1024;
  const processor = () => {
    const { ProcessorConfig: _config, ...graph } = asl.States.ForEachChunk!.ItemProcessor as AslDefinition & { ProcessorConfig?: unknown };
    return new StateMachine(graph as unknown as StateMachineDefinition);
  };
  const runChild = (handlers: Record<string, (input: Record<string, unknown>) => unknown>) =>
    processor().run(
      { jobId: 'job-1', chunk: 29_999 },
      {
        overrides: {
          taskResourceLocalHandlers: Object.fromEntries(
            Object.entries({ AwaitBatch: WOKEN, ...handlers }).map(([state, handler]) => [
              state,
              async (input: unknown) => handler(input as Record<string, unknown>),
            ]),
          ) as NonNullable<NonNullable<RunOptions['overrides']>['taskResourceLocalHandlers']>,
          waitTimeOverrides: { WaitForBatch: 0, WaitBeforeRetry: 0 },
        },
        context: { Task: { Token: 'token' } } as never,
      },
    ).result;

  it('ends every child execution, done or failed, with {}: even MAX_CHUNKS of them stay far under 256 KiB', async () => {
    const done = await runChild({
      SubmitChunk: (i) => ({ ...i, attempt: 1, batchId: 'msgbatch_1', canceled: false, waitSeconds: 1 }),
      PollBatch: (i) => ({ ...i, ended: true, waitSeconds: 1 }),
      CollectResults: (i) => ({ jobId: i.jobId, chunk: i.chunk, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false }),
      FinalizeChunk: (i) => ({ jobId: i.jobId, chunk: i.chunk, rows: 100_000, failed: false }),
    });
    const failed = await runChild({
      SubmitChunk: () => {
        throw Object.assign(new Error('too large'), { name: 'BatchTooLarge' });
      },
      RecordChunkFailure: (i) => ({ jobId: i.jobId, chunk: i.chunk, ok: false }),
      FinalizeChunk: (i) => ({ jobId: i.jobId, chunk: i.chunk, rows: 100_000, failed: true }),
    });
    const leftToFinalizeJob = await runChild({
      SubmitChunk: (i) => ({ ...i, attempt: 1, batchId: 'msgbatch_1', canceled: true, waitSeconds: 1 }),
      CollectResults: (i) => ({ jobId: i.jobId, chunk: i.chunk, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false }),
      FinalizeChunk: () => {
        throw Object.assign(new Error('no space left'), { name: 'Error' });
      },
    });
    // What the Map gathers for the most chunks a job may have, every child ending the larger way.
    const largest = [done, failed, leftToFinalizeJob].sort((a, b) => JSON.stringify(b).length - JSON.stringify(a).length)[0];
    const gathered = JSON.stringify(Array.from({ length: MAX_CHUNKS }, () => largest));
    expect(Buffer.byteLength(gathered)).toBeLessThan(PAYLOAD_QUOTA_BYTES / 2);
    expect([done, failed, leftToFinalizeJob]).toEqual([{}, {}, {}]);
    const ends = Object.entries(chunkStates).filter(([, state]) => state.End === true || state.Type === 'Succeed' || state.Type === 'Fail');
    expect(Object.fromEntries(ends.map(([name, state]) => [name, state.OutputPath]))).toEqual({
      ChunkDone: null,
      ChunkFailed: null,
      ChunkLeftToFinalizeJob: null,
    });
  });
});

describe('the synthesized definition in the local engine', () => {
  const ids = { jobId: 'job-1' };
  const lambdaError = (name: string, message: string) => Object.assign(new Error(message), { name });

  type LocalHandler = (input: Record<string, unknown>) => unknown;
  type LocalHandlers = NonNullable<NonNullable<RunOptions['overrides']>['taskResourceLocalHandlers']>;
  /** Runs the definition with the given stand-ins for the Task states, and no real waits. */
  function run(input: object, handlers: Record<string, LocalHandler>): Promise<unknown> {
    const taskResourceLocalHandlers = Object.fromEntries(
      Object.entries({ AwaitBatch: WOKEN, ...handlers }).map(([state, handler]) => [
        state,
        async (value: unknown) => handler(value as Record<string, unknown>),
      ]),
    ) as LocalHandlers;
    const machine = new StateMachine(asl as unknown as StateMachineDefinition);
    return machine.run(input as Parameters<StateMachine['run']>[0], {
      overrides: {
        taskResourceLocalHandlers,
        waitTimeOverrides: { WaitForBatch: 0, WaitBeforeRetry: 0 },
        retryIntervalOverrides: Object.fromEntries(Object.keys(handlers).map((state) => [state, 0])),
      },
      context: { Execution: { Id: 'arn:aws:states:us-east-1:000000000000:execution:JobStateMachine:test' }, Task: { Token: 'token' } } as never,
    }).result;
  }

  it('runs every chunk through submit, poll and collect as {jobId, chunk}, then finalizes', async () => {
    const ran: string[] = [];
    const submitted: unknown[] = [];
    const record =
      (state: string, output: LocalHandler): LocalHandler =>
      (input) => {
        ran.push(`${state}${input.chunk === undefined ? '' : `#${String(input.chunk)}`}`);
        return output(input);
      };
    const result = run(
      { source: 'aws.s3', detail: { bucket: { name: 'b' }, object: { key: 'inbox/a.jsonl' } } },
      {
        RegisterJob: record('RegisterJob', () => ({ ...ids, duplicate: false })),
        PrepareJob: record('PrepareJob', () => ({ ...ids, outcome: 'ready', chunks: [0, 1], validRows: 3, invalidRows: 0 })),
        SubmitChunk: record('SubmitChunk', (i) => {
          submitted.push(i);
          return { ...ids, chunk: i.chunk, attempt: 1, batchId: `b${String(i.chunk)}`, canceled: false, waitSeconds: 1 };
        }),
        PollBatch: record('PollBatch', (i) => ({ ...i, ended: true, waitSeconds: 1 })),
        CollectResults: record('CollectResults', (i) => ({ ...ids, chunk: i.chunk, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false })),
        FinalizeJob: record('FinalizeJob', (i) => ({ jobId: i.jobId, status: 'succeeded', counts: { succeeded: 3 } })),
      },
    );
    await expect(result).resolves.toEqual({ jobId: 'job-1', status: 'succeeded', counts: { succeeded: 3 } });
    expect(ran.filter((state) => state.endsWith('#0'))).toEqual(['SubmitChunk#0', 'PollBatch#0', 'CollectResults#0']);
    expect(ran.filter((state) => state.endsWith('#1'))).toEqual(['SubmitChunk#1', 'PollBatch#1', 'CollectResults#1']);
    expect([ran[0], ran[1], ran.at(-1)]).toEqual(['RegisterJob', 'PrepareJob', 'FinalizeJob']);
    expect(submitted).toEqual(
      expect.arrayContaining([
        { jobId: 'job-1', chunk: 0 },
        { jobId: 'job-1', chunk: 1 },
      ]),
    );
    expect(submitted).toHaveLength(2);
  });

  it('invokes PrepareJob again while it answers partial (a file read across invocations), each time with the job', async () => {
    const prepareInputs: unknown[] = [];
    const answers = ['partial', 'partial', 'ready'];
    const result = run(
      { source: 'aws.s3', detail: { bucket: { name: 'b' }, object: { key: 'inbox/a.jsonl' } } },
      {
        RegisterJob: () => ({ ...ids, duplicate: false }),
        PrepareJob: (input) => {
          prepareInputs.push(input);
          const outcome = answers.shift();
          return { ...ids, outcome, chunks: outcome === 'ready' ? [0] : [], validRows: 3, invalidRows: 0 };
        },
        SubmitChunk: (i) => ({ ...ids, chunk: i.chunk, attempt: 1, batchId: 'b0', canceled: false, waitSeconds: 1 }),
        PollBatch: (i) => ({ ...i, ended: true, waitSeconds: 1 }),
        CollectResults: (i) => ({ ...ids, chunk: i.chunk, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false }),
        FinalizeJob: (i) => ({ jobId: i.jobId, status: 'succeeded', counts: { succeeded: 3 } }),
      },
    );
    await expect(result).resolves.toEqual({ jobId: 'job-1', status: 'succeeded', counts: { succeeded: 3 } });
    expect(answers).toEqual([]);
    expect(prepareInputs).toHaveLength(3);
    for (const input of prepareInputs) expect(parseJobRef(input).jobId).toBe('job-1');
  });

  it('marks the job failed and fails with the caught error when a job step throws', async () => {
    let markInput: unknown;
    const failure = await run(
      { bucket: 'b', key: 'inbox/a.jsonl' },
      {
        RegisterJob: () => ({ ...ids, duplicate: false }),
        PrepareJob: () => {
          throw lambdaError('BadInputObject', 'inbox/a.jsonl is not readable');
        },
        MarkJobFailed: (input) => {
          markInput = input;
          return ids;
        },
      },
    ).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ExecutionError);
    expect((failure as Error).cause).toMatchObject({ name: 'BadInputObject', message: 'inbox/a.jsonl is not readable' });
    expect(markInput).toMatchObject({ ...ids, duplicate: false, error: { Error: 'BadInputObject' } });
  });

  it.each(['Runtime.OutOfMemory', 'Lambda.Unknown', 'Lambda.ClientExecutionTimeoutException'])(
    'runs a Prepare and a Collect again after %s, instead of failing the job or the chunk',
    async (errorName) => {
      const ran: string[] = [];
      const crashOnce =
        (state: string, output: LocalHandler): LocalHandler =>
        (input) => {
          ran.push(state);
          if (ran.filter((s) => s === state).length === 1) throw lambdaError(errorName, `${state} was killed`);
          return output(input);
        };
      const result = run(
        { bucket: 'b', key: 'inbox/a.jsonl' },
        {
          RegisterJob: () => ({ ...ids, duplicate: false }),
          PrepareJob: crashOnce('PrepareJob', () => ({ ...ids, outcome: 'ready', chunks: [0], validRows: 1, invalidRows: 0 })),
          SubmitChunk: (i) => ({ ...ids, chunk: i.chunk, attempt: 1, batchId: 'b0', canceled: false, waitSeconds: 1 }),
          PollBatch: (i) => ({ ...i, ended: true, waitSeconds: 1 }),
          CollectResults: crashOnce('CollectResults', (i) => ({ ...ids, chunk: i.chunk, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false })),
          RecordChunkFailure: (i) => {
            ran.push('RecordChunkFailure');
            return { jobId: i.jobId, chunk: i.chunk, ok: false };
          },
          FinalizeJob: () => ({ ...ids, status: 'succeeded', counts: { succeeded: 1 } }),
          MarkJobFailed: () => {
            ran.push('MarkJobFailed');
            return ids;
          },
        },
      );
      await expect(result).resolves.toEqual({ ...ids, status: 'succeeded', counts: { succeeded: 1 } });
      expect(ran).toEqual(['PrepareJob', 'PrepareJob', 'CollectResults', 'CollectResults']);
    },
  );

  it("records a chunk's failure without failing the job", async () => {
    let recorded: unknown;
    const result = run(
      { bucket: 'b', key: 'inbox/a.jsonl' },
      {
        RegisterJob: () => ({ ...ids, duplicate: false }),
        PrepareJob: () => ({ ...ids, outcome: 'ready', chunks: [0], validRows: 1, invalidRows: 0 }),
        SubmitChunk: () => {
          throw lambdaError('BatchTooLarge', 'too large');
        },
        RecordChunkFailure: (input) => {
          recorded = input;
          return { jobId: input.jobId, chunk: input.chunk, ok: false };
        },
        FinalizeJob: () => ({ ...ids, status: 'succeeded', counts: { errored: 1 } }),
      },
    );
    await expect(result).resolves.toEqual({ ...ids, status: 'succeeded', counts: { errored: 1 } });
    expect(recorded).toMatchObject({ ...ids, chunk: 0, error: { Error: 'BatchTooLarge' } });
  });
});
