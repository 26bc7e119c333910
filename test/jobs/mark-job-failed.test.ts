import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { objectCreated, request, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { startSimulator, type SimulatorHandle } from '../../simulator/server';
import { BatchesClient } from '../../shared/anthropic/client';
import { getItem, putItem } from '../../shared/store/dynamo';
import { chunkSk, jobPk, type ChunkAttempt, type ChunkItem, type ChunkStatus, type JobItem } from '../../shared/store/items';
import { CancelFailed, describeFailure, markJobFailed, truncateUtf8, type FailDeps } from '../../shared/jobs/mark-job-failed';
import { AnnounceFailed } from '../../shared/notify';

const NOW = new Date('2026-03-04T05:06:07.000Z');
const LATER = new Date('2026-03-04T06:00:00.000Z');
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:batchline-alerts';
const LAMBDA_CAUSE = JSON.stringify({
  errorType: 'BatchTooLarge',
  errorMessage: '413 request_too_large: Request exceeds the maximum size',
  trace: ['BatchTooLarge: 413 request_too_large', '    at BatchesClient.create (client.ts:1:1)'],
});

describe('markJobFailed', () => {
  const aws = useLocalAws();
  let sim: SimulatorHandle;
  let api: BatchesClient;
  let notify: RecordingEndpoint;
  let jobNumber = 0;

  beforeAll(async () => {
    // Batches take an hour, unless a test says otherwise: they stay in flight while the job fails.
    sim = await startSimulator({ processingSeconds: 3600, batchFaultsBySequence: { 3: { processingSeconds: 0 } }, apiKeys: ['sk-test'] });
    api = new BatchesClient({ apiKey: 'sk-test', baseUrl: sim.url, maxRetries: 0 });
    notify = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await notify?.stop();
    await sim?.stop();
  });
  beforeEach(() => {
    notify.calls.length = 0;
    sim.setHttpFaults([]);
  });

  const deps = (client = api, extra: Partial<FailDeps> = {}): FailDeps => ({
    dynamo: aws.dynamo,
    api: client,
    events: notify.events,
    sns: notify.sns,
    config: { table: aws.table, notify: { eventBus: 'batchline-bus', topicArn: TOPIC } },
    now: () => NOW.getTime(),
    ...extra,
  });
  const readJob = async (jobId: string) => (await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: 'JOB' }))!;
  const readAttempts = async (jobId: string, chunk: number) =>
    (await getItem<ChunkItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: chunkSk(chunk) }))!.attempts;
  const processingStatus = async (batchId: string) => (await api.retrieve(batchId)).processing_status;
  const createBatch = async (customId: string) => (await api.create([request(customId)])).id;

  async function seedJob() {
    const jobId = `failing-${String(++jobNumber).padStart(16, '0')}`;
    const job: JobItem = {
      pk: jobPk(jobId),
      sk: 'JOB',
      type: 'job',
      jobId,
      status: 'running',
      bucket: aws.bucket,
      key: 'inbox/failing.jsonl',
      etag: 'abc',
      sourceToken: 'abc',
      validationMode: 'strict',
      createdAt: '2026-03-04T00:00:00.000Z',
      updatedAt: '2026-03-04T00:00:00.000Z',
      gsi1pk: 'JOBS',
      gsi1sk: `2026-03-04T00:00:00.000Z#${jobId}`,
    };
    await putItem(aws.dynamo, aws.table, job);
    return jobId;
  }

  async function seedChunk(jobId: string, chunk: number, status: ChunkStatus, attempts: Array<Partial<ChunkAttempt>>) {
    const item: ChunkItem = {
      pk: jobPk(jobId),
      sk: chunkSk(chunk),
      type: 'chunk',
      jobId,
      chunk,
      status,
      rows: 1,
      bytes: 100,
      firstLine: chunk + 1,
      lastLine: chunk + 1,
      currentAttempt: attempts.length,
      attempts: attempts.map((a, i) => ({ attempt: i + 1, rows: 1, bytes: 100, intentAt: '2026-03-04T00:00:00.000Z', ...a })),
      updatedAt: '2026-03-04T00:00:00.000Z',
    };
    await putItem(aws.dynamo, aws.table, item);
  }

  it('marks the job failed, cancels its batches in flight, and announces it', async () => {
    const jobId = await seedJob();
    const inFlight = await createBatch('in-flight'); // 1
    const collected = await createBatch('collected'); // 2
    const endedUnseen = await createBatch('ended-unseen'); // 3: ends at once, Poll has not seen it yet
    const retrying = await createBatch('retrying'); // 4
    const ofDoneChunk = await createBatch('done'); // 5
    await seedChunk(jobId, 0, 'in_progress', [{ batchId: inFlight }]);
    await seedChunk(jobId, 1, 'in_progress', [{ batchId: collected, endedAt: '2026-03-04T01:00:00.000Z' }, { batchId: retrying }]);
    await seedChunk(jobId, 2, 'in_progress', [{ batchId: endedUnseen }]);
    await seedChunk(jobId, 3, 'done', [{ batchId: ofDoneChunk }]);
    await seedChunk(jobId, 4, 'submitting', [{ batchId: 'msgbatch_deleted_long_ago' }]);
    await seedChunk(jobId, 5, 'pending', [{}]);
    const cancelsBefore = sim.stats().calls.cancel;

    const result = await markJobFailed({ jobId, chunks: [], error: { Error: 'BatchTooLarge', Cause: LAMBDA_CAUSE } }, deps());

    expect(result).toMatchObject({ jobId });
    const failure = { error: 'BatchTooLarge', cause: 'BatchTooLarge: 413 request_too_large: Request exceeds the maximum size' };
    expect(await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: 'JOB' })).toMatchObject({
      status: 'failed',
      failure,
      endedAt: NOW.toISOString(),
      updatedAt: NOW.toISOString(),
      cancelRequested: true,
      failureAnnouncedAt: NOW.toISOString(),
    });
    const status = async (id: string) => {
      const batch = await api.retrieve(id);
      return { status: batch.processing_status, cancelRequested: batch.cancel_initiated_at !== null };
    };
    expect(await status(inFlight)).toEqual({ status: 'canceling', cancelRequested: true });
    expect(await status(retrying)).toEqual({ status: 'canceling', cancelRequested: true });
    expect(await status(collected)).toEqual({ status: 'in_progress', cancelRequested: false });
    expect(await status(ofDoneChunk)).toEqual({ status: 'in_progress', cancelRequested: false });
    expect(await status(endedUnseen)).toEqual({ status: 'ended', cancelRequested: false });
    // in flight, retrying, ended-unseen and the deleted one were asked; the others were not.
    expect(sim.stats().calls.cancel - cancelsBefore).toBe(4);
    // Each asked batch is recorded as stopped: canceled, found ended, or found gone.
    const sent = NOW.toISOString();
    expect((await readAttempts(jobId, 0)).map((a) => a.cancelSentAt)).toEqual([sent]);
    expect((await readAttempts(jobId, 1)).map((a) => a.cancelSentAt)).toEqual([undefined, sent]);
    expect((await readAttempts(jobId, 2)).map((a) => a.cancelSentAt)).toEqual([sent]);
    expect((await readAttempts(jobId, 3)).map((a) => a.cancelSentAt)).toEqual([undefined]);
    expect((await readAttempts(jobId, 4)).map((a) => a.cancelSentAt)).toEqual([sent]);

    const detail = { jobId, status: 'failed', bucket: aws.bucket, key: 'inbox/failing.jsonl', resultsPrefix: `results/${jobId}/`, failure };
    const putEvents = notify.calls.find((call) => call.action === 'AWSEvents.PutEvents');
    expect(putEvents?.body).toEqual({
      Entries: [{ Source: 'batchline', DetailType: 'Job Ended', Detail: JSON.stringify(detail), EventBusName: 'batchline-bus' }],
    });
    expect(notify.calls.find((call) => call.action === 'Publish')?.body).toMatchObject({
      TopicArn: TOPIC,
      Subject: `batchline job failed: ${jobId}`,
    });
  });

  it('announces what is known when Register itself failed', async () => {
    const event = objectCreated({ bucket: aws.bucket, key: 'inbox/never registered.jsonl', etag: 'e', sequencer: '1' });

    const result = await markJobFailed({ ...event, error: { Error: 'SourceNotFound', Cause: 'the file is gone' } }, deps());

    expect(result).toMatchObject({ jobId: null });
    const putEvents = notify.calls.find((call) => call.action === 'AWSEvents.PutEvents');
    expect(JSON.parse((putEvents?.body.Entries as Array<{ Detail: string }>)[0]!.Detail)).toEqual({
      status: 'failed',
      bucket: aws.bucket,
      key: 'inbox/never registered.jsonl',
      failure: { error: 'SourceNotFound', cause: 'the file is gone' },
    });
    expect(notify.calls.find((call) => call.action === 'Publish')?.body.Subject).toBe(`batchline job failed: s3://${aws.bucket}/inbox/never registered.jsonl`);
  });

  it('records and announces the failure even when batches cannot be canceled, then says so', async () => {
    const jobId = await seedJob();
    const batchId = await createBatch('stuck');
    await seedChunk(jobId, 0, 'in_progress', [{ batchId }]);
    const wrongKey = new BatchesClient({ apiKey: 'sk-revoked', baseUrl: sim.url, maxRetries: 0 });

    const failing = markJobFailed({ jobId, error: { Error: 'States.Timeout', Cause: '' } }, deps(wrongKey));

    await expect(failing).rejects.toBeInstanceOf(CancelFailed);
    await expect(failing).rejects.toThrow(new RegExp(`could not cancel 1 batch\\(es\\) of job ${jobId}: ${batchId}: ApiAuthError`));
    expect(await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: 'JOB' })).toMatchObject({
      status: 'failed',
      failure: { error: 'States.Timeout', cause: '' },
    });
    expect(notify.calls.map((call) => call.action).sort()).toEqual(['AWSEvents.PutEvents', 'Publish']);
    expect((await api.retrieve(batchId)).processing_status).toBe('in_progress');
    expect((await readAttempts(jobId, 0))[0]!.cancelSentAt).toBeUndefined();
  });

  it('after a cancel fails, a re-run cancels what is left, keeps the first failure and does not announce again', async () => {
    const jobId = await seedJob();
    const refused = await createBatch('refused-once');
    const accepted = await createBatch('accepted');
    await seedChunk(jobId, 0, 'in_progress', [{ batchId: refused }]);
    await seedChunk(jobId, 1, 'in_progress', [{ batchId: accepted }]);
    sim.setHttpFaults([{ endpoint: 'cancel', status: 529, times: 1 }]);
    const failure = { error: 'States.Timeout', cause: 'PollBatch timed out' };
    // One cancel at a time, in chunk order: the first one meets the fault.
    const oneByOne = { concurrency: 1 };

    const first = markJobFailed({ jobId, error: { Error: 'States.Timeout', Cause: 'PollBatch timed out' } }, deps(api, oneByOne));

    await expect(first).rejects.toThrow(new RegExp(`^could not cancel 1 batch\\(es\\) of job ${jobId}: ${refused}: ApiRetryable`));
    await expect(first).rejects.toBeInstanceOf(CancelFailed);
    expect(await readJob(jobId)).toMatchObject({
      status: 'failed',
      failure,
      endedAt: NOW.toISOString(),
      cancelRequested: true,
      failureAnnouncedAt: NOW.toISOString(),
    });
    const cancelsRecorded = async () => [...(await readAttempts(jobId, 0)), ...(await readAttempts(jobId, 1))].map((a) => [a.batchId, a.cancelSentAt]);
    expect(await cancelsRecorded()).toEqual([
      [refused, undefined],
      [accepted, NOW.toISOString()],
    ]);
    expect([await processingStatus(refused), await processingStatus(accepted)]).toEqual(['in_progress', 'canceling']);
    expect(notify.calls.map((call) => call.action).sort()).toEqual(['AWSEvents.PutEvents', 'Publish']);
    notify.calls.length = 0;
    const cancels = sim.stats().calls.cancel;

    // The execution failed with CancelFailed: ExecutionEnded re-runs it with that error.
    const again = await markJobFailed(
      { jobId, error: { Error: 'ExecutionFailed', Cause: 'execution x ended FAILED: CancelFailed' } },
      deps(api, { ...oneByOne, now: () => LATER.getTime() }),
    );

    expect(again).toMatchObject({ jobId });
    expect(sim.stats().calls.cancel - cancels).toBe(1);
    expect(await processingStatus(refused)).toBe('canceling');
    expect(await cancelsRecorded()).toEqual([
      [refused, LATER.toISOString()],
      [accepted, NOW.toISOString()],
    ]);
    expect(await readJob(jobId)).toMatchObject({ status: 'failed', failure, endedAt: NOW.toISOString(), failureAnnouncedAt: NOW.toISOString() });
    expect(notify.calls).toEqual([]);

    // Nothing is left: a third run calls nobody.
    await markJobFailed({ jobId, error: { Error: 'ExecutionFailed', Cause: '' } }, deps(api, { now: () => LATER.getTime() }));
    expect(sim.stats().calls.cancel - cancels).toBe(1);
    expect(notify.calls).toEqual([]);
  });

  it('does not take a refused cancel (400) for a stopped batch while the batch is still in progress', async () => {
    const jobId = await seedJob();
    const batchId = await createBatch('refused');
    await seedChunk(jobId, 0, 'in_progress', [{ batchId }]);
    sim.setHttpFaults([{ endpoint: 'cancel', status: 400, times: 1 }]);

    const failing = markJobFailed({ jobId, error: { Error: 'States.Timeout', Cause: '' } }, deps());

    await expect(failing).rejects.toThrow(
      `could not cancel 1 batch(es) of job ${jobId}: ${batchId}: the API refused the cancel and the batch is still in progress`,
    );
    expect((await readAttempts(jobId, 0))[0]!.cancelSentAt).toBeUndefined();
    expect(await processingStatus(batchId)).toBe('in_progress');
  });

  it('announces on a re-run when the first run could not announce', async () => {
    const jobId = await seedJob();
    notify.failNextPutEvents('InternalFailure');

    await expect(markJobFailed({ jobId, error: { Error: 'States.Timeout', Cause: '' } }, deps())).rejects.toBeInstanceOf(AnnounceFailed);
    expect(await readJob(jobId)).toMatchObject({ status: 'failed' });
    expect((await readJob(jobId)).failureAnnouncedAt).toBeUndefined();
    notify.calls.length = 0;

    await markJobFailed({ jobId, error: { Error: 'ExecutionFailed', Cause: '' } }, deps(api, { now: () => LATER.getTime() }));

    const putEvents = notify.calls.filter((call) => call.action === 'AWSEvents.PutEvents');
    expect(putEvents).toHaveLength(1);
    expect(JSON.parse((putEvents[0]!.body.Entries as Array<{ Detail: string }>)[0]!.Detail)).toMatchObject({
      jobId,
      status: 'failed',
      failure: { error: 'States.Timeout', cause: '' },
    });
    expect((await readJob(jobId)).failureAnnouncedAt).toBe(LATER.toISOString());
  });
});

describe('describeFailure', () => {
  it('keeps a Lambda error type and message, not its stack trace', () => {
    expect(describeFailure({ Error: 'BatchTooLarge', Cause: LAMBDA_CAUSE })).toEqual({
      error: 'BatchTooLarge',
      cause: 'BatchTooLarge: 413 request_too_large: Request exceeds the maximum size',
    });
  });

  it('keeps a States error cause as it is, and names a missing error', () => {
    expect(describeFailure({ Error: 'States.TaskFailed', Cause: 'The task failed.' })).toEqual({ error: 'States.TaskFailed', cause: 'The task failed.' });
    expect(describeFailure(undefined)).toEqual({ error: 'UnknownError', cause: '' });
  });

  it('removes the text a JSON.parse message quotes, since it may be a request', () => {
    let message = '';
    try {
      JSON.parse('my secret prompt, not JSON');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('secret');
    const cause = JSON.stringify({ errorType: 'SyntaxError', errorMessage: message });

    expect(describeFailure({ Error: 'SyntaxError', Cause: cause }).cause).not.toContain('secret');
    expect(describeFailure({ Error: 'SyntaxError', Cause: `Unexpected token 'x', ..."{"a": "my "x" secret"... is not valid JSON` }).cause).toBe(
      'Unexpected token …, "…" is not valid JSON',
    );
  });

  it('cuts the cause to 4 KB without splitting a character', () => {
    const cause = describeFailure({ Error: 'X', Cause: 'é'.repeat(5000) }).cause;

    expect(Buffer.byteLength(cause)).toBeLessThanOrEqual(4096);
    expect(cause.endsWith('é…')).toBe(true);
    expect(truncateUtf8('short', 4096)).toBe('short');
  });
});
