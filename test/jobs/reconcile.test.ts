import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoDBClient, QueryCommandInput } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { BatchesApi } from '../../shared/anthropic/api';
import type { BatchResultLine } from '../../shared/anthropic/types';
import type { PipelineConfig } from '../../shared/config';
import { updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk } from '../../shared/store/items';
import { collectResults } from '../../shared/jobs/collect-results';
import { EXECUTION_STATUS_CHANGE, executionFailure, handleExecutionEnded, STATES_SOURCE } from '../../shared/jobs/execution-ended';
import { CancelFailed, markJobFailed } from '../../shared/jobs/mark-job-failed';
import type { JobSummary, ResultRow } from '../../shared/jobs/finalize-job';
import { pollBatch } from '../../shared/jobs/poll-batch';
import { executionErrorOf, isExecutionOf, reconcileJobs, type ReconcileDeps, type ReconcileReport } from '../../shared/jobs/reconcile-jobs';
import { registerJob } from '../../shared/jobs/register-job';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { runStragglers, SYNC_OUTCOME_UNKNOWN } from '../../shared/jobs/stragglers';
import { createPipelineTable, localDynamoClient, localS3Client } from '../../local/emulators';
import { useLocalAws, type LocalAws } from '../support/aws';
import { readChunkItem, readJobItem, readJsonl, readText, seedJob, startApi, stopApi, type ApiContext, type SeededJob } from '../support/chunks';
import { jsonl, objectCreated, pipelineConfig, putInput, request as inputRequest, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { requests } from '../support/requests';

const MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:batchline-jobs';
const executionArn = (name: string) => `arn:aws:states:us-east-1:123456789012:execution:batchline-jobs:${name}`;
/** seedJob's jobs are created 2026-01-02; the reconciler runs some days later. */
const NOW = Date.parse('2026-01-20T00:00:00.000Z');
const NOTHING: ReconcileReport = { examined: 0, collected: 0, canceled: 0, finalized: 0, recovered: 0, markedFailed: 0, orphans: 0, errors: 0, complete: true };

describe('reconcileJobs', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let notify: RecordingEndpoint;
  let tables = 0;

  beforeAll(async () => {
    // Batches take a simulated minute; the tests move the simulator's clock.
    ctx = await startApi({ processingSeconds: 60 });
    notify = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await stopApi(ctx);
    await notify?.stop();
  });
  afterEach(() => {
    ctx.sim.setBatchFaults(undefined);
    ctx.sim.setHttpFaults([]);
    notify.calls.length = 0;
  });

  /** A table of its own per test: the reconciler looks at every open job of the table. */
  async function freshStore(): Promise<{ store: LocalAws; config: PipelineConfig }> {
    const table = `reconcile-${++tables}`;
    await createPipelineTable(aws.dynamo, table);
    return { store: { ...aws, table }, config: pipelineConfig(aws, { table, maxAttempts: 2, retryBackoffSeconds: 60 }) };
  }

  /** A job as the workflow leaves it: Prepare's records, run by execution `name`. */
  async function deadJob(store: LocalAws, name: string, chunks: number[]): Promise<SeededJob> {
    const job = await seedJob(store, { chunks: chunks.map((rows, i) => requests(rows, `c${i}`)) });
    await updateItem(store.dynamo, store.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { executionArn: executionArn(name) } });
    return job;
  }

  const stepDeps = (store: LocalAws, config: PipelineConfig) => ({ s3: store.s3, dynamo: store.dynamo, api: ctx.api, config });

  function deps(
    store: LocalAws,
    config: PipelineConfig,
    executions: Record<string, string>,
    extra: Partial<ReconcileDeps> = {},
  ): ReconcileDeps & { described: string[] } {
    const described: string[] = [];
    return {
      s3: store.s3,
      dynamo: store.dynamo,
      api: ctx.api,
      config,
      notify: { clients: { events: notify.events, sns: notify.sns }, config: { eventBus: 'default', topicArn: undefined } },
      describeExecution: async (arn) => {
        described.push(arn);
        return executions[arn];
      },
      stateMachineArn: MACHINE,
      now: () => NOW,
      described,
      ...extra,
    };
  }

  /** The API's result line for each custom_id of a chunk attempt, as Collect stored it. */
  async function apiLines(job: SeededJob, chunk: number, attempt = 1): Promise<BatchResultLine[]> {
    return readJsonl<BatchResultLine>(aws, job.keys.chunkResults(chunk, attempt));
  }

  const rowOf = (line: BatchResultLine, batchId: string) => ({
    custom_id: line.custom_id,
    status: line.result.type,
    attempts: 1,
    batch_id: batchId,
    ...(line.result.type === 'errored' ? { error: { type: line.result.error.error.type } } : {}),
  });

  it('collects and finalizes a dead job whose batches ended, every outcome final (no retry batch)', async () => {
    const { store, config } = await freshStore();
    // Transient errors the workflow would retry: the reconciler must not.
    ctx.sim.setBatchFaults({ errored: { overloaded_error: 0.5 } });
    const job = await deadJob(store, 'died-1', [3, 2]);
    const batch0 = (await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    const batch1 = (await submitChunk({ jobId: job.jobId, chunk: 1 }, stepDeps(store, config))).batchId!;
    ctx.sim.advance(120);
    // The workflow saw chunk 0 end, then died; chunk 1's end was never seen.
    expect((await pollBatch({ jobId: job.jobId, chunk: 0, attempt: 1, batchId: batch0 }, stepDeps(store, config))).ended).toBe(true);
    const created = ctx.sim.stats().batchesCreated.length;

    const report = await reconcileJobs(deps(store, config, { [executionArn('died-1')]: 'FAILED' }));

    expect(report).toEqual({ ...NOTHING, examined: 1, collected: 2, finalized: 1 });
    const lines0 = await apiLines(job, 0);
    const lines1 = await apiLines(job, 1);
    expect(lines0.map((l) => l.custom_id).sort()).toEqual(['c0-00000', 'c0-00001', 'c0-00002']);
    const byId = new Map([...lines0.map((l) => [l.custom_id, rowOf(l, batch0)] as const), ...lines1.map((l) => [l.custom_id, rowOf(l, batch1)] as const)]);
    const expected = [...job.chunks[0]!, ...job.chunks[1]!].map((r) => byId.get(r.custom_id)!);
    expect(expected.filter((row) => row.status === 'errored').map((row) => row.error!.type)).toContain('overloaded_error');

    const results = await readJsonl<ResultRow>(aws, job.keys.results);
    expect(
      results.map(({ custom_id, status, attempts, batch_id, error }) => ({
        custom_id,
        status,
        attempts,
        batch_id,
        ...(error ? { error: { type: error.type } } : {}),
      })),
    ).toEqual(expected);
    const count = (status: string) => expected.filter((row) => row.status === status).length;
    const counts = { succeeded: count('succeeded'), errored: count('errored'), expired: 0, canceled: 0, invalid: 0 };
    expect(await readJobItem(store, job.jobId)).toMatchObject({ status: 'succeeded', counts });
    const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
    expect(summary).toMatchObject({ status: 'succeeded', counts: { total: 5, ...counts }, retries: { attempts: 0, rows: 0 } });
    expect(await readText(aws, job.keys.chunkRequests(0, 2))).toBeUndefined();
    expect(await readText(aws, job.keys.chunkRequests(1, 2))).toBeUndefined();
    expect(ctx.sim.stats().batchesCreated.length).toBe(created);
  });

  it('changes nothing when run again after finalizing', async () => {
    const { store, config } = await freshStore();
    const job = await deadJob(store, 'died-2', [2]);
    await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config));
    ctx.sim.advance(120);
    expect(await reconcileJobs(deps(store, config, { [executionArn('died-2')]: 'TIMED_OUT' }))).toMatchObject({ collected: 1, finalized: 1 });
    const outputs = async () => ({
      job: await readJobItem(store, job.jobId),
      chunk: await readChunkItem(store, job.jobId, 0),
      results: await readText(aws, job.keys.results),
      summary: await readText(aws, job.keys.summary),
    });
    const before = await outputs();
    const calls = { ...ctx.sim.stats().calls };
    notify.calls.length = 0;

    const again = deps(store, config, { [executionArn('died-2')]: 'TIMED_OUT' });
    expect(await reconcileJobs(again)).toEqual(NOTHING);

    expect(await outputs()).toEqual(before);
    expect(ctx.sim.stats().calls).toEqual(calls);
    expect(again.described).toEqual([]);
    expect(notify.calls).toEqual([]);
  });

  it('leaves a job whose execution is still running untouched, and jobs of other state machines too', async () => {
    const { store, config } = await freshStore();
    const running = await deadJob(store, 'alive', [2]);
    const foreign = await seedJob(store, { chunks: [requests(1, 'f')] });
    await updateItem(
      store.dynamo,
      store.table,
      { pk: jobPk(foreign.jobId), sk: JOB_SK },
      {
        set: { executionArn: 'arn:aws:states:us-east-1:123456789012:execution:another-machine:x' },
      },
    );
    const batchId = (await submitChunk({ jobId: running.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    ctx.sim.advance(120);
    const before = { job: await readJobItem(store, running.jobId), chunk: await readChunkItem(store, running.jobId, 0) };
    const calls = { ...ctx.sim.stats().calls };

    const run = deps(store, config, { [executionArn('alive')]: 'RUNNING' });
    const report = await reconcileJobs(run);

    expect(report).toEqual({ ...NOTHING, examined: 2 });
    expect(run.described).toEqual([executionArn('alive')]);
    expect({ job: await readJobItem(store, running.jobId), chunk: await readChunkItem(store, running.jobId, 0) }).toEqual(before);
    expect(ctx.sim.stats().calls).toEqual(calls);
    expect((await ctx.api.retrieve(batchId)).processing_status).toBe('ended');
  });

  it('cancels the batch a dead job still has in progress, waits while it cancels, and collects it once it has ended', async () => {
    const { store, config } = await freshStore();
    // An hour's work, so none of it is done when the cancel lands.
    ctx.sim.setBatchFaults({ processingSeconds: 3600 });
    const job = await deadJob(store, 'gone', [3]);
    const batchId = (await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    const executions = {}; // DescribeExecution no longer knows the execution

    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 1, canceled: 1 });
    expect((await ctx.api.retrieve(batchId)).processing_status).toBe('canceling');
    expect((await readJobItem(store, job.jobId)).cancelRequested).toBe(true);
    expect((await readChunkItem(store, job.jobId, 0)).attempts[0]).toMatchObject({
      batchId,
      processingStatus: 'canceling',
      cancelSentAt: new Date(NOW).toISOString(),
    });

    // Still canceling: a second run sends no second cancel and changes nothing.
    const chunk = await readChunkItem(store, job.jobId, 0);
    const cancels = ctx.sim.stats().calls.cancel;
    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 1 });
    expect(ctx.sim.stats().calls.cancel).toBe(cancels);
    expect(await readChunkItem(store, job.jobId, 0)).toEqual(chunk);

    ctx.sim.advance(10);
    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 1, collected: 1, finalized: 1 });
    const results = await readJsonl<ResultRow>(aws, job.keys.results);
    expect(results.map(({ custom_id, status, batch_id }) => ({ custom_id, status, batch_id }))).toEqual(
      ['c0-00000', 'c0-00001', 'c0-00002'].map((custom_id) => ({ custom_id, status: 'canceled', batch_id: batchId })),
    );
    expect(await readJobItem(store, job.jobId)).toMatchObject({
      status: 'canceled',
      counts: { succeeded: 0, errored: 0, expired: 0, canceled: 3, invalid: 0 },
    });
    expect(await reconcileJobs(deps(store, config, executions))).toEqual(NOTHING);
  });

  it('closes a retry the dead workflow never submitted as canceled rows, without creating its batch', async () => {
    const { store, config } = await freshStore();
    ctx.sim.setBatchFaults({ errored: { overloaded_error: 1 } });
    const job = await deadJob(store, 'died-waiting', [2]);
    const batchId = (await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    ctx.sim.advance(120);
    // Collect put both rows into attempt 2; the workflow died in WaitBeforeRetry.
    expect(await collectResults({ jobId: job.jobId, chunk: 0, attempt: 1, batchId }, stepDeps(store, config))).toMatchObject({ retry: true });
    expect(await readChunkItem(store, job.jobId, 0)).toMatchObject({ status: 'retry_wait', currentAttempt: 2 });
    const created = ctx.sim.stats().batchesCreated.length;

    const report = await reconcileJobs(deps(store, config, { [executionArn('died-waiting')]: 'FAILED' }));

    expect(report).toEqual({ ...NOTHING, examined: 1, collected: 1, finalized: 1 });
    expect(ctx.sim.stats().batchesCreated.length).toBe(created);
    const results = await readJsonl<ResultRow>(aws, job.keys.results);
    expect(results.map(({ custom_id, status, attempts, batch_id }) => ({ custom_id, status, attempts, batch_id }))).toEqual([
      { custom_id: 'c0-00000', status: 'canceled', attempts: 2, batch_id: null },
      { custom_id: 'c0-00001', status: 'canceled', attempts: 2, batch_id: null },
    ]);
    expect(await readJobItem(store, job.jobId)).toMatchObject({ status: 'canceled', cancelRequested: true });
  });

  it('records a chunk failed when its results were archived unread or its batch is gone, and finalizes the job', async () => {
    const { store, config } = await freshStore();
    const job = await deadJob(store, 'died-long-ago', [2, 1]);
    const archived = (await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    const deleted = (await submitChunk({ jobId: job.jobId, chunk: 1 }, stepDeps(store, config))).batchId!;
    ctx.sim.advance(30 * 86_400);
    expect((await ctx.api.retrieve(archived)).archived_at).not.toBeNull();
    await ctx.api.delete(deleted);

    const report = await reconcileJobs(deps(store, config, { [executionArn('died-long-ago')]: 'FAILED' }));

    expect(report).toEqual({ ...NOTHING, examined: 1, finalized: 1 });
    const ended = `execution ${executionArn('died-long-ago')} ended FAILED`;
    expect(await readChunkItem(store, job.jobId, 0)).toMatchObject({ status: 'failed', failure: { error: 'ResultsArchived' } });
    expect((await readChunkItem(store, job.jobId, 1)).failure).toEqual({
      error: 'BatchNotFound',
      cause: `batch ${deleted} of attempt 1 no longer exists; ${ended}`,
    });
    const errors = await readJsonl<{ custom_id: string; error_type: string; cause: string }>(aws, job.keys.errors);
    expect(errors.map(({ custom_id, error_type }) => ({ custom_id, error_type }))).toEqual([
      { custom_id: 'c0-00000', error_type: 'chunk_failed' },
      { custom_id: 'c0-00001', error_type: 'chunk_failed' },
      { custom_id: 'c1-00000', error_type: 'chunk_failed' },
    ]);
    expect(errors[0]!.cause).toMatch(new RegExp(`^the results of batch ${archived} \\(attempt 1\\) were archived at .+, unread; ${ended}$`));
    expect(await readJobItem(store, job.jobId)).toMatchObject({
      status: 'succeeded',
      counts: { succeeded: 0, errored: 3, expired: 0, canceled: 0, invalid: 0 },
    });
  });

  it('marks a dead job that never got past Prepare failed, and announces it', async () => {
    const { store, config } = await freshStore();
    const key = 'inbox/never-prepared.jsonl';
    const { etag } = await putInput(store, key, jsonl([inputRequest('p1')]));
    const event = objectCreated({ bucket: aws.bucket, key, etag, sequencer: '0062E99A88DC407461' });
    const { jobId } = await registerJob(
      { event, executionArn: executionArn('died-early') },
      { s3: store.s3, dynamo: store.dynamo, config, now: () => NOW - 86_400_000 },
    );

    const report = await reconcileJobs(deps(store, config, { [executionArn('died-early')]: 'FAILED' }));

    expect(report).toEqual({ ...NOTHING, examined: 1, markedFailed: 1 });
    const failure = { error: 'WorkflowEnded', cause: `execution ${executionArn('died-early')} ended FAILED before the job was prepared` };
    expect(await readJobItem(store, jobId)).toMatchObject({ status: 'failed', failure });
    const announced = notify.calls.find((call) => call.action === 'AWSEvents.PutEvents');
    expect(JSON.parse((announced?.body.Entries as Array<{ Detail: string }>)[0]!.Detail)).toMatchObject({ jobId, status: 'failed', failure });
  });

  it('cancels the batch a failed job left un-canceled, announces nothing more, and then leaves the job alone', async () => {
    const { store, config } = await freshStore();
    ctx.sim.setBatchFaults({ processingSeconds: 3600 });
    const job = await deadJob(store, 'cancel-refused', [2, 1]);
    const refused = (await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    const accepted = (await submitChunk({ jobId: job.jobId, chunk: 1 }, stepDeps(store, config))).batchId!;
    // The workflow's MarkJobFailed, one cancel at a time: the first is refused on every try (the client retries twice).
    ctx.sim.setHttpFaults([{ endpoint: 'cancel', status: 529, times: 3 }]);
    const failure = { error: 'States.Timeout', cause: 'PollBatch timed out' };
    const failDeps = {
      dynamo: store.dynamo,
      api: ctx.api,
      events: notify.events,
      sns: notify.sns,
      config: { table: store.table, notify: { eventBus: 'default', topicArn: undefined } },
      now: () => NOW - 3_600_000,
      concurrency: 1,
    };
    await expect(markJobFailed({ jobId: job.jobId, error: { Error: failure.error, Cause: failure.cause } }, failDeps)).rejects.toBeInstanceOf(CancelFailed);
    const status = async (batchId: string) => (await ctx.api.retrieve(batchId)).processing_status;
    expect([await status(refused), await status(accepted)]).toEqual(['in_progress', 'canceling']);
    notify.calls.length = 0;
    const executions = { [executionArn('cancel-refused')]: 'FAILED' };

    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 1, canceled: 1 });

    expect([await status(refused), await status(accepted)]).toEqual(['canceling', 'canceling']);
    expect((await readChunkItem(store, job.jobId, 0)).attempts[0]).toMatchObject({ batchId: refused, cancelSentAt: new Date(NOW).toISOString() });
    expect(await readJobItem(store, job.jobId)).toMatchObject({ status: 'failed', failure, failureAnnouncedAt: new Date(NOW - 3_600_000).toISOString() });
    expect(notify.calls).toEqual([]);

    const calls = { ...ctx.sim.stats().calls };
    const again = deps(store, config, executions);
    expect(await reconcileJobs(again)).toEqual(NOTHING);
    expect(again.described).toEqual([]);
    expect(ctx.sim.stats().calls).toEqual(calls);
  });

  it("reads a failed job's chunks once in a run, however much its failure left undone", async () => {
    const { store, config } = await freshStore();
    ctx.sim.setBatchFaults({ processingSeconds: 3600 });
    const job = await deadJob(store, 'read-once', [1, 1]);
    for (const chunk of [0, 1]) await submitChunk({ jobId: job.jobId, chunk }, stepDeps(store, config));
    // MarkJobFailed could cancel neither batch (the client retries twice), and its cause is one a Finalize re-run cures.
    ctx.sim.setHttpFaults([{ endpoint: 'cancel', status: 529, times: 6 }]);
    await expect(failJobAsWorkflow(store, job.jobId, { error: 'States.Timeout', cause: 'PollBatch timed out' })).rejects.toBeInstanceOf(CancelFailed);
    ctx.sim.setHttpFaults([]);
    const chunkQueries: QueryCommandInput[] = [];
    const dynamo = countingQueries(store, chunkQueries);

    const report = await reconcileJobs(deps(store, config, { [executionArn('read-once')]: 'FAILED' }, { dynamo }));

    expect(report).toEqual({ ...NOTHING, examined: 1, canceled: 2 });
    const ofTheJob = chunkQueries.filter((q) => q.IndexName === undefined && q.ExpressionAttributeValues?.[':pk']?.S === jobPk(job.jobId));
    expect(ofTheJob).toHaveLength(1);
    dynamo.destroy();
  });

  it('fails the chunk at once when its batch is deleted between the retrieve and the cancel', async () => {
    const { store, config } = await freshStore();
    ctx.sim.setBatchFaults({ processingSeconds: 3600 });
    const job = await deadJob(store, 'deleted-meanwhile', [1]);
    const batchId = (await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config))).batchId!;
    // Past the first seconds after create, when a 404 may only mean the batch is not visible yet.
    ctx.sim.advance(60);
    // From the cancel on, the API no longer knows the batch.
    const deletedOnCancel = new Proxy(ctx.api, {
      get(target, property) {
        if (property === 'cancel') {
          return (id: string) => {
            ctx.sim.setHttpFaults([{ endpoint: ['cancel', 'retrieve'], status: 404, times: 10 }]);
            return target.cancel(id);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as BatchesApi;

    const report = await reconcileJobs(deps(store, config, { [executionArn('deleted-meanwhile')]: 'FAILED' }, { api: deletedOnCancel }));

    expect(report).toEqual({ ...NOTHING, examined: 1, finalized: 1 });
    const ended = `execution ${executionArn('deleted-meanwhile')} ended FAILED`;
    expect((await readChunkItem(store, job.jobId, 0)).failure).toEqual({
      error: 'BatchNotFound',
      cause: `batch ${batchId} of attempt 1 no longer exists; ${ended}`,
    });
  });

  /** A DynamoDB client of the test's own, noting every Query it sends. */
  function countingQueries(store: LocalAws, queries: QueryCommandInput[]): DynamoDBClient {
    const client = localDynamoClient(store.dynamoServer.endpoint);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'QueryCommand') queries.push(args.input as QueryCommandInput);
        return next(args);
      },
      { step: 'initialize' },
    );
    return client;
  }

  /** MarkJobFailed as the workflow's Catch runs it, an hour before the reconciler. */
  const failJobAsWorkflow = (store: LocalAws, jobId: string, error: { error: string; cause: string }) =>
    markJobFailed(
      { jobId, error: { Error: error.error, Cause: error.cause } },
      {
        dynamo: store.dynamo,
        api: ctx.api,
        events: notify.events,
        sns: notify.sns,
        config: { table: store.table, notify: { eventBus: 'default', topicArn: undefined } },
        now: () => NOW - 3_600_000,
      },
    );

  /** Runs every chunk of a job through Submit and Collect: all its rows collected and paid. */
  async function collectAll(store: LocalAws, config: PipelineConfig, job: SeededJob): Promise<string[]> {
    const batchIds = [];
    for (let chunk = 0; chunk < job.chunks.length; chunk++) batchIds.push((await submitChunk({ jobId: job.jobId, chunk }, stepDeps(store, config))).batchId!);
    ctx.sim.advance(120);
    for (const [chunk, batchId] of batchIds.entries()) await collectResults({ jobId: job.jobId, chunk, attempt: 1, batchId }, stepDeps(store, config));
    return batchIds;
  }

  it('finalizes a failed job whose FinalizeJob timed out after every chunk was collected, keeping the failure, and then leaves it alone', async () => {
    const { store, config } = await freshStore();
    const job = await deadJob(store, 'finalize-timed-out', [2, 1]);
    const batchIds = await collectAll(store, config, job);
    const failure = { error: 'States.Timeout', cause: 'FinalizeJob timed out' };
    await failJobAsWorkflow(store, job.jobId, failure);
    expect(await readJobItem(store, job.jobId)).toMatchObject({ status: 'failed', failure, cancelRequested: true });
    notify.calls.length = 0;
    const executions = { [executionArn('finalize-timed-out')]: 'FAILED' };

    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 1, recovered: 1 });

    const results = await readJsonl<ResultRow>(aws, job.keys.results);
    expect(results.map(({ custom_id, status, attempts, batch_id }) => ({ custom_id, status, attempts, batch_id }))).toEqual([
      { custom_id: 'c0-00000', status: 'succeeded', attempts: 1, batch_id: batchIds[0] },
      { custom_id: 'c0-00001', status: 'succeeded', attempts: 1, batch_id: batchIds[0] },
      { custom_id: 'c1-00000', status: 'succeeded', attempts: 1, batch_id: batchIds[1] },
    ]);
    expect(await readText(aws, job.keys.errors)).toBe('');
    const counts = { succeeded: 3, errored: 0, expired: 0, canceled: 0, invalid: 0 };
    // Not canceled: the cancel flag was MarkJobFailed's, and no row was canceled.
    expect(await readJobItem(store, job.jobId)).toMatchObject({ status: 'succeeded', counts, failure, endedAt: new Date(NOW - 3_600_000).toISOString() });
    const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
    expect(summary).toMatchObject({ status: 'succeeded', counts: { total: 3, ...counts }, recoveredFrom: failure });
    const announced = notify.calls.filter((call) => call.action === 'AWSEvents.PutEvents');
    expect(announced.map((call) => JSON.parse((call.body.Entries as Array<{ Detail: string }>)[0]!.Detail) as { status: string })).toEqual([
      expect.objectContaining({ jobId: job.jobId, status: 'succeeded', counts }),
    ]);

    const again = deps(store, config, executions);
    expect(await reconcileJobs(again)).toEqual(NOTHING);
    expect(again.described).toEqual([]);
  });

  it('finalizes failed jobs whose FinalizeJob ran out of memory or died unnamed, as Lambda and Step Functions report those', async () => {
    const { store, config } = await freshStore();
    const failures = [
      { error: 'Runtime.OutOfMemory', cause: 'Runtime.OutOfMemory: RequestId: r-1 Error: Runtime exited with error: signal: killed' },
      { error: 'Lambda.Unknown', cause: 'The cause could not be determined because Lambda did not return an error type.' },
      { error: 'Lambda.ClientExecutionTimeoutException', cause: 'Client execution did not complete before the specified timeout configuration' },
    ];
    const jobs: SeededJob[] = [];
    for (const [i, failure] of failures.entries()) {
      const job = await deadJob(store, `finalize-killed-${i}`, [1]);
      await collectAll(store, config, job);
      await failJobAsWorkflow(store, job.jobId, failure);
      jobs.push(job);
    }
    const executions = Object.fromEntries(failures.map((_, i) => [executionArn(`finalize-killed-${i}`), 'FAILED']));

    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 3, recovered: 3 });

    for (const [i, job] of jobs.entries()) {
      expect(await readJobItem(store, job.jobId)).toMatchObject({ status: 'succeeded', failure: failures[i] });
      expect(JSON.parse((await readText(aws, job.keys.summary))!)).toMatchObject({ status: 'succeeded', recoveredFrom: failures[i] });
    }
  });

  /** The EventBridge rule's ExecutionEnded, on an execution of a seeded job that ended `status` with `error`. */
  const executionEnded = (store: LocalAws, name: string, status: string, error?: { error: string; cause: string }) =>
    handleExecutionEnded(
      {
        source: STATES_SOURCE,
        'detail-type': EXECUTION_STATUS_CHANGE,
        detail: {
          executionArn: executionArn(name),
          name,
          status,
          startDate: Date.parse('2026-01-02T03:04:05.000Z'),
          stopDate: Date.parse('2026-01-03T03:04:05.000Z'),
          input: null,
          error: error?.error ?? null,
          cause: error?.cause ?? null,
        },
      },
      {
        dynamo: store.dynamo,
        api: ctx.api,
        events: notify.events,
        sns: notify.sns,
        config: { table: store.table, notify: { eventBus: 'default', topicArn: undefined } },
        now: () => NOW - 3_600_000,
      },
    );

  it('finalizes a job whose execution failed past every Catch (States.DataLimitExceeded) after every chunk ended', async () => {
    const { store, config } = await freshStore();
    // The Map's gathered output passed 256 KiB once every child had ended: FinalizeJob never ran,
    // and ExecutionEnded marked the job failed.
    const tooLarge = await deadJob(store, 'map-output-too-large', [2, 1]);
    await collectAll(store, config, tooLarge);
    const dataLimit = {
      error: 'States.DataLimitExceeded',
      cause: "The state/task 'ForEachChunk' returned a result with a size exceeding the maximum number of bytes service limit.",
    };
    expect(await executionEnded(store, 'map-output-too-large', 'FAILED', dataLimit)).toMatchObject({ outcome: 'marked-failed' });
    const failure = { error: 'ExecutionFailed', cause: `execution map-output-too-large ended FAILED: States.DataLimitExceeded: ${dataLimit.cause}` };
    expect(await readJobItem(store, tooLarge.jobId)).toMatchObject({ status: 'failed', failure });
    // The same end, but ExecutionEnded never ran: the job still says running.
    const unseen = await deadJob(store, 'map-output-unseen', [1]);
    await collectAll(store, config, unseen);
    // Ends a re-run of Finalize is no cure for: someone stopped the execution; MarkJobFailed itself died.
    const aborted = await deadJob(store, 'aborted', [1]);
    await collectAll(store, config, aborted);
    await executionEnded(store, 'aborted', 'ABORTED');
    const markFailedDied = await deadJob(store, 'mark-failed-died', [1]);
    await collectAll(store, config, markFailedDied);
    await executionEnded(store, 'mark-failed-died', 'FAILED', { error: 'CancelFailed', cause: 'a batch could not be canceled' });
    notify.calls.length = 0;
    const names = ['map-output-too-large', 'map-output-unseen', 'aborted', 'mark-failed-died'];
    const executions = Object.fromEntries(names.map((name) => [executionArn(name), name === 'aborted' ? 'ABORTED' : 'FAILED']));

    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 2, finalized: 1, recovered: 1 });

    const counts = { succeeded: 3, errored: 0, expired: 0, canceled: 0, invalid: 0 };
    expect(await readJobItem(store, tooLarge.jobId)).toMatchObject({ status: 'succeeded', counts, failure });
    expect(JSON.parse((await readText(aws, tooLarge.keys.summary))!)).toMatchObject({ status: 'succeeded', recoveredFrom: failure });
    expect((await readJsonl<ResultRow>(aws, tooLarge.keys.results)).map((row) => row.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(await readJobItem(store, unseen.jobId)).toMatchObject({ status: 'succeeded' });
    for (const job of [aborted, markFailedDied]) {
      expect((await readJobItem(store, job.jobId)).status).toBe('failed');
      expect(await readText(aws, job.keys.results)).toBeUndefined();
    }
  });

  it('leaves a failed job alone when a re-run of Finalize cannot help or would not see every row collected', async () => {
    const { store, config } = await freshStore();
    // Finalize failed for good: the counts did not add up.
    const mismatch = await deadJob(store, 'finalize-mismatch', [1]);
    await collectAll(store, config, mismatch);
    await failJobAsWorkflow(store, mismatch.jobId, { error: 'CountsMismatch', cause: 'the counts did not add up' });
    // Timed out while a chunk was still in flight: its batch was canceled, its rows never collected.
    ctx.sim.setBatchFaults({ processingSeconds: 3600 });
    const inFlight = await deadJob(store, 'in-flight', [1]);
    await submitChunk({ jobId: inFlight.jobId, chunk: 0 }, stepDeps(store, config));
    await failJobAsWorkflow(store, inFlight.jobId, { error: 'States.Timeout', cause: 'PollBatch timed out' });
    // Finalize wrote the summary, then its Lambda was killed before it returned.
    ctx.sim.setBatchFaults(undefined);
    const summarized = await deadJob(store, 'summarized', [1]);
    await collectAll(store, config, summarized);
    await failJobAsWorkflow(store, summarized.jobId, { error: 'Sandbox.Timedout', cause: 'Task timed out' });
    await store.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: summarized.keys.summary, Body: '{}' }));
    const executions = Object.fromEntries(['finalize-mismatch', 'in-flight', 'summarized'].map((name) => [executionArn(name), 'FAILED']));

    const run = deps(store, config, executions);
    expect(await reconcileJobs(run)).toEqual(NOTHING);

    expect(run.described).toEqual([]);
    for (const job of [mismatch, inFlight, summarized]) {
      expect((await readJobItem(store, job.jobId)).status).toBe('failed');
      expect(await readText(aws, job.keys.results)).toBeUndefined();
    }
  });

  it('stops starting jobs once its time budget is spent, and the next run carries on', async () => {
    const { store, config } = await freshStore();
    const first = await deadJob(store, 'slow-1', [1]);
    const second = await deadJob(store, 'slow-2', [1]);
    for (const job of [first, second]) await submitChunk({ jobId: job.jobId, chunk: 0 }, stepDeps(store, config));
    ctx.sim.advance(120);
    let clock = NOW;
    const executions = { [executionArn('slow-1')]: 'ABORTED', [executionArn('slow-2')]: 'ABORTED' };
    // Each job takes five minutes of this run's clock; the budget is eight.
    const run = deps(store, config, executions, {
      now: () => clock,
      budgetMs: 8 * 60_000,
      describeExecution: async (arn) => {
        clock += 5 * 60_000;
        return executions[arn];
      },
    });

    expect(await reconcileJobs(run)).toEqual({ ...NOTHING, examined: 2, collected: 1, finalized: 1, complete: false });
    const [done, left] = first.jobId < second.jobId ? [first, second] : [second, first];
    expect((await readJobItem(store, done.jobId)).status).toBe('succeeded');
    expect((await readJobItem(store, left.jobId)).status).toBe('running');

    expect(await reconcileJobs(deps(store, config, executions))).toEqual({ ...NOTHING, examined: 1, collected: 1, finalized: 1 });
    expect((await readJobItem(store, left.jobId)).status).toBe('succeeded');
  });

  it("settles a dead job's deadline fallback as it stands: stored answers kept, a slice claimed but never stored unknown, the rest canceled; nothing sent", async () => {
    const { store, config } = await freshStore();
    ctx.sim.setBatchFaults({ processingSeconds: 3600 });
    const job = await deadJob(store, 'died-sync', [8]);
    // The deadline ten minutes away on the API's clock, the margin an hour: the batch's cancel is due at once.
    const deadline = { at: new Date(ctx.sim.now() + 600_000).toISOString(), marginSeconds: 3600 };
    await updateItem(store.dynamo, store.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { deadline } });
    const ref = { jobId: job.jobId, chunk: 0 };
    const batchId = (await submitChunk(ref, stepDeps(store, config))).batchId!;
    expect((await pollBatch({ ...ref, attempt: 1, batchId }, stepDeps(store, config))).ended).toBe(false);
    ctx.sim.advance(10);
    expect((await pollBatch({ ...ref, attempt: 1, batchId }, stepDeps(store, config))).ended).toBe(true);
    expect(await collectResults({ ...ref, attempt: 1, batchId }, stepDeps(store, config))).toMatchObject({ retry: false, stragglers: true });
    // The workflow's RunStragglers: one slice of 2 sent and stored; then one of 2 sent, its store failing (killed); then it died.
    const sync = { ...ref, attempt: 2 };
    const calls = () => ctx.sim.stats().calls.messages;
    const before = calls();
    expect(await runStragglers(sync, { ...stepDeps(store, config), sliceRows: 2, rowsPerInvocation: 2 })).toMatchObject({ done: false, remaining: 6 });
    const killed = localS3Client(store.s3Server.endpoint);
    killed.middlewareStack.add(
      (next) => async (args) => {
        if (((args.input as { Key?: string }).Key ?? '').includes('/sync/')) throw new Error('killed');
        return next(args);
      },
      { step: 'initialize' },
    );
    await expect(runStragglers(sync, { ...stepDeps(store, config), s3: killed, sliceRows: 2, rowsPerInvocation: 2 })).rejects.toThrow('killed');
    expect(calls() - before).toBe(4);

    const report = await reconcileJobs(deps(store, config, { [executionArn('died-sync')]: 'FAILED' }));

    expect(report).toMatchObject({ examined: 1, collected: 1, finalized: 1, errors: 0 });
    expect(calls() - before).toBe(4);
    const results = await readJsonl<ResultRow>(aws, job.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(job.chunks[0]!.map((r) => r.custom_id));
    expect(results.map((row) => [row.status, row.error?.type ?? null, row.synchronous ?? false, row.attempts])).toEqual([
      ['succeeded', null, true, 2],
      ['succeeded', null, true, 2],
      ['errored', SYNC_OUTCOME_UNKNOWN, true, 2],
      ['errored', SYNC_OUTCOME_UNKNOWN, true, 2],
      ['canceled', null, true, 2],
      ['canceled', null, true, 2],
      ['canceled', null, true, 2],
      ['canceled', null, true, 2],
    ]);
    const summary = JSON.parse((await readText(aws, job.keys.summary))!) as JobSummary;
    expect(summary.synchronous).toMatchObject({ rows: 8, counts: { succeeded: 2, errored: 2, expired: 0, canceled: 4 } });
  });

  it('looks only at jobs created in the last 30 days', async () => {
    const { store, config } = await freshStore();
    await deadJob(store, 'old', [1]);
    const run = deps(store, config, {}, { now: () => Date.parse('2026-02-02T03:04:06.000Z') });
    expect(await reconcileJobs(run)).toEqual(NOTHING);
    expect(run.described).toEqual([]);
  });
});

describe('executionErrorOf', () => {
  /** The failure ExecutionEnded has markJobFailed store for an execution that failed with `error`. */
  const ended = (error: string | null, cause: string | null) => {
    const step = executionFailure({ executionArn: executionArn('run-1'), name: 'run-1', status: 'FAILED', error, cause }, 'FAILED');
    return { error: step.Error!, cause: step.Cause! };
  };

  it('reads back the error an execution failed with from the failure ExecutionEnded records', () => {
    expect(
      executionErrorOf(
        ended('States.DataLimitExceeded', "The state/task 'ForEachChunk' returned a result with a size exceeding the maximum number of bytes service limit."),
      ),
    ).toBe('States.DataLimitExceeded');
    expect(executionErrorOf(ended('States.Runtime', "An error occurred while executing the state 'WasRejected'."))).toBe('States.Runtime');
    // A Lambda error's cause already starts with its type: ExecutionEnded does not repeat it.
    expect(executionErrorOf(ended('CancelFailed', JSON.stringify({ errorType: 'CancelFailed', errorMessage: 'refused' })))).toBe('CancelFailed');
    expect(executionErrorOf(ended(null, null))).toBeUndefined();
    expect(executionErrorOf({ error: 'ExecutionTimedOut', cause: 'execution run-1 ended TIMED_OUT' })).toBeUndefined();
    expect(executionErrorOf({ error: 'States.Timeout', cause: 'execution run-1 ended FAILED: States.Runtime' })).toBeUndefined();
  });
});

describe('isExecutionOf', () => {
  it("tells a state machine's executions from another's whose name it prefixes", () => {
    expect(isExecutionOf(executionArn('x'), MACHINE)).toBe(true);
    expect(isExecutionOf('arn:aws:states:us-east-1:123456789012:execution:batchline-jobs-2:x', MACHINE)).toBe(false);
  });
});
