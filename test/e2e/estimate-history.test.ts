import { describe, expect, it } from 'vitest';
import type { MessageParams } from '../../shared/anthropic/types';
import { EstimateTotals, type OutputHistory } from '../../shared/cost/cost';
import { readOutputHistory } from '../../shared/jobs/output-history';
import { MAX_COST_METADATA } from '../../shared/jobs/register-job';
import { ids, uploadRows, useLocalStack } from './support';

/** Rows of one kind: a question each, with room for a long answer (the simulator's replies use a part of it). */
const question = (customId: string) => ({
  custom_id: customId,
  params: {
    model: 'claude-sonnet-4-5',
    max_tokens: 600,
    messages: [{ role: 'user', content: `Explain the refund rules for order ${customId} step by step.` }],
  },
});

describe("the estimate learns output from the stack's history, and the budget guard decides on it", () => {
  const under = useLocalStack();

  const estimateOf = (rows: Array<{ params: unknown }>, history: OutputHistory) => {
    const totals = new EstimateTotals({ history });
    for (const row of rows) totals.add(row.params as MessageParams);
    return totals.toJSON();
  };

  it('a first job adds its succeeded rows to the history; a second job is judged on the expected figure it gives', async () => {
    expect(await readOutputHistory(under.stack.dynamo, under.stack.table)).toEqual({});
    const firstRows = ids('first', 12).map(question);
    const first = await under.stack.waitForJob(await uploadRows(under, 'first.jsonl', firstRows));
    expect(first.summary!.counts.succeeded).toBe(12);

    // The history: the 12 succeeded rows, the output they used, and their max_tokens.
    const history = await readOutputHistory(under.stack.dynamo, under.stack.table);
    expect(history).toEqual({ 'claude-sonnet-4-5': { rows: 12, outputTokens: first.summary!.tokens.output, maxTokens: 12 * 600 } });
    expect(first.summary!.tokens.output).toBeLessThan(12 * 600);

    const secondRows = ids('second', 12).map(question);
    const estimate = estimateOf(secondRows, history);
    expect(estimate.expected).toMatchObject({ basis: 'history', historyRows: 12 });
    expect(estimate.expected.totalUsd).toBeLessThan(estimate.totalUsd);

    // Under the expected figure: rejected before anything is sent, the cause naming the history.
    const requestsBefore = under.stack.simulator!.stats().requestsCreated;
    const tight = Number((estimate.expected.totalUsd * 0.9).toFixed(6));
    const rejected = await under.stack.waitForJob(await uploadRows(under, 'second-tight.jsonl', secondRows, { [MAX_COST_METADATA]: String(tight) }));
    expect(rejected.status).toBe('rejected');
    expect(rejected.job?.failure?.error).toBe('BudgetExceeded');
    expect(rejected.job?.failure?.cause).toContain(`The expected cost $${estimate.expected.totalUsd.toFixed(4)}`);
    expect(rejected.job?.failure?.cause).toContain('output from 12 rows of past jobs');
    expect(under.stack.simulator!.stats().requestsCreated).toBe(requestsBefore);
    // A rejected job adds nothing to the history.
    expect(await readOutputHistory(under.stack.dynamo, under.stack.table)).toEqual(history);

    // Over the expected figure but under the upper bound: the guard lets it run.
    const budget = Number(((estimate.expected.totalUsd + estimate.totalUsd) / 2).toFixed(6));
    const second = await under.stack.waitForJob(await uploadRows(under, 'second.jsonl', secondRows, { [MAX_COST_METADATA]: String(budget) }));
    expect(second.status).toBe('succeeded');
    expect(second.summary!.counts.succeeded).toBe(12);
    expect(second.summary!.budget).toEqual({ maxCostUsd: budget, estimateUsd: estimate.totalUsd, expectedUsd: estimate.expected.totalUsd });
    expect(await readOutputHistory(under.stack.dynamo, under.stack.table)).toEqual({
      'claude-sonnet-4-5': { rows: 24, outputTokens: first.summary!.tokens.output + second.summary!.tokens.output, maxTokens: 24 * 600 },
    });
  });
});
