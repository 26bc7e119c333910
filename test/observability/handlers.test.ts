/**
 * The real handlers, with clients and settings from the environment (as Lambda runs them), against
 * s3rver, dynalite, the Secrets Manager / EventBridge shim and the Batches simulator; what they
 * write to stdout and stderr is captured and read as CloudWatch would.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import type { BatchRequest, BatchResultLine } from '../../shared/anthropic/types';
import type { JobSummary } from '../../shared/jobs/finalize-job';
import { startAwsShim, type AwsShim } from '../../local/aws-shim';
import { startSimulator } from '../../simulator/server';
import type { SimulatorHandle } from '../../simulator/options';
import { useLocalAws } from '../support/aws';
import { readJsonl, readText, seedJob, type SeededJob } from '../support/chunks';
import { jsonl, putInput } from '../support/pipeline';
import { request, requests } from '../support/requests';
import { captureOutput, metricsOf, type CaptureResult, type LogLine } from './capture';

const DAY = 86_400;
const SECRET = 'batchline/api-key';
const API_KEY = `sk-ant-api03-${randomUUID()}`;
const CANARY = `canary-${randomUUID()}`;

type Handler = (event: unknown) => Promise<unknown>;
interface Handlers {
  register: Handler;
  prepare: Handler;
  submit: Handler;
  poll: Handler;
  collect: Handler;
  finalize: Handler;
  markJobFailed: Handler;
}

/** As Step Functions passes a state's output on: through JSON. */
const viaJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

describe('the handlers’ logs and metrics', () => {
  const aws = useLocalAws({ bucket: 'batchline-observability' });
  let sim: SimulatorHandle;
  let shim: AwsShim;
  let api: BatchesClient;
  let handlers: Handlers;
  let savedEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    sim = await startSimulator({ timeScale: 1, processingSeconds: 60, seed: 7, apiKeys: [API_KEY] });
    api = new BatchesClient({ apiKey: API_KEY, baseUrl: sim.url });
    shim = await startAwsShim({
      secret: (id) => (id === SECRET ? API_KEY : undefined),
      startExecution: () => {
        throw new Error('not used here');
      },
      describeExecution: () => undefined,
      listExecutions: () => [],
    });
    savedEnv = { ...process.env };
    for (const name of ['POWERTOOLS_DEV', 'POWERTOOLS_METRICS_DISABLED', 'AWS_LAMBDA_LOG_LEVEL', 'LOG_LEVEL']) delete process.env[name];
    Object.assign(process.env, aws.env, shim.env, {
      ANTHROPIC_BASE_URL: sim.url,
      BATCHLINE_API_KEY_SECRET: SECRET,
      BATCHLINE_VALIDATION_MODE: 'lenient',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    // Imported once the environment is set: handlers build their clients at import.
    handlers = {
      register: (await import('../../functions/register-job')).handler as Handler,
      prepare: (await import('../../functions/prepare-job')).handler as Handler,
      submit: (await import('../../functions/submit-chunk')).handler as Handler,
      poll: (await import('../../functions/poll-batch')).handler as Handler,
      collect: (await import('../../functions/collect-results')).handler as Handler,
      finalize: (await import('../../functions/finalize-job')).handler as Handler,
      markJobFailed: (await import('../../functions/mark-job-failed')).handler as Handler,
    };
  });
  afterAll(async () => {
    process.env = savedEnv;
    await api?.close();
    await sim?.stop();
    await shim?.stop();
  });

  interface Run {
    submit: CaptureResult<unknown>;
    polls: CaptureResult<unknown>[];
    collect: CaptureResult<unknown>;
    batchId: string;
  }

  /** Submit → (advance the simulator's clock) Poll … → Collect of a chunk's current attempt, each invocation captured. */
  async function runChunk(job: SeededJob, chunk: number, runSeconds: number): Promise<Run> {
    const submit = await captureOutput(() => handlers.submit({ jobId: job.jobId, chunk }));
    if (submit.error) throw submit.error;
    const submitted = viaJson(submit.result) as { batchId: string; waitSeconds: number };
    sim.advance(runSeconds);
    const polls: CaptureResult<unknown>[] = [];
    let input: unknown = submitted;
    for (;;) {
      const poll = await captureOutput(() => handlers.poll(input));
      if (poll.error) throw poll.error;
      polls.push(poll);
      const polled = viaJson(poll.result) as { ended: boolean; waitSeconds: number };
      input = polled;
      if (polled.ended) break;
      sim.advance(polled.waitSeconds);
    }
    const collect = await captureOutput(() => handlers.collect(input));
    if (collect.error) throw collect.error;
    return { submit, polls, collect, batchId: submitted.batchId };
  }

  const logsOf = (run: Run): LogLine[] => [run.submit, ...run.polls, run.collect].flatMap((c) => c.logs);
  const textOf = (run: Run): string => [run.submit, ...run.polls, run.collect].map((c) => c.text).join('');

  it('puts jobId, chunk, attempt and batchId on every line of a chunk’s Submit, Poll and Collect', async () => {
    const job = await seedJob(aws, { chunks: [requests(3, 'keys')] });
    const run = await runChunk(job, 0, 120);

    const lines = logsOf(run);
    expect(lines.map((l) => `${l.handler} ${l.message}`)).toEqual(['submit-chunk submitted', 'poll-batch polled', 'collect-results collected']);
    for (const line of lines) {
      expect(line).toMatchObject({ service: 'batchline', jobId: job.jobId, chunk: 0, attempt: 1, batchId: run.batchId });
    }
    expect(lines[0]).toMatchObject({ level: 'INFO', rows: 3, adopted: false });
    expect(lines[1]).toMatchObject({ status: 'ended', ended: true, counts: { processing: 0, succeeded: 3, errored: 0, canceled: 0, expired: 0 } });
    expect(lines[2]).toMatchObject({ succeeded: 3, errored: 0, expired: 0, canceled: 0, retryRows: 0, retry: false });

    expect(run.submit.emf.map((line) => metricsOf(line).values)).toEqual([{ RowsSubmitted: 3 }]);
    expect(run.polls.flatMap((p) => p.emf)).toEqual([]);
  });

  it('never writes a prompt, a completion, a request param or the API key', async () => {
    const rows: BatchRequest[] = [
      request('private-0', { messages: [{ role: 'user', content: `Repeat after me: ${CANARY}` }] }),
      request('private-1', { system: `Never reveal ${CANARY}-system`, messages: [{ role: 'user', content: `Hello ${CANARY}-1` }] }),
      request('private-2', { messages: [{ role: 'user', content: `${CANARY}-2` }], metadata: { user_id: `${CANARY}-user` } }),
    ];
    const job = await seedJob(aws, { chunks: [rows] });
    sim.setBatchFaults({ errored: { overloaded_error: 0.34 } });
    let run: Run;
    try {
      run = await runChunk(job, 0, 120);
    } finally {
      sim.setBatchFaults(undefined);
    }

    const completions = (await readJsonl<BatchResultLine>(aws, job.keys.chunkResults(0, 1))).flatMap((line) =>
      line.result.type === 'succeeded' ? line.result.message.content.map((block) => String((block as { text: string }).text)) : [],
    );
    expect(completions.length).toBeGreaterThan(0);
    const text = textOf(run);
    expect(logsOf(run).length).toBeGreaterThanOrEqual(3);
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(API_KEY);
    for (const completion of completions) expect(text).not.toContain(completion);
  });

  it('reports a Collect’s outcomes as EMF metrics, per status and per error type, with the batch’s wait', async () => {
    const rows = [...requests(30, 'mix'), request('bad-0', { speed: 'fast' }), request('bad-1', { stream: true })];
    const job = await seedJob(aws, { chunks: [rows] });
    sim.setBatchFaults({ errored: { overloaded_error: 0.3 }, expired: 0.3 });
    let run: Run;
    try {
      run = await runChunk(job, 0, DAY + 60);
    } finally {
      sim.setBatchFaults(undefined);
    }

    // The expectation, from the API's own answers: the results lines and the batch.
    const results = (await readJsonl<BatchResultLine>(aws, job.keys.chunkResults(0, 1))).map((line) => line.result);
    const count = (test: (r: BatchResultLine['result']) => boolean) => results.filter(test).length;
    const succeeded = count((r) => r.type === 'succeeded');
    const expired = count((r) => r.type === 'expired');
    const overloaded = count((r) => r.type === 'errored' && r.error.error.type === 'overloaded_error');
    const invalid = count((r) => r.type === 'errored' && r.error.error.type === 'invalid_request_error');
    // The seeded draw gives every kind at least once; the test is about how each is reported.
    expect([succeeded, expired, overloaded, invalid].every((n) => n > 0)).toBe(true);
    expect(succeeded + expired + overloaded + invalid).toBe(rows.length);
    const batch = await api.retrieve(run.batchId);
    const waitSeconds = (Date.parse(batch.ended_at!) - Date.parse(batch.created_at)) / 1000;

    expect(run.collect.emf).toHaveLength(1);
    expect(metricsOf(run.collect.emf[0]!)).toEqual({
      values: {
        RowsSucceeded: succeeded,
        RowsErrored: overloaded + invalid,
        RowsExpired: expired,
        RowsCanceled: 0,
        RowsRetried: overloaded + expired,
        RowsErrored_invalid_request_error: invalid,
        RowsErrored_overloaded_error: overloaded,
        BatchWaitSeconds: waitSeconds,
      },
      units: {
        RowsSucceeded: 'Count',
        RowsErrored: 'Count',
        RowsExpired: 'Count',
        RowsCanceled: 'Count',
        RowsRetried: 'Count',
        RowsErrored_invalid_request_error: 'Count',
        RowsErrored_overloaded_error: 'Count',
        BatchWaitSeconds: 'Seconds',
      },
    });
    expect(run.collect.emf[0]!._aws.CloudWatchMetrics).toEqual([expect.objectContaining({ Namespace: 'Batchline', Dimensions: [['service']] })]);
    expect(run.collect.logs).toEqual([
      expect.objectContaining({
        message: 'collected',
        succeeded,
        errored: overloaded + invalid,
        expired,
        canceled: 0,
        errorTypes: { invalid_request_error: invalid, overloaded_error: overloaded },
        retryRows: overloaded + expired,
        batchWaitSeconds: waitSeconds,
        retry: true,
      }),
    ]);
  });

  it('reports the job’s end and its cost from Finalize', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'cost')] });
    await runChunk(job, 0, 120);

    const finalize = await captureOutput(() => handlers.finalize({ jobId: job.jobId, outcome: 'ready' }));

    expect(finalize.error).toBeUndefined();
    const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
    expect(summary.cost.batchUsd).toBeGreaterThan(0);
    expect(finalize.emf.map((line) => metricsOf(line).values)).toEqual([{ JobsEnded: 1, CostUsd: summary.cost.batchUsd }]);
    expect(finalize.logs).toEqual([
      expect.objectContaining({
        handler: 'finalize-job',
        jobId: job.jobId,
        message: 'finalized',
        status: 'succeeded',
        counts: { succeeded: 2, errored: 0, expired: 0, canceled: 0, invalid: 0 },
        costUsd: summary.cost.batchUsd,
      }),
    ]);
  });

  it('counts invalid rows at Prepare, and logs the job id from Register on', async () => {
    const key = `inbox/${randomUUID()}.jsonl`;
    const file = jsonl([request('fine-0'), request('fine-1'), { custom_id: 'broken', params: { model: CANARY, messages: CANARY } }, `not json ${CANARY}`]);
    await putInput(aws, key, file);

    const register = await captureOutput(() => handlers.register({ bucket: aws.bucket, key }));
    const { jobId } = register.result as { jobId: string };
    const prepare = await captureOutput(() => handlers.prepare({ jobId }));

    expect(register.logs).toEqual([expect.objectContaining({ handler: 'register-job', message: 'registered', jobId, key, validationMode: 'lenient' })]);
    expect(prepare.logs).toEqual([
      expect.objectContaining({ handler: 'prepare-job', message: 'prepared', jobId, outcome: 'ready', validRows: 2, invalidRows: 2, chunks: 1 }),
    ]);
    expect(prepare.emf.map((line) => metricsOf(line).values)).toEqual([{ RowsInvalid: 2 }]);
    expect(register.text + prepare.text).not.toContain(CANARY);
  });

  it('counts a failed job and logs its error, and publishes that count even when the handler then fails', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'doomed')] });
    const failed = await captureOutput(() => handlers.markJobFailed({ jobId: job.jobId, error: { Error: 'States.Timeout', Cause: 'PrepareJob timed out' } }));
    expect(failed.error).toBeUndefined();
    expect(failed.emf.map((line) => metricsOf(line).values)).toEqual([{ JobsFailed: 1 }]);
    expect(failed.logs).toEqual([
      expect.objectContaining({
        level: 'ERROR',
        handler: 'mark-job-failed',
        message: 'job failed',
        jobId: job.jobId,
        error: { error: 'States.Timeout', cause: 'PrepareJob timed out' },
        batchesInFlight: 0,
      }),
    ]);

    // A batch in flight whose cancel the API refuses for good: MarkJobFailed ends in CancelFailed.
    const inFlight = await seedJob(aws, { chunks: [requests(2, 'stuck')] });
    const submitted = await captureOutput(() => handlers.submit({ jobId: inFlight.jobId, chunk: 0 }));
    expect(submitted.error).toBeUndefined();
    sim.setHttpFaults([{ endpoint: 'cancel', status: 500, shouldRetry: false, times: 1 }]);
    let unfinished: CaptureResult<unknown>;
    try {
      unfinished = await captureOutput(() => handlers.markJobFailed({ jobId: inFlight.jobId, error: { Error: 'States.Timeout', Cause: 'again' } }));
    } finally {
      sim.setHttpFaults([]);
    }
    expect((unfinished.error as Error).name).toBe('CancelFailed');
    expect(unfinished.emf.map((line) => metricsOf(line).values)).toEqual([{ JobsFailed: 1 }]);
    expect(
      unfinished.logs.map((l) => [l.level, l.message, (l.error as { name?: string; error?: string }).name ?? (l.error as { error: string }).error, l.jobId]),
    ).toEqual([
      ['ERROR', 'job failed', 'States.Timeout', inFlight.jobId],
      ['ERROR', 'failed', 'CancelFailed', inFlight.jobId],
    ]);
  });
});
