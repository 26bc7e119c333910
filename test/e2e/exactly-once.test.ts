import { describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ids, nextEvent, request, useLocalStack, writeRequests } from './support';
import type { LocalEvent, ScheduleRun } from '../../local/runtime';

describe('at-least-once deliveries and lost replies, end to end', () => {
  // Two chunks; the simulator creates the first batch but drops the reply to its create call.
  const under = useLocalStack({
    settings: { maxRequestsPerChunk: 3 },
    simulator: { dropCreateResponses: 1 },
    context: { 'batchline:schedules': [{ name: 'hourly', cron: 'rate(1 hour)', prefix: 'scheduled/hourly/' }] },
  });
  let jobId: string;

  it("creates no second batch when a create's reply is lost: the retried Submit adopts the batch", async () => {
    const file = await writeRequests(under, 'rows.jsonl', ids('row', 6).map(request));
    jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('succeeded');
    expect(under.events.filter((event) => event.type === 'task-failed').map((event) => (event as { error: string }).error)).toContain('OutcomeUnknown');
    const stats = under.stack.simulator!.stats();
    // One batch per chunk attempt: the retried Submit found its batch by listing instead of creating again.
    expect(outcome.summary?.batches.map((batch) => batch.batchId).sort()).toEqual([...stats.batchesCreated].sort());
    expect(stats.batchesCreated).toHaveLength(2);
    expect(stats.calls.create).toBe(2);
    expect(stats.calls.list).toBeGreaterThanOrEqual(1);
    expect(outcome.summary?.counts).toMatchObject({ total: 6, succeeded: 6 });
  });

  it('starts no second job when the same S3 event is delivered again', async () => {
    const first = under.stack.stepFunctions.list().find((execution) => execution.status === 'SUCCEEDED')!;
    const batchesBefore = under.stack.simulator!.stats().batchesCreated.length;

    const again = under.stack.startExecution(JSON.parse(first.input));
    const ended = await again.done;

    expect(ended.status).toBe('SUCCEEDED');
    const registered = await nextEvent(
      under,
      (event): event is Extract<LocalEvent, { type: 'job-registered' }> => event.type === 'job-registered' && event.executionArn === again.executionArn,
    );
    expect(registered).toMatchObject({ jobId, duplicate: true });
    expect(under.stack.simulator!.stats().batchesCreated).toHaveLength(batchesBefore);
    expect(under.events.filter((event) => event.type === 'job-prepared')).toHaveLength(1);
    expect((await under.stack.progress(jobId)).status).toBe('succeeded');
  });

  it('starts one job per object when a schedule sweeps its prefix, and none when the sweep runs again', async () => {
    const body = ids('swept', 2)
      .map((id) => JSON.stringify(request(id)))
      .join('\n');
    await under.stack.s3.send(new PutObjectCommand({ Bucket: under.stack.bucket, Key: 'scheduled/hourly/night.jsonl', Body: body }));
    const seen = under.events.length;

    const sweepOf = (runs: ScheduleRun[]) => runs.find((run) => (run.schedule.input as { schedule?: string }).schedule === 'hourly');
    const sweep = sweepOf(await under.stack.runSchedules());

    expect(sweep?.output).toEqual({ schedule: 'hourly', prefix: 'scheduled/hourly/', started: 1, alreadyStarted: 0 });
    const started = under.events.slice(seen).filter((event) => event.type === 'execution-started');
    expect(started).toHaveLength(1);
    const execution = under.stack.stepFunctions.describe((started[0] as { executionArn: string }).executionArn)!;
    expect((await execution.done).status).toBe('SUCCEEDED');
    const registered = under.events.find((event) => event.type === 'job-registered' && event.executionArn === execution.executionArn);
    expect(registered).toMatchObject({ duplicate: false, jobId: expect.stringMatching(/^night-/) });

    const again = sweepOf(await under.stack.runSchedules());
    expect(again?.output).toEqual({ schedule: 'hourly', prefix: 'scheduled/hourly/', started: 0, alreadyStarted: 1 });
  });
});
