/**
 * Faults the pipeline must recover from without a trace in its outputs: a create whose response is
 * lost, a results stream cut part-way, a batch that runs into its 24-hour expiry, an S3 event
 * delivered twice at once — and, rightly not a fault, the same name uploaded twice.
 */
import { describe, expect, it } from 'vitest';
import type { LocalEvent } from '../../local/runtime';
import { jobKeys } from '../../shared/store/keys';
import { ids, readText, servedResults, useLocalStack } from '../e2e/support';
import { chunkRecords, comparable, expectEveryRowOnce, expectOneBatchPerAttempt, runJob, type JobRun } from './support';

describe('recoverable faults on the local pipeline', () => {
  // The first create of the stack is accepted but its response dropped: the first test's.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 4 }, simulator: { dropCreateResponses: 1 } });
  const customIds = ids('row', 8);
  let referenceRun: JobRun | undefined;
  /** The same rows, fault-free (run after the first test, which the dropped create belongs to). */
  const reference = async () => (referenceRun ??= await runJob(under, 'reference.jsonl', customIds));

  it('adopts the batch of a create whose response was lost, instead of creating a second one', async () => {
    const run = await runJob(under, 'lost-create.jsonl', customIds);

    const failed = under.events.filter((event) => event.type === 'task-failed' && event.state === 'SubmitChunk');
    expect(failed.map((event) => (event as { error: string }).error)).toEqual(['OutcomeUnknown']);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(run.batches).toHaveLength(2);
    expect(comparable(run.results)).toEqual(comparable((await reference()).results));
  });

  it('resumes a results stream cut part-way and writes every line once', async () => {
    const ref = await reference();
    const resultsCalls = under.stack.simulator!.stats().calls.results;
    // Each batch's first results download is cut mid-line, after 1,000 bytes.
    under.stack.simulator!.setBatchFaults({ cutResultsAfterBytes: 1000 });
    const run = await runJob(under, 'cut.jsonl', customIds);
    under.stack.simulator!.setBatchFaults(undefined);

    // Two batches, each read twice (cut, then resumed from the first line not yet read).
    expect(under.stack.simulator!.stats().calls.results - resultsCalls).toBe(4);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    // What Collect stored is the API's results file byte for byte, but for each custom_id, which is
    // the user's again: no line lost, none twice.
    for (const chunk of await chunkRecords(under.stack, run.jobId)) {
      const served = await servedResults(under.stack, run.jobId, chunk.chunk, 1);
      expect(served.lines).toHaveLength(4);
      expect(await readText(under.stack, jobKeys(run.jobId).chunkResults(chunk.chunk, 1))).toBe(served.text);
    }
    expect(comparable(run.results)).toEqual(comparable(ref.results));
  });

  it('retries the rows of batches that expire at 24 hours unprocessed, and they succeed', async () => {
    const ref = await reference();
    // Both first batches never finish; once both exist, jump the API's clock past their expiry.
    under.stack.simulator!.setBatchFaults({ stall: true });
    let firstAttempts = 0;
    const off = under.stack.on((event) => {
      if (event.type === 'batch-submitted' && event.attempt === 1 && ++firstAttempts === 2) {
        under.stack.simulator!.setBatchFaults(undefined);
        under.stack.simulator!.advance(86_400);
      }
    });
    const run = await runJob(under, 'expiring.jsonl', customIds);
    off();

    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    const chunks = await chunkRecords(under.stack, run.jobId);
    expect(chunks.map((chunk) => chunk.attempts.map((attempt) => [attempt.attempt, attempt.counts]))).toEqual([
      [
        [1, { succeeded: 0, errored: 0, expired: 4, canceled: 0 }],
        [2, { succeeded: 4, errored: 0, expired: 0, canceled: 0 }],
      ],
      [
        [1, { succeeded: 0, errored: 0, expired: 4, canceled: 0 }],
        [2, { succeeded: 4, errored: 0, expired: 0, canceled: 0 }],
      ],
    ]);
    expect(run.results.map((row) => row.attempts)).toEqual(customIds.map(() => 2));
    // Apart from the extra attempt, the same results as a run that never expired.
    expect(comparable(run.results, { ignoreAttempts: true })).toEqual(comparable(ref.results, { ignoreAttempts: true }));
    expect(run.outcome.summary?.retries).toEqual({ attempts: 2, rows: 8 });
  });

  it('runs one job when the same S3 event is delivered twice at once', async () => {
    const ref = await reference();
    const key = 'inbox/delivered-twice.jsonl';
    // As EventBridge may: the upload's event reaches the state machine a second time while the first runs.
    let twin: string | undefined;
    const off = under.stack.on((event) => {
      if (event.type === 'execution-started' && event.key === key && twin === undefined) {
        const input = JSON.parse(under.stack.stepFunctions.describe(event.executionArn)!.input);
        twin = under.stack.startExecution(input).executionArn;
      }
    });
    const run = await runJob(under, 'delivered-twice.jsonl', customIds, { key });
    off();
    const twinEnd = await under.stack.stepFunctions.describe(twin!)!.done;

    expect(twinEnd.status).toBe('SUCCEEDED');
    const registered = under.events.filter(
      (event): event is Extract<LocalEvent, { type: 'job-registered' }> => event.type === 'job-registered' && event.jobId === run.jobId,
    );
    expect(registered.map((event) => event.duplicate).sort()).toEqual([false, true]);
    expect(under.events.filter((event) => event.type === 'job-prepared' && event.jobId === run.jobId)).toHaveLength(1);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(run.batches).toHaveLength(2);
    expect(comparable(run.results)).toEqual(comparable(ref.results));
  });

  it('runs two jobs when a file is uploaded again under the same name, each with its own rows', async () => {
    const key = 'inbox/daily.jsonl';
    const first = await runJob(under, 'daily-1.jsonl', ids('monday', 3), { key });
    const second = await runJob(under, 'daily-2.jsonl', ids('tuesday', 5), { key });
    // The identical bytes once more: a new upload, so a new job (a re-run the user asked for).
    const third = await runJob(under, 'daily-1.jsonl', ids('monday', 3), { key });

    expect(new Set([first.jobId, second.jobId, third.jobId]).size).toBe(3);
    for (const [run, rows] of [
      [first, ids('monday', 3)],
      [second, ids('tuesday', 5)],
      [third, ids('monday', 3)],
    ] as const) {
      expect(run.outcome.status).toBe('succeeded');
      expect(run.jobId).toMatch(/^daily-[0-9a-f]{16}$/);
      expectEveryRowOnce(run, [...rows]);
      await expectOneBatchPerAttempt(under.stack, run);
    }
    expect(comparable(third.results)).toEqual(comparable(first.results));
  });
});
