import { describe, expect, it } from 'vitest';
import { useServedStack } from '../support/served-stack';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { localStatePath, removeLocalState, writeLocalState } from '../../cli/ops/local-state';
import { setTimeout as sleep } from 'node:timers/promises';
import { jobProgress } from '../../shared/jobs/queries';
import { readJob } from '../../shared/jobs/chunk-state';
import { readRowRecord } from '../../shared/jobs/row-records';
import { jsonl, requests } from '../support/requests';

describe('operating commands against a running local stack', () => {
  // The second batch created runs for 20 simulated hours: long enough to cancel it.
  const served = useServedStack('batchline-ops-local-', { simulator: { batchFaultsBySequence: { 2: { processingSeconds: 72_000 } } } });

  const run = (name: string, args: string[]) => served.run(name, args);

  it('submits a file, then lists, inspects and downloads its job', async () => {
    const file = path.join(served.dir, 'tickets.jsonl');
    await writeFile(file, jsonl(requests(4, 't')));

    const submitted = await run('submit', [file]);
    expect(submitted.err).toBe('');
    expect(submitted.code).toBe(0);
    const jobId = /^Job (\S+)$/m.exec(submitted.out)![1]!;
    expect(submitted.out).toContain('  rows      4 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');

    const jobs = await run('jobs', []);
    expect(jobs.out.split('\n')[1]).toMatch(new RegExp(`^${jobId} +succeeded +4 +4 +0 +0 +\\$0\\.\\d+ +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ$`));

    const status = await run('status', [jobId]);
    expect(status.out.split('\n').slice(0, 2)).toEqual([`Job ${jobId}: succeeded`, `  input     s3://${served.stack.bucket}/inbox/tickets.jsonl (strict)`]);
    expect(status.out).toMatch(/\n +0 +1 +done +msgbatch_\w+ +4 +4 +0 +0 +0 +\d+\n/);

    const row = (await readRowRecord(served.stack.dynamo, served.stack.table, await readJob(served.stack.dynamo, served.stack.table, jobId), 't-00002'))!;
    const got = await run('get', [jobId, 't-00002']);
    expect(got.out.split('\n')[0]).toBe(`Row t-00002 of job ${jobId}: succeeded`);
    expect(got.out).toContain(`  attempt   1 in batch ${row.batchId}, chunk 0 row 2\n`);
    expect(JSON.parse(got.out.slice(got.out.indexOf('\n{') + 1))).toMatchObject({ custom_id: 't-00002', result: { type: 'succeeded' } });

    const results = await run('results', [jobId]);
    expect(results).toEqual({
      code: 0,
      err: '',
      out: `Outputs of job ${jobId} (succeeded) in batchline-out/${jobId}/: results.jsonl, errors.jsonl, invalid.jsonl, summary.json, summary.html\n`,
    });
    const lines = (await readFile(path.join(served.dir, 'batchline-out', jobId, 'results.jsonl'), 'utf8')).split('\n').filter(Boolean);
    expect(lines.map((line) => (JSON.parse(line) as { custom_id: string }).custom_id)).toEqual(['t-00000', 't-00001', 't-00002', 't-00003']);
    const summary = JSON.parse(await readFile(path.join(served.dir, 'batchline-out', jobId, 'summary.json'), 'utf8')) as {
      jobId: string;
      counts: { total: number };
    };
    expect(summary).toMatchObject({ jobId, counts: { total: 4 } });
  });

  it('cancels a running job: its batch is canceled and its rows end canceled', async () => {
    const file = path.join(served.dir, 'slow.jsonl');
    await writeFile(file, jsonl(requests(3, 's')));
    const submitted = await run('submit', [file, '--no-follow']);
    const jobId = /^Job (\S+) registered/m.exec(submitted.out)![1]!;
    // Once its one batch is in progress:
    for (;;) {
      const { chunks } = await jobProgress({ dynamo: served.stack.dynamo, table: served.stack.table }, jobId);
      if (chunks[0]?.status === 'in_progress') break;
      await sleep(20);
    }

    const canceled = await run('cancel', [jobId]);
    expect(canceled).toEqual({
      code: 0,
      err: '',
      out: `Cancel requested for job ${jobId} (running): batches in progress are canceled at their next poll. Follow it with: batchline status ${jobId} --local ${served.dir}\n`,
    });
    const outcome = await served.stack.waitForJob(jobId);

    expect(outcome.status).toBe('canceled');
    const status = await run('status', [jobId]);
    expect(status.out).toContain('  outcome   0 succeeded, 0 errored, 0 expired, 3 canceled, 0 invalid\n');
    expect(status.out).toMatch(/\n +0 +1 +done +msgbatch_\w+ +3 +0 +0 +0 +3 +\d+ +cancel sent\n/);
    expect((await run('cancel', [jobId])).code).toBe(1);
  });

  it('writes the state file serve leaves behind, and removes only its own', async () => {
    const state = JSON.parse(await readFile(localStatePath(served.dir), 'utf8')) as Record<string, unknown>;
    expect(state).toMatchObject({
      version: 1,
      pid: process.pid,
      s3Endpoint: served.stack.s3Endpoint,
      dynamodbEndpoint: served.stack.env.AWS_ENDPOINT_URL_DYNAMODB,
      bucket: served.stack.bucket,
      table: served.stack.table,
      region: served.stack.env.AWS_REGION,
    });

    const foreign = await mkdtemp(path.join(tmpdir(), 'batchline-ops-foreign-'));
    await writeLocalState(foreign, served.stack);
    await writeFile(localStatePath(foreign), JSON.stringify({ ...state, pid: process.pid + 1 }));
    await removeLocalState(foreign);
    expect(JSON.parse(await readFile(localStatePath(foreign), 'utf8'))).toMatchObject({ pid: process.pid + 1 });
    await rm(foreign, { recursive: true, force: true });
  });
});
