import { describe, expect, it } from 'vitest';
import type { MessageParams } from '../../shared/anthropic/types';
import { EstimateTotals } from '../../shared/cost/cost';
import type { ErrorRow, ResultRow } from '../../shared/jobs/finalize-job';
import { MAX_COST_METADATA, MODE_METADATA } from '../../shared/jobs/register-job';
import { batchOutcomes, ids, readJsonl, rowRecord, uploadRows, useLocalStack, withOutcome } from './support';

/**
 * Rows that share a system prompt marked for the 1-hour prompt cache (longer than Haiku 4.5's
 * minimum cacheable 4,096 tokens). The expected figure counts one write (at 2× input) per batch and
 * reads for the rest; a retry is another batch, so it writes the prefix again — what the job has paid
 * (one write at least) plus the retry's estimate (a write per row at worst) is over a budget of about
 * one write.
 */
const underestimated = (customId: string) => ({
  custom_id: customId,
  params: {
    model: 'claude-haiku-4-5',
    max_tokens: 1,
    system: [{ type: 'text', text: 'Answer briefly and precisely. '.repeat(900), cache_control: { type: 'ephemeral', ttl: '1h' } }],
    messages: [{ role: 'user', content: `Describe ${customId}.` }],
  },
});

const STACK_BUDGET_USD = 1000;

describe('the budget guard, end to end', () => {
  const under = useLocalStack({
    settings: { maxCostUsd: STACK_BUDGET_USD },
    simulator: { batchFaultsBySequence: { 1: { errored: { overloaded_error: 0.3 } } } },
  });

  const upload = (name: string, rows: Array<{ custom_id: string; params: unknown }>, maxCost?: number): Promise<string> =>
    uploadRows(under, name, rows, { [MODE_METADATA]: 'strict', ...(maxCost === undefined ? {} : { [MAX_COST_METADATA]: String(maxCost) }) });

  /** The two figures: the upper bound (every row writes the prefix) and the expected one (one write, the rest read). */
  const estimateOf = (rows: Array<{ params: unknown }>) => {
    const totals = new EstimateTotals();
    for (const row of rows) totals.add(row.params as MessageParams);
    const json = totals.toJSON();
    return { upper: json.totalUsd, expected: json.expected.totalUsd };
  };

  it('sends no retry that would take the paid cost past the budget: those rows end errored budget_exceeded', async () => {
    const rows = ids('row', 10).map(underestimated);
    // Within budget as estimated, so Prepare lets the job run; what the first batch costs leaves no room for a retry.
    const budget = estimateOf(rows).expected * 1.01;

    const jobId = await upload('underestimated.jsonl', rows, budget);
    const outcome = await under.stack.waitForJob(jobId);

    const stats = under.stack.simulator!.stats();
    expect(stats.batchesCreated).toHaveLength(1);
    expect(stats.requestsCreated).toBe(10);
    const overloaded = withOutcome(await batchOutcomes(under.stack, jobId, 0, 1), 'errored:overloaded_error');
    expect(overloaded.length).toBeGreaterThan(0);
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(rows.map((row) => row.custom_id));
    const stopped = results.filter((row) => row.status === 'errored');
    expect(stopped.map((row) => row.custom_id).sort()).toEqual(overloaded);
    for (const row of stopped) {
      expect(row.error?.type).toBe('budget_exceeded');
      expect(row.error?.message).toContain(`past its budget of $${budget}`);
    }
    // `batchline get` reads the row's record: final, budget_exceeded.
    expect(await rowRecord(under.stack, jobId, overloaded[0]!)).toMatchObject({ status: 'errored', final: true, errorType: 'budget_exceeded' });
    const errors = await readJsonl<ErrorRow>(under.stack, outcome.keys.errors);
    expect(errors.map((row) => [row.custom_id, row.error_type])).toEqual(stopped.map((row) => [row.custom_id, 'budget_exceeded']));
    expect(outcome.summary!.counts).toEqual({ total: 10, succeeded: 10 - overloaded.length, errored: overloaded.length, expired: 0, canceled: 0, invalid: 0 });
    // The first job of the stack: no history, so the expected figure differs from the upper bound by the caching only.
    expect(outcome.summary!.budget).toEqual({ maxCostUsd: budget, estimateUsd: estimateOf(rows).upper, expectedUsd: estimateOf(rows).expected });
    expect(outcome.summary!.cost.batchUsd).toBeGreaterThan(0);
    expect(outcome.summary!.retries).toEqual({ attempts: 0, rows: 0 });
  });

  it('rejects a job whose estimate is over its budget before anything is submitted, naming both', async () => {
    const rows = ids('costly', 4).map(underestimated);
    const requestsBefore = under.stack.simulator!.stats().requestsCreated;

    const jobId = await upload('costly.jsonl', rows, 0.00001);
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('rejected');
    // The execution fails with the rejection's error (JobRejected), as a strict rejection's does.
    const execution = await under.stack.stepFunctions.describe(outcome.job!.executionArn!)!.done;
    expect([execution.status, execution.error]).toEqual(['FAILED', 'BudgetExceeded']);
    expect(outcome.job?.failure?.error).toBe('BudgetExceeded');
    expect(outcome.job?.failure?.cause).toContain(`The expected cost $${estimateOf(rows).expected.toFixed(4)} (an estimate`);
    expect(outcome.job?.failure?.cause).toContain("over the job's budget of $0.0000");
    expect(under.stack.simulator!.stats().requestsCreated).toBe(requestsBefore);
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status])).toEqual(rows.map((row) => [row.custom_id, 'canceled']));
    expect(outcome.summary!.counts).toEqual({ total: 4, succeeded: 0, errored: 0, expired: 0, canceled: 4, invalid: 0 });
  });

  it("takes the stack's maxCostUsd when the file sets no budget", async () => {
    const rows = ids('cheap', 2).map(underestimated);
    const jobId = await upload('cheap.jsonl', rows);
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('succeeded');
    expect(outcome.summary!.budget).toMatchObject({
      maxCostUsd: STACK_BUDGET_USD,
      estimateUsd: estimateOf(rows).upper,
      expectedUsd: estimateOf(rows).expected,
    });
  });
});
