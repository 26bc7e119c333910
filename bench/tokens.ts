/**
 * Benchmark — estimate ÷ simulated actual. The request corpus (test/fixtures/request-corpus.ts)
 * and the example files (examples/*.jsonl) go through the simulator as batches, over HTTP with the
 * project's client; each answered request's estimate (shared/cost/cost.ts) is set against what the
 * simulated result says it used.
 *
 *   input tokens    estimate ÷ simulated input (input + cache writes + cache reads): the target,
 *                   ±15%. Both count with shared/cost/tokens.ts, so it is 1.00 unless they diverge.
 *   input cost      the estimate prices every input token as uncached; the actual pays cache
 *                   writes (1.25× / 2×) and reads (0.1×): how far caching moves the bill.
 *   total cost      with output at max_tokens (the estimate's upper bound) against the simulated
 *                   output: how loose that bound is. Not a target.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { BatchesClient } from '../shared/anthropic/client';
import type { BatchRequest, Message, MessageParams, Usage } from '../shared/anthropic/types';
import { estimateRequest, priceUsage } from '../shared/cost/cost';
import { startSimulator } from '../simulator/server';
import { ANSWERED } from '../test/fixtures/request-corpus';
import type { BenchContext } from './context';
import { check, fmt, int, type BenchReport } from './report';

export const TOKEN_TARGET = { low: 0.85, high: 1.15 };
const EXAMPLES = path.resolve(import.meta.dirname, '../examples');

interface Sums {
  rows: number;
  estimateInput: number;
  actualInput: number;
  estimateInputUsd: number;
  actualInputUsd: number;
  estimateUsd: number;
  actualUsd: number;
}

const zero = (): Sums => ({ rows: 0, estimateInput: 0, actualInput: 0, estimateInputUsd: 0, actualInputUsd: 0, estimateUsd: 0, actualUsd: 0 });
const totalInput = (usage: Usage) => usage.input_tokens + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0);

/** The example files' rows that parse as requests (with-invalid-rows.jsonl holds some that do not). */
async function exampleRequests(): Promise<BatchRequest[]> {
  const out: BatchRequest[] = [];
  for (const name of (await readdir(EXAMPLES)).filter((file) => file.endsWith('.jsonl')).sort()) {
    for (const line of (await readFile(path.join(EXAMPLES, name), 'utf8')).split('\n')) {
      try {
        const row = JSON.parse(line) as BatchRequest;
        // Renamed: an example's own custom_id may be one of its deliberate mistakes.
        if (typeof row.params === 'object' && row.params !== null) out.push({ custom_id: `example-${out.length}`, params: row.params });
      } catch {
        // not a request line: left out
      }
    }
  }
  return out;
}

async function runAll(client: BatchesClient, advance: (seconds: number) => void, requests: BatchRequest[]): Promise<Map<string, Message>> {
  const created = await client.create(requests);
  advance(24 * 3600);
  const messages = new Map<string, Message>();
  for await (const entry of client.results(created.id)) {
    if (entry.line.result.type === 'succeeded') messages.set(entry.line.custom_id, entry.line.result.message);
  }
  return messages;
}

function add(sums: Sums, params: MessageParams, message: Message): void {
  const estimate = estimateRequest(params);
  const actual = priceUsage(message.usage, message.model);
  sums.rows += 1;
  sums.estimateInput += estimate.inputTokens;
  sums.actualInput += totalInput(message.usage);
  sums.estimateInputUsd += estimate.usd.inputUsd;
  sums.actualInputUsd += actual.inputUsd + actual.cacheWrite5mUsd + actual.cacheWrite1hUsd + actual.cacheReadUsd;
  sums.estimateUsd += estimate.usd.totalUsd;
  sums.actualUsd += actual.totalUsd;
}

const ratio = (a: number, b: number) => (b === 0 ? Number.NaN : a / b);

export async function benchTokens(ctx: BenchContext): Promise<BenchReport> {
  const sim = await startSimulator({ timeScale: 1e-9 });
  const client = new BatchesClient({ apiKey: 'bench', baseUrl: sim.url, maxRetries: 0 });
  try {
    const sets: Array<{ name: string; requests: BatchRequest[] }> = [
      { name: 'request corpus', requests: ANSWERED.map((entry) => ({ custom_id: entry.id, params: entry.params })) },
      { name: 'examples/*.jsonl', requests: await exampleRequests() },
    ];
    const perRequest: string[][] = [];
    const bySet: Array<{ name: string; sums: Sums }> = [];
    for (const set of sets) {
      ctx.log(`tokens: ${set.requests.length} requests of the ${set.name}`);
      const messages = await runAll(client, (s) => sim.advance(s), set.requests);
      const sums = zero();
      for (const request of set.requests) {
        const message = messages.get(request.custom_id);
        if (message === undefined) continue; // errored (a model the simulator does not serve, bad params)
        add(sums, request.params, message);
        if (set.name === 'request corpus') {
          const estimate = estimateRequest(request.params).inputTokens;
          perRequest.push([request.custom_id, int(estimate), int(totalInput(message.usage)), fmt(ratio(estimate, totalInput(message.usage)), 2)]);
        }
      }
      bySet.push({ name: set.name, sums });
    }
    const corpus = bySet[0]!.sums;
    const inputRatio = ratio(corpus.estimateInput, corpus.actualInput);
    const worst = Math.max(...perRequest.map((row) => Math.abs(Number(row[3]) - 1)));
    return {
      name: 'tokens',
      title: 'Estimate ÷ simulated actual (bench/tokens.ts)',
      tables: [
        { title: 'Input tokens per request of the corpus', headers: ['request', 'estimate', 'simulated', 'ratio'], rows: perRequest },
        {
          title: 'Totals',
          headers: ['set', 'rows', 'input tokens', 'input cost', 'total cost (output at max_tokens)'],
          rows: bySet.map(({ name, sums }) => [
            name,
            int(sums.rows),
            fmt(ratio(sums.estimateInput, sums.actualInput), 2),
            fmt(ratio(sums.estimateInputUsd, sums.actualInputUsd), 2),
            fmt(ratio(sums.estimateUsd, sums.actualUsd), 2),
          ]),
        },
      ],
      checks: [
        check(
          'tokens: estimate ÷ simulated input, corpus',
          `${TOKEN_TARGET.low}–${TOKEN_TARGET.high}`,
          fmt(inputRatio, 3),
          inputRatio >= TOKEN_TARGET.low && inputRatio <= TOKEN_TARGET.high,
        ),
        check('tokens: worst single request, corpus', '≤ 0.15 off', fmt(worst, 3), worst <= 0.15),
      ],
      notes: [
        'Estimate and simulator count input with one module (shared/cost/tokens.ts): a ratio off 1.00 means they diverged.',
        'Input cost above 1.00: cache reads the estimate does not foresee (0.1× input); below: cache writes (1.25× or 2× input).',
        'Total cost counts output at max_tokens in the estimate (its upper bound) against the simulated reply length.',
      ],
    };
  } finally {
    await client.close();
    await sim.stop();
  }
}
