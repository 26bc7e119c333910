/**
 * Paid results survive a Collect that keeps dying (issue #19 §5): killed part-way more often than
 * the workflow retries it, its chunk is not failed for good while the results wait at the API. Its
 * rows are `collect_pending`, the scheduled reconciler collects them — going on from the lines
 * already stored — and the job is finalized again with every row's real result.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LambdaFunctionError } from '../../local/lambda';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { jobKeys } from '../../shared/store/keys';
import { ids, readJsonl, readText, servedResults, useLocalStack } from '../e2e/support';
import { chunkRecords, comparable, expectEveryRowOnce, expectOneBatchPerAttempt, interceptTask, runJob, type JobRun } from './support';

/** One chunk of 30 rows: a results line is about 700 bytes. */
const ROWS = 30;

describe('a Collect killed more often than its retries, on the local pipeline', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: ROWS } });
  const customIds = ids('row', ROWS);
  let reference: JobRun;

  beforeAll(async () => {
    reference = await runJob(under, 'reference.jsonl', customIds);
    expect(reference.results.map((row) => row.status)).toEqual(customIds.map(() => 'succeeded'));
  }, 60_000);

  it("leaves the chunk to the reconciler, which collects every row's real result from where the killed Collects stopped", async () => {
    // Each results read ends after 700 bytes (about a line). A Collect reads three times (the
    // client retries twice), keeps what it read and fails; the workflow sees it killed
    // (Sandbox.Timedout) and runs it three times in all: nine reads, then the file is served whole.
    under.stack.simulator!.setBatchFaults({ cutResultsAfterBytes: 700, cutResultsTimes: 9 });
    let invocations = 0;
    const undo = interceptTask(under.stack, 'CollectResults', async (input, invoke) => {
      invocations += 1;
      const error = await invoke(input).then(
        () => undefined,
        (failure: Error) => failure,
      );
      // Every invocation is cut short: none may finish the chunk.
      expect(error?.name).toBe('ApiRetryable');
      throw new LambdaFunctionError('Sandbox.Timedout', 'Task timed out (injected: the invocation was killed part-way)');
    });
    let first: JobRun;
    try {
      first = await runJob(under, 'killed.jsonl', customIds);
    } finally {
      undo();
      under.stack.simulator!.setBatchFaults(undefined);
    }

    // The workflow gave up after its crash retries: the chunk waits for the reconciler, its rows are
    // collect_pending (or kept, where a Collect stored their line), none chunk_failed.
    expect(invocations).toBe(3);
    expect(first.outcome.status).toBe('succeeded');
    expectEveryRowOnce(first, customIds);
    expect(first.outcome.summary!.collectPending).toEqual([0]);
    const pending = first.results.filter((row) => row.status !== 'succeeded');
    expect(pending.length).toBeGreaterThan(0);
    for (const row of pending) expect(row).toMatchObject({ status: 'errored', error: { type: 'collect_pending' } });
    const keptIds = new Set(first.results.filter((row) => row.status === 'succeeded').map((row) => row.custom_id));
    const kept = (rows: ResultRow[]) => comparable(rows.filter((row) => keptIds.has(row.custom_id)));
    expect(kept(first.results)).toEqual(kept(reference.results));
    const [deferred] = await chunkRecords(under.stack, first.jobId);
    expect(deferred).toMatchObject({ status: 'failed', failure: { error: 'Sandbox.Timedout' } });
    expect(deferred!.collectLater).toBeDefined();

    // The daily schedule: the reconciler collects the chunk and finalizes the job again.
    const resultsCalls = under.stack.simulator!.stats().calls.results;
    await under.stack.runSchedules();
    const outcome = await under.stack.waitForJob(first.jobId);
    const run: JobRun = { jobId: first.jobId, outcome, results: await readJsonl<ResultRow>(under.stack, outcome.keys.results), batches: first.batches };

    expect(outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(run.batches).toHaveLength(1);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
    expect(outcome.summary!.collectPending).toBeUndefined();
    expect(outcome.summary!.collectedLate?.chunks).toEqual([0]);
    const [collected] = await chunkRecords(under.stack, run.jobId);
    expect(collected).toMatchObject({ status: 'done', attempts: [{ counts: { succeeded: ROWS, errored: 0, expired: 0, canceled: 0 } }] });
    expect(collected!.failure).toBeUndefined();
    expect(collected!.collectLater).toBeUndefined();
    expect(outcome.job?.collectLater).toBeUndefined();
    // One read of the rest of the file (from the checkpoint), no second download of the lines stored.
    expect(under.stack.simulator!.stats().calls.results - resultsCalls).toBe(1);
    // The stored results are the API's file, every line once.
    const served = await servedResults(under.stack, run.jobId, 0, 1);
    expect(served.lines).toHaveLength(ROWS);
    expect(await readText(under.stack, jobKeys(run.jobId).chunkResults(0, 1))).toBe(served.text);

    // A second run of the schedule finds nothing left to do.
    await under.stack.runSchedules();
    expect(comparable(await readJsonl<ResultRow>(under.stack, outcome.keys.results))).toEqual(comparable(reference.results));
  }, 180_000);
});
