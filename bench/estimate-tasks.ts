/**
 * The estimate benchmark's child task: each file through the local stack (the simulator's token
 * counts), beside the cost estimate Prepare would make of it (shared/cost/cost.ts EstimateTotals,
 * the rows the validator accepts).
 */
import { createReadStream } from 'node:fs';
import type { MessageParams } from '../shared/anthropic/types';
import { EstimateTotals } from '../shared/cost/cost';
import { sourceLines } from '../shared/validation/input-lines';
import { validateStream } from '../shared/validation/request';

export interface EstimateInput {
  files: Array<{ label: string; path: string }>;
}

export interface EstimateRun {
  label: string;
  rows: number;
  estimateUsd: number;
  actualUsd: number;
  /** Tokens the simulator billed, and the estimate's (output counted at max_tokens). */
  tokens: { estimatedInput: number; estimatedOutput: number; input: number; output: number; cacheRead: number; cacheWrite: number };
}

async function estimateOf(file: string): Promise<{ rows: number; totals: EstimateTotals }> {
  const totals = new EstimateTotals();
  let rows = 0;
  async function* lines() {
    for await (const entry of sourceLines(createReadStream(file), 256 * 1024 * 1024)) if (!('tooLong' in entry)) yield entry;
  }
  for await (const outcome of validateStream(lines())) {
    if (!outcome.ok) continue;
    rows += 1;
    totals.add(outcome.params as MessageParams);
  }
  return { rows, totals };
}

export async function runEstimates(input: EstimateInput): Promise<EstimateRun[]> {
  const { startLocalStack } = await import('../local/runtime');
  const stack = await startLocalStack({ timeScale: 3_600, simulator: { processingSeconds: 60 } });
  const runs: EstimateRun[] = [];
  try {
    for (const file of input.files) {
      const { rows, totals } = await estimateOf(file.path);
      const jobId = await stack.submitFile(file.path, { lenient: true });
      const outcome = await stack.waitForJob(jobId);
      const summary = outcome.summary;
      if (!summary) throw new Error(`${file.label}: job ${jobId} ended ${outcome.status} without a summary`);
      const estimate = totals.toJSON();
      runs.push({
        label: file.label,
        rows,
        estimateUsd: estimate.totalUsd,
        actualUsd: summary.cost.batchUsd,
        tokens: {
          estimatedInput: estimate.tokens.input_tokens,
          estimatedOutput: estimate.tokens.output_tokens,
          input: summary.tokens.input,
          output: summary.tokens.output,
          cacheRead: summary.tokens.cache_read_input,
          cacheWrite: summary.tokens.cache_creation_input,
        },
      });
    }
  } finally {
    await stack.stop();
  }
  return runs;
}
