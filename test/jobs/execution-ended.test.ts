import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { logRecorder } from '../support/observer';
import { useLocalAws } from '../support/aws';
import { readChunkItem, readJobItem, startApi, stopApi, type ApiContext } from '../support/chunks';
import { jsonl, objectCreated, pipelineConfig, putInput, request, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { InvalidEvent, type S3ObjectCreatedEvent } from '../../shared/jobs/events';
import { executionFailure, handleExecutionEnded, parseExecutionEvent, type ExecutionDetail, type ExecutionEndedDeps } from '../../shared/jobs/execution-ended';
import { CancelFailed, markJobFailed } from '../../shared/jobs/mark-job-failed';
import { prepareJob } from '../../shared/jobs/prepare-job';
import { registerJob } from '../../shared/jobs/register-job';
import { submitChunk } from '../../shared/jobs/submit-chunk';

const MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:batchline-jobs';
const executionArn = (name: string) => `arn:aws:states:us-east-1:123456789012:execution:batchline-jobs:${name}`;
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:batchline-alerts';
const REGISTERED_AT = new Date('2026-05-06T07:08:09.000Z');

/** The EventBridge event Step Functions sends when an execution's status changes. */
function statusChange(detail: Partial<ExecutionDetail> & { name: string; status: string }) {
  const arn = executionArn(detail.name);
  return {
    version: '0',
    id: '315c1398-40ff-a850-213b-158f73e60175',
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account: '123456789012',
    time: '2026-05-06T08:00:00Z',
    region: 'us-east-1',
    resources: [arn],
    detail: {
      executionArn: arn,
      stateMachineArn: MACHINE,
      startDate: REGISTERED_AT.getTime() - 2_000,
      stopDate: REGISTERED_AT.getTime() + 3_600_000,
      input: null,
      output: null,
      error: null,
      cause: null,
      ...detail,
    },
  };
}

describe('handleExecutionEnded', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let notify: RecordingEndpoint;
  let files = 0;

  beforeAll(async () => {
    // Batches take an hour of simulated time: they stay in flight unless a test moves the clock.
    ctx = await startApi({ processingSeconds: 3600 });
    notify = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await stopApi(ctx);
    await notify?.stop();
  });
  beforeEach(() => {
    notify.calls.length = 0;
    ctx.sim.setHttpFaults([]);
  });

  const config = () => pipelineConfig(aws, { maxRequestsPerChunk: 3 });
  const deps = (): ExecutionEndedDeps => ({
    dynamo: aws.dynamo,
    api: ctx.api,
    events: notify.events,
    sns: notify.sns,
    config: { table: aws.table, notify: { eventBus: 'default', topicArn: TOPIC } },
    now: () => Date.parse('2026-05-06T08:00:00.000Z'),
  });

  /** An uploaded file as the workflow's Register and Prepare leave it, run by execution `name`. */
  async function startedJob(name: string, rows: Array<object | string>, options: { sequencer?: string } = {}) {
    const key = `inbox/job-${++files}.jsonl`;
    const { etag } = await putInput(aws, key, jsonl(rows));
    const event = objectCreated({ bucket: aws.bucket, key, etag, sequencer: options.sequencer ?? `00${files}E99A88DC407460` });
    const { jobId } = await registerJob(
      { event, executionArn: executionArn(name) },
      { s3: aws.s3, dynamo: aws.dynamo, config: config(), now: () => REGISTERED_AT.getTime() },
    );
    const prepared = await prepareJob({ jobId }, { s3: aws.s3, dynamo: aws.dynamo, config: config() });
    return { jobId, event, prepared };
  }

  const submit = (jobId: string, chunk: number) => submitChunk({ jobId, chunk }, { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: config() });

  const jobEndedEvents = () =>
    notify.calls
      .filter((call) => call.action === 'AWSEvents.PutEvents')
      .map((call) => JSON.parse((call.body.Entries as Array<{ Detail: string }>)[0]!.Detail) as Record<string, unknown>);

  it('marks the job of an aborted execution failed and cancels the batches both its chunks have in flight', async () => {
    const { jobId, event, prepared } = await startedJob('aborted-1', [request('a1'), request('a2'), request('a3'), request('b1'), request('b2')]);
    expect(prepared.chunks).toEqual([0, 1]);
    const batches = [(await submit(jobId, 0)).batchId!, (await submit(jobId, 1)).batchId!];

    const result = await handleExecutionEnded(
      statusChange({ name: 'aborted-1', status: 'ABORTED', input: JSON.stringify(event), error: 'Operator', cause: 'stopped by hand' }),
      deps(),
    );

    expect(result).toEqual({
      outcome: 'marked-failed',
      executionArn: executionArn('aborted-1'),
      jobId,
      message: `execution ${executionArn('aborted-1')} ended ABORTED: job ${jobId} marked failed and its batches in flight canceled`,
    });
    const failure = { error: 'ExecutionAborted', cause: 'execution aborted-1 ended ABORTED: Operator: stopped by hand' };
    expect(await readJobItem(aws, jobId)).toMatchObject({ status: 'failed', failure, cancelRequested: true, executionArn: executionArn('aborted-1') });
    for (const batchId of batches) {
      const batch = await ctx.api.retrieve(batchId);
      expect({ status: batch.processing_status, canceling: batch.cancel_initiated_at !== null }).toEqual({ status: 'canceling', canceling: true });
    }
    ctx.sim.advance(60);
    const ended = await Promise.all(batches.map((batchId) => ctx.api.retrieve(batchId)));
    expect(ended.map((batch) => [batch.processing_status, batch.request_counts])).toEqual([
      ['ended', { processing: 0, succeeded: 0, errored: 0, canceled: 3, expired: 0 }],
      ['ended', { processing: 0, succeeded: 0, errored: 0, canceled: 2, expired: 0 }],
    ]);
    expect(jobEndedEvents()).toEqual([
      { jobId, status: 'failed', bucket: aws.bucket, key: event.detail.object.key, resultsPrefix: `results/${jobId}/`, failure },
    ]);
    expect(notify.calls.find((call) => call.action === 'Publish')?.body).toMatchObject({ TopicArn: TOPIC, Subject: `batchline job failed: ${jobId}` });
  });

  it('does nothing more when the same event arrives again', async () => {
    const { jobId, event } = await startedJob('aborted-twice', [request('x1')]);
    await submit(jobId, 0);
    const change = statusChange({ name: 'aborted-twice', status: 'ABORTED', input: JSON.stringify(event) });
    await handleExecutionEnded(change, deps());
    const job = await readJobItem(aws, jobId);
    const cancels = ctx.sim.stats().calls.cancel;
    notify.calls.length = 0;

    const again = await handleExecutionEnded(change, deps());

    expect(again).toMatchObject({ outcome: 'already-ended', jobId });
    expect(await readJobItem(aws, jobId)).toEqual(job);
    expect(ctx.sim.stats().calls.cancel).toBe(cancels);
    expect(notify.calls).toEqual([]);
  });

  it('cancels the batches a failed job still has un-canceled, keeping its failure and announcing nothing more', async () => {
    const { jobId, event } = await startedJob('cancel-refused', [request('f1'), request('f2'), request('f3'), request('g1')]);
    const [refused, accepted] = [(await submit(jobId, 0)).batchId!, (await submit(jobId, 1)).batchId!];
    // The workflow's MarkJobFailed, one cancel at a time: the first is refused on every try (the client retries twice).
    ctx.sim.setHttpFaults([{ endpoint: 'cancel', status: 529, times: 3 }]);
    const caught = { Error: 'States.Timeout', Cause: 'PollBatch timed out' };
    await expect(markJobFailed({ jobId, error: caught }, { ...deps(), concurrency: 1 })).rejects.toBeInstanceOf(CancelFailed);
    const status = async (batchId: string) => (await ctx.api.retrieve(batchId)).processing_status;
    expect([await status(refused), await status(accepted)]).toEqual(['in_progress', 'canceling']);
    notify.calls.length = 0;
    const cancels = ctx.sim.stats().calls.cancel;

    const result = await handleExecutionEnded(
      statusChange({
        name: 'cancel-refused',
        status: 'FAILED',
        input: JSON.stringify(event),
        error: 'CancelFailed',
        cause: JSON.stringify({ errorType: 'CancelFailed', errorMessage: `could not cancel 1 batch(es) of job ${jobId}`, trace: [] }),
      }),
      deps(),
    );

    expect(result).toEqual({
      outcome: 'cleaned-up',
      executionArn: executionArn('cancel-refused'),
      jobId,
      message: `execution ${executionArn('cancel-refused')} ended FAILED; job ${jobId} had already failed: 1 batch(es) it left un-canceled now canceled`,
    });
    expect(ctx.sim.stats().calls.cancel - cancels).toBe(1);
    expect([await status(refused), await status(accepted)]).toEqual(['canceling', 'canceling']);
    expect((await readChunkItem(aws, jobId, 0)).attempts[0]!.cancelSentAt).toBe('2026-05-06T08:00:00.000Z');
    expect((await readJobItem(aws, jobId)).failure).toEqual({ error: 'States.Timeout', cause: 'PollBatch timed out' });
    expect(notify.calls).toEqual([]);

    expect(await handleExecutionEnded(statusChange({ name: 'cancel-refused', status: 'FAILED', input: JSON.stringify(event) }), deps())).toMatchObject({
      outcome: 'already-ended',
    });
    expect(ctx.sim.stats().calls.cancel - cancels).toBe(1);
  });

  it('leaves a job that had already ended untouched (a rejected file fails its execution)', async () => {
    const { jobId, event, prepared } = await startedJob('rejected-1', [request('ok'), '{not json']);
    expect(prepared.outcome).toBe('rejected');
    const before = await readJobItem(aws, jobId);
    const cancels = ctx.sim.stats().calls.cancel;

    const result = await handleExecutionEnded(
      statusChange({
        name: 'rejected-1',
        status: 'FAILED',
        input: JSON.stringify(event),
        error: 'ValidationFailed',
        cause: 'The input file has invalid lines',
      }),
      deps(),
    );

    expect(result).toEqual({
      outcome: 'already-ended',
      executionArn: executionArn('rejected-1'),
      jobId,
      message: `execution ${executionArn('rejected-1')} ended FAILED; job ${jobId} had already ended rejected`,
    });
    expect(await readJobItem(aws, jobId)).toEqual(before);
    expect(ctx.sim.stats().calls.cancel).toBe(cancels);
    expect(notify.calls).toEqual([]);
  });

  it('is a logged no-op, naming the execution, when the event has no input and no job records the execution', async () => {
    const log = logRecorder();

    const result = await handleExecutionEnded(statusChange({ name: 'huge-input', status: 'TIMED_OUT', input: null }), { ...deps(), observer: log });

    const message =
      `execution ${executionArn('huge-input')} ended TIMED_OUT, but no job is its own: the event carries no execution input ` +
      '(EventBridge leaves out inputs over 248 KB); no job created around its start records it';
    expect(result).toEqual({ outcome: 'no-job', executionArn: executionArn('huge-input'), message });
    expect(log.lines).toEqual([{ level: 'warn', message, fields: { executionArn: executionArn('huge-input'), status: 'TIMED_OUT' } }]);
    expect(notify.calls).toEqual([]);
  });

  it('finds the job by the execution recorded on it when the event has no input', async () => {
    const { jobId } = await startedJob('no-input', [request('n1'), request('n2')]);
    const { batchId } = await submit(jobId, 0);

    const result = await handleExecutionEnded(statusChange({ name: 'no-input', status: 'TIMED_OUT', input: null }), deps());

    expect(result).toMatchObject({ outcome: 'marked-failed', jobId });
    expect((await readJobItem(aws, jobId)).failure).toEqual({ error: 'ExecutionTimedOut', cause: 'execution no-input ended TIMED_OUT' });
    expect((await ctx.api.retrieve(batchId!)).processing_status).toBe('canceling');
    expect((await readChunkItem(aws, jobId, 0)).attempts[0]!.batchId).toBe(batchId);
  });

  it("leaves the job alone when another execution registered it (a duplicate event's execution owns no job)", async () => {
    const { jobId, event } = await startedJob('original', [request('d1')]);
    await submit(jobId, 0);
    const before = await readJobItem(aws, jobId);

    const result = await handleExecutionEnded(
      statusChange({ name: 'duplicate', status: 'ABORTED', input: JSON.stringify({ event, executionArn: executionArn('duplicate') }) }),
      deps(),
    );

    expect(result).toMatchObject({ outcome: 'no-job' });
    expect(result.message).toContain(`job ${jobId}, named by its input, belongs to execution ${executionArn('original')}`);
    expect(await readJobItem(aws, jobId)).toEqual(before);
  });

  it('ignores executions that did not end abnormally', async () => {
    const result = await handleExecutionEnded(statusChange({ name: 'fine', status: 'SUCCEEDED', input: '{}' }), deps());
    expect(result).toEqual({
      outcome: 'ignored',
      executionArn: executionArn('fine'),
      message: `execution ${executionArn('fine')} is SUCCEEDED: nothing to clean up`,
    });
  });
});

describe('parseExecutionEvent', () => {
  it('refuses events that are not execution status changes', () => {
    const s3: S3ObjectCreatedEvent = objectCreated({ bucket: 'b', key: 'k.jsonl', etag: 'e' });
    expect(() => parseExecutionEvent(s3)).toThrow(InvalidEvent);
    expect(() => parseExecutionEvent({ source: 'aws.states', 'detail-type': 'Step Functions Execution Status Change', detail: {} })).toThrow(
      'detail.executionArn and detail.status are required',
    );
  });
});

describe('executionFailure', () => {
  it("names the status, and keeps a Lambda error's type and message from the cause", () => {
    const detail = parseExecutionEvent(
      statusChange({
        name: 'exec-9',
        status: 'FAILED',
        error: 'CancelFailed',
        cause: JSON.stringify({ errorType: 'CancelFailed', errorMessage: 'could not cancel 1 batch(es)', trace: ['at x'] }),
      }),
    );
    expect(executionFailure(detail, 'FAILED')).toEqual({
      Error: 'ExecutionFailed',
      Cause: 'execution exec-9 ended FAILED: CancelFailed: could not cancel 1 batch(es)',
    });
  });
});
