import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { updateItem } from '../../shared/store/dynamo';
import { chunkSk, jobPk } from '../../shared/store/items';
import { recordChunkFailure } from '../../shared/jobs/record-chunk-failure';
import { InvalidStateInput, parseChunkFailureInput } from '../../shared/jobs/contract';
import { CAUSE_MAX_BYTES } from '../../shared/jobs/mark-job-failed';
import { finalizeJob } from '../../shared/jobs/finalize-job';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { useLocalAws } from '../support/aws';
import { readChunkItem, readText, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { requests } from '../support/requests';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const lambdaCause = (type: string, message: string) => JSON.stringify({ errorType: type, errorMessage: message, trace: ['at somewhere'] });

/** V8's own message for JSON.parse of this text (it quotes the text around the bad token). */
function jsonParseMessage(text: string): string {
  try {
    JSON.parse(text);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('the text parsed');
}

describe('recordChunkFailure', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let notify: RecordingEndpoint;
  beforeAll(async () => {
    ctx = await startApi();
    notify = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await stopApi(ctx);
    await notify?.stop();
  });
  const deps = () => ({ s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws), now: () => NOW });

  it('marks the chunk failed with the error, and cancels its batch in flight', async () => {
    const job = await seedJob(aws, { chunks: [requests(3, 'doomed')] });
    const { batchId } = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps());
    const cancels = ctx.sim.stats().calls.cancel;

    const out = await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'States.Timeout', Cause: 'PollBatch timed out' } }, deps());
    expect(out).toEqual({ jobId: job.jobId, chunk: 0, ok: false });
    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('failed');
    expect(chunk.failure).toEqual({ error: 'States.Timeout', cause: 'PollBatch timed out' });
    expect(chunk.attempts[0]!.cancelSentAt).toBe(new Date(NOW).toISOString());
    expect(ctx.sim.stats().calls.cancel).toBe(cancels + 1);
    expect((await ctx.api.retrieve(batchId!)).cancel_initiated_at).not.toBeNull();
  });

  it('writes only its own fields: a Poll of the attempt recorded while the cancel is in flight stands', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'racing')] });
    await submitChunk({ jobId: job.jobId, chunk: 0 }, deps());
    const racing = new Proxy(ctx.api, {
      get(target, property, receiver) {
        if (property === 'cancel') {
          return async (batchId: string) => {
            await aws.dynamo.send(
              new UpdateItemCommand({
                TableName: aws.table,
                Key: marshall({ pk: jobPk(job.jobId), sk: chunkSk(0) }),
                UpdateExpression: 'SET #att[0].#polls = :polls',
                ExpressionAttributeNames: { '#att': 'attempts', '#polls': 'polls' },
                ExpressionAttributeValues: marshall({ ':polls': 7 }),
              }),
            );
            return target.cancel(batchId);
          };
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });

    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'States.Timeout', Cause: 'late' } }, { ...deps(), api: racing });

    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('failed');
    expect(chunk.attempts[0]).toMatchObject({ polls: 7, cancelSentAt: new Date(NOW).toISOString() });
  });

  it('keeps the type and message of a Lambda error’s cause, not its trace, cut to 4 KB', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'long')] });
    const message = 'é'.repeat(3000);
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'BatchTooLarge', Cause: lambdaCause('BatchTooLarge', message) } }, deps());
    const { failure } = await readChunkItem(aws, job.jobId, 0);
    expect(failure!.error).toBe('BatchTooLarge');
    expect(Buffer.byteLength(failure!.cause)).toBe(CAUSE_MAX_BYTES);
    // 15 bytes of prefix, 2,039 two-byte characters, and the 3-byte cut marker.
    expect(failure!.cause).toBe(`BatchTooLarge: ${'é'.repeat(2039)}…`);
  });

  it('stores no request text that a JSON.parse message quoted, in the chunk record or in errors.jsonl', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'parsed'), requests(1, 'plain')] });
    // The shapes V8 produces: a cut quote from the middle of the text, and the whole (short) text.
    const midText = jsonParseMessage('{"model":"m","messages":[{"role":"user","content":secret prompt}]}');
    const wholeText = jsonParseMessage('{"a": secret prompt}');
    expect(midText).toBe(`Unexpected token 's', ...""content":secret pro"... is not valid JSON`);
    expect(wholeText).toBe(`Unexpected token 's', "{"a": secret prompt}" is not valid JSON`);
    const fromLambda = JSON.stringify({
      errorType: 'SyntaxError',
      errorMessage: midText,
      trace: [`SyntaxError: ${midText}`, '    at JSON.parse (<anonymous>)', '    at readRequests (file:///var/task/index.mjs:1:2)'],
    });

    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'SyntaxError', Cause: fromLambda } }, deps());
    await recordChunkFailure({ jobId: job.jobId, chunk: 1, error: { Error: 'States.TaskFailed', Cause: wholeText } }, deps());

    expect((await readChunkItem(aws, job.jobId, 0)).failure).toEqual({ error: 'SyntaxError', cause: 'SyntaxError: Unexpected token …, "…" is not valid JSON' });
    expect((await readChunkItem(aws, job.jobId, 1)).failure).toEqual({ error: 'States.TaskFailed', cause: 'Unexpected token …, "…" is not valid JSON' });
    await finalizeJob(
      { jobId: job.jobId },
      { ...deps(), notify: { clients: { events: notify.events, sns: notify.sns }, config: { eventBus: 'default', topicArn: undefined } } },
    );
    const errors = (await readText(aws, job.keys.errors))!;
    expect(errors).not.toMatch(/secret|prompt|content/);
    expect(
      errors
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { custom_id: string; cause: string }),
    ).toMatchObject([
      { custom_id: 'parsed-00000', cause: 'SyntaxError: Unexpected token …, "…" is not valid JSON' },
      { custom_id: 'plain-00000', cause: 'Unexpected token …, "…" is not valid JSON' },
    ]);
  });

  it('sends no cancel when nothing was submitted', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'early')] });
    const cancels = ctx.sim.stats().calls.cancel;
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'ApiAuthError', Cause: 'bad key' } }, deps());
    expect(ctx.sim.stats().calls.cancel).toBe(cancels);
    expect((await readChunkItem(aws, job.jobId, 0)).status).toBe('failed');
  });

  it('records a batch the API no longer knows as stopped, so no later step asks again', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'ghost')] });
    const chunk = await readChunkItem(aws, job.jobId, 0);
    await updateItem(
      aws.dynamo,
      aws.table,
      { pk: jobPk(job.jobId), sk: chunkSk(0) },
      {
        set: { attempts: [{ ...chunk.attempts[0]!, batchId: 'msgbatch_nosuchbatch0000000000' }] },
      },
    );
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'ApiNotFound', Cause: 'gone' } }, deps());
    const after = await readChunkItem(aws, job.jobId, 0);
    expect(after.status).toBe('failed');
    expect(after.attempts[0]!.cancelSentAt).toBe(new Date(NOW).toISOString());
  });

  it('still records the failure when the batch cannot be canceled, leaving the cancel unrecorded', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'stuck')] });
    const { batchId } = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps());
    // Refused (400) while the batch is still in progress: not a stop.
    ctx.sim.setHttpFaults([{ endpoint: 'cancel', status: 400, times: 1 }]);
    try {
      await recordChunkFailure({ jobId: job.jobId, chunk: 0, error: { Error: 'States.Timeout', Cause: 'PollBatch timed out' } }, deps());
    } finally {
      ctx.sim.setHttpFaults([]);
    }
    const after = await readChunkItem(aws, job.jobId, 0);
    expect(after.status).toBe('failed');
    expect(after.failure).toEqual({ error: 'States.Timeout', cause: 'PollBatch timed out' });
    expect(after.attempts[0]!.cancelSentAt).toBeUndefined();
    expect((await ctx.api.retrieve(batchId!)).processing_status).toBe('in_progress');
  });
});

describe('parseChunkFailureInput', () => {
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
