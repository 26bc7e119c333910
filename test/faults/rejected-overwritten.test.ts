/**
 * A strict-rejected file overwritten under the same key before its FinalizeJob runs: the job still
 * ends `rejected` with its report. Finalize lists the valid rows from what Prepare recorded, never
 * from the input, which (without versioning, as on s3rver) is by then another file.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { LocalEvent } from '../../local/runtime';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { chunksOf, ids, nextEvent, readJsonl, request, useLocalStack, writeRequests } from '../e2e/support';
import { interceptTask } from './support';

/** Chunks of 3: the rows before the first bad line fill two chunk files and start a third. */
const ROWS_PER_CHUNK = 3;

describe('a rejected file replaced before its report', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: ROWS_PER_CHUNK } });

  it('ends rejected with invalid.jsonl and a summary when the input is overwritten just before FinalizeJob', async () => {
    const valid = ids('row', 11);
    const noMaxTokens = JSON.stringify({ custom_id: 'row-nomax', params: { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Hi' }] } });
    // Lines 1–7 valid, 8 broken, 9–10 valid, 11 without max_tokens, 12–13 valid.
    const lines = [
      ...valid.slice(0, 7).map(request),
      '{"custom_id": "row-broken", "params": {',
      ...valid.slice(7, 9).map(request),
      noMaxTokens,
      ...valid.slice(9).map(request),
    ];
    const key = 'inbox/overwritten.jsonl';
    const file = await writeRequests(under, 'overwritten.jsonl', lines);

    let jobId: string | undefined;
    let overwritten = false;
    const undo = interceptTask(under.stack, 'FinalizeJob', async (input, invoke) => {
      if (!overwritten && (input as { jobId?: string }).jobId === jobId) {
        overwritten = true;
        const body =
          ids('other', 2)
            .map((id) => JSON.stringify(request(id)))
            .join('\n') + '\n';
        await under.stack.s3.send(new PutObjectCommand({ Bucket: under.stack.bucket, Key: key, Body: body }));
      }
      return invoke(input);
    });
    const replaced = nextEvent(
      under,
      (event): event is Extract<LocalEvent, { type: 'job-registered' }> =>
        event.type === 'job-registered' && !event.duplicate && jobId !== undefined && event.jobId !== jobId,
    );
    try {
      jobId = await under.stack.submitFile(file);
      const outcome = await under.stack.waitForJob(jobId);
      // The replacement is a job of its own; let it end before the stack stops.
      await under.stack.waitForJob((await replaced).jobId);

      expect(overwritten).toBe(true);
      expect(outcome.status).toBe('rejected');
      expect(outcome.execution).toMatchObject({ status: 'FAILED', error: 'ValidationFailed' });
      expect(await chunksOf(under.stack, jobId)).toEqual([]);
      const invalid = await readJsonl<{ line: number; code: string }>(under.stack, outcome.keys.invalid);
      expect(invalid.map(({ line, code }) => [line, code])).toEqual([
        [8, 'invalid_json'],
        [11, 'missing_max_tokens'],
      ]);
      const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
      expect(results.map((row) => [row.custom_id, row.status, row.attempts])).toEqual(valid.map((id) => [id, 'canceled', 0]));
      expect(outcome.summary?.counts).toEqual({ total: 13, succeeded: 0, errored: 0, expired: 0, canceled: 11, invalid: 2 });
    } finally {
      undo();
    }
  });
});
