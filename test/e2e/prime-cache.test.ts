/**
 * Prompt-cache priming on the local pipeline (docs/architecture.md, "Prompt-cache priming"): rows
 * sharing a long cached system prompt, run with and without `batchline-prime-cache`, against the
 * simulator's prompt cache (a batch request reads a prefix written before it started, within the
 * TTL; requests that start together all miss).
 *
 * The time scale is 60 (a simulated hour is a real minute) and the prefix's TTL an hour: the
 * priming call and the batch's requests lie well within it however slow the machine.
 */
import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { roundUsd } from '../../shared/cost/cost';
import { readJobChunks } from '../../shared/jobs/chunk-state';
import { ids, readJsonl, useLocalStack, writeRequests, type StackUnderTest } from './support';

/** Sonnet 4.5's prices per million tokens: input, 1-hour cache write, cache read. */
const SONNET = { input: 3, cacheWrite1h: 6, cacheRead: 0.3 };

/** 8,000 ASCII characters: 2,000 tokens (+3 opening the system prompt), past Sonnet's minimum of 1,024. */
const system = (label: string) => [{ type: 'text', text: `${label} `.repeat(8000).slice(0, 8000), cache_control: { type: 'ephemeral', ttl: '1h' } }];
const PREFIX_TOKENS = 2003;

const rows = (label: string, n: number) =>
  ids(label, n).map((customId) => ({
    custom_id: customId,
    params: { model: 'claude-sonnet-4-5', max_tokens: 16, system: system(label), messages: [{ role: 'user', content: `Question ${customId}` }] },
  })) as unknown as Parameters<typeof writeRequests>[2];

async function runJob(under: StackUnderTest, label: string, primeCache: boolean) {
  const before = under.stack.simulator!.stats();
  const file = await writeRequests(under, `${label}.jsonl`, rows(label, 8));
  const jobId = await under.stack.submitFile(file, { primeCache });
  const outcome = await under.stack.waitForJob(jobId);
  const after = under.stack.simulator!.stats();
  const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
  const chunks = await readJobChunks(under.stack.dynamo, under.stack.table, jobId);
  return {
    outcome,
    results,
    chunks,
    messagesCalls: (after.calls.messages ?? 0) - (before.calls.messages ?? 0),
    batchesCreated: after.batchesCreated.length - before.batchesCreated.length,
    requestsCreated: after.requestsCreated - before.requestsCreated,
  };
}

describe('prompt-cache priming, end to end', () => {
  const under = useLocalStack({ timeScale: 60, settings: { maxRequestsPerChunk: 4 } });

  it('primes each chunk attempt once, so every row of its batch reads the shared prefix; the summary reports the ratio, the cost and the saving', async () => {
    const primed = await runJob(under, 'primed', true);

    expect(primed.outcome.status).toBe('succeeded');
    // Every row once, in order, succeeded; two chunks, one batch each, each row sent once.
    expect(primed.results.map((row) => row.custom_id)).toEqual(ids('primed', 8));
    expect(primed.results.every((row) => row.status === 'succeeded' && row.attempts === 1)).toBe(true);
    expect(primed.outcome.summary?.counts).toEqual({ total: 8, succeeded: 8, errored: 0, expired: 0, canceled: 0, invalid: 0 });
    expect(primed.batchesCreated).toBe(2);
    expect(primed.requestsCreated).toBe(8);
    // One Messages call per chunk attempt (one distinct prefix each), recorded on the attempt.
    expect(primed.messagesCalls).toBe(2);
    for (const chunk of primed.chunks) {
      expect(chunk.attempts).toHaveLength(1);
      expect(chunk.attempts[0]!.priming).toMatchObject({
        prefixes: [{ model: 'claude-sonnet-4-5', ttl: '1h', tokens: PREFIX_TOKENS, rows: 4 }],
        calls: 1,
        failed: 0,
      });
    }
    // Every row read the prefix; none wrote it.
    for (const row of primed.results) {
      expect(row.usage).toMatchObject({ cache_read_input_tokens: PREFIX_TOKENS, cache_creation_input_tokens: 0 });
    }

    const cache = primed.outcome.summary!.promptCache!;
    expect(cache).toMatchObject({ cacheableInputTokens: 8 * PREFIX_TOKENS, readTokens: 8 * PREFIX_TOKENS, writeTokens: 0, readRatio: 1 });
    const priming = cache.priming!;
    expect(priming).toMatchObject({ attempts: 2, prefixes: 2, calls: 2, failed: 0, unfinished: 0, rows: 8, readOnPrimedTokens: 8 * PREFIX_TOKENS });
    // Each call wrote the prefix, or read it when the other chunk's call had written it first.
    expect(priming.tokens.cache_creation_input + priming.tokens.cache_read_input).toBe(2 * PREFIX_TOKENS);
    expect(priming.tokens.output).toBe(0);
    const cost =
      (priming.tokens.input * SONNET.input + priming.tokens.cache_creation_input * SONNET.cacheWrite1h + priming.tokens.cache_read_input * SONNET.cacheRead) /
      1e6;
    expect(priming.costUsd).toBe(roundUsd(cost));
    expect(priming.savedUsd).toBe(roundUsd((8 * PREFIX_TOKENS * (SONNET.cacheWrite1h - SONNET.cacheRead) * 0.5) / 1e6 - cost));

    const unprimed = await runJob(under, 'unprimed', false);

    expect(unprimed.outcome.status).toBe('succeeded');
    expect(unprimed.results.map((row) => row.custom_id)).toEqual(ids('unprimed', 8));
    expect(unprimed.results.every((row) => row.status === 'succeeded')).toBe(true);
    expect(unprimed.messagesCalls).toBe(0);
    expect(unprimed.batchesCreated).toBe(2);
    expect(unprimed.requestsCreated).toBe(8);
    expect(unprimed.chunks.every((chunk) => chunk.attempts.every((attempt) => attempt.priming === undefined))).toBe(true);
    // Without priming the first requests, started before any write had finished, each write the prefix.
    const writers = unprimed.results.filter((row) => (row.usage?.cache_creation_input_tokens ?? 0) > 0);
    expect(writers.length).toBeGreaterThanOrEqual(1);
    const unprimedCache = unprimed.outcome.summary!.promptCache!;
    expect(unprimedCache.priming).toBeUndefined();
    expect(unprimedCache.writeTokens).toBe(writers.length * PREFIX_TOKENS);
    expect(unprimedCache.readRatio).toBeLessThan(1);
    expect(unprimedCache.readRatio).toBe(roundUsd(unprimedCache.readTokens / unprimedCache.cacheableInputTokens, 4));

    // The saving reported is an upper bound on what priming actually saved against this run.
    const actual = unprimed.outcome.summary!.cost.batchUsd - (primed.outcome.summary!.cost.batchUsd + priming.costUsd);
    expect(priming.savedUsd).toBeGreaterThanOrEqual(roundUsd(actual) - 1e-6);
  });
});
