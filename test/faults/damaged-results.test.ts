/**
 * Results lines that arrive damaged (issue #19: no paid result thrown away): a line cut short, a
 * line whose start is gone, a line longer than the client reads, and a results stream that keeps
 * being cut, more often than the client retries. Each costs only the rows it touches: every other row keeps its
 * result, usage and cost, equal to a fault-free run of the same rows.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import type { BatchFaults } from '../../simulator/options';
import { jobKeys } from '../../shared/store/keys';
import { ids, readJsonl, readText, useLocalStack } from '../e2e/support';
import { comparable, expectEveryRowOnce, expectOneBatchPerAttempt, rowItem, runJob, type JobRun } from './support';

describe('damaged results lines on the local pipeline', () => {
  // One chunk of six rows per file.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 6 } });
  const customIds = ids('row', 6);
  let reference: JobRun;

  beforeAll(async () => {
    reference = await runJob(under, 'reference.jsonl', customIds);
    expect(reference.results.map((row) => row.status)).toEqual(customIds.map(() => 'succeeded'));
  });

  /** Runs the six rows with these faults on their batch. */
  async function runWith(name: string, faults: BatchFaults): Promise<JobRun> {
    under.stack.simulator!.setBatchFaults(faults);
    try {
      return await runJob(under, name, customIds);
    } finally {
      under.stack.simulator!.setBatchFaults(undefined);
    }
  }

  /** The run's rows other than `except`, and the reference's, compared as the fault suite does. */
  function expectOthersAsReference(run: JobRun, except: string[]): void {
    const others = (rows: ResultRow[]) => comparable(rows.filter((row) => !except.includes(row.custom_id)));
    expect(others(run.results)).toEqual(others(reference.results));
    expect(others(run.results)).toHaveLength(customIds.length - except.length);
  }

  /** Asserts the one row not succeeded and returns it. */
  function theDamagedRow(run: JobRun): ResultRow {
    const damaged = run.results.filter((row) => row.status !== 'succeeded');
    expect(damaged).toHaveLength(1);
    return damaged[0]!;
  }

  it('keeps the five intact results of a chunk when one line of six arrives cut short; that row ends result_unreadable', async () => {
    const run = await runWith('cut-line.jsonl', { damageResultLines: { 2: 'cut' } });

    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    const row = theDamagedRow(run);
    expect(row).toMatchObject({ status: 'errored', attempts: 1, usage: null, cost_usd: null, error: { type: 'result_unreadable' } });
    expect(row.error!.message).toMatch(/^The API's result line for this request could not be read \(cut short, or not JSON; at byte \d+ /);
    expectOthersAsReference(run, [row.custom_id]);
    expect(run.outcome.summary!.counts).toMatchObject({ succeeded: 5, errored: 1 });
    expect(run.outcome.summary!.errorsByType).toEqual({ result_unreadable: 1 });
    // The row's record says what results.jsonl says, and was not retried (it was processed, and likely billed).
    expect(await rowItem(under.stack, run.jobId, row.custom_id)).toMatchObject({ status: 'errored', final: true, errorType: 'result_unreadable', attempt: 1 });
    const errors = await readJsonl<{ custom_id: string; error_type: string }>(under.stack, run.outcome.keys.errors);
    expect(errors.map((error) => [error.custom_id, error.error_type])).toEqual([[row.custom_id, 'result_unreadable']]);
  });

  it('keeps the other results when a line arrives without its start: its row, named by nothing, ends missing_result, saying why', async () => {
    const run = await runWith('headless-line.jsonl', { damageResultLines: { 4: 'headless' } });

    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    const row = theDamagedRow(run);
    expect(row).toMatchObject({ status: 'errored', usage: null, cost_usd: null, error: { type: 'missing_result' } });
    expect(row.error!.message).toBe(
      "The batch returned no readable result for this request: one of its result lines could not be read, nor whose it was, and was likely this request's. It may have been billed.",
    );
    expectOthersAsReference(run, [row.custom_id]);
  });

  it('keeps the other results when a line is longer than the client reads (64 MiB); that row ends result_unreadable', async () => {
    const run = await runWith('oversize-line.jsonl', { damageResultLines: { 0: 'oversize' } });

    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    const row = theDamagedRow(run);
    expect(row).toMatchObject({ status: 'errored', error: { type: 'result_unreadable' } });
    expect(row.error!.message).toMatch(/\(longer than the longest line batchline reads; at byte 0 /);
    expectOthersAsReference(run, [row.custom_id]);
  }, 60_000);

  it('keeps every line when the stream is cut more often than the client retries: each Collect goes on from what the last one stored', async () => {
    // Every read of the results ends after 900 bytes (about one line): a Collect runs out of client
    // retries after three reads, stores what it read with a checkpoint, and the next one (the
    // workflow's ApiRetryable retry) reads on from there. Started over each time, none would finish.
    const run = await runWith('always-cut.jsonl', { cutResultsAfterBytes: 900, cutResultsTimes: 1_000 });

    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    // At least one Collect gave up on the cut stream, and the next went on.
    const failures = under.events.filter((event) => event.type === 'task-failed' && event.state === 'CollectResults' && event.jobId === run.jobId);
    expect(failures.map((event) => (event as { error: string }).error)).toContain('ApiRetryable');
    expectOthersAsReference(run, []);
    // Stored once each: one line per row in the attempt's results object.
    const stored = (await readText(under.stack, jobKeys(run.jobId).chunkResults(0, 1))).split('\n').filter((line) => line !== '');
    expect(stored.map((line) => (JSON.parse(line) as { custom_id: string }).custom_id).sort()).toEqual([...customIds].sort());
  }, 120_000);
});
