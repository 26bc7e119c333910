/**
 * Benchmark — the budget guard's estimate (shared/cost/cost.ts: input tokens from the text, output
 * at max_tokens) ÷ what the simulator billed, for the examples and the benchmark file. The budget
 * guard rejects on the estimate, so this says how far it is from what a job pays. Printed as it is:
 * the target is ±15%, and the simulator's token counting and the estimator's rules both change.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInChild } from './child';
import type { BenchContext } from './context';
import type { EstimateInput, EstimateRun } from './estimate-tasks';
import { writeInputFile } from './input-file';
import { check, fmt, int, usd, type BenchReport } from './report';

export const ESTIMATE_TARGET = { low: 0.85, high: 1.15 };
const DEFAULT_ROWS = 2_000;
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLES = ['classification.jsonl', 'summarization-cached.jsonl', 'with-invalid-rows.jsonl'];

export async function benchEstimate(ctx: BenchContext): Promise<BenchReport> {
  const rows = Math.min(ctx.options.rows ?? DEFAULT_ROWS, 100_000);
  const dir = await mkdtemp(path.join(ctx.options.workDir, 'estimate-'));
  try {
    const benchFile = path.join(dir, 'requests.jsonl');
    await writeInputFile(benchFile, rows);
    const input: EstimateInput = {
      files: [
        ...EXAMPLES.map((name) => ({ label: `examples/${name}`, path: path.join(REPO_ROOT, 'examples', name) })),
        { label: `benchmark file (${int(rows)} rows)`, path: benchFile },
      ],
    };
    ctx.log(`estimate: ${input.files.length} files through the local stack`);
    const { value: runs } = await runInChild<EstimateRun[]>({ module: './estimate-tasks', fn: 'runEstimates' }, input);
    const ratioOf = (run: EstimateRun) => (run.actualUsd > 0 ? run.estimateUsd / run.actualUsd : undefined);
    return {
      name: 'estimate',
      title: 'estimate — the cost estimate (budget guard) ÷ what the simulator billed',
      tables: [
        {
          headers: [
            'file',
            'rows',
            'estimate',
            'billed',
            'estimate ÷ billed',
            'input tokens est. / billed',
            'output tokens est. / billed',
            'cache read / write',
          ],
          rows: runs.map((run) => [
            run.label,
            int(run.rows),
            usd(run.estimateUsd),
            usd(run.actualUsd),
            ratioOf(run) === undefined ? 'n/a' : `${fmt(ratioOf(run)!, 3)}×`,
            `${int(run.tokens.estimatedInput)} / ${int(run.tokens.input + run.tokens.cacheRead + run.tokens.cacheWrite)}`,
            `${int(run.tokens.estimatedOutput)} / ${int(run.tokens.output)}`,
            `${int(run.tokens.cacheRead)} / ${int(run.tokens.cacheWrite)}`,
          ]),
        },
      ],
      checks: runs.map((run) => {
        const ratio = ratioOf(run);
        const pass = ratio === undefined ? undefined : ratio >= ESTIMATE_TARGET.low && ratio <= ESTIMATE_TARGET.high;
        return check(
          `estimate: ${run.label} estimate ÷ billed`,
          `${fmt(ESTIMATE_TARGET.low, 2)}–${fmt(ESTIMATE_TARGET.high, 2)}×`,
          ratio === undefined ? 'n/a' : `${fmt(ratio, 3)}×`,
          pass,
        );
      }),
      notes: [
        'The estimate counts output at max_tokens (an upper bound), input at about 4 characters a token, and no prompt caching; the simulator bills the tokens its replies use, with cache reads and writes.',
        'Input tokens billed include cache reads and writes. Lenient runs: invalid lines are in neither figure.',
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
