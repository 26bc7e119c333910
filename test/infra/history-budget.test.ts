import { beforeAll, describe, expect, it } from 'vitest';
import { STATE_MACHINE_LOGICAL_ID } from '../../infra/workflow';
import { chunkHistory, checkHistoryBudget, HISTORY_EVENT_LIMIT, walkChunk, type AslGraph } from '../../infra/history-budget';
import { SettingsError } from '../../infra/settings';
import { WATCH_ARMS_CAP } from '../../shared/jobs/watch';
import { resolveDefinition, type AslDefinition } from '../../local/asl';
import { LocalNames, type CfnTemplate } from '../../local/template';
import { synthesize, TEST_CONTEXT } from './fixture';

// The chunk lifecycle as deployed: the item processor of the synthesized ForEachChunk.
let processor: AslGraph;
beforeAll(() => {
  const { json } = synthesize();
  const asl = resolveDefinition(new LocalNames(json as CfnTemplate), STATE_MACHINE_LOGICAL_ID);
  processor = asl.States.ForEachChunk!.ItemProcessor as AslDefinition as unknown as AslGraph;
});

const DEFAULTS = { pollMinSeconds: 30, pollMaxSeconds: 900, pollFraction: 0.1, maxAttempts: 2 };

describe("a chunk's history", () => {
  it("counts 9 events a poll (Wait, PollBatch, BatchEnded), and each attempt's Submit and Collect retried at their worst", () => {
    const polls = (n: number) => walkChunk(processor, 1, n);
    expect(polls(101) - polls(100)).toBe(9);
    // Submit, SubmitCanceled, Collect, RetryNeeded and AwaitRetry (a callback Task, 6, no Retry),
    // plus every retry Submit (6 + 2 + 5 + 5 + 8 + 80 + 16 + 96) and Collect (6 + 2 + 5 + 5 + 30)
    // may take, 3 events each; and the arms the attempt may take before the Wait loop: AwaitBatch
    // (a callback Task, 6), PollBatch and BatchEnded, 13 events each.
    expect(walkChunk(processor, 2, 100) - walkChunk(processor, 1, 100)).toBe(100 * 9 + WATCH_ARMS_CAP * 13 + 5 + 2 + 5 + 2 + 6 + (218 + 48) * 3);
  });

  it('counts the poller at its worst: every arm woken to a running batch, then the Wait loop for the whole 24 h', () => {
    const withoutPoller: AslGraph = {
      ...processor,
      States: { ...processor.States, SubmitCanceled: { ...processor.States.SubmitCanceled!, Default: 'WaitForBatch' } },
    };
    delete withoutPoller.States.AwaitBatch;
    expect(walkChunk(processor, 1, 132) - walkChunk(withoutPoller, 1, 132)).toBe(WATCH_ARMS_CAP * 13);
    expect(processor.States.AwaitBatch).toMatchObject({ Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken', Next: 'PollBatch' });
  });

  it('counts the retry backoff as AwaitRetry (6 events, no Retry) where the Wait alone took 2, and 3 attempts polled every 2 minutes still fit', () => {
    expect(processor.States.AwaitRetry).toMatchObject({ TimeoutSecondsPath: '$.retryWaitSeconds', Next: 'SubmitChunk' });
    expect(processor.States.AwaitRetry!.Retry).toBeUndefined();
    const withWait: AslGraph = {
      ...processor,
      States: {
        ...processor.States,
        RetryNeeded: {
          ...processor.States.RetryNeeded!,
          Choices: [{ Variable: '$.retry', BooleanEquals: true, Next: 'WaitBeforeRetry' }, ...processor.States.RetryNeeded!.Choices!.slice(1)],
        },
      },
    };
    expect(walkChunk(processor, 3, 100) - walkChunk(withWait, 3, 100)).toBe(2 * 4);
  });

  it('leaves the defaults far inside the 25,000 events, even at the most attempts allowed', () => {
    expect(chunkHistory(processor, DEFAULTS)).toEqual({
      pollsPerAttempt: 132,
      eventsPerAttempt: 2_045,
      events: expect.any(Number),
      budget: 22_500,
      attemptsThatFit: 10,
    });
    expect(chunkHistory(processor, { ...DEFAULTS, maxAttempts: 10 }).events).toBeLessThan(22_500);
  });

  // With the deadline fallback's loop at its worst after the last (RunStragglers: 6 invocations, each retried at worst).
  it('fits only 3 attempts of a 24 h batch polled every 125 seconds, and says to lower maxAttempts', () => {
    const every125Seconds = { ...DEFAULTS, pollMaxSeconds: 125 };
    expect(chunkHistory(processor, every125Seconds)).toMatchObject({ pollsPerAttempt: 707, attemptsThatFit: 3 });
    expect(chunkHistory(processor, { ...every125Seconds, pollMaxSeconds: 120 })).toMatchObject({ pollsPerAttempt: 735, attemptsThatFit: 2 });
    expect(() => checkHistoryBudget(processor, { ...every125Seconds, maxAttempts: 3 })).not.toThrow();
    const four = () => checkHistoryBudget(processor, { ...every125Seconds, maxAttempts: 4 });
    expect(four).toThrow(SettingsError);
    expect(four).toThrow(
      /^batchline:settings\.maxAttempts 4 does not fit a chunk's history with batchline:settings\.pollMinSeconds 30, batchline:settings\.pollFraction 0\.1 and batchline:settings\.pollMaxSeconds 125: .* Lower batchline:settings\.maxAttempts to 3, or poll less often \(raise batchline:settings\.pollMaxSeconds\)\.$/,
    );
  });

  it('fits not one attempt polled at pollMinSeconds 1 and pollFraction 0.001, and says to poll less often', () => {
    const eager = { ...DEFAULTS, pollMinSeconds: 1, pollFraction: 0.001, maxAttempts: 1 };
    const history = chunkHistory(processor, eager);
    expect(history.attemptsThatFit).toBe(0);
    expect(history.eventsPerAttempt).toBeGreaterThan(HISTORY_EVENT_LIMIT);
    expect(() => checkHistoryBudget(processor, eager)).toThrow(
      /^batchline:settings\.pollMinSeconds 1, batchline:settings\.pollFraction 0\.001 and batchline:settings\.pollMaxSeconds 900 poll too often: a batch that runs its full 24 h is polled 6,032 times, .* Raise batchline:settings\.pollMinSeconds, batchline:settings\.pollFraction or batchline:settings\.pollMaxSeconds\.$/,
    );
  });

  it('counts the deadline fallback once, after the last attempt: every RunStragglers invocation and its retries at worst, and its loop Choice', () => {
    expect(processor.States.RunStragglers).toMatchObject({ Next: 'StragglersLeft' });
    const withoutStragglers: AslGraph = {
      ...processor,
      States: {
        ...processor.States,
        RetryNeeded: { ...processor.States.RetryNeeded!, Choices: processor.States.RetryNeeded!.Choices!.slice(0, 1) },
      },
    };
    // 6 × (RunStragglers 5 + StragglersLeft 2 + (6 + 2 + 5 + 5: the API's unavailability too) retries × 3 events).
    expect(walkChunk(processor, 2, 100) - walkChunk(withoutStragglers, 2, 100)).toBe(6 * (5 + 2 + 18 * 3));
  });

  it('stops the walk at a Task whose output it does not know, rather than miscount a changed lifecycle', () => {
    const renamed: AslGraph = {
      StartAt: 'SubmitBatch',
      States: { ...processor.States, SubmitBatch: processor.States.SubmitChunk! },
    };
    expect(() => walkChunk(renamed, 1, 10)).toThrow(/knows no output for Task SubmitBatch/);
  });
});

describe('synthesizing the stack', () => {
  const withSettings = (settings: Record<string, unknown>) => ({
    ...TEST_CONTEXT,
    'batchline:settings': { ...TEST_CONTEXT['batchline:settings'], ...settings },
  });

  it('refuses settings whose chunk history would pass 25,000 events, naming the setting', () => {
    expect(() => synthesize(withSettings({ pollMaxSeconds: 120, maxAttempts: 4 }))).toThrow(/^batchline:settings\.maxAttempts 4 does not fit/);
    expect(() => synthesize(withSettings({ pollMinSeconds: 1, pollFraction: 0.001 }))).toThrow(/poll too often/);
  });
});
