/**
 * The estimate benchmark's child task, one file per child (one local stack per process, so each
 * file kind builds its own history): a history file of the same kind runs first, then the file is
 * estimated as Prepare estimates it (shared/cost/cost.ts EstimateTotals over the rows the validator
 * accepts, one batch per chunk, the output history the first job left in the stack's table) and run.
 */
import { createReadStream } from 'node:fs';
import type { MessageParams } from '../shared/anthropic/types';
import { EstimateTotals, type OutputHistory } from '../shared/cost/cost';
import { readOutputHistory } from '../shared/jobs/output-history';
import { sourceLines } from '../shared/validation/input-lines';
import { validateStream } from '../shared/validation/request';

export interface EstimateInput {
  label: string;
  /** The file estimated and run. */
  path: string;
  /** A file of the same kind (other prompts) run first: its job is the history. */
  historyPath: string;
}

export interface EstimateRun {
  label: string;
  rows: number;
  /** Output at max_tokens. */
  upperUsd: number;
  /** Output from the history the first job left. */
  expectedUsd: number;
  expectedBasis: string;
  /** Succeeded rows of the history job, by model: what the expected figure learned from. */
  history: OutputHistory;
  actualUsd: number;
  tokens: {
    estimatedInput: number;
    estimatedCacheRead: number;
    estimatedCacheWrite: number;
    estimatedOutputUpper: number;
    estimatedOutputExpected: number;
    input: number;
    output: number;
    cacheRead: number;
    cacheWrite: number;
  };
}

async function estimateOf(file: string, history: OutputHistory, maxRows: number): Promise<{ rows: number; totals: EstimateTotals }> {
  const totals = new EstimateTotals({ history });
  let rows = 0;
  async function* lines() {
    for await (const entry of sourceLines(createReadStream(file), 256 * 1024 * 1024)) if (!('tooLong' in entry)) yield entry;
  }
  for await (const outcome of validateStream(lines())) {
    if (!outcome.ok) continue;
    // Prepare's chunks: each a batch that writes its cached prefixes again.
    if (rows > 0 && rows % maxRows === 0) totals.newBatch();
    rows += 1;
    totals.add(outcome.params as MessageParams);
  }
  return { rows, totals };
}

export async function runEstimate(input: EstimateInput): Promise<EstimateRun> {
  const { startLocalStack } = await import('../local/runtime');
  const { readPipelineSettings } = await import('../shared/config');
  const stack = await startLocalStack({ timeScale: 3_600, simulator: { processingSeconds: 60 } });
  try {
    const first = await stack.waitForJob(await stack.submitFile(input.historyPath, { lenient: true }));
    if (!first.summary) throw new Error(`${input.label}: the history job ended ${first.status} without a summary`);
    const history = await readOutputHistory(stack.dynamo, stack.table);
    const { rows, totals } = await estimateOf(input.path, history, readPipelineSettings(process.env).maxRequestsPerChunk);
    const outcome = await stack.waitForJob(await stack.submitFile(input.path, { lenient: true }));
    const summary = outcome.summary;
    if (!summary) throw new Error(`${input.label}: job ended ${outcome.status} without a summary`);
    const estimate = totals.toJSON();
    return {
      label: input.label,
      rows,
      upperUsd: estimate.totalUsd,
      expectedUsd: estimate.expected.totalUsd,
      expectedBasis: estimate.expected.basis,
      history,
      actualUsd: summary.cost.batchUsd,
      tokens: {
        estimatedInput: estimate.expected.tokens.input_tokens,
        estimatedCacheRead: estimate.expected.tokens.cache_read_input_tokens,
        estimatedCacheWrite: estimate.expected.tokens.cache_creation_input_tokens,
        estimatedOutputUpper: estimate.tokens.output_tokens,
        estimatedOutputExpected: estimate.expected.tokens.output_tokens,
        input: summary.tokens.input,
        output: summary.tokens.output,
        cacheRead: summary.tokens.cache_read_input,
        cacheWrite: summary.tokens.cache_creation_input,
      },
    };
  } finally {
    await stack.stop();
  }
}
