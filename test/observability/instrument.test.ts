import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiRetryable } from '../../shared/anthropic/errors';
import { BatchQueueFull } from '../../shared/jobs/submit-chunk';
import { UnprocessedWrites } from '../../shared/store/dynamo';
import { errorFields, instrument, keysOf, rowsErroredMetric, type Observer } from '../../shared/observability';
import { captureOutput, metricsOf } from './capture';

const POWERTOOLS_VARIABLES = ['POWERTOOLS_DEV', 'POWERTOOLS_LOG_LEVEL', 'LOG_LEVEL', 'POWERTOOLS_METRICS_DISABLED', 'AWS_LAMBDA_LOG_LEVEL'];

describe('instrument', () => {
  let saved: Record<string, string | undefined>;
  beforeEach(() => {
    saved = Object.fromEntries(POWERTOOLS_VARIABLES.map((name) => [name, process.env[name]]));
    for (const name of POWERTOOLS_VARIABLES) delete process.env[name];
  });
  afterEach(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it('keeps each invocation’s keys on its own lines, even when invocations overlap in one process', async () => {
    const handler = instrument('submit-chunk', async (event: { jobId: string; chunk: number }, observer: Observer) => {
      observer.info('started');
      await tick();
      observer.keys({ attempt: 1, batchId: `msgbatch_${event.chunk}` });
      await tick();
      observer.info('submitted', { rows: 10 + event.chunk });
      return event.chunk;
    });

    const out = await captureOutput(() => Promise.all([handler({ jobId: 'job-a', chunk: 0 }), handler({ jobId: 'job-b', chunk: 1 })]));

    expect(out.result).toEqual([0, 1]);
    const lines = out.logs.map(({ message, jobId, chunk, attempt, batchId, rows, handler: name, service }) => ({
      message,
      jobId,
      chunk,
      attempt,
      batchId,
      rows,
      name,
      service,
    }));
    expect(lines).toHaveLength(4);
    expect(lines).toEqual(
      expect.arrayContaining([
        { message: 'started', jobId: 'job-a', chunk: 0, attempt: undefined, batchId: undefined, rows: undefined, name: 'submit-chunk', service: 'batchline' },
        { message: 'started', jobId: 'job-b', chunk: 1, attempt: undefined, batchId: undefined, rows: undefined, name: 'submit-chunk', service: 'batchline' },
        { message: 'submitted', jobId: 'job-a', chunk: 0, attempt: 1, batchId: 'msgbatch_0', rows: 10, name: 'submit-chunk', service: 'batchline' },
        { message: 'submitted', jobId: 'job-b', chunk: 1, attempt: 1, batchId: 'msgbatch_1', rows: 11, name: 'submit-chunk', service: 'batchline' },
      ]),
    );
  });

  it('starts every invocation with only its own event’s keys (a reused container forgets the last one’s)', async () => {
    const handler = instrument('poll-batch', async (_event: unknown, observer: Observer) => {
      observer.info('polled');
    });
    const out = await captureOutput(async () => {
      await handler({ jobId: 'job-1', chunk: 3, attempt: 2, batchId: 'msgbatch_x' }, { awsRequestId: 'req-1' });
      await handler({ jobId: 'job-2', chunk: 0 }, { awsRequestId: 'req-2' });
    });
    const [first, second] = out.logs;
    expect(first).toMatchObject({ jobId: 'job-1', chunk: 3, attempt: 2, batchId: 'msgbatch_x', function_request_id: 'req-1', cold_start: true });
    expect(second).toMatchObject({ jobId: 'job-2', chunk: 0, function_request_id: 'req-2', cold_start: false });
    expect(second).not.toHaveProperty('attempt');
    expect(second).not.toHaveProperty('batchId');
  });

  it('logs a failure by name and message, rethrows the same error, and still publishes the metrics recorded before it', async () => {
    const failure = new Error('chunk 2 of job j has no attempt 3');
    failure.name = 'ChunkStateConflict';
    const handler = instrument('collect-results', async (_event: unknown, observer: Observer) => {
      observer.metric('RowsSucceeded', 4);
      throw failure;
    });

    const out = await captureOutput(() => handler({ jobId: 'j', chunk: 2, attempt: 3, batchId: 'msgbatch_y' }));

    expect(out.error).toBe(failure);
    expect(out.logs).toHaveLength(1);
    expect(out.logs[0]).toMatchObject({
      level: 'ERROR',
      message: 'failed',
      jobId: 'j',
      chunk: 2,
      error: { name: 'ChunkStateConflict', message: 'chunk 2 of job j has no attempt 3' },
    });
    expect(out.logs[0]!.error).not.toHaveProperty('stack');
    expect(out.emf).toHaveLength(1);
    expect(metricsOf(out.emf[0]!).values).toEqual({ RowsSucceeded: 4 });
  });

  it('logs an error the workflow retries as a warning', async () => {
    const handler = instrument('poll-batch', async () => {
      throw new ApiRetryable('529 overloaded_error: Overloaded', { status: 529, type: 'overloaded_error', requestId: 'req_1' });
    });
    const out = await captureOutput(() => handler({ jobId: 'j' }));
    expect(out.error).toBeInstanceOf(ApiRetryable);
    expect(out.logs.map((l) => [l.level, l.message, l.error])).toEqual([
      [
        'WARN',
        'failed, to be retried',
        { name: 'ApiRetryable', message: '529 overloaded_error: Overloaded', status: 529, type: 'overloaded_error', requestId: 'req_1' },
      ],
    ]);
  });

  it('logs a full batch queue and storage throttling as warnings too: Submit and every task retry them', async () => {
    const failing = (error: Error) =>
      instrument('submit-chunk', async () => {
        throw error;
      });
    const out = await captureOutput(async () => {
      await failing(new BatchQueueFull('429 rate_limit_error: the batch queue is full'))({ jobId: 'j', chunk: 0 }).catch(() => undefined);
      await failing(new UnprocessedWrites(3, 8))({ jobId: 'j', chunk: 0 }).catch(() => undefined);
      await failing(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }))({ jobId: 'j', chunk: 0 }).catch(() => undefined);
    });
    expect(out.logs.map((l) => [l.level, l.message, (l.error as { name: string }).name])).toEqual([
      ['WARN', 'failed, to be retried', 'BatchQueueFull'],
      ['WARN', 'failed, to be retried', 'UnprocessedWrites'],
      ['WARN', 'failed, to be retried', 'ThrottlingException'],
    ]);
  });

  it('logs an error nothing retries as an error', async () => {
    const handler = instrument('submit-chunk', async () => {
      throw Object.assign(new Error('too large'), { name: 'BatchTooLarge' });
    });
    const out = await captureOutput(() => handler({ jobId: 'j' }));
    expect(out.logs.map((l) => [l.level, l.message])).toEqual([['ERROR', 'failed']]);
  });

  it('logs a JSON SyntaxError without the text it quotes', async () => {
    const handler = instrument('finalize-job', async () => JSON.parse('my private words, not JSON') as unknown);
    const out = await captureOutput(() => handler({ jobId: 'j' }));
    expect(out.error).toBeInstanceOf(SyntaxError);
    expect(out.logs[0]!.error).toEqual({ name: 'SyntaxError', message: 'Unexpected token …, "…" is not valid JSON' });
    expect(out.text).not.toContain('private words');
  });

  it('publishes metrics in namespace Batchline with service=batchline as the only dimension', async () => {
    const handler = instrument('finalize-job', async (_event: unknown, observer: Observer) => {
      observer.metric('JobsEnded', 1);
      observer.metric('CostUsd', 0.0125);
      observer.metric('BatchWaitSeconds', 93.5);
    });
    const out = await captureOutput(() => handler({ jobId: 'j' }));
    expect(out.emf).toHaveLength(1);
    const line = out.emf[0]!;
    expect(line._aws.CloudWatchMetrics.map(({ Namespace, Dimensions }) => ({ Namespace, Dimensions }))).toEqual([
      { Namespace: 'Batchline', Dimensions: [['service']] },
    ]);
    expect(line.service).toBe('batchline');
    expect(line).not.toHaveProperty('jobId');
    expect(metricsOf(line)).toEqual({
      values: { JobsEnded: 1, CostUsd: 0.0125, BatchWaitSeconds: 93.5 },
      units: { JobsEnded: 'Count', CostUsd: 'None', BatchWaitSeconds: 'Seconds' },
    });
  });

  it('writes nothing when an invocation records no metric and logs below the level', async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'WARN';
    const handler = instrument('poll-batch', async (_event: unknown, observer: Observer) => observer.info('polled'));
    const out = await captureOutput(() => handler({ jobId: 'j' }));
    expect(out.text).toBe('');
  });

  it('stays silent with POWERTOOLS_LOG_LEVEL=SILENT and POWERTOOLS_METRICS_DISABLED=true, failures included', async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const handler = instrument('collect-results', async (_event: unknown, observer: Observer) => {
      observer.info('collected', { succeeded: 1 });
      observer.warn('no price for these models', { models: ['m'] });
      observer.metric('RowsSucceeded', 1);
      throw new Error('boom');
    });
    const out = await captureOutput(() => handler({ jobId: 'j', chunk: 0, attempt: 1, batchId: 'b' }));
    expect((out.error as Error).message).toBe('boom');
    expect(out.text).toBe('');
  });
});

describe('keysOf', () => {
  it('takes only jobId, chunk, attempt and batchId from an event, and only in their shapes', () => {
    expect(keysOf({ jobId: 'j', chunk: 0, attempt: 2, batchId: 'msgbatch_1', error: { Cause: 'secret text' }, params: {} })).toEqual({
      jobId: 'j',
      chunk: 0,
      attempt: 2,
      batchId: 'msgbatch_1',
    });
    expect(keysOf({ jobId: '', chunk: -1, attempt: 0, batchId: null })).toEqual({ jobId: undefined, chunk: undefined, attempt: undefined, batchId: undefined });
    expect(keysOf({ jobId: 'x'.repeat(129), chunk: 1.5, attempt: '1' })).toEqual({
      jobId: undefined,
      chunk: undefined,
      attempt: undefined,
      batchId: undefined,
    });
    expect(keysOf('inbox/file.jsonl')).toEqual({});
    expect(keysOf(null)).toEqual({});
  });
});

describe('rowsErroredMetric', () => {
  it('names a metric per error type, cut to a safe name', () => {
    expect(rowsErroredMetric('overloaded_error')).toBe('RowsErrored_overloaded_error');
    expect(rowsErroredMetric('unknown_result_new type!')).toBe('RowsErrored_unknown_result_new_type_');
    expect(rowsErroredMetric('x'.repeat(100))).toBe(`RowsErrored_${'x'.repeat(64)}`);
  });
});

describe('errorFields', () => {
  it('keeps name, message, and the API’s status, type and request id — nothing else', () => {
    const error = Object.assign(new Error('refused'), {
      name: 'ApiAuthError',
      status: 401,
      type: 'authentication_error',
      requestId: 'req_9',
      body: 'x',
      headers: {},
    });
    expect(errorFields(error)).toEqual({ name: 'ApiAuthError', message: 'refused', status: 401, type: 'authentication_error', requestId: 'req_9' });
    expect(errorFields('a thrown string with text')).toEqual({ name: 'NonError' });
  });
});
