/**
 * Benchmark — the budget guard's estimate (shared/cost/cost.ts EstimateTotals) ÷ what the
 * simulator billed, for the examples and the benchmark file, in two figures: the upper bound
 * (output at max_tokens) and the expected (output at max_tokens × what a first job of the same kind
 * used of it, from the output history that job left in the stack's table). The budget guard
 * rejects on the expected figure. Printed as it is: the target is ±15% for the expected figure.
 *
 * Each file runs in its own child with its own local stack, so its history is only its own kind's:
 * first a history file — the same requests with other prompts (each last user turn changed, so the
 * simulator's replies differ), or for the benchmark file another seed — then the file itself.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
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

/** The same requests with another last user turn (a line that is not a request is copied as it is). */
export function historyVariant(line: string): string {
  try {
    const row = JSON.parse(line) as { params?: { messages?: Array<{ role?: string; content?: unknown }> } };
    const last = row.params?.messages?.at(-1);
    if (last?.role !== 'user') return line;
    if (typeof last.content === 'string') last.content = `${last.content} Please answer for last month instead.`;
    else if (Array.isArray(last.content)) last.content = [...last.content, { type: 'text', text: 'Please answer for last month instead.' }];
    else return line;
    return JSON.stringify(row);
  } catch {
    return line;
  }
}

async function writeVariant(from: string, to: string): Promise<void> {
  const out = createWriteStream(to);
  for await (const line of createInterface({ input: createReadStream(from), crlfDelay: Number.POSITIVE_INFINITY })) {
    if (!out.write(`${line.trim() === '' ? line : historyVariant(line)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

const ratio = (estimate: number, actual: number) => (actual > 0 ? estimate / actual : undefined);
const times = (value: number | undefined) => (value === undefined ? 'n/a' : `${fmt(value, 3)}×`);

function historyText(run: EstimateRun): string {
  const models = Object.entries(run.history);
  if (models.length === 0) return 'none: output at max_tokens';
  return models
    .map(([model, entry]) => `${model}: ${int(entry.rows)} rows, ${fmt(entry.outputTokens / Math.max(1, entry.maxTokens), 3)} of max_tokens`)
    .join('; ');
}

export async function benchEstimate(ctx: BenchContext): Promise<BenchReport> {
  const rows = Math.min(ctx.options.rows ?? DEFAULT_ROWS, 100_000);
  const dir = await mkdtemp(path.join(ctx.options.workDir, 'estimate-'));
  try {
    const inputs: EstimateInput[] = [];
    for (const name of EXAMPLES) {
      const historyPath = path.join(dir, `history-${name}`);
      await writeVariant(path.join(REPO_ROOT, 'examples', name), historyPath);
      inputs.push({ label: `examples/${name}`, path: path.join(REPO_ROOT, 'examples', name), historyPath });
    }
    const benchFile = path.join(dir, 'requests.jsonl');
    const benchHistory = path.join(dir, 'history-requests.jsonl');
    await writeInputFile(benchFile, rows);
    await writeInputFile(benchHistory, rows, { seed: 7_070_707, prefix: 'hist' });
    inputs.push({ label: `benchmark file (${int(rows)} rows)`, path: benchFile, historyPath: benchHistory });
    const runs: EstimateRun[] = [];
    for (const input of inputs) {
      ctx.log(`estimate: ${input.label}: a history job of the same kind, then the file, on a fresh local stack`);
      runs.push((await runInChild<EstimateRun>({ module: './estimate-tasks', fn: 'runEstimate' }, input)).value);
    }
    return {
      name: 'estimate',
      title: 'estimate — the cost estimate (budget guard) ÷ what the simulator billed',
      tables: [
        {
          headers: ['file', 'rows', 'upper bound', 'expected', 'billed', 'upper ÷ billed', 'expected ÷ billed'],
          rows: runs.map((run) => [
            run.label,
            int(run.rows),
            usd(run.upperUsd),
            usd(run.expectedUsd),
            usd(run.actualUsd),
            times(ratio(run.upperUsd, run.actualUsd)),
            times(ratio(run.expectedUsd, run.actualUsd)),
          ]),
        },
        {
          headers: [
            'file',
            'input expected / billed',
            'cache read expected / billed',
            'cache write expected / billed',
            'output upper / expected / billed',
            'history used',
          ],
          rows: runs.map((run) => [
            run.label,
            `${int(run.tokens.estimatedInput)} / ${int(run.tokens.input)}`,
            `${int(run.tokens.estimatedCacheRead)} / ${int(run.tokens.cacheRead)}`,
            `${int(run.tokens.estimatedCacheWrite)} / ${int(run.tokens.cacheWrite)}`,
            `${int(run.tokens.estimatedOutputUpper)} / ${int(run.tokens.estimatedOutputExpected)} / ${int(run.tokens.output)}`,
            historyText(run),
          ]),
        },
      ],
      checks: runs.map((run) => {
        const value = ratio(run.expectedUsd, run.actualUsd);
        const pass = value === undefined ? undefined : value >= ESTIMATE_TARGET.low && value <= ESTIMATE_TARGET.high;
        return check(`estimate: ${run.label} expected ÷ billed`, `${fmt(ESTIMATE_TARGET.low, 2)}–${fmt(ESTIMATE_TARGET.high, 2)}×`, times(value), pass);
      }),
      notes: [
        'Upper bound: output at max_tokens, every row writing its cacheable prefixes (what the job can cost at most). Expected: the cache at its best, output at max_tokens × the ratio the history job left (per model; basis shown in "history used").',
        'History: a first job of the same kind on the same fresh local stack — the examples with each last user turn changed (other prompts, so other replies), the benchmark file with another seed — then the file is estimated and run.',
        "Caching in the expected figure: per batch, one write per cacheable prefix and the rest read; the simulator runs a batch's first requests together, so each of those writes.",
        'Lenient runs: invalid lines are in no figure.',
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
