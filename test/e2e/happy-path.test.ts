import { describe, expect, it } from 'vitest';
import type { ErrorRow, ResultRow } from '../../shared/jobs/finalize-job';
import { ids, readJsonl, request, rowRecord, useLocalStack, writeRequests } from './support';

describe('a file across several chunks, end to end', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 3 } });

  it('ends with one succeeded result per row, in input order, recorded alike in DynamoDB and counted in the summary', async () => {
    const customIds = ids('ticket', 10);
    const file = await writeRequests(under, 'tickets.jsonl', customIds.map(request));

    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('succeeded');
    expect(outcome.execution?.status).toBe('SUCCEEDED');
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    expect(results.map((row) => row.status)).toEqual(customIds.map(() => 'succeeded'));
    for (const row of results) {
      const record = await rowRecord(under.stack, jobId, row.custom_id);
      expect({ id: row.custom_id, status: record?.status, batch: record?.batchId }).toEqual({ id: row.custom_id, status: row.status, batch: row.batch_id });
    }
    expect(await readJsonl<ErrorRow>(under.stack, outcome.keys.errors)).toEqual([]);
    // 10 rows at 3 a chunk: 4 chunks, one batch each.
    expect(under.stack.simulator!.stats().batchesCreated).toHaveLength(4);
    expect(new Set(results.map((row) => row.batch_id)).size).toBe(4);
    expect(outcome.summary?.counts).toEqual({ total: 10, succeeded: 10, errored: 0, expired: 0, canceled: 0, invalid: 0 });
    expect(outcome.summary?.chunks).toBe(4);
    const tokens = results.reduce((sum, row) => sum + (row.usage?.output_tokens ?? 0), 0);
    expect(outcome.summary?.tokens.output).toBe(tokens);
  });

  it("reports the job's progress from its records", async () => {
    const [jobId] = under.events.flatMap((event) => (event.type === 'job-registered' ? [event.jobId] : []));
    expect(await under.stack.progress(jobId!)).toMatchObject({
      status: 'succeeded',
      validRows: 10,
      invalidRows: 0,
      chunks: 4,
      chunksDone: 4,
      chunksFailed: 0,
      batches: 4,
      retries: 0,
      attemptOutcomes: { succeeded: 10, errored: 0, expired: 0, canceled: 0 },
    });
  });

  it('announces the end of the job on the event bus', async () => {
    const [ended] = under.stack.shim.events.filter((event) => event.detailType === 'Job Ended');
    expect(ended).toMatchObject({ source: 'batchline', detail: expect.objectContaining({ status: 'succeeded' }) });
  });
});
