/** Which chunk failures leave the chunk's results for the reconciler instead of failing its rows for good (issue #19 §5). */
import { describe, expect, it } from 'vitest';
import { collectsLater } from '../../shared/jobs/record-chunk-failure';
import type { ChunkAttempt } from '../../shared/store/items';

const ended: ChunkAttempt = { attempt: 1, rows: 3, bytes: 100, intentAt: '2030-01-01T00:00:00.000Z', batchId: 'msgbatch_1', processingStatus: 'ended' };

describe('collectsLater', () => {
  it('takes a Collect killed, cut off from the API or storage, or refused the key, while its batch has ended', () => {
    for (const error of ['Sandbox.Timedout', 'Runtime.OutOfMemory', 'Lambda.Unknown', 'States.Timeout', 'ApiRetryable', 'ApiKeyRefused', 'SlowDown']) {
      expect([error, collectsLater(error, ended)]).toEqual([error, true]);
    }
  });

  it('leaves failures a later Collect would only repeat', () => {
    for (const error of ['ChunkStateConflict', 'WorkFileMissing', 'ApiRequestInvalid', 'CreateOutcomeUnknown']) {
      expect([error, collectsLater(error, ended)]).toEqual([error, false]);
    }
  });

  it('leaves an attempt that is collected, has no batch, or whose batch was not seen ended', () => {
    expect(collectsLater('Sandbox.Timedout', { ...ended, collectedAt: '2030-01-01T01:00:00.000Z' })).toBe(false);
    expect(collectsLater('Sandbox.Timedout', { ...ended, batchId: undefined })).toBe(false);
    expect(collectsLater('Sandbox.Timedout', { ...ended, processingStatus: 'in_progress' })).toBe(false);
  });
});
