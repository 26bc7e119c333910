/**
 * A rerun (batchline-reuse) of a file read across PrepareJob invocations (issue 11): each invocation
 * writes its piece of the reuse plan, joined inside S3 at the file's end. One local stack per
 * process, so apart from test/e2e/prepare-resume.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { startRerun } from '../../shared/jobs/rerun';
import { ids, jobOf, readJsonl, request, useLocalStack, writeRequests } from './support';

describe('a rerun whose Prepare goes across invocations', () => {
  // One attempt per row, and the first batch made (a chunk of 1 to 3 rows) expires whole: a rerun sends those and reuses the rest.
  const under = useLocalStack({
    settings: { prepareLinesPerInvocation: 4, maxRequestsPerChunk: 3, maxAttempts: 1 },
    simulator: { batchFaultsBySequence: { 1: { expired: 1 } } },
  });

  it("joins each invocation's piece of the plan: the expired rows sent again, the others reused, all in input order", async () => {
    const customIds = ids('row', 20);
    const file = await writeRequests(under, 'rerun.jsonl', customIds.map(request));
    let advanced = false;
    const off = under.stack.on((event) => {
      // The expiring batch runs to its 24-hour limit: jump the simulator's clock there (the others end as they would).
      if (event.type === 'batch-submitted' && !advanced) {
        advanced = true;
        under.stack.simulator!.advance(86_400);
      }
    });
    const firstId = await under.stack.submitFile(file);
    const first = await under.stack.waitForJob(firstId);
    off();
    const firstRows = await readJsonl<ResultRow>(under.stack, first.keys.results);
    const expired = firstRows.filter((row) => row.status === 'expired').map((row) => row.custom_id);
    expect(expired.length).toBeGreaterThanOrEqual(1);
    expect(expired.length).toBeLessThanOrEqual(3);
    expect(firstRows.filter((row) => row.status === 'succeeded')).toHaveLength(20 - expired.length);

    const sentBefore = under.stack.simulator!.stats().requestsCreated;
    const rerunId = await jobOf(under, await startRerun(under.stack, firstId));
    const rerun = await under.stack.waitForJob(rerunId);

    expect(rerun.status).toBe('succeeded');
    expect(rerun.job).toMatchObject({ preparedSegments: 4, reusedRows: 20 - expired.length });
    expect(under.stack.simulator!.stats().requestsCreated - sentBefore).toBe(expired.length);
    const rows = await readJsonl<ResultRow & { reused_from?: string }>(under.stack, rerun.keys.results);
    expect(rows.map((row) => [row.custom_id, row.status, row.reused_from ?? null])).toEqual(
      customIds.map((id) => [id, 'succeeded', expired.includes(id) ? null : firstId]),
    );
  });
});
