import { describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { ErrorRow, JobSummary, ResultRow } from '../../shared/jobs/finalize-job';
import { startRerun, reuseMetadata, type RerunOptions } from '../../shared/jobs/rerun';
import { MODE_METADATA } from '../../shared/jobs/register-job';
import { bareEtag } from '../../shared/jobs/job-id';
import { batchOutcomes, ids, jobOf, readJsonl, request, useLocalStack, withOutcome, writeRequests } from './support';

type Row = ResultRow & { reused_from?: string };

const customIds = ids('row', 20);

describe('rerun and reuse, end to end', () => {
  // One attempt per row, so the first job ends with failures of each kind; later batches are clean.
  const under = useLocalStack({
    settings: { maxAttempts: 1 },
    simulator: { batchFaultsBySequence: { 1: { errored: { overloaded_error: 0.25, invalid_request_error: 0.15 }, expired: 0.2 } } },
  });
  let first: { jobId: string; batchId: string; results: Row[]; summary: JobSummary };
  let onlyExpired: { jobId: string; results: Row[] };

  async function rerun(jobId: string, options: RerunOptions = {}) {
    const requestsBefore = under.stack.simulator!.stats().requestsCreated;
    const uploaded = await startRerun(under.stack, jobId, options);
    const rerunId = await jobOf(under, uploaded);
    const outcome = await under.stack.waitForJob(rerunId);
    return { jobId: rerunId, outcome, requestsSent: under.stack.simulator!.stats().requestsCreated - requestsBefore };
  }

  it('runs a first job whose rows end succeeded, errored and expired', async () => {
    const file = await writeRequests(under, 'rows.jsonl', customIds.map(request));
    const off = under.stack.on((event) => {
      // A batch with rows left to expire runs to its 24-hour limit: jump the simulator's clock there.
      if (event.type === 'batch-submitted' && event.attempt === 1) under.stack.simulator!.advance(86_400);
    });
    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);
    off();
    const results = await readJsonl<Row>(under.stack, outcome.keys.results);
    const statuses = new Set(results.map((row) => row.error?.type ?? row.status));
    // The seeded faults hit every kind of row: the tests below cover each one.
    expect([...statuses].sort()).toEqual(['expired', 'invalid_request_error', 'overloaded_error', 'succeeded']);
    first = { jobId, batchId: outcome.summary!.batches[0]!.batchId, results, summary: outcome.summary! };
  });

  it('sends only the rows that did not succeed, and writes every row in input order with where it came from', async () => {
    const failed = first.results.filter((row) => row.status !== 'succeeded').map((row) => row.custom_id);
    const succeeded = first.results.filter((row) => row.status === 'succeeded');

    const { jobId, outcome, requestsSent } = await rerun(first.jobId);

    expect(outcome.status).toBe('succeeded');
    // Nothing that succeeded was submitted again: one batch, of exactly the failed rows.
    expect(requestsSent).toBe(failed.length);
    expect([...(await batchOutcomes(under.stack, jobId, 0, 1)).keys()].sort()).toEqual([...failed].sort());
    const batchId = outcome.summary!.batches[0]!.batchId;
    const results = await readJsonl<Row>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    for (const row of results) {
      if (failed.includes(row.custom_id)) expect(row).toMatchObject({ status: 'succeeded', attempts: 1, batch_id: batchId });
      else expect(row).toMatchObject({ status: 'succeeded', attempts: 1, batch_id: first.batchId, reused_from: first.jobId });
    }
    // The reused lines are the first job's, message and all.
    const reusedRow = results.find((row) => row.reused_from)!;
    expect({ ...reusedRow, reused_from: undefined }).toEqual({ ...first.results.find((row) => row.custom_id === reusedRow.custom_id), reused_from: undefined });
    expect(await readJsonl(under.stack, outcome.keys.errors)).toEqual([]);

    const summary = outcome.summary!;
    expect(summary.counts).toEqual({ total: 20, succeeded: 20, errored: 0, expired: 0, canceled: 0, invalid: 0 });
    // Progress counts the reused rows as final from the start.
    expect(outcome.job?.rowsFinal).toBe(20);
    const paidHere = results.filter((row) => !row.reused_from).reduce((sum, row) => sum + row.cost_usd!, 0);
    // Cost counts what this job paid; the summary says what was reused, and what it had cost.
    expect(summary.cost.batchUsd).toBeCloseTo(paidHere, 5);
    expect(summary.cost.byModel['claude-haiku-4-5']?.requests).toBe(failed.length);
    expect(summary.reused).toEqual({ fromJob: first.jobId, rows: succeeded.length, costUsd: expect.any(Number) });
    expect(summary.reused!.costUsd).toBeCloseTo(first.summary.cost.batchUsd, 5);
  });

  it('with --only, sends only the rows of those statuses or error types and carries the other failures over', async () => {
    const expired = first.results.filter((row) => row.status === 'expired').map((row) => row.custom_id);
    const carried = first.results.filter((row) => row.status === 'errored');

    const { jobId, outcome, requestsSent } = await rerun(first.jobId, { only: ['expired'] });
    onlyExpired = { jobId, results: await readJsonl<Row>(under.stack, outcome.keys.results) };

    expect(requestsSent).toBe(expired.length);
    expect(withOutcome(await batchOutcomes(under.stack, jobId, 0, 1), 'succeeded')).toEqual([...expired].sort());
    const results = await readJsonl<Row>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    for (const row of carried) {
      expect(results.find((r) => r.custom_id === row.custom_id)).toEqual({ ...row, reused_from: first.jobId });
    }
    const errors = await readJsonl<ErrorRow>(under.stack, outcome.keys.errors);
    expect(errors.map((row) => [row.custom_id, row.error_type])).toEqual(carried.map((row) => [row.custom_id, row.error!.type]));
    expect(outcome.summary!.counts).toMatchObject({ total: 20, succeeded: 20 - carried.length, errored: carried.length, expired: 0 });
    expect(outcome.summary!.reused?.rows).toBe(20 - expired.length);
  });

  it('a rerun over its budget is rejected before sending anything; its outputs still have every row, the reused ones included', async () => {
    const succeeded = first.results.filter((row) => row.status === 'succeeded').map((row) => row.custom_id);

    const { outcome, requestsSent } = await rerun(first.jobId, { maxCostUsd: 0.000001 });

    expect(outcome.status).toBe('rejected');
    expect(outcome.job?.failure?.error).toBe('BudgetExceeded');
    expect(requestsSent).toBe(0);
    const results = await readJsonl<Row>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    for (const row of results) {
      if (succeeded.includes(row.custom_id)) expect(row).toMatchObject({ status: 'succeeded', reused_from: first.jobId });
      else expect(row).toMatchObject({ status: 'canceled', attempts: 0, batch_id: null });
    }
    expect(outcome.summary!.counts).toEqual({ total: 20, succeeded: succeeded.length, errored: 0, expired: 0, canceled: 20 - succeeded.length, invalid: 0 });
  });

  it('reuses the successes of a corrected file whose rows match by custom_id and identical params, and sends the rest', async () => {
    const succeeded = first.results.filter((row) => row.status === 'succeeded').map((row) => row.custom_id);
    const changed = succeeded[0]!;
    // The corrected file: one succeeded row's prompt edited, one row dropped, one added, the order turned round.
    const rows = customIds
      .filter((id) => id !== succeeded[1])
      .map((id) => (id === changed ? { ...request(id), params: { ...request(id).params, max_tokens: 32 } } : request(id)))
      .concat([request('row-new')])
      .reverse();
    const body = rows.map((row) => JSON.stringify(row)).join('\n');
    const key = 'inbox/corrected.jsonl';
    const put = await under.stack.s3.send(
      new PutObjectCommand({
        Bucket: under.stack.bucket,
        Key: key,
        Body: body,
        Metadata: { [MODE_METADATA]: 'strict', ...reuseMetadata(first.jobId) },
      }),
    );
    const requestsBefore = under.stack.simulator!.stats().requestsCreated;
    const jobId = await jobOf(under, { bucket: under.stack.bucket, key, etag: bareEtag(put.ETag!), versionId: put.VersionId });
    const outcome = await under.stack.waitForJob(jobId);

    const reused = succeeded.filter((id) => id !== changed && id !== succeeded[1]);
    const sent = rows.map((row) => row.custom_id).filter((id) => !reused.includes(id));
    expect(under.stack.simulator!.stats().requestsCreated - requestsBefore).toBe(sent.length);
    expect([...(await batchOutcomes(under.stack, jobId, 0, 1)).keys()].sort()).toEqual([...sent].sort());
    const results = await readJsonl<Row>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(rows.map((row) => row.custom_id));
    expect(results.filter((row) => row.reused_from).map((row) => row.custom_id)).toEqual(rows.map((row) => row.custom_id).filter((id) => reused.includes(id)));
    expect(outcome.summary!.counts).toEqual({ total: 20, succeeded: 20, errored: 0, expired: 0, canceled: 0, invalid: 0 });
    expect(outcome.summary!.reused?.rows).toBe(reused.length);
  });

  it('reruns a rerun: sends what is still failed, and each reused row names the job that paid for it', async () => {
    const stillFailed = onlyExpired.results.filter((row) => row.status !== 'succeeded').map((row) => row.custom_id);
    const paidBy = new Map(onlyExpired.results.map((row) => [row.custom_id, row.reused_from ?? onlyExpired.jobId]));

    const { outcome, requestsSent } = await rerun(onlyExpired.jobId);

    expect(requestsSent).toBe(stillFailed.length);
    const results = await readJsonl<Row>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    for (const row of results) {
      if (stillFailed.includes(row.custom_id)) expect(row.reused_from).toBeUndefined();
      else expect(row.reused_from).toBe(paidBy.get(row.custom_id));
    }
    expect(outcome.summary!.counts).toMatchObject({ total: 20, succeeded: 20 });
    expect(outcome.summary!.reused).toMatchObject({ fromJob: onlyExpired.jobId, rows: 20 - stillFailed.length });
  });

  it('refuses to reuse rows of a job that does not exist, naming it', async () => {
    await expect(startRerun(under.stack, 'no-such-job')).rejects.toThrow('there is no job no-such-job to reuse rows from');
  });
});
