import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { writeLocalState } from '../../cli/ops/local-state';
import type { MessageParams } from '../../shared/anthropic/types';
import { EstimateTotals, type OutputHistory } from '../../shared/cost/cost';
import { readOutputHistory } from '../../shared/jobs/output-history';
import { MAX_COST_METADATA } from '../../shared/jobs/register-job';
import { ids, uploadRows, useLocalStack } from './support';

const BIN = fileURLToPath(new URL('../../bin/batchline.mjs', import.meta.url));

function batchline(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { timeout: 120_000 }, (_error, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

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

    // `batchline estimate --local DIR` (a real process) reads the same history and shows both figures.
    await writeLocalState(under.dir, under.stack);
    const file = path.join(under.dir, 'second.jsonl');
    await writeFile(file, secondRows.map((row) => JSON.stringify(row)).join('\n'));
    const text = await batchline(['estimate', file, '--local', under.dir]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(
      `Estimated cost at batch rates: $${estimate.expected.totalUsd.toFixed(4)} expected (output from 12 rows of past jobs in the local stack in ${under.dir})`,
    );
    expect(text.stdout).toContain(`  up to $${estimate.totalUsd.toFixed(4)} with every row using its max_tokens`);
    const json = await batchline(['estimate', file, '--local', under.dir, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const document = JSON.parse(json.stdout);
    expect(document.cost.batchUsd).toBe(estimate.totalUsd);
    expect(document.expected).toMatchObject({ basis: 'history', historyRows: 12, batchUsd: estimate.expected.totalUsd });
    expect(document.expected.byModel['claude-sonnet-4-5'].outputRatio).toBeCloseTo(history['claude-sonnet-4-5']!.outputTokens / (12 * 600), 12);

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
