import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { ids, readJsonl, request, useLocalStack, writeRequests } from './support';

/** Six valid rows around two invalid lines: broken JSON (line 3) and a request without max_tokens (line 6). */
const lines = () => {
  const [a, b, c, d, e, f] = ids('row', 6).map(request);
  const noMaxTokens = { custom_id: 'row-nomax', params: { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Hi' }] } };
  return [a!, b!, '{"custom_id": "row-broken", "params": {', c!, d!, JSON.stringify(noMaxTokens), e!, f!];
};

describe('strict and lenient validation, end to end', () => {
  const under = useLocalStack();

  it('strict: a file with invalid lines is rejected before anything is submitted', async () => {
    const file = await writeRequests(under, 'strict.jsonl', lines());
    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('rejected');
    expect(outcome.execution).toMatchObject({ status: 'FAILED', error: 'ValidationFailed' });
    expect(under.stack.simulator!.stats().batchesCreated).toEqual([]);
    const invalid = await readJsonl<{ line: number; code: string }>(under.stack, outcome.keys.invalid);
    expect(invalid.map(({ line, code }) => [line, code])).toEqual([
      [3, 'invalid_json'],
      [6, 'missing_max_tokens'],
    ]);
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status, row.attempts])).toEqual(ids('row', 6).map((id) => [id, 'canceled', 0]));
    expect(outcome.summary?.counts).toEqual({ total: 8, succeeded: 0, errored: 0, expired: 0, canceled: 6, invalid: 2 });
  });

  it('lenient (object metadata batchline-mode): the valid rows run and the invalid lines are reported', async () => {
    const file = await writeRequests(under, 'lenient.jsonl', lines());
    const jobId = await under.stack.submitFile(file, { lenient: true });
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('succeeded');
    expect(outcome.job?.validationMode).toBe('lenient');
    expect(under.stack.simulator!.stats().batchesCreated).toHaveLength(1);
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status])).toEqual(ids('row', 6).map((id) => [id, 'succeeded']));
    expect(await readJsonl(under.stack, outcome.keys.invalid)).toHaveLength(2);
    expect(outcome.summary?.counts).toEqual({ total: 8, succeeded: 6, errored: 0, expired: 0, canceled: 0, invalid: 2 });
  });

  it('refuses to upload where no rule starts a job, and to wait for a job that does not exist', async () => {
    const file = await writeRequests(under, 'elsewhere.jsonl', ids('row', 1).map(request));
    await expect(under.stack.submitFile(file, { key: 'outbox/elsewhere.jsonl' })).rejects.toThrow(
      `no rule of the stack starts a job for s3://${under.stack.bucket}/outbox/elsewhere.jsonl (upload under inbox/)`,
    );
    await expect(under.stack.waitForJob('no-such-job')).rejects.toThrow('there is no job no-such-job');
  });
});
