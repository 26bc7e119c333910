/**
 * A file read across PrepareJob invocations (issue 11): with prepareLinesPerInvocation at 4, a
 * 24-line file takes six invocations, looped by the real state machine's InputLeft choice. Every row
 * still ends once, in input order, and a custom_id used again lines (and invocations) later is
 * reported naming its first line, as one invocation would.
 */
import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import type { PrepareCheckpoint } from '../../shared/jobs/prepare-job';
import { ids, readJsonl, readText, request, useLocalStack, writeRequests } from './support';

describe('Prepare across invocations, end to end', () => {
  const under = useLocalStack({ settings: { prepareLinesPerInvocation: 4, maxRequestsPerChunk: 3 } });

  it('reads the file in invocations of 4 lines and gives every row one result, in input order', async () => {
    const valid = ids('row', 20);
    const lines: Array<ReturnType<typeof request> | string> = valid.map(request);
    // Lines 7, 15 and 16 repeat line 2's id (invocations 2 and 4, twice in 4); line 11 is broken JSON.
    lines.splice(6, 0, request(valid[1]!));
    lines.splice(10, 0, '{"custom_id": "row-broken", "params": {');
    lines.splice(14, 0, request(valid[1]!), request(valid[1]!));
    const file = await writeRequests(under, 'resume.jsonl', lines);

    const prepared: unknown[] = [];
    const off = under.stack.on((event) => {
      if (event.type === 'job-prepared') prepared.push(event);
    });
    const jobId = await under.stack.submitFile(file, { lenient: true });
    const outcome = await under.stack.waitForJob(jobId);
    off();

    expect(outcome.status).toBe('succeeded');
    expect(outcome.job).toMatchObject({ totalRows: 24, validRows: 20, invalidRows: 4, preparedSegments: 5, preparedLines: 20 });
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status])).toEqual(valid.map((id) => [id, 'succeeded']));
    const invalid = await readJsonl<{ line: number; code: string; reason: string }>(under.stack, outcome.keys.invalid);
    expect(invalid).toEqual([
      { line: 7, custom_id: 'row-002', code: 'duplicate_custom_id', reason: 'line 7: custom_id "row-002" is already used on line 2' },
      expect.objectContaining({ line: 11, code: 'invalid_json' }),
      { line: 15, custom_id: 'row-002', code: 'duplicate_custom_id', reason: 'line 15: custom_id "row-002" is already used on line 2' },
      // Seen in this invocation on line 15, but named by its true first line.
      { line: 16, custom_id: 'row-002', code: 'duplicate_custom_id', reason: 'line 16: custom_id "row-002" is already used on line 2' },
    ]);
    expect(outcome.summary?.counts).toEqual({ total: 24, succeeded: 20, errored: 0, expired: 0, canceled: 0, invalid: 4 });
    // Each invocation closed its chunk in progress: never more than 3 rows a chunk, none empty.
    const checkpoint = JSON.parse(await readText(under.stack, outcome.job!.preparedCheckpoint!)) as PrepareCheckpoint;
    expect(outcome.job!.preparedCheckpoint).toMatch(new RegExp(`^work/${jobId}/prepare/0005-[0-9a-f]{8}/checkpoint\\.json$`));
    expect(checkpoint).toMatchObject({ segment: 5, lineNumber: 20, validRows: 16, invalidRows: 4 });
    expect(checkpoint.chunks.every((chunk) => chunk.rows >= 1 && chunk.rows <= 3)).toBe(true);
    expect(under.stack.simulator!.stats().batchesCreated.length).toBeGreaterThanOrEqual(7);
    // The invocations that answered `partial` are not told as the job prepared: once, at the file's end.
    expect(prepared).toEqual([expect.objectContaining({ jobId, outcome: 'ready', validRows: 20, invalidRows: 4 })]);
  });
});
