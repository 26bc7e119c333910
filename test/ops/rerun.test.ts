import { describe, expect, it } from 'vitest';
import { useServedStack } from '../support/served-stack';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { jobKeys } from '../../shared/store/keys';
import { readObject } from '../../shared/store/s3';
import { jsonl, requests } from '../support/requests';

describe('batchline rerun and submit --reuse against a running local stack', () => {
  // One attempt per row: the first batch's overloaded rows end errored, for a rerun to send again.
  const served = useServedStack('batchline-ops-rerun-', {
    settings: { maxAttempts: 1 },
    simulator: { batchFaultsBySequence: { 1: { errored: { overloaded_error: 0.4 } } } },
  });

  const run = (name: string, args: string[]) => served.run(name, args);
  const resultsOf = async (jobId: string): Promise<Array<ResultRow & { reused_from?: string }>> => {
    const pieces: Buffer[] = [];
    for await (const piece of await readObject(served.stack.s3, served.stack.bucket, jobKeys(jobId).results)) pieces.push(Buffer.from(piece));
    return Buffer.concat(pieces)
      .toString('utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as ResultRow);
  };
  let firstJob: string;

  it('reruns a finished job: only its failed rows are sent, the summary says what was reused', async () => {
    const file = path.join(served.dir, 'tickets.jsonl');
    await writeFile(file, jsonl(requests(10, 't')));
    const submitted = await run('submit', [file]);
    expect(submitted.code).toBe(3);
    firstJob = /^Job (\S+)$/m.exec(submitted.out)![1]!;
    const failed = (await resultsOf(firstJob)).filter((row) => row.status !== 'succeeded').map((row) => row.custom_id);
    expect(failed.length).toBeGreaterThan(0);
    const requestsBefore = served.stack.simulator!.stats().requestsCreated;

    const rerun = await run('rerun', [firstJob]);

    expect(rerun.err).toBe('');
    expect(rerun.code).toBe(0);
    expect(rerun.out.split('\n')[0]).toMatch(
      new RegExp(`^Rerunning job ${firstJob}: s3://${served.stack.bucket}/inbox/tickets\\.rerun-\\d{8}T\\d{6}Z-[0-9a-f]{8}\\.jsonl$`),
    );
    expect(rerun.out).toContain('  rows      10 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
    expect(rerun.out).toMatch(
      new RegExp(`\\n  reused    ${10 - failed.length} rows from job ${firstJob}, not sent again \\(\\$0\\.\\d+ paid there, not counted above\\)\\n`),
    );
    expect(served.stack.simulator!.stats().requestsCreated - requestsBefore).toBe(failed.length);
    const rerunJob = /^Job (\S+)$/m.exec(rerun.out)![1]!;
    const rows = await resultsOf(rerunJob);
    expect(rows.filter((row) => !row.reused_from).map((row) => row.custom_id)).toEqual(failed);
  });

  it('submits a file with --reuse: rows with the same custom_id and params are not sent again', async () => {
    const file = path.join(served.dir, 'tickets-fixed.jsonl');
    // The same ten requests and two new ones.
    await writeFile(file, jsonl(requests(12, 't')));
    const previous = await resultsOf(firstJob);
    const requestsBefore = served.stack.simulator!.stats().requestsCreated;

    const submitted = await run('submit', [file, '--reuse', firstJob]);

    expect(submitted.code).toBe(0);
    const succeededBefore = previous.filter((row) => row.status === 'succeeded').length;
    expect(served.stack.simulator!.stats().requestsCreated - requestsBefore).toBe(12 - succeededBefore);
    expect(submitted.out).toContain(`  reused    ${succeededBefore} rows from job ${firstJob}`);
  });

  it('says why a rerun cannot start: an unknown job, or --only naming succeeded', async () => {
    expect(await run('rerun', ['no-such-job'])).toEqual({ code: 1, out: '', err: 'batchline rerun: there is no job no-such-job to reuse rows from\n' });
    expect(await run('rerun', [firstJob, '--only', 'expired,succeeded'])).toEqual({
      code: 2,
      out: '',
      err: 'batchline rerun: --only names succeeded: a row that succeeded is never sent again\n',
    });
  });
});
