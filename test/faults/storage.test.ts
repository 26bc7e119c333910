/**
 * Faults under the handlers: DynamoDB handing back unprocessed items and throttling bulk writes, a
 * DynamoDB outage that kills Collect part-way, and a workflow that dies while nobody hears of it —
 * left for the scheduled reconciler. DynamoDB faults come from a proxy in front of dynalite
 * (./dynamo-proxy.ts) that the handlers' own SDK clients talk to.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LambdaFunctionError } from '../../local/lambda';
import type { LocalEvent } from '../../local/runtime';
import { getItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk, type JobItem, type RowRecord } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { ids, nextEvent, readText, request, servedResults, useLocalStack, writeRequests } from '../e2e/support';
import { startDynamoProxy, type DynamoProxy } from './dynamo-proxy';
import {
  chunkRecords,
  comparable,
  expectEveryRowOnce,
  expectOneBatchPerAttempt,
  interceptTask,
  rowItem,
  runJob,
  simulatorBatch,
  startJob,
  type JobRun,
} from './support';

/**
 * One chunk of 40 rows spread over 40 buckets (rowsPerShard 1): more than 25 row pages, so Collect
 * writes them in two BatchWriteItem calls.
 */
const ROWS = 40;

describe('storage faults and dead workflows on the local pipeline', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: ROWS, rowsPerShard: 1 } });
  const customIds = ids('row', ROWS);
  let proxy: DynamoProxy;
  let reference: JobRun;

  beforeAll(async () => {
    proxy = await startDynamoProxy(under.stack.env.AWS_ENDPOINT_URL_DYNAMODB!);
    // Before any handler's first DynamoDB call, which is when the SDK reads the endpoint variable.
    process.env.AWS_ENDPOINT_URL_DYNAMODB = proxy.url;
    reference = await runJob(under, 'reference.jsonl', customIds);
    expect(proxy.stats().calls.BatchWriteItem).toBeGreaterThanOrEqual(2);
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
  });

  /**
   * A job's row records, with what names the job, the batch or the moment taken out (jobId,
   * batchId, updatedAt) and the result pointer replaced by what it points at: a batch's results
   * file comes in its own shuffled order (simulator/results.ts), so offsets differ between batches,
   * while the line each row points to must be that row's own.
   */
  const rowRecords = async (run: JobRun) => {
    const keys = jobKeys(run.jobId);
    const files = new Map<string, Buffer>();
    return Promise.all(
      customIds.map(async (id) => {
        const item = await rowItem(under.stack, run.jobId, id);
        if (!item) return { customId: id, missing: true };
        const { jobId: _job, batchId: _batch, updatedAt: _at, result, ...rest } = item;
        let pointsAt: string | undefined;
        if (result) {
          if (!files.has(result.key)) files.set(result.key, Buffer.from(await readText(under.stack, result.key)));
          const line = files
            .get(result.key)!
            .subarray(result.offset, result.offset + result.length)
            .toString('utf8');
          pointsAt = `${result.key === keys.chunkResults(item.chunk, item.attempt) ? 'own attempt' : result.key}: ${(JSON.parse(line) as { custom_id: string }).custom_id}`;
        }
        return { ...rest, pointsAt } as Partial<RowRecord> & { pointsAt?: string };
      }),
    );
  };

  it('writes every row record when bulk writes come back unprocessed or throttled', async () => {
    const before = proxy.stats();
    // Six bulk writes keep only 5 items each and return the rest as UnprocessedItems; two are throttled.
    proxy.setFaults({ unprocessedCalls: 6, keep: 5, throttledCalls: 2 });
    const run = await runJob(under, 'unprocessed.jsonl', customIds);
    proxy.setFaults({});

    const after = proxy.stats();
    expect(after.throttled - before.throttled).toBe(2);
    expect(after.itemsUnprocessed - before.itemsUnprocessed).toBeGreaterThanOrEqual(ROWS - 5);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
    expect(await rowRecords(run)).toEqual(await rowRecords(reference));
  });

  /**
   * CollectResults dies part-way (DynamoDB fails after its first 25 row records; Lambda would report
   * a killed invocation as Sandbox.Timedout). `retry` re-invokes it at once, as a Retry on that
   * error would; without it the workflow decides.
   */
  const killFirstCollect = (jobOf: () => string | undefined, retry: boolean) => {
    let killed = false;
    let rowsAtCrash = -1;
    const undo = interceptTask(under.stack, 'CollectResults', async (input, invoke) => {
      if (killed || (input as { jobId?: string }).jobId !== jobOf()) return invoke(input);
      killed = true;
      proxy.setFaults({ outageAfterItems: 25 });
      const crash = await invoke(input).then(
        () => undefined,
        (error: Error) => error,
      );
      proxy.setFaults({});
      expect(crash?.name).toBe('InternalServerError');
      rowsAtCrash = await countRows(jobOf()!);
      const killedError = new LambdaFunctionError('Sandbox.Timedout', 'Task timed out (injected: the invocation was killed part-way)');
      if (!retry) throw killedError;
      return invoke(input);
    });
    return { undo, rowsAtCrash: () => rowsAtCrash };
  };

  const countRows = async (jobId: string) => {
    let n = 0;
    for (const id of customIds) if (await rowItem(under.stack, jobId, id)) n += 1;
    return n;
  };

  it('converges on the same objects and records when a Collect killed part-way runs again', async () => {
    let jobId: string | undefined;
    const off = under.stack.on((event) => {
      if (event.type === 'job-registered' && !event.duplicate && jobId === undefined) jobId = event.jobId;
    });
    const kill = killFirstCollect(() => jobId, true);
    const run = await runJob(under, 'killed-collect.jsonl', customIds);
    kill.undo();
    off();

    // The first invocation got one bulk write (25 pages) in before it died: some rows recorded, not all.
    expect(kill.rowsAtCrash()).toBeGreaterThan(0);
    expect(kill.rowsAtCrash()).toBeLessThan(ROWS);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
    expect(await rowRecords(run)).toEqual(await rowRecords(reference));
    // The stored results file is the API's byte for byte (each custom_id the user's again): the
    // second invocation rewrote it whole, no line lost or doubled by the first.
    expect((await chunkRecords(under.stack, run.jobId)).map((chunk) => chunk.chunk)).toEqual([0]);
    const served = await servedResults(under.stack, run.jobId, 0, 1);
    expect(served.lines).toHaveLength(ROWS);
    expect(await readText(under.stack, jobKeys(run.jobId).chunkResults(0, 1))).toBe(served.text);
    // Progress counted once, though two invocations collected.
    const job = await getItem<JobItem>(under.stack.dynamo, under.stack.table, { pk: jobPk(run.jobId), sk: JOB_SK });
    expect({ rowsSubmitted: job?.rowsSubmitted, rowsFinal: job?.rowsFinal }).toEqual({ rowsSubmitted: ROWS, rowsFinal: ROWS });
  });

  it('retries a CollectResults killed part-way (Sandbox.Timedout) and ends with every row collected', async () => {
    let jobId: string | undefined;
    const off = under.stack.on((event) => {
      if (event.type === 'job-registered' && !event.duplicate && jobId === undefined) jobId = event.jobId;
    });
    const kill = killFirstCollect(() => jobId, false);
    const run = await runJob(under, 'killed-collect-workflow.jsonl', customIds);
    kill.undo();
    off();

    expect(kill.rowsAtCrash()).toBeGreaterThan(0);
    expect(kill.rowsAtCrash()).toBeLessThan(ROWS);
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
    // Without the Retry the chunk would be recorded failed (Sandbox.Timedout) and some rows would never get their records.
    expect((await chunkRecords(under.stack, run.jobId)).map((chunk) => chunk.status)).toEqual(['done']);
    expect(await rowRecords(run)).toEqual(await rowRecords(reference));
  });

  it("collects a dead workflow's unread results with the scheduled reconciler before they are archived", async () => {
    // A long batch, so the workflow is still waiting on it when it dies.
    under.stack.simulator!.setBatchFaults({ processingSeconds: 7_200 });
    const { jobId, finish } = await startJob(under, await writeRequests(under, 'orphaned.jsonl', customIds.map(request)));
    const { executionArn } = await nextEvent(
      under,
      (e): e is Extract<LocalEvent, { type: 'job-registered' }> => e.type === 'job-registered' && e.jobId === jobId,
    );
    await nextEvent(under, (e): e is LocalEvent => e.type === 'batch-submitted' && e.jobId === jobId);
    under.stack.simulator!.setBatchFaults(undefined);

    // The workflow dies, and the handler that should hear of it cannot reach DynamoDB: nobody marks the job.
    proxy.setFaults({ outage: true });
    const failedDelivery = nextEvent(under, (e): e is Extract<LocalEvent, { type: 'delivery-failed' }> => e.type === 'delivery-failed');
    expect((await under.stack.stepFunctions.stop(executionArn, { error: 'Lost', cause: 'the workflow died' })).status).toBe('ABORTED');
    await failedDelivery;
    proxy.setFaults({});
    expect((await under.stack.progress(jobId)).status).toBe('running');

    // 28 days on: the batch ended long ago, and its results are a day from archival.
    under.stack.simulator!.advance(28 * 86_400);
    await under.stack.runSchedules();
    const run = await finish();
    const { outcome } = run;
    expect(outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
    expect((await simulatorBatch(under.stack, run.batches[0]!)).processing_status).toBe('ended');
  });
});
