import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { BatchResultLine } from '../../shared/anthropic/types';
import { jobKeys, type JobKeys } from '../../shared/store/keys';
import { priceUsage, roundUsd, tokenTotals } from '../../shared/cost/cost';
import { updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk } from '../../shared/store/items';
import { recordChunkFailure } from '../../shared/jobs/record-chunk-failure';
import { collectResults } from '../../shared/jobs/collect-results';
import {
  CountsMismatch,
  finalizeJob,
  resultCustomId,
  WorkFileMissing,
  type FinalizeDeps,
  type JobSummary,
  type ResultRow,
} from '../../shared/jobs/finalize-job';
import { prepareJob } from '../../shared/jobs/prepare-job';
import { registerJob } from '../../shared/jobs/register-job';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { InvalidStateInput } from '../../shared/jobs/contract';
import { startAwsShim, type AwsShim } from '../../local/aws-shim';
import { useLocalAws } from '../support/aws';
import {
  driveChunk,
  readChunkItem,
  readJobItem,
  readJsonl,
  readRow,
  putText,
  readText,
  seedJob,
  startApi,
  stopApi,
  TEST_API_KEY,
  uniqueJobId,
  type ApiContext,
  type ChunkContext,
} from '../support/chunks';
import { pipelineConfig, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { request, requests } from '../support/requests';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:batchline';
const INVALID = [
  { line: 3, code: 'invalid_json', reason: 'line 3 is not JSON' },
  { line: 7, custom_id: 'dup', code: 'duplicate_custom_id', reason: 'line 7 repeats custom_id "dup" of line 2' },
];

describe('finalizeJob', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let recorder: RecordingEndpoint;
  beforeAll(async () => {
    ctx = await startApi();
    recorder = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await stopApi(ctx);
    await recorder.stop();
  });

  const chunkContext = (api: ApiContext = ctx): ChunkContext => ({ aws, sim: api.sim, api: api.api, config: pipelineConfig(aws) });
  const deps = (): FinalizeDeps => ({
    s3: aws.s3,
    dynamo: aws.dynamo,
    config: pipelineConfig(aws),
    notify: { clients: { events: recorder.events, sns: recorder.sns }, config: { topicArn: TOPIC, eventBus: 'default' } },
    now: () => NOW,
  });
  const eventsFor = (jobId: string) =>
    recorder.calls
      .filter((c) => c.action === 'AWSEvents.PutEvents')
      .map((c) => (c.body as { Entries: Array<{ Detail: string; DetailType: string; Source: string }> }).Entries[0]!)
      .filter((e) => (JSON.parse(e.Detail) as { jobId: string }).jobId === jobId);
  const publishesFor = (jobId: string) => recorder.calls.filter((c) => c.action === 'Publish' && String(c.body.Subject).includes(jobId));

  /** Each row's result line, as the API sent it, from the chunk's results files (latest attempt wins). */
  async function apiResults(keys: JobKeys, chunk: number, attempts: number): Promise<Map<string, BatchResultLine & { attempt: number }>> {
    const lines = new Map<string, BatchResultLine & { attempt: number }>();
    for (let attempt = 1; attempt <= attempts; attempt++) {
      for (const line of await readJsonl<BatchResultLine>(aws, keys.chunkResults(chunk, attempt))) lines.set(line.custom_id, { ...line, attempt });
    }
    return lines;
  }

  const expectedRow = (customId: string, line: (BatchResultLine & { attempt: number }) | undefined, batchIds: Record<number, string>): ResultRow => {
    const result = line!.result;
    const base = { custom_id: customId, attempts: line!.attempt, batch_id: batchIds[line!.attempt]! };
    if (result.type === 'succeeded') {
      const { usage, model } = result.message;
      return {
        ...base,
        status: 'succeeded',
        usage: tokenTotals(usage),
        cost_usd: roundUsd(priceUsage(usage, model).totalUsd, 10),
        message: result.message,
      };
    }
    if (result.type === 'errored') {
      return { ...base, status: 'errored', error: { type: result.error.error.type, message: result.error.error.message }, usage: null, cost_usd: null };
    }
    return { ...base, status: result.type, usage: null, cost_usd: null };
  };

  it('writes one result per valid row in input order across chunks and attempts, the errors, the summary, and announces the end', async () => {
    // A simulator of its own: batch 1 (chunk 0, attempt 1) errors transiently for some rows.
    const own = await startApi({ seed: 3, batchFaultsBySequence: { 1: { errored: { overloaded_error: 0.5 } } } });
    try {
      const chunk0 = [...requests(4, 'a'), request('bad', { speed: 'fast' })];
      const chunk1 = requests(3, 'b');
      const job = await seedJob(aws, { chunks: [chunk0, chunk1], invalid: INVALID, validationMode: 'lenient' });
      await driveChunk(chunkContext(own), job.jobId, 0);
      await driveChunk(chunkContext(own), job.jobId, 1);

      const out = await finalizeJob({ jobId: job.jobId }, deps());
      expect(out).toEqual({ jobId: job.jobId, status: 'succeeded', counts: { succeeded: 7, errored: 1, expired: 0, canceled: 0, invalid: 2 } });

      const c0 = await readChunkItem(aws, job.jobId, 0);
      const c1 = await readChunkItem(aws, job.jobId, 1);
      expect(c0.attempts).toHaveLength(2);
      const retried = c0.attempts[0]!.retryRows!;
      expect(retried).toBeGreaterThan(0);
      const batch0 = { 1: c0.attempts[0]!.batchId!, 2: c0.attempts[1]!.batchId! };
      const batch1 = { 1: c1.attempts[0]!.batchId! };
      const lines0 = await apiResults(job.keys, 0, 2);
      const lines1 = await apiResults(job.keys, 1, 1);

      const results = await readJsonl<ResultRow>(aws, job.keys.results);
      expect(results).toEqual([
        ...chunk0.map((r) => expectedRow(r.custom_id, lines0.get(r.custom_id), batch0)),
        ...chunk1.map((r) => expectedRow(r.custom_id, lines1.get(r.custom_id), batch1)),
      ]);
      expect(results.filter((r) => r.attempts === 2)).toHaveLength(retried);
      expect(results.find((r) => r.custom_id === 'bad')).toMatchObject({ status: 'errored', error: { type: 'invalid_request_error' } });

      const bad = results.find((r) => r.custom_id === 'bad')!;
      expect(await readJsonl(aws, job.keys.errors)).toEqual([
        { custom_id: 'bad', status: 'errored', error_type: 'invalid_request_error', message: bad.error!.message, attempts: 1, batch_id: batch0[1] },
      ]);
      expect(await readJsonl(aws, job.keys.invalid)).toEqual(INVALID);

      const succeeded = results.filter((r) => r.status === 'succeeded');
      const sum = (pick: (r: ResultRow) => number) => succeeded.reduce((total, r) => total + pick(r), 0);
      const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
      expect(summary).toEqual({
        jobId: job.jobId,
        input: job.input,
        status: 'succeeded',
        validationMode: 'lenient',
        counts: { total: 10, succeeded: 7, errored: 1, expired: 0, canceled: 0, invalid: 2 },
        errorsByType: { invalid_request_error: 1 },
        tokens: {
          input: sum((r) => r.usage!.input_tokens),
          output: sum((r) => r.usage!.output_tokens),
          cache_creation_input: sum((r) => r.usage!.cache_creation_input_tokens),
          cache_read_input: sum((r) => r.usage!.cache_read_input_tokens),
        },
        cost: {
          batchUsd: expect.closeTo(
            sum((r) => r.cost_usd!),
            6,
          ),
          standardUsd: expect.closeTo(2 * sum((r) => r.cost_usd!), 6),
          savedUsd: expect.closeTo(
            sum((r) => r.cost_usd!),
            6,
          ),
          byModel: {
            'claude-haiku-4-5': {
              requests: 7,
              batchUsd: expect.closeTo(
                sum((r) => r.cost_usd!),
                6,
              ),
              standardUsd: expect.any(Number),
            },
          },
          unpricedModels: [],
        },
        chunks: 2,
        batches: [
          { chunk: 0, attempt: 1, batchId: batch0[1], counts: c0.attempts[0]!.counts },
          { chunk: 0, attempt: 2, batchId: batch0[2], counts: c0.attempts[1]!.counts },
          { chunk: 1, attempt: 1, batchId: batch1[1], counts: c1.attempts[0]!.counts },
        ],
        retries: { attempts: 1, rows: retried },
        timings: {
          createdAt: '2026-01-02T03:04:05.000Z',
          endedAt: '2030-01-01T00:00:00.000Z',
          durationSeconds: (NOW - Date.parse('2026-01-02T03:04:05.000Z')) / 1000,
        },
      });

      expect(await readJobItem(aws, job.jobId)).toMatchObject({
        status: 'succeeded',
        endedAt: '2030-01-01T00:00:00.000Z',
        counts: out.counts,
        costUsd: summary.cost.batchUsd,
      });
      const [event] = eventsFor(job.jobId);
      expect(event).toMatchObject({ Source: 'batchline', DetailType: 'Job Ended' });
      expect(JSON.parse(event!.Detail)).toEqual({
        jobId: job.jobId,
        status: 'succeeded',
        bucket: job.input.bucket,
        key: job.input.key,
        counts: out.counts,
        costUsd: summary.cost.batchUsd,
        resultsPrefix: `results/${job.jobId}/`,
      });
      expect(publishesFor(job.jobId)).toHaveLength(0);
    } finally {
      await stopApi(own);
    }
  });

  it('gives a failed chunk’s rows without a final result errored chunk_failed with the chunk’s cause', async () => {
    const own = await startApi({ seed: 3, batchFaultsBySequence: { 2: { errored: { overloaded_error: 0.5 } } } });
    try {
      const job = await seedJob(aws, { chunks: [requests(2, 'fine'), requests(4, 'half'), requests(2, 'never')] });
      const context = chunkContext(own);
      const config = context.config;
      const stateDeps = { s3: aws.s3, dynamo: aws.dynamo, api: own.api, config, now: () => NOW };
      await driveChunk(context, job.jobId, 0);
      // Chunk 1: attempt 1 collected (some rows to retry), then its retry fails to submit.
      const first = await submitChunk({ jobId: job.jobId, chunk: 1 }, stateDeps);
      own.sim.advance(120);
      await collectResults({ jobId: job.jobId, chunk: 1, attempt: 1, batchId: first.batchId }, stateDeps);
      await recordChunkFailure(
        { jobId: job.jobId, chunk: 1, error: { Error: 'ApiAuthError', Cause: '401 authentication_error: invalid x-api-key' } },
        stateDeps,
      );
      // Chunk 2: fails while its batch is in flight.
      await submitChunk({ jobId: job.jobId, chunk: 2 }, stateDeps);
      await recordChunkFailure({ jobId: job.jobId, chunk: 2, error: { Error: 'States.Timeout', Cause: 'PollBatch timed out' } }, stateDeps);

      const out = await finalizeJob({ jobId: job.jobId }, deps());
      const c1 = await readChunkItem(aws, job.jobId, 1);
      const retried = c1.attempts[0]!.retryRows!;
      expect(retried).toBeGreaterThan(0);
      expect(retried).toBeLessThan(4);
      expect(out.counts).toEqual({ succeeded: 2 + (4 - retried), errored: retried + 2, expired: 0, canceled: 0, invalid: 0 });

      const results = await readJsonl<ResultRow>(aws, job.keys.results);
      expect(results.map((r) => r.custom_id)).toEqual([...requests(2, 'fine'), ...requests(4, 'half'), ...requests(2, 'never')].map((r) => r.custom_id));
      const failed = results.filter((r) => r.error?.type === 'chunk_failed');
      expect(failed.map((r) => r.custom_id)).toEqual([
        ...results.filter((r) => r.custom_id.startsWith('half') && r.attempts === 2).map((r) => r.custom_id),
        'never-00000',
        'never-00001',
      ]);
      for (const row of failed.filter((r) => r.custom_id.startsWith('half'))) {
        expect(row).toEqual({
          custom_id: row.custom_id,
          status: 'errored',
          attempts: 2,
          batch_id: null,
          error: { type: 'chunk_failed', message: 'The chunk failed: ApiAuthError' },
          usage: null,
          cost_usd: null,
        });
      }
      const c2 = await readChunkItem(aws, job.jobId, 2);
      expect(results.find((r) => r.custom_id === 'never-00000')).toEqual({
        custom_id: 'never-00000',
        status: 'errored',
        attempts: 1,
        batch_id: c2.attempts[0]!.batchId,
        error: { type: 'chunk_failed', message: 'The chunk failed: States.Timeout' },
        usage: null,
        cost_usd: null,
      });
      expect(results.filter((r) => r.custom_id.startsWith('half') && r.attempts === 1).every((r) => r.status === 'succeeded')).toBe(true);

      const errors = await readJsonl(aws, job.keys.errors);
      expect(errors.find((e) => e.custom_id === 'never-00001')).toEqual({
        custom_id: 'never-00001',
        status: 'errored',
        error_type: 'chunk_failed',
        message: 'The chunk failed: States.Timeout',
        attempts: 1,
        batch_id: c2.attempts[0]!.batchId,
        cause: 'PollBatch timed out',
      });
      expect(errors).toHaveLength(retried + 2);
      expect(await readRow(aws, job.jobId, 'never-00001')).toMatchObject({ status: 'errored', final: true, errorType: 'chunk_failed', index: 1, chunk: 2 });
      const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
      expect(summary.errorsByType).toEqual({ chunk_failed: retried + 2 });
    } finally {
      await stopApi(own);
    }
  });

  it('finishes a canceled job as canceled, with rows never submitted canceled', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'halted')], cancelRequested: true });
    await driveChunk(chunkContext(), job.jobId, 0);
    const out = await finalizeJob({ jobId: job.jobId }, deps());
    expect(out).toEqual({ jobId: job.jobId, status: 'canceled', counts: { succeeded: 0, errored: 0, expired: 0, canceled: 2, invalid: 0 } });
    expect(await readJsonl(aws, job.keys.results)).toEqual(
      ['halted-00000', 'halted-00001'].map((id) => ({ custom_id: id, status: 'canceled', attempts: 1, batch_id: null, usage: null, cost_usd: null })),
    );
    expect((await readJsonl(aws, job.keys.errors)).map((e) => e.message)).toEqual([
      'The request was not submitted: the job was canceled first.',
      'The request was not submitted: the job was canceled first.',
    ]);
    expect((await readJobItem(aws, job.jobId)).status).toBe('canceled');
  });

  it('reports a row the batch returned no line for as errored missing_result', async () => {
    const rows = requests(2, 'absent');
    const job = await seedJob(aws, { chunks: [rows] });
    const batch = await ctx.api.create([rows[0]!]);
    const chunk = await readChunkItem(aws, job.jobId, 0);
    await updateItem(
      aws.dynamo,
      aws.table,
      { pk: jobPk(job.jobId), sk: chunk.sk },
      {
        set: { attempts: [{ ...chunk.attempts[0]!, batchId: batch.id, createdAt: batch.created_at, expiresAt: batch.expires_at }] },
      },
    );
    ctx.sim.advance(120);
    await collectResults(
      { jobId: job.jobId, chunk: 0, attempt: 1, batchId: batch.id },
      { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws) },
    );

    await finalizeJob({ jobId: job.jobId }, deps());
    const results = await readJsonl<ResultRow>(aws, job.keys.results);
    expect(results[1]).toEqual({
      custom_id: 'absent-00001',
      status: 'errored',
      attempts: 1,
      batch_id: batch.id,
      error: { type: 'missing_result', message: 'The batch returned no result for this request.' },
      usage: null,
      cost_usd: null,
    });
  });

  it('finishes a job whose succeeded results have odd shapes: each row keeps what it has, its cost null with the reason in the summary', async () => {
    const rows = requests(5, 'odd');
    const job = await seedJob(aws, { chunks: [rows] });
    const chunk = await readChunkItem(aws, job.jobId, 0);
    await updateItem(
      aws.dynamo,
      aws.table,
      { pk: jobPk(job.jobId), sk: chunk.sk },
      {
        set: { attempts: [{ ...chunk.attempts[0]!, batchId: 'msgbatch_odd', collectedAt: '2030-01-01T00:00:00.000Z' }] },
      },
    );
    const message = (usage: unknown) => ({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], usage });
    const results: Array<[string, unknown]> = [
      ['odd-00000', { type: 'succeeded', message: message({ input_tokens: 1000, output_tokens: 200 }) }],
      ['odd-00001', { type: 'succeeded', message: message(undefined) }],
      ['odd-00002', { type: 'succeeded', message: null }],
      ['odd-00003', { type: 'succeeded', message: message({ input_tokens: '12', output_tokens: 3 }) }],
      ['odd-00004', { type: 'succeeded' }],
    ];
    await putText(aws, job.keys.chunkResults(0, 1), results.map(([id, result]) => JSON.stringify({ custom_id: id, result }) + '\n').join(''));

    const out = await finalizeJob({ jobId: job.jobId }, deps());
    expect(out).toMatchObject({ status: 'succeeded', counts: { succeeded: 5, errored: 0 } });
    const written = await readJsonl<ResultRow>(aws, job.keys.results);
    const base = { status: 'succeeded', attempts: 1, batch_id: 'msgbatch_odd' };
    // claude-haiku-4-5 at batch rates: $0.50 / $2.50 per million tokens.
    expect(written).toEqual([
      {
        custom_id: 'odd-00000',
        ...base,
        usage: tokenTotals({ input_tokens: 1000, output_tokens: 200 }),
        cost_usd: 0.001,
        message: message({ input_tokens: 1000, output_tokens: 200 }),
      },
      { custom_id: 'odd-00001', ...base, usage: null, cost_usd: null, message: message(undefined) },
      { custom_id: 'odd-00002', ...base, usage: null, cost_usd: null, message: null },
      { custom_id: 'odd-00003', ...base, usage: null, cost_usd: null, message: message({ input_tokens: '12', output_tokens: 3 }) },
      { custom_id: 'odd-00004', ...base, usage: null, cost_usd: null },
    ]);
    const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
    expect(summary.cost).toMatchObject({ batchUsd: 0.001, unpricedModels: [], unpricedRows: { no_message: 2, no_usage: 1, unreadable_usage: 1 } });
    expect(summary.tokens).toEqual({ input: 1000, output: 200, cache_creation_input: 0, cache_read_input: 0 });
  });

  it('finishes a rejected job from what Prepare recorded, the input gone: every valid row canceled (not submitted), the invalid ones reported, the topic told', async () => {
    const valid = [request('ok-1'), request('ok-2'), request('ok-3'), request('ok-4')];
    const key = `inbox/${uniqueJobId('rejected')}.jsonl`;
    const lines = [valid[0], valid[1], valid[2], '{not json', '', valid[3]].map((row) => (typeof row === 'string' ? row : JSON.stringify(row)));
    await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: key, Body: lines.join('\n') + '\n' }));
    // Chunks of 2: the rows before the bad line fill one chunk file and start another; ok-4 comes after it.
    const config = pipelineConfig(aws, { maxRequestsPerChunk: 2 });
    const { jobId } = await registerJob({ bucket: aws.bucket, key, mode: 'strict' }, { s3: aws.s3, dynamo: aws.dynamo, config, now: () => NOW });
    expect(await prepareJob({ jobId }, { s3: aws.s3, dynamo: aws.dynamo, config, now: () => NOW })).toMatchObject({ outcome: 'rejected' });
    await aws.s3.send(new DeleteObjectCommand({ Bucket: aws.bucket, Key: key }));
    const keys = jobKeys(jobId);

    const out = await finalizeJob({ jobId, outcome: 'rejected' }, deps());
    expect(out).toEqual({
      jobId,
      status: 'rejected',
      counts: { succeeded: 0, errored: 0, expired: 0, canceled: 4, invalid: 1 },
      rejection: { Error: 'ValidationFailed', Cause: "The input file has an invalid line, so nothing was submitted; see the job's invalid.jsonl" },
    });
    expect(await readJsonl(aws, keys.results)).toEqual(
      valid.map((r) => ({ custom_id: r.custom_id, status: 'canceled', attempts: 0, batch_id: null, usage: null, cost_usd: null })),
    );
    expect(await readJsonl(aws, keys.errors)).toEqual(
      valid.map((r) => ({
        custom_id: r.custom_id,
        status: 'canceled',
        error_type: null,
        message: 'The request was not submitted: strict validation rejected the file (see invalid.jsonl).',
        attempts: 0,
        batch_id: null,
      })),
    );
    expect((await readJsonl<{ line: number; code: string }>(aws, keys.invalid)).map(({ line, code }) => ({ line, code }))).toEqual([
      { line: 4, code: 'invalid_json' },
    ]);
    const summary = JSON.parse((await readText(aws, keys.summary))!) as JobSummary;
    expect(summary).toMatchObject({ status: 'rejected', validationMode: 'strict', counts: { total: 5, canceled: 4, invalid: 1 }, chunks: 0, batches: [] });
    expect((await readJobItem(aws, jobId)).status).toBe('rejected');
    expect(publishesFor(jobId)).toHaveLength(1);
    expect(JSON.parse(eventsFor(jobId)[0]!.Detail)).toMatchObject({ status: 'rejected', counts: out.counts });
  });

  it('fails a rejected job with WorkFileMissing, claiming nothing, when what Prepare recorded is gone', async () => {
    const job = await seedJob(aws, { chunks: [[request('ok-1')]], outcome: 'rejected', invalid: INVALID.slice(0, 1), validationMode: 'strict' });

    await expect(finalizeJob({ jobId: job.jobId, outcome: 'rejected' }, deps())).rejects.toBeInstanceOf(WorkFileMissing);
    expect(await readText(aws, job.keys.summary)).toBeUndefined();
    expect((await readJobItem(aws, job.jobId)).status).toBe('rejected');
  });

  it('rejects an empty job (no request at all) with empty outputs and its reason', async () => {
    const job = await seedJob(aws, { chunks: [] });
    const out = await finalizeJob({ jobId: job.jobId, outcome: 'empty' }, deps());
    const rejection = { Error: 'EmptyInput', Cause: 'The input file holds no requests: it is empty, or only blank lines' };
    expect(out).toEqual({ jobId: job.jobId, status: 'rejected', counts: { succeeded: 0, errored: 0, expired: 0, canceled: 0, invalid: 0 }, rejection });
    expect((await readJobItem(aws, job.jobId)).failure).toEqual({ error: rejection.Error, cause: rejection.Cause });
    expect(await readText(aws, job.keys.results)).toBe('');
    expect(await readText(aws, job.keys.errors)).toBe('');
    expect(await readText(aws, job.keys.invalid)).toBe('');
    const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
    expect(summary.counts).toEqual({ total: 0, succeeded: 0, errored: 0, expired: 0, canceled: 0, invalid: 0 });
    expect(summary.cost).toEqual({ batchUsd: 0, standardUsd: 0, savedUsd: 0, byModel: {}, unpricedModels: [] });
  });

  it('refuses to write a summary whose counts do not add up', async () => {
    const job = await seedJob(aws, { chunks: [requests(2, 'short')] });
    await driveChunk(chunkContext(), job.jobId, 0);
    // The job claims a row that no chunk holds.
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { validRows: 3, totalRows: 3 } });

    await expect(finalizeJob({ jobId: job.jobId }, deps())).rejects.toBeInstanceOf(CountsMismatch);
    expect(await readText(aws, job.keys.summary)).toBeUndefined();
    expect(await readText(aws, job.keys.results)).toBeUndefined();
    expect((await readJobItem(aws, job.jobId)).status).toBe('running');
  });

  it('does not fail a finished job when its notification is refused', async () => {
    const job = await seedJob(aws, { chunks: [requests(1, 'quiet')] });
    await driveChunk(chunkContext(), job.jobId, 0);
    recorder.failNextPutEvents('InternalFailure');
    expect((await finalizeJob({ jobId: job.jobId }, deps())).status).toBe('succeeded');
    expect((await readJobItem(aws, job.jobId)).status).toBe('succeeded');
    expect(await readText(aws, job.keys.summary)).toBeDefined();
  });

  it('converges when run again', async () => {
    const job = await seedJob(aws, { chunks: [requests(3, 'twice'), requests(1, 'twice-b')] });
    await driveChunk(chunkContext(), job.jobId, 0);
    await driveChunk(chunkContext(), job.jobId, 1);
    const first = await finalizeJob({ jobId: job.jobId }, deps());
    const outputs = await Promise.all([job.keys.results, job.keys.errors, job.keys.summary, job.keys.invalid].map((k) => readText(aws, k)));
    const later = { ...deps(), now: () => NOW + 3_600_000 };
    expect(await finalizeJob({ jobId: job.jobId }, later)).toEqual(first);
    expect(await Promise.all([job.keys.results, job.keys.errors, job.keys.summary, job.keys.invalid].map((k) => readText(aws, k)))).toEqual(outputs);
  });
});

describe('the chunk and finalize handlers', () => {
  const aws = useLocalAws({ bucket: 'batchline-handlers', table: 'batchline-handlers' });
  let ctx: ApiContext;
  let shim: AwsShim;
  const SECRET = 'batchline/api-key';
  beforeAll(async () => {
    ctx = await startApi();
    shim = await startAwsShim({
      secret: (id) => (id === SECRET ? TEST_API_KEY : undefined),
      startExecution: () => {
        throw new Error('not used here');
      },
      describeExecution: () => undefined,
      listExecutions: () => [],
    });
  });
  afterAll(async () => {
    await stopApi(ctx);
    await shim.stop();
  });

  /** As Step Functions passes a state's output on: through JSON. */
  const viaJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

  it('run a job’s chunks to its outputs with clients and settings from the environment', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, aws.env, shim.env, { ANTHROPIC_BASE_URL: ctx.sim.url, BATCHLINE_API_KEY_SECRET: SECRET });
    try {
      const job = await seedJob(aws, { chunks: [requests(2, 'wired'), requests(1, 'broken')] });
      const submit = (await import('../../functions/submit-chunk')).handler;
      const poll = (await import('../../functions/poll-batch')).handler;
      const collect = (await import('../../functions/collect-results')).handler;
      const recordFailure = (await import('../../functions/record-chunk-failure')).handler;
      const finalize = (await import('../../functions/finalize-job')).handler;

      const submitted = viaJson(await submit({ jobId: job.jobId, chunk: 0 }));
      expect(submitted).toMatchObject({ jobId: job.jobId, chunk: 0, attempt: 1, canceled: false, waitSeconds: 30 });
      ctx.sim.advance(submitted.waitSeconds + 60);
      const polled = viaJson(await poll(submitted));
      expect(polled).toMatchObject({ batchId: submitted.batchId, ended: true, waitSeconds: 0 });
      expect(viaJson(await collect(polled))).toEqual({ jobId: job.jobId, chunk: 0, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false });

      await expect(recordFailure({ jobId: job.jobId, chunk: 1 })).rejects.toBeInstanceOf(InvalidStateInput);
      const failure = { jobId: job.jobId, chunk: 1, error: { Error: 'BatchTooLarge', Cause: 'refused' } };
      expect(await recordFailure(failure)).toEqual({ jobId: job.jobId, chunk: 1, ok: false });

      const prepared = {
        jobId: job.jobId,
        outcome: 'ready',
        chunks: [
          { jobId: job.jobId, chunk: 0 },
          { jobId: job.jobId, chunk: 1 },
        ],
        validRows: 3,
        invalidRows: 0,
      };
      expect(await finalize(prepared)).toEqual({
        jobId: job.jobId,
        status: 'succeeded',
        counts: { succeeded: 2, errored: 1, expired: 0, canceled: 0, invalid: 0 },
      });
      expect(shim.events.filter((e) => (e.detail as { jobId?: string }).jobId === job.jobId)).toHaveLength(1);
    } finally {
      process.env = saved;
    }
  });
});

describe('resultCustomId', () => {
  it('reads the custom_id of a results line, by its prefix when the API’s shape is there and by parsing otherwise', () => {
    expect(resultCustomId(Buffer.from('{"custom_id":"row-1_A","result":{"type":"expired"}}'))).toBe('row-1_A');
    expect(resultCustomId(Buffer.from('{"result":{"type":"expired"},"custom_id":"later"}'))).toBe('later');
    expect(resultCustomId(Buffer.from('{"custom_id":"esc\\u0061ped","result":{}}'))).toBe('escaped');
    expect(resultCustomId(Buffer.from('{"custom_id" : "spaced"}'))).toBe('spaced');
    expect(resultCustomId(Buffer.from('{"result":{}}'))).toBeUndefined();
    // A line that names no custom_id, or is not JSON, is no row's.
    expect(resultCustomId(Buffer.from('{"custom_id":"cut'))).toBeUndefined();
    expect(resultCustomId(Buffer.from([0xff, 0x00, 0x7b]))).toBeUndefined();
  });
});
