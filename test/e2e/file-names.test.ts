/**
 * File names that need encoding in a URL work exactly like plain ones: through the S3 event that
 * starts the job, a schedule's sweep, and the outputs. The key is one string everywhere: the name
 * as stored in the bucket.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { readJob } from '../../shared/jobs/chunk-state';
import type { ScheduleRun } from '../../local/runtime';
import { ids, readJsonl, request, useLocalStack, writeRequests } from './support';

/** A space, a plus, a non-ASCII letter, a lone percent sign, and the URL delimiters # ? & =. */
export const AWKWARD_NAMES = ['my data.jsonl', 'plus+1.jsonl', 'ü.jsonl', '100%.jsonl', 'a#b?&=.jsonl'];

describe('file names that need encoding', () => {
  const under = useLocalStack();

  it.each(AWKWARD_NAMES)('"%s" runs to the end, its job records the name as stored, its outputs are where the job says', async (name) => {
    const customIds = ids(`row`, 2);
    const file = await writeRequests(under, name, customIds.map(request));

    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);

    const key = `inbox/${name}`;
    expect(outcome.status).toBe('succeeded');
    expect(outcome.execution?.status).toBe('SUCCEEDED');
    expect(outcome.job?.key).toBe(key);
    expect(outcome.summary?.input).toEqual({ bucket: under.stack.bucket, key });
    expect((await readJsonl<ResultRow>(under.stack, outcome.keys.results)).map((row) => row.custom_id)).toEqual(customIds);
    // The event that started the job named the object as it is stored.
    const started = under.events.find((event) => event.type === 'execution-started' && event.executionArn === outcome.execution?.executionArn);
    expect(started).toMatchObject({ key });
    const input = JSON.parse(under.stack.stepFunctions.describe(outcome.execution!.executionArn)!.input) as { detail: { object: { key: string } } };
    expect(input.detail.object.key).toBe(key);
  });

  it('a schedule sweep starts one job per awkward name, each recording the name as stored', async () => {
    const prefix = 'scheduled/nightly/';
    const body = JSON.stringify(request('swept-001'));
    for (const name of AWKWARD_NAMES) {
      await under.stack.s3.send(new PutObjectCommand({ Bucket: under.stack.bucket, Key: `${prefix}${name}`, Body: body }));
    }
    const seen = under.events.length;

    const runs = await under.stack.runSchedules();

    const sweep = runs.find((run: ScheduleRun) => (run.schedule.input as { prefix?: string }).prefix === prefix);
    expect(sweep?.output).toMatchObject({ prefix, started: AWKWARD_NAMES.length, alreadyStarted: 0 });
    const started = under.events.slice(seen).flatMap((event) => (event.type === 'execution-started' ? [event.executionArn] : []));
    expect(started).toHaveLength(AWKWARD_NAMES.length);
    const keys: string[] = [];
    for (const executionArn of started) {
      const execution = under.stack.stepFunctions.describe(executionArn)!;
      expect((await execution.done).status).toBe('SUCCEEDED');
      const registered = under.events.find((event) => event.type === 'job-registered' && event.executionArn === executionArn);
      keys.push((await readJob(under.stack.dynamo, under.stack.table, (registered as { jobId: string }).jobId)).key);
    }
    expect(keys.sort()).toEqual(AWKWARD_NAMES.map((name) => `${prefix}${name}`).sort());
  });
});
