/**
 * RunStragglers and the settling of a synchronous attempt (docs/architecture.md, "Deadline
 * fallback"), against s3rver, dynalite and the simulator over HTTP: each test takes a chunk through
 * Submit, Poll (the deadline's cancel) and Collect, as the workflow does, to its synchronous attempt.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { S3Client } from '@aws-sdk/client-s3';
import { BatchesClient } from '../../shared/anthropic/client';
import { collectResults } from '../../shared/jobs/collect-results';
import { finalizeChunk } from '../../shared/jobs/finalize-chunk';
import { finalizeJob, type ResultRow } from '../../shared/jobs/finalize-job';
import { recordChunkFailure } from '../../shared/jobs/record-chunk-failure';
import { pollBatch } from '../../shared/jobs/poll-batch';
import {
  finishStragglers,
  MAX_INVOCATIONS,
  RATE_LIMITED_ROUNDS,
  RESERVE_MS,
  runStragglers,
  SYNC_OUTCOME_UNKNOWN,
  SYNC_STEPS_EXHAUSTED,
} from '../../shared/jobs/stragglers';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk } from '../../shared/store/items';
import { localDynamoClient, localS3Client } from '../../local/emulators';
import { useLocalAws } from '../support/aws';
import { formatRow } from '../../cli/ops/get';
import { readChunkItem, readJobItem, readJsonl, readRow, seedJob, startApi, stopApi, TEST_API_KEY, type ApiContext } from '../support/chunks';
import type { BatchResultLine } from '../../shared/anthropic/types';
import { jobKeys } from '../../shared/store/keys';
import { EstimateTotals } from '../../shared/cost/cost';
import { priceTableFromConfig } from '../../shared/cost/prices';
import { pipelineConfig, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { requests } from '../support/requests';

describe('RunStragglers', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let notify: RecordingEndpoint;

  beforeAll(async () => {
    // Batches take a simulated hour: the deadline's cancel finds them still running.
    ctx = await startApi({ processingSeconds: 3600 });
    notify = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await stopApi(ctx);
    await notify?.stop();
  });
  afterEach(() => ctx.sim.setHttpFaults([]));

  const config = () => pipelineConfig(aws, { maxAttempts: 2, retryBackoffSeconds: 60 });
  const deps = (extra: { s3?: S3Client } = {}) => ({ s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: config(), ...extra });

  /** A job of `rows` rows whose batch the deadline canceled before it answered any: attempt 2 is synchronous, every row in it. */
  async function straggling(rows: number) {
    const job = await seedJob(aws, { chunks: [requests(rows, 'sync')] });
    // The deadline ten minutes away on the API's clock, the margin an hour: the cancel is due at once.
    const deadline = { at: new Date(ctx.sim.now() + 600_000).toISOString(), marginSeconds: 3600 };
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { deadline } });
    const ref = { jobId: job.jobId, chunk: 0 };
    const batchId = (await submitChunk(ref, deps())).batchId!;
    expect((await pollBatch({ ...ref, attempt: 1, batchId }, deps())).ended).toBe(false);
    ctx.sim.advance(10);
    expect((await pollBatch({ ...ref, attempt: 1, batchId }, deps())).ended).toBe(true);
    expect(await collectResults({ ...ref, attempt: 1, batchId }, deps())).toMatchObject({ retry: false, stragglers: true });
    return { job, sync: { ...ref, attempt: 2 } };
  }

  /** An S3 client with the reconcile and collect functions' grants: work/ and results/ only, never the input. */
  function workAndResultsOnly(): S3Client {
    const s3 = localS3Client(aws.s3Server.endpoint);
    s3.middlewareStack.add(
      (next) => async (args) => {
        const key = (args.input as { Key?: string }).Key;
        if (key !== undefined && !key.startsWith('work/') && !key.startsWith('results/')) throw new Error(`AccessDenied: ${key}`);
        return next(args);
      },
      { step: 'initialize' },
    );
    return s3;
  }

  it('settles the attempt from work/ alone, never reading the input the requests came from', async () => {
    const { job, sync } = await straggling(4);
    const s3 = workAndResultsOnly();

    // Attempt 2's requests live in work/: the calls are made and the attempt settled without the input.
    expect(await runStragglers(sync, deps({ s3 }))).toMatchObject({ done: true, remaining: 0 });

    const chunk = await readChunkItem(aws, job.jobId, 0);
    // Done, as Collect leaves a chunk with no attempt after it: Finalize and mark-job-failed count it finished.
    expect(chunk.status).toBe('done');
    expect(chunk.attempts[1]).toMatchObject({ counts: { succeeded: 4, errored: 0, expired: 0, canceled: 0 }, collectedAt: expect.any(String) });
    // `batchline get` tells the row was a synchronous call, paid at standard rates.
    const shown = formatRow({ row: (await readRow(aws, job.jobId, 'sync-00000'))! }, aws.bucket);
    expect(shown).toMatch(/^ {2}attempt {3}2 as a synchronous call \(the deadline fallback\), chunk 0 row 0$/m);
    expect(shown).toMatch(/^ {2}cost {6}\$0\.\d+ at standard rates$/m);
  });

  it('the reconciler settles it from work/ alone as well', async () => {
    const { job, sync } = await straggling(3);

    await finishStragglers(sync, { s3: workAndResultsOnly(), dynamo: aws.dynamo, config: config() });

    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('done');
    expect(chunk.attempts[1]).toMatchObject({ counts: { succeeded: 0, errored: 0, expired: 3, canceled: 0 }, collectedAt: expect.any(String) });
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(3);
  });

  /**
   * The simulator behind a proxy that holds every Messages call open, never answering: a reply that
   * takes longer than the invocation has left.
   */
  async function slowReplies(): Promise<{ api: BatchesClient; held: () => number; close: () => Promise<void> }> {
    let held = 0;
    const server: Server = createServer(async (req, res) => {
      if (req.url?.startsWith('/v1/messages') && !req.url.startsWith('/v1/messages/batches')) {
        held += 1;
        return;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => name !== 'host' && name !== 'content-length')) as Record<
        string,
        string
      >;
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
      const reply = await fetch(`${ctx.sim.url}${req.url}`, { method: req.method, headers, body });
      res.writeHead(reply.status, Object.fromEntries([...reply.headers].filter(([name]) => name !== 'content-encoding' && name !== 'transfer-encoding')));
      res.end(Buffer.from(await reply.arrayBuffer()));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const api = new BatchesClient({
      apiKey: TEST_API_KEY,
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      sleep: async () => undefined,
    });
    return {
      api,
      held: () => held,
      close: async () => {
        await api.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it('aborts calls still under way when its time is nearly up, stores the slice, and claims no more; a later invocation goes on', async () => {
    const { job, sync } = await straggling(4);
    const slow = await slowReplies();
    // Time for a call of a second past the reserve until the first slice's two calls are held; then the reserve alone.
    const timeLeftMs = () => RESERVE_MS + (slow.held() < 2 ? 5_000 : 0);
    try {
      const out = await runStragglers(sync, { ...deps(), api: slow.api, timeLeftMs, callMs: 1_000, sliceRows: 2 });
      expect(out).toMatchObject({ done: false, remaining: 2 });
    } finally {
      await slow.close();
    }
    expect(slow.held()).toBe(2);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[1]!.sync).toMatchObject({ claimed: 2, stored: [0], slices: [0] });

    // The next invocation, with time: the two held rows are not sent again, the two after them are.
    const before = ctx.sim.stats().calls.messages;
    expect(await runStragglers(sync, deps())).toMatchObject({ done: true, remaining: 0 });
    expect(ctx.sim.stats().calls.messages - before).toBe(2);
    // The attempt's results, in its order: the held calls unknown (perhaps billed, never sent again), the others answered.
    const lines = await readJsonl<BatchResultLine>(aws, jobKeys(job.jobId).chunkResults(0, 2));
    expect(lines.map((line) => (line.result.type === 'errored' ? line.result.error.error.type : line.result.type))).toEqual([
      SYNC_OUTCOME_UNKNOWN,
      SYNC_OUTCOME_UNKNOWN,
      'succeeded',
      'succeeded',
    ]);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[1]!.counts).toEqual({ succeeded: 2, errored: 2, expired: 0, canceled: 0 });
  });

  it("stops at the user's cancel between slices: rows sent keep their answers, rows not sent end canceled", async () => {
    const { job, sync } = await straggling(4);
    let calls = 0;
    // The user cancels while the first slice's calls are under way.
    const api = {
      createMessage: async (...args: Parameters<typeof ctx.api.createMessage>) => {
        if (++calls === 1) await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
        return ctx.api.createMessage(...args);
      },
      retrieveWithTime: (batchId: string) => ctx.api.retrieveWithTime(batchId),
      lastServerTime: () => ctx.api.lastServerTime(),
    };
    const before = ctx.sim.stats().calls.messages;

    expect(await runStragglers(sync, { ...deps(), api, sliceRows: 2 })).toMatchObject({ done: true, remaining: 0 });

    expect(ctx.sim.stats().calls.messages - before).toBe(2);
    const lines = await readJsonl<BatchResultLine>(aws, jobKeys(job.jobId).chunkResults(0, 2));
    expect(lines.map((line) => line.result.type)).toEqual(['succeeded', 'succeeded', 'canceled', 'canceled']);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[1]!.counts).toEqual({ succeeded: 2, errored: 0, expired: 0, canceled: 2 });
  });

  /**
   * A synchronous attempt of 6 rows whose RunStragglers failed past its retries: one slice of 2
   * stored, the next stored but killed before it was marked, then the Catch's RecordChunkFailure.
   */
  async function failedMidSlice() {
    const { job, sync } = await straggling(6);
    const paidBefore = (await readJobItem(aws, job.jobId)).paidUsd ?? 0;
    // The first invocation stores its slice of 2 and stops (its row limit).
    expect(await runStragglers(sync, { ...deps(), sliceRows: 2, rowsPerInvocation: 2 })).toMatchObject({ done: false, remaining: 4 });
    // The next one stores its slice's answers, then is killed before marking them stored.
    let sliceWritten = false;
    const s3 = localS3Client(aws.s3Server.endpoint);
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const output = await next(args);
        if (((args.input as { Key?: string }).Key ?? '').includes('/sync/') && context.commandName !== 'HeadObjectCommand') sliceWritten = true;
        return output;
      },
      { step: 'initialize' },
    );
    const dynamo = localDynamoClient(aws.dynamoServer.endpoint);
    dynamo.middlewareStack.add(
      (next, context) => async (args) => {
        if (sliceWritten && context.commandName === 'UpdateItemCommand') throw new Error('killed after storing the answers');
        return next(args);
      },
      { step: 'initialize' },
    );
    await expect(runStragglers(sync, { ...deps({ s3 }), dynamo, sliceRows: 2, rowsPerInvocation: 2 })).rejects.toThrow('killed after storing the answers');
    const calls = ctx.sim.stats().calls.messages;
    const error = { Error: 'Error', Cause: JSON.stringify({ errorType: 'Error', errorMessage: 'killed after storing the answers' }) };
    await recordChunkFailure({ jobId: job.jobId, chunk: 0, error }, { dynamo: aws.dynamo, api: ctx.api, config: config() });
    return { job, paidBefore, calls };
  }

  /** What a settled failed attempt leaves: four paid answers kept, two rows chunk_failed, nothing sent again. */
  async function expectSettled(jobId: string, rows: ResultRow[], paidBefore: number, calls: number) {
    expect(ctx.sim.stats().calls.messages).toBe(calls);
    expect(rows.map((row) => [row.custom_id, row.status, row.error?.type ?? null])).toEqual([
      ['sync-00000', 'succeeded', null],
      ['sync-00001', 'succeeded', null],
      ['sync-00002', 'succeeded', null],
      ['sync-00003', 'succeeded', null],
      ['sync-00004', 'errored', 'chunk_failed'],
      ['sync-00005', 'errored', 'chunk_failed'],
    ]);
    const chunk = await readChunkItem(aws, jobId, 0);
    expect(chunk.status).toBe('failed');
    expect(chunk.attempts[1]).toMatchObject({ counts: { succeeded: 4, errored: 2, expired: 0, canceled: 0 }, collectedAt: expect.any(String) });
    // The four answers were paid for at standard rates, and the job's paid cost says so.
    const cost = rows.reduce((sum, row) => sum + (row.cost_usd ?? 0), 0);
    expect(cost).toBeGreaterThan(0);
    expect((await readJobItem(aws, jobId)).paidUsd! - paidBefore).toBeCloseTo(cost, 8);
  }

  it('a RunStragglers that failed past its retries: FinalizeChunk keeps every stored answer and its cost, the rows never claimed end as the failure says', async () => {
    const { job, paidBefore, calls } = await failedMidSlice();
    // The Catch: RecordChunkFailure (above), then FinalizeChunk.
    expect(await finalizeChunk({ jobId: job.jobId, chunk: 0 }, deps())).toMatchObject({ rows: 6, failed: true });
    await expectSettled(job.jobId, await readJsonl<ResultRow>(aws, jobKeys(job.jobId).chunkFinal(0).results), paidBefore, calls);
  });

  it('the same when FinalizeChunk never ran: FinalizeJob, ordering the chunk itself, settles the attempt first', async () => {
    const { job, paidBefore, calls } = await failedMidSlice();
    await finalizeJob(
      { jobId: job.jobId },
      { ...deps(), notify: { clients: { events: notify.events, sns: notify.sns }, config: { eventBus: 'default', topicArn: undefined } } },
    );
    await expectSettled(job.jobId, await readJsonl<ResultRow>(aws, jobKeys(job.jobId).results), paidBefore, calls);
  });

  const resultTypes = async (jobId: string) =>
    (await readJsonl<BatchResultLine>(aws, jobKeys(jobId).chunkResults(0, 2))).map((line) =>
      line.result.type === 'errored' ? line.result.error.error.type : line.result.type,
    );

  it("puts a row still rate limited after the client's retries back in its slice (it was not billed), a bounded number of times", async () => {
    const { job, sync } = await straggling(1);
    // The client's three tries of the row all refused 429; the row is sent again and answered.
    ctx.sim.setHttpFaults([{ status: 429, endpoint: 'messages', times: 3 }]);
    const before = ctx.sim.stats().calls.messages;
    expect(await runStragglers(sync, { ...deps(), sleep: async () => undefined })).toMatchObject({ done: true });
    expect(ctx.sim.stats().calls.messages - before).toBe(4);
    expect(await resultTypes(job.jobId)).toEqual(['succeeded']);

    // Overloaded every time: put back RATE_LIMITED_ROUNDS times, then its answer is the API's error.
    const other = await straggling(1);
    ctx.sim.setHttpFaults([{ status: 529, endpoint: 'messages', times: 100 }]);
    const start = ctx.sim.stats().calls.messages;
    expect(await runStragglers(other.sync, { ...deps(), sleep: async () => undefined })).toMatchObject({ done: true });
    expect(ctx.sim.stats().calls.messages - start).toBe(3 * (RATE_LIMITED_ROUNDS + 1));
    expect(await resultTypes(other.job.jobId)).toEqual(['overloaded_error']);
  });

  it('fails the step when the API refuses the key, giving back the claim of a slice nothing of which was billed; a run with a valid key sends it', async () => {
    const { job, sync } = await straggling(3);
    ctx.sim.setHttpFaults([{ status: 401, endpoint: 'messages', times: 100 }]);
    await expect(runStragglers(sync, deps())).rejects.toMatchObject({ name: 'ApiKeyRefused' });
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[1]!.sync).toMatchObject({ claimed: 0, stored: [], slices: [] });

    ctx.sim.setHttpFaults([]);
    expect(await runStragglers(sync, deps())).toMatchObject({ done: true });
    expect(await resultTypes(job.jobId)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });

  it('ends the rows left when its invocations run out before the deadline as such, not as the deadline passing', async () => {
    const { job, sync } = await straggling(MAX_INVOCATIONS + 2);
    const runs: boolean[] = [];
    for (let run = 0; run < MAX_INVOCATIONS; run++) runs.push((await runStragglers(sync, { ...deps(), sliceRows: 1, rowsPerInvocation: 1 })).done);
    expect(runs).toEqual([...new Array<boolean>(MAX_INVOCATIONS - 1).fill(false), true]);
    expect(await resultTypes(job.jobId)).toEqual([...new Array<string>(MAX_INVOCATIONS).fill('succeeded'), SYNC_STEPS_EXHAUSTED, SYNC_STEPS_EXHAUSTED]);
    const [line] = (await readJsonl<BatchResultLine>(aws, jobKeys(job.jobId).chunkResults(0, 2))).slice(-1);
    expect(JSON.stringify(line)).not.toMatch(/deadline passed/);
  });

  it('stops before a slice whose calls, at their worst and at standard rates, would take the job past its budget; the rows left end budget_exceeded', async () => {
    const { job, sync } = await straggling(4);
    const slice = (rows: ReturnType<typeof requests>) => {
      const estimate = new EstimateTotals({ prices: priceTableFromConfig(config()) });
      for (const row of rows) estimate.add(row.params);
      return estimate.toJSON().standardTotalUsd;
    };
    const worst = slice(job.chunks[0]!.slice(0, 2));
    // Room for one slice of 2 at its worst, not for a second once the first's answers are paid.
    const paid = (await readJobItem(aws, job.jobId)).paidUsd ?? 0;
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { maxCostUsd: paid + worst * 1.0001 } });
    const before = ctx.sim.stats().calls.messages;

    expect(await runStragglers(sync, { ...deps(), sliceRows: 2 })).toMatchObject({ done: true });

    expect(ctx.sim.stats().calls.messages - before).toBe(2);
    expect(await resultTypes(job.jobId)).toEqual(['succeeded', 'succeeded', 'budget_exceeded', 'budget_exceeded']);
    await finalizeChunk({ jobId: job.jobId, chunk: 0 }, deps());
    const rows = await readJsonl<ResultRow>(aws, jobKeys(job.jobId).chunkFinal(0).results);
    expect(rows.map((row) => row.error?.message ?? row.status)).toEqual([
      'succeeded',
      'succeeded',
      expect.stringMatching(
        /^Not sent: the synchronous calls after the deadline's cancel, estimated at \$[\d.]+ at standard rates for the next 2, would have taken/,
      ),
      expect.stringMatching(/past its budget/),
    ]);
  });
});
