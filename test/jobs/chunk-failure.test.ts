import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateItem } from '../../shared/store/dynamo';
import { chunkSk, jobPk } from '../../shared/store/items';
import { causeText, MAX_CAUSE_BYTES, parseChunkFailureInput, recordChunkFailure, truncateUtf8 } from '../../shared/jobs/chunk-failure';
import { InvalidStateInput } from '../../shared/jobs/chunk-state';
import { submitChunk } from '../../shared/jobs/submit';
import { useLocalAws } from '../support/aws';
import { readChunkItem, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const lambdaCause = (type: string, message: string) => JSON.stringify({ errorType: type, errorMessage: message, trace: ['at somewhere'] });

describe('recordChunkFailure', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  beforeAll(async () => {
    ctx = await startApi();
  });
  afterAll(() => stopApi(ctx));
  const deps = () => ({ s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws), now: () => NOW });

  it('marks the chunk failed with the error, and cancels its batch in flight', async () => {
    const job = await seedJob(aws, { chunks: [requests(3, 'doomed')] });
    const { batchId } = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps());
    const cancels = ctx.sim.stats().calls.cancel;

    const out = await recordChunkFailure(
      { jobId: job.jobId, chunk: 0, error: { Error: 'States.Timeout', Cause: 'PollBatch timed out' } },
      deps(),
    );
    expect(out).toEqual({ jobId: job.jobId, chunk: 0, ok: false });
    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('failed');
    expect(chunk.failure).toEqual({ error: 'States.Timeout', cause: 'PollBatch timed out' });
    expect(chunk.attempts[0]!.cancelSentAt).toBe(new Date(NOW).toISOString());
    expect(ctx.sim.stats().calls.cancel).toBe(cancels + 1);
    expect((await ctx.api.retrieve(batchId!)).cancel_initiated_at).not.toBeNull();
  });

  it('keeps the message of a Lambda error’s cause, cut to 4 KB', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'long')] });
    const message = 'é'.repeat(3000);
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'BatchTooLarge', Cause: lambdaCause('BatchTooLarge', message) } }, deps());
    const { failure } = await readChunkItem(aws, job.jobId, 0);
    expect(failure!.error).toBe('BatchTooLarge');
    expect(Buffer.byteLength(failure!.cause)).toBe(MAX_CAUSE_BYTES);
    expect(failure!.cause).toBe('é'.repeat(MAX_CAUSE_BYTES / 2));
  });

  it('sends no cancel when nothing was submitted', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'early')] });
    const cancels = ctx.sim.stats().calls.cancel;
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'ApiAuthError', Cause: 'bad key' } }, deps());
    expect(ctx.sim.stats().calls.cancel).toBe(cancels);
    expect((await readChunkItem(aws, job.jobId, 0)).status).toBe('failed');
  });

  it('still records the failure when the batch cannot be canceled', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'ghost')] });
    const chunk = await readChunkItem(aws, job.jobId, 0);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: chunkSk(0) }, {
      set: { attempts: [{ ...chunk.attempts[0]!, batchId: 'msgbatch_nosuchbatch0000000000' }] },
    });
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'ApiNotFound', Cause: 'gone' } }, deps());
    const after = await readChunkItem(aws, job.jobId, 0);
    expect(after.status).toBe('failed');
    expect(after.attempts[0]!.cancelSentAt).toBeUndefined();
  });
});

describe('cause handling', () => {
  it('takes errorMessage from a Lambda error, and plain text as it is', () => {
    expect(causeText(lambdaCause('X', 'the message'))).toBe('the message');
    expect(causeText('States.TaskFailed: plain')).toBe('States.TaskFailed: plain');
    expect(causeText('{"other":"json"}')).toBe('{"other":"json"}');
  });

  it('cuts UTF-8 at a character boundary', () => {
    expect(truncateUtf8('abc', 10)).toBe('abc');
    expect(truncateUtf8('aé', 2)).toBe('a');
    expect(truncateUtf8('a€b', 4)).toBe('a€');
    expect(truncateUtf8('😀😀', 5)).toBe('😀');
  });

  it('reads the state input, tolerating a partial error', () => {
    expect(parseChunkFailureInput({ jobId: 'j', chunk: 2, error: { Error: 'E', Cause: 'C' }, extra: 1 })).toEqual({
      jobId: 'j',
      chunk: 2,
      error: { Error: 'E', Cause: 'C' },
    });
    expect(parseChunkFailureInput({ jobId: 'j', chunk: 0, error: {} }).error).toEqual({ Error: 'Unknown', Cause: '' });
    expect(() => parseChunkFailureInput({ jobId: 'j', chunk: -1, error: {} })).toThrow(InvalidStateInput);
    expect(() => parseChunkFailureInput({ jobId: 'j', chunk: 0 })).toThrow(InvalidStateInput);
  });
});
