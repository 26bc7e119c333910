import { describe, expect, it } from 'vitest';
import type { ErrorRow, ResultRow } from '../../shared/jobs/finalize-job';
import { batchOutcomes, chunksOf, ids, readJsonl, request, useLocalStack, withOutcome, writeRequests } from './support';

describe('retries, end to end', () => {
  // The first batch: some rows overloaded, some invalid, some left to expire; later batches are clean.
  const under = useLocalStack({
    simulator: { batchFaultsBySequence: { 1: { errored: { overloaded_error: 0.25, invalid_request_error: 0.15 }, expired: 0.2 } } },
  });

  it('retries overloaded and expired rows into a second batch where they succeed, and ends invalid_request_error rows at once', async () => {
    const customIds = ids('row', 20);
    const file = await writeRequests(under, 'rows.jsonl', customIds.map(request));
    // A batch with rows left to expire runs to its 24-hour limit: jump the simulator's clock there.
    const off = under.stack.on((event) => {
      if (event.type === 'batch-submitted' && event.attempt === 1) under.stack.simulator!.advance(86_400);
    });

    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);
    off();

    const [first, second, ...more] = under.stack.simulator!.stats().batchesCreated;
    expect(more).toEqual([]);
    // One chunk: its attempt 1 made the first batch, attempt 2 the second.
    const [chunk, ...otherChunks] = await chunksOf(under.stack, jobId);
    expect(otherChunks).toEqual([]);
    expect(chunk!.attempts.map((attempt) => [attempt.attempt, attempt.batchId])).toEqual([
      [1, first],
      [2, second],
    ]);
    const firstOutcomes = await batchOutcomes(under.stack, jobId, 0, 1);
    const overloaded = withOutcome(firstOutcomes, 'errored:overloaded_error');
    const invalid = withOutcome(firstOutcomes, 'errored:invalid_request_error');
    const expired = withOutcome(firstOutcomes, 'expired');
    const retried = [...overloaded, ...expired].sort();
    // The seeded faults hit every kind of row: the assertions below cover each one.
    expect([overloaded.length > 0, invalid.length > 0, expired.length > 0]).toEqual([true, true, true]);
    expect([...(await batchOutcomes(under.stack, jobId, 0, 2)).keys()].sort()).toEqual(retried);

    expect(outcome.status).toBe('succeeded');
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    const byId = new Map(results.map((row) => [row.custom_id, row]));
    for (const customId of retried) {
      expect(byId.get(customId)).toMatchObject({ status: 'succeeded', attempts: 2, batch_id: second });
    }
    for (const customId of invalid) {
      expect(byId.get(customId)).toMatchObject({ status: 'errored', attempts: 1, batch_id: first, error: { type: 'invalid_request_error' } });
    }
    const errors = await readJsonl<ErrorRow>(under.stack, outcome.keys.errors);
    expect(errors.map((row) => [row.custom_id, row.error_type])).toEqual(invalid.map((customId) => [customId, 'invalid_request_error']));
    expect(outcome.summary?.counts).toEqual({ total: 20, succeeded: 20 - invalid.length, errored: invalid.length, expired: 0, canceled: 0, invalid: 0 });
    expect(outcome.summary?.errorsByType).toEqual({ invalid_request_error: invalid.length });
    expect(outcome.summary?.retries).toEqual({ attempts: 1, rows: retried.length });
  });
});
