/**
 * The deadline fallback on the local pipeline (docs/architecture.md, "Deadline fallback"): a job
 * whose batch is still running at deadline − margin has it canceled, keeps its partial results, and
 * sends the rows it did not finish as synchronous Messages calls (RunStragglers), until the deadline.
 *
 * Time is driven, not waited for: the simulator's batches take 2 simulated hours, the margin is 12
 * hours and the deadline 13 hours after the upload, so the cancel is due an hour in. When the batch
 * is created the test pushes the simulator's clock an hour on (the poller's next tick wakes the
 * chunk for the deadline); the 12 simulated hours left are 12 real minutes at this time scale,
 * however slow the machine. The deadline-passed case pushes the clock past the deadline just
 * before RunStragglers runs.
 */
import { describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import { readJobChunks } from '../../shared/jobs/chunk-state';
import { getItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk, type JobItem } from '../../shared/store/items';
import { parseStragglersInput } from '../../shared/jobs/contract';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { runStragglers, SYNC_OUTCOME_UNKNOWN } from '../../shared/jobs/stragglers';
import { jobForUpload } from '../../shared/jobs/queries';
import { startRerun } from '../../shared/jobs/rerun';
import { localS3Client } from '../../local/emulators';
import { LOCAL_API_KEY, type LocalEvent } from '../../local/runtime';
import { ids, readJsonl, request, until, useLocalStack, writeRequests, type StackUnderTest } from './support';

const HOUR = 3600;

async function runWithDeadline(under: StackUnderTest, label: string, rows: number, at: { created?: number; collected?: number }) {
  const sim = under.stack.simulator!;
  const before = sim.stats();
  const customIds = ids(label, rows);
  const file = await writeRequests(under, `${label}.jsonl`, customIds.map(request));
  let jobId: string | undefined;
  // Pushed from the events themselves: the batch exists (created), or Collect has answered and RunStragglers is next (collected).
  const off = under.stack.on((event: LocalEvent) => {
    if (event.type === 'batch-submitted' && event.jobId === jobId && at.created) sim.advance(at.created);
    if (event.type === 'chunk-collected' && event.jobId === jobId && event.stragglers && at.collected) sim.advance(at.collected);
  });
  try {
    jobId = await under.stack.submitFile(file, { deadline: '13h' });
    const outcome = await under.stack.waitForJob(jobId);
    const after = sim.stats();
    return {
      jobId,
      customIds,
      outcome,
      results: await readJsonl<ResultRow>(under.stack, outcome.keys.results),
      errors: await readJsonl<{ custom_id: string; status: string; message: string }>(under.stack, outcome.keys.errors),
      chunks: await readJobChunks(under.stack.dynamo, under.stack.table, jobId),
      batchesCreated: after.batchesCreated.length - before.batchesCreated.length,
      requestsCreated: after.requestsCreated - before.requestsCreated,
      messagesCalls: after.calls.messages - before.calls.messages,
      cancels: after.calls.cancel - before.calls.cancel,
    };
  } finally {
    off();
  }
}

describe('the deadline fallback, end to end', () => {
  const under = useLocalStack({ timeScale: 60, settings: { deadlineMarginSeconds: 12 * HOUR }, simulator: { processingSeconds: 2 * HOUR } });

  it('cancels the batch still running at deadline − margin, keeps what it finished, and answers the rest synchronously, each row once', async () => {
    const run = await runWithDeadline(under, 'slow', 12, { created: HOUR });

    expect(run.outcome.status).toBe('succeeded');
    expect(run.results.map((row) => row.custom_id)).toEqual(run.customIds);
    const inBatch = run.results.filter((row) => row.batch_id !== null);
    const synchronous = run.results.filter((row) => row.synchronous === true);
    // The batch was half done an hour in: some rows from it, the others synchronously; each row exactly one of the two.
    expect(inBatch.length).toBeGreaterThan(0);
    expect(synchronous.length).toBeGreaterThan(0);
    expect(inBatch.length + synchronous.length).toBe(12);
    for (const row of inBatch) expect(row).toMatchObject({ status: 'succeeded', attempts: 1 });
    for (const row of synchronous) expect(row).toMatchObject({ status: 'succeeded', attempts: 2, batch_id: null });
    expect(run.outcome.summary?.counts).toEqual({ total: 12, succeeded: 12, errored: 0, expired: 0, canceled: 0, invalid: 0 });

    // Nothing sent twice: one batch of every row, one cancel, one Messages call per row it did not finish; no batch retry.
    expect(run.batchesCreated).toBe(1);
    expect(run.requestsCreated).toBe(12);
    expect(run.cancels).toBe(1);
    expect(run.messagesCalls).toBe(synchronous.length);
    const [chunk] = run.chunks;
    expect(chunk!.attempts.map((a) => ({ attempt: a.attempt, batch: a.batchId !== undefined, sync: a.sync !== undefined }))).toEqual([
      { attempt: 1, batch: true, sync: false },
      { attempt: 2, batch: false, sync: true },
    ]);
    expect(chunk!.attempts[0]).toMatchObject({ straggled: true, retryRows: synchronous.length, counts: { canceled: synchronous.length } });
    expect(chunk!.attempts[0]!.deadlineCanceledAt).toEqual(expect.any(String));
    expect(chunk!.attempts[1]!.sync).toMatchObject({ claimed: synchronous.length, stored: [0] });

    // At standard rates: twice the batch price of the same tokens, the difference reported as the premium.
    const sync = run.outcome.summary!.synchronous!;
    expect(sync).toMatchObject({ rows: synchronous.length, counts: { succeeded: synchronous.length, errored: 0, expired: 0, canceled: 0 } });
    expect(sync.costUsd).toBeCloseTo(2 * sync.atBatchRatesUsd, 6);
    expect(sync.premiumUsd).toBeCloseTo(sync.costUsd - sync.atBatchRatesUsd, 6);
    expect(sync.premiumUsd).toBeGreaterThan(0);
    const syncCost = synchronous.reduce((sum, row) => sum + (row.cost_usd ?? 0), 0);
    expect(syncCost).toBeCloseTo(sync.costUsd, 6);
    // The batches' cost leaves the synchronous rows out; the retries count no synchronous attempt.
    expect(run.outcome.summary!.retries).toEqual({ attempts: 0, rows: 0 });
    // The job's cost is both: the batch at batch rates, the synchronous calls at standard rates.
    const job = await getItem<JobItem>(under.stack.dynamo, under.stack.table, { pk: jobPk(run.jobId), sk: JOB_SK });
    expect(job!.costUsd).toBeCloseTo(run.outcome.summary!.cost.batchUsd + sync.costUsd, 6);
    expect(sync.costUsd).toBeGreaterThan(0);
  });

  it('ends expired the rows still unanswered when the deadline passes, sending none of them', async () => {
    // Past the cancel an hour in; then, as Collect answers, past the deadline itself.
    const run = await runWithDeadline(under, 'late', 8, { created: HOUR, collected: 13 * HOUR });

    expect(run.results.map((row) => row.custom_id)).toEqual(run.customIds);
    const expired = run.results.filter((row) => row.synchronous === true);
    expect(expired.length).toBeGreaterThan(0);
    for (const row of expired) expect(row).toMatchObject({ status: 'expired', attempts: 2, batch_id: null, cost_usd: null });
    expect(run.messagesCalls).toBe(0);
    expect(run.batchesCreated).toBe(1);
    const succeeded = run.results.filter((row) => row.status === 'succeeded').length;
    expect(run.outcome.summary?.counts).toEqual({ total: 8, succeeded, errored: 0, expired: expired.length, canceled: 0, invalid: 0 });
    expect(run.errors.map((row) => row.custom_id)).toEqual(expired.map((row) => row.custom_id));
    for (const row of run.errors) expect(row.message).toMatch(/deadline passed before this request was answered/);
    expect(run.outcome.summary!.synchronous).toMatchObject({ rows: expired.length, costUsd: 0, premiumUsd: 0 });
  });

  it('sends nothing twice when RunStragglers runs again: after a step killed mid-slice, and after one that finished', async () => {
    const sim = under.stack.simulator!;
    // The first invocation: its first slice (2 rows) is claimed and sent, then storing the answers fails,
    // as if the function were killed there. Then the real step runs, twice.
    const failing = localS3Client(under.stack.s3Endpoint);
    failing.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (key.includes('/sync/') && context.commandName !== 'GetObjectCommand') throw new Error('killed while storing the answers');
        return next(args);
      },
      { step: 'initialize' },
    );
    const api = new BatchesClient({ apiKey: LOCAL_API_KEY, baseUrl: sim.url });
    let messagesInRuns: number[] = [];
    const undo = under.stack.stepFunctions.wrapTask('RunStragglers', async (input, invoke) => {
      const state = (input as { state: unknown }).state;
      const config = { bucket: under.stack.bucket, table: under.stack.table, rowTtlDays: 1, pricesJson: undefined };
      const calls = () => sim.stats().calls.messages;
      const start = calls();
      await expect(runStragglers(parseStragglersInput(state), { s3: failing, dynamo: under.stack.dynamo, api, config, sliceRows: 2 })).rejects.toThrow(
        'killed while storing the answers',
      );
      const afterKilled = calls();
      const output = await invoke(input);
      const afterRerun = calls();
      expect(await invoke(input)).toEqual(output);
      messagesInRuns = [afterKilled - start, afterRerun - afterKilled, calls() - afterRerun];
      return output;
    });
    let run: Awaited<ReturnType<typeof runWithDeadline>>;
    try {
      run = await runWithDeadline(under, 'rerun', 10, { created: HOUR });
    } finally {
      undo();
    }

    const synchronous = run.results.filter((row) => row.synchronous === true);
    expect(synchronous.length).toBeGreaterThan(2);
    const unknown = synchronous.filter((row) => row.status === 'errored');
    // The killed slice's rows were sent once and never again: their outcome is unknown, and said so.
    expect(unknown).toHaveLength(2);
    for (const row of unknown) expect(row.error).toMatchObject({ type: SYNC_OUTCOME_UNKNOWN });
    expect(synchronous.filter((row) => row.status === 'succeeded')).toHaveLength(synchronous.length - 2);
    expect(messagesInRuns).toEqual([2, synchronous.length - 2, 0]);
    expect(run.messagesCalls).toBe(synchronous.length);
    expect(run.outcome.summary?.counts).toMatchObject({ total: 10, errored: 2, succeeded: 8 });

    // A rerun that sends only expired rows (there are none) reuses every row: it sent nothing synchronously, and its summary says so.
    const uploaded = await startRerun(under.stack, run.jobId, { only: ['expired'] });
    let rerunId: string | undefined;
    await until(async () => (rerunId = (await jobForUpload(under.stack, uploaded, { since: '1970-01-01T00:00:00Z' }))?.jobId) !== undefined);
    const rerun = await under.stack.waitForJob(rerunId!);
    expect(rerun.summary?.reused?.rows).toBe(10);
    expect(rerun.summary?.counts).toMatchObject({ total: 10, errored: 2, succeeded: 8 });
    expect(rerun.summary?.synchronous).toBeUndefined();
  });
});
