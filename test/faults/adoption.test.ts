/**
 * Creates whose answers are lost (docs/architecture.md, "Which batch is whose"): a batch is found
 * again by request count and time, so these are the cases where that could go wrong — equal-size
 * chunks, two files with the same custom_ids at once, a list that lags behind create. Each row must
 * end with its own answer, and no create may be repeated while its first batch may exist.
 */
import { describe, expect, it } from 'vitest';
import { ids, writeRequests, request, useLocalStack, type RequestRow, type StackUnderTest } from '../e2e/support';
import { chunkRecords, comparable, expectEveryRowOnce, expectOneBatchPerAttempt, runJob, startJob, withoutProbes, type JobRun } from './support';
import { readJsonl, readText } from '../e2e/support';
import { readJob } from '../../shared/jobs/chunk-state';

/** The same ids as `request`, with prompts of its own (so each file's answers differ). */
const otherRequest = (customId: string): RequestRow => {
  const row = request(customId);
  row.params.messages[0]!.content = `Summarize order ${customId}: it arrived late.`;
  return row;
};

async function runRows(under: StackUnderTest, name: string, rows: RequestRow[]): Promise<JobRun> {
  return (await startJob(under, await writeRequests(under, name, rows))).finish();
}

const submitErrors = (under: StackUnderTest) =>
  under.events.flatMap((event) => (event.type === 'task-failed' && event.state === 'SubmitChunk' ? [(event as { error: string }).error] : []));

describe('creates whose answers are lost', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 4 } });

  it('two equal-size chunks: each adopts its own batch and every row gets its own answer', async () => {
    const customIds = ids('row', 8);
    under.stack.simulator!.dropCreateResponses(2);
    const run = await runJob(under, 'lost-both.jsonl', customIds);
    expect(submitErrors(under).filter((error) => error === 'OutcomeUnknown')).toHaveLength(2);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(run.batches).toHaveLength(2);

    const reference = await runJob(under, 'reference.jsonl', customIds);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
  });

  it('two files with the same custom_ids at once: each file gets the answers to its own prompts', async () => {
    const customIds = ids('row', 4);
    const errorsBefore = submitErrors(under).length;
    const batchesBefore = under.stack.simulator!.stats().batchesCreated.length;
    under.stack.simulator!.dropCreateResponses(2);
    const [tickets, orders] = await Promise.all([
      runRows(under, 'tickets.jsonl', customIds.map(request)),
      runRows(under, 'orders.jsonl', customIds.map(otherRequest)),
    ]);
    expect(
      submitErrors(under)
        .slice(errorsBefore)
        .filter((error) => error === 'OutcomeUnknown'),
    ).toHaveLength(2);
    for (const run of [tickets, orders]) {
      expect(run.outcome.status).toBe('succeeded');
      expectEveryRowOnce(run, customIds);
    }
    // The jobs ran side by side: together they hold every batch created meanwhile, one each.
    const recorded = (await Promise.all([tickets, orders].map((run) => chunkRecords(under.stack, run.jobId)))).flat();
    const batchIds = recorded.flatMap((chunk) => chunk.attempts.map((attempt) => attempt.batchId));
    expect(batchIds.sort()).toEqual(under.stack.simulator!.stats().batchesCreated.slice(batchesBefore).sort());
    // Answers depend on the prompt: each file's equal its own fault-free run, and the two differ.
    const ticketsAgain = await runRows(under, 'tickets-again.jsonl', customIds.map(request));
    const ordersAgain = await runRows(under, 'orders-again.jsonl', customIds.map(otherRequest));
    expect(comparable(tickets.results)).toEqual(comparable(ticketsAgain.results));
    expect(comparable(orders.results)).toEqual(comparable(ordersAgain.results));
    expect(comparable(tickets.results)).not.toEqual(comparable(orders.results));
  });

  it('a list that lags behind create: Submit keeps looking while the lost batch is not listed, then adopts it: one batch', async () => {
    under.stack.simulator!.setBatchFaults({ hiddenFromListCalls: 3 });
    under.stack.simulator!.dropCreateResponses(1);
    const run = await runJob(under, 'lagging.jsonl', ids('lag', 3));
    under.stack.simulator!.setBatchFaults(undefined);

    expect(run.outcome.status).toBe('succeeded');
    expect(await withoutProbes(under.stack, run.batches)).toHaveLength(1);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(run.results.map((row) => row.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });

  it('a list that hides the lost batch: no second create; Submit gives up, and the rows say create_unknown', async () => {
    const customIds = ids('hidden', 3);
    const errorsBefore = submitErrors(under).length;
    under.stack.simulator!.setBatchFaults({ hiddenFromListCalls: 1_000 });
    under.stack.simulator!.dropCreateResponses(1);
    const run = await runJob(under, 'hidden.jsonl', customIds);
    under.stack.simulator!.setBatchFaults(undefined);

    // One batch: the lost create's; none created again (the probes sent to show the list current were hidden too).
    expect(await withoutProbes(under.stack, run.batches)).toHaveLength(1);
    const errors = submitErrors(under).slice(errorsBefore);
    expect(errors.at(-1)).toBe('CreateOutcomeUnknown');
    expect(errors.filter((error) => error === 'OutcomeUnknown').length).toBeGreaterThanOrEqual(6);
    expectEveryRowOnce(run, customIds);
    expect(run.results.map((row) => row.error?.type)).toEqual(customIds.map(() => 'create_unknown'));
    const message = run.results[0]!.error!.message;
    expect(message).toContain('a batch of 3 requests created near');
    const [chunk] = await chunkRecords(under.stack, run.jobId);
    expect(message).toContain(`custom_ids start with ${chunk!.attempts[0]!.nonce}-`);
    expect(chunk!.attempts[0]!.batchId).toBeUndefined();
  });

  it('finds the batch of a given-up create later: the reconciler collects it and the summary names it', async () => {
    const customIds = ids('orphan', 3);
    under.stack.simulator!.setBatchFaults({ hiddenFromListCalls: 1_000 });
    under.stack.simulator!.dropCreateResponses(1);
    const run = await runJob(under, 'orphan.jsonl', customIds);
    under.stack.simulator!.setBatchFaults(undefined);
    expect(run.results.map((row) => row.error?.type)).toEqual(customIds.map(() => 'create_unknown'));
    const [lostBatch] = await withoutProbes(under.stack, run.batches);

    // The list catches up; the batch has ended meanwhile. The daily reconciler finds it.
    under.stack.simulator!.catchUpList();
    under.stack.simulator!.advance(3_600);
    await under.stack.runSchedules();

    const job = await readJob(under.stack.dynamo, under.stack.table, run.jobId);
    expect(job.orphanBatches).toEqual([
      expect.objectContaining({
        batchId: lostBatch,
        chunk: 0,
        attempt: 1,
        requests: 3,
        outcome: 'collected',
        resultsKey: `results/${run.jobId}/orphans/${lostBatch}.jsonl`,
      }),
    ]);
    const kept = await readJsonl<{ custom_id: string; result: { type: string } }>(under.stack, job.orphanBatches![0]!.resultsKey!);
    expect(kept.map((line) => [line.custom_id, line.result.type])).toEqual(customIds.map((id) => [id, 'succeeded']));
    const summary = JSON.parse(await readText(under.stack, run.outcome.keys.summary)) as { orphanBatches?: unknown[] };
    expect(summary.orphanBatches).toEqual(job.orphanBatches);

    // Found once: a later run neither collects it again nor counts it.
    await under.stack.runSchedules();
    expect((await readJob(under.stack.dynamo, under.stack.table, run.jobId)).orphanBatches).toEqual(job.orphanBatches);
  });
});
