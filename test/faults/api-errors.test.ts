/**
 * Faults of the Batches API itself: HTTP errors on create, retrieve and results (429 with
 * retry-after, 500, 529), and errored results — transient types retried up to BATCHLINE_MAX_ATTEMPTS,
 * the others final at once.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Endpoint, HttpFault } from '../../simulator/options';
import { batchOutcomes, ids, useLocalStack } from '../e2e/support';
import { chunkRecords, comparable, expectEveryRowOnce, expectOneBatchPerAttempt, ownAnswerStatus, runJob, withoutProbes, type JobRun } from './support';

const MAX_ATTEMPTS = 3;

describe('Batches API faults on the local pipeline', () => {
  // Two chunks per file, so a fault hits one chunk while the other carries on.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 4, maxAttempts: MAX_ATTEMPTS } });
  const customIds = ids('row', 8);
  let reference: JobRun;

  beforeAll(async () => {
    reference = await runJob(under, 'reference.jsonl', customIds);
  });

  /** 429 (retry-after 1 s), 500 and 529 on `endpoint`, each answered to the next call there. */
  const threeErrors = (endpoint: Endpoint): HttpFault[] => [
    { endpoint, status: 429, retryAfterSeconds: 1, times: 1 },
    { endpoint, status: 500, times: 1 },
    { endpoint, status: 529, times: 1 },
  ];

  it.each<Extract<Endpoint, 'create' | 'retrieve' | 'results'>>(['create', 'retrieve', 'results'])(
    'recovers from 429 (retry-after), 500 and 529 on %s: one batch per chunk, the same results as without them',
    async (endpoint) => {
      under.stack.simulator!.setHttpFaults(threeErrors(endpoint));
      const run = await runJob(under, `${endpoint}-errors.jsonl`, customIds);
      // All three faults fired during the job: with them still set, the next call is the endpoint's own answer.
      expect(await ownAnswerStatus(under.stack, endpoint)).toBe(endpoint === 'create' ? 400 : 404);
      under.stack.simulator!.setHttpFaults([]);

      expect(run.outcome.status).toBe('succeeded');
      expectEveryRowOnce(run, customIds);
      await expectOneBatchPerAttempt(under.stack, run);
      // One batch per chunk; probes (after a 5xx on create, to show the list current) are not batches of rows.
      expect(await withoutProbes(under.stack, run.batches)).toHaveLength(2);
      expect(comparable(run.results)).toEqual(comparable(reference.results));
    },
  );

  it("recovers when retrieve keeps failing past the client's own retries (the workflow retries PollBatch)", async () => {
    // The client retries twice (BATCHLINE_API_MAX_RETRIES default); the next three calls fail too.
    under.stack.simulator!.setHttpFaults([{ endpoint: 'retrieve', status: 529, times: 6 }]);
    const run = await runJob(under, 'retrieve-outage.jsonl', customIds);
    under.stack.simulator!.setHttpFaults([]);

    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
  });

  it('waits out a 529 storm on create longer than the API retry budget: no chunk fails, no batch is made twice', async () => {
    // Ten refusals in a row: more than the workflow's ApiRetryable retries (5) would have taken.
    under.stack.simulator!.setHttpFaults([{ endpoint: 'create', status: 529, times: 10 }]);
    const refusedBefore = under.events.filter((event) => event.type === 'task-failed' && (event as { error: string }).error === 'CreateRefused').length;
    const run = await runJob(under, 'create-storm.jsonl', customIds);
    expect(await ownAnswerStatus(under.stack, 'create')).toBe(400);
    under.stack.simulator!.setHttpFaults([]);

    const refused = under.events.filter((event) => event.type === 'task-failed' && (event as { error: string }).error === 'CreateRefused').length;
    expect(refused - refusedBefore).toBe(10);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    // A 529 proves no batch was made: no probe, no adoption, two batches for two chunks.
    expect(run.batches).toHaveLength(2);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
  });

  it('ends non-transient errors at once and retries transient ones up to the attempt limit, then ends them', async () => {
    under.stack.simulator!.setBatchFaults({ errored: { overloaded_error: 0.5, invalid_request_error: 0.15 } });
    // Outcomes are drawn per batch in creation order, which concurrency varies: 60 rows make every
    // path below all but certain whatever the order (each is missing with odds under 1 in 2,000).
    const rows = ids('mixed', 60);
    const run = await runJob(under, 'mixed.jsonl', rows);
    under.stack.simulator!.setBatchFaults(undefined);

    // What each attempt's batch answered, per row, read back from the simulator.
    const answers = new Map<string, Array<{ attempt: number; batchId: string; outcome: string }>>();
    for (const chunk of await chunkRecords(under.stack, run.jobId)) {
      for (const attempt of chunk.attempts) {
        if (!attempt.batchId) continue;
        for (const [customId, outcome] of await batchOutcomes(under.stack, run.jobId, chunk.chunk, attempt.attempt)) {
          answers.set(customId, [...(answers.get(customId) ?? []), { attempt: attempt.attempt, batchId: attempt.batchId, outcome }]);
        }
      }
    }
    // The rule, applied by hand: a row goes on to the next attempt only after an overloaded_error
    // below the limit; its last answer is its result.
    const expected = rows.map((customId) => {
      const seen = (answers.get(customId) ?? []).sort((a, b) => a.attempt - b.attempt);
      seen.forEach((answer, i) => {
        const goesOn = answer.outcome === 'errored:overloaded_error' && answer.attempt < MAX_ATTEMPTS;
        expect({ customId, attempt: answer.attempt, retried: i < seen.length - 1 }).toEqual({ customId, attempt: i + 1, retried: goesOn });
      });
      const last = seen[seen.length - 1]!;
      return { custom_id: customId, attempts: last.attempt, batch_id: last.batchId, outcome: last.outcome };
    });
    const outcomeOf = (row: (typeof run.results)[number]) => (row.status === 'errored' ? `errored:${row.error?.type}` : row.status);
    expect(run.results.map((row) => ({ custom_id: row.custom_id, attempts: row.attempts, batch_id: row.batch_id, outcome: outcomeOf(row) }))).toEqual(expected);

    // Every path occurs: ended at once, retried then succeeded, retried to the limit and ended.
    const paths = new Set(expected.map((row) => `${row.outcome}@${row.attempts}`));
    expect(
      [...paths].filter((path) => ['errored:invalid_request_error@1', 'succeeded@2', `errored:overloaded_error@${MAX_ATTEMPTS}`].includes(path)).sort(),
    ).toEqual(['errored:invalid_request_error@1', `errored:overloaded_error@${MAX_ATTEMPTS}`, 'succeeded@2']);
    expectEveryRowOnce(run, rows);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(run.outcome.summary?.errorsByType).toEqual(
      Object.fromEntries(
        ['invalid_request_error', 'overloaded_error']
          .map((type) => [type, expected.filter((row) => row.outcome === `errored:${type}`).length] as const)
          .filter(([, n]) => n > 0),
      ),
    );
  });
});
