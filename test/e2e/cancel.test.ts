import { describe, expect, it } from 'vitest';
import { updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk } from '../../shared/store/items';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { getItem } from '../../shared/store/dynamo';
import type { JobItem } from '../../shared/store/items';
import type { LocalEvent } from '../../local/runtime';
import { ids, nextEvent, readJsonl, request, until, useLocalStack, writeRequests } from './support';

describe('stopping a job, end to end', () => {
  // Two chunks of three rows; the second batch created never finishes on its own.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 3 }, simulator: { batchFaultsBySequence: { 2: { stall: true } } } });

  it('keeps the results already collected and cancels the rest when a cancel is requested while polling', async () => {
    const customIds = ids('row', 6);
    const file = await writeRequests(under, 'rows.jsonl', customIds.map(request));
    let canceling: Promise<unknown> | undefined;
    let submitted = 0;
    let collected = false;
    // Once both batches exist and one chunk is collected, ask the job to stop, as a user would (the job record's flag).
    const off = under.stack.on((event) => {
      if (event.type === 'batch-submitted') submitted += 1;
      if (event.type === 'chunk-collected') collected = true;
      if (submitted === 2 && collected && canceling === undefined && 'jobId' in event && event.jobId) {
        canceling = updateItem(under.stack.dynamo, under.stack.table, { pk: jobPk(event.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
      }
    });

    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);
    off();
    await canceling;

    const [finished, stalled] = under.stack.simulator!.stats().batchesCreated;
    expect(under.stack.simulator!.stats().calls.cancel).toBeGreaterThanOrEqual(1);
    expect(outcome.status).toBe('canceled');
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => row.custom_id)).toEqual(customIds);
    const statusOf = (batchId: string | undefined) => results.filter((row) => row.batch_id === batchId).map((row) => row.status);
    expect(statusOf(finished)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(statusOf(stalled)).toEqual(['canceled', 'canceled', 'canceled']);
    expect(outcome.summary?.counts).toEqual({ total: 6, succeeded: 3, errored: 0, expired: 0, canceled: 3, invalid: 0 });
    expect((await readJsonl(under.stack, outcome.keys.errors)).map((row) => row.status)).toEqual(['canceled', 'canceled', 'canceled']);
  });

  it('marks the job failed and cancels its batch when its execution is stopped, through the ExecutionEnded rule', async () => {
    under.stack.simulator!.setBatchFaults({ stall: true });
    const file = await writeRequests(under, 'stopped.jsonl', ids('stopped', 2).map(request));
    const jobId = await under.stack.submitFile(file);
    const { executionArn } = await nextEvent(
      under,
      (event): event is Extract<LocalEvent, { type: 'job-registered' }> => event.type === 'job-registered' && event.jobId === jobId,
    );
    await nextEvent(under, (event): event is LocalEvent => event.type === 'batch-submitted' && event.jobId === jobId);
    const cancelsBefore = under.stack.simulator!.stats().calls.cancel;

    const stopped = await under.stack.stepFunctions.stop(executionArn, { error: 'Operator', cause: 'stopped from the console' });

    expect(stopped.status).toBe('ABORTED');
    // The rule's function runs once the execution has ended; telling the topic is the last thing it does.
    const told = () => under.stack.shim.published.some((message) => message.message.includes(jobId));
    await until(async () => told());
    const job = await getItem<JobItem>(under.stack.dynamo, under.stack.table, { pk: jobPk(jobId), sk: JOB_SK });
    expect(job?.status).toBe('failed');
    expect(job?.failure?.error).toBe('ExecutionAborted');
    expect(under.stack.simulator!.stats().calls.cancel).toBeGreaterThan(cancelsBefore);
  });
});
