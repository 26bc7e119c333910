/**
 * Jobs that stop with batches in flight: a cancel requested while polling, an execution aborted,
 * an execution that fails. Whatever the way, nothing is left running at the API.
 */
import { describe, expect, it } from 'vitest';
import { LambdaFunctionError } from '../../local/lambda';
import type { LocalEvent } from '../../local/runtime';
import { getItem, putItem, updateItem } from '../../shared/store/dynamo';
import { CREATE_SLOT_SK, createSlotPk, JOB_SK, jobPk, type JobItem } from '../../shared/store/items';
import { ids, nextEvent, request, until, useLocalStack, writeRequests } from '../e2e/support';
import { chunkRecords, expectEveryRowOnce, expectOneBatchPerAttempt, interceptTask, runJob, simulatorBatch } from './support';

describe('stopping jobs with batches in flight, on the local pipeline', () => {
  // Two chunks a job; the second batch the stack creates never finishes on its own.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 4 }, simulator: { batchFaultsBySequence: { 2: { stall: true } } } });

  const jobRecord = (jobId: string) => getItem<JobItem>(under.stack.dynamo, under.stack.table, { pk: jobPk(jobId), sk: JOB_SK });
  /** Every batch ended (none in_progress or canceling), with its rows' outcomes. */
  const expectAllEnded = async (batches: string[]) => {
    // A cancel ends a batch 5 simulated seconds later; a simulated minute is ample.
    under.stack.simulator!.advance(60);
    const states = await Promise.all(batches.map((id) => simulatorBatch(under.stack, id)));
    expect(states.map((batch) => batch.processing_status)).toEqual(batches.map(() => 'ended'));
    return states;
  };
  const registered = (jobId: string) =>
    nextEvent(under, (e): e is Extract<LocalEvent, { type: 'job-registered' }> => e.type === 'job-registered' && e.jobId === jobId);

  it('keeps collected results, counts the rest canceled and leaves nothing running when a cancel is requested while polling', async () => {
    const customIds = ids('row', 8);
    let submitted = 0;
    let collected = false;
    let canceling: Promise<unknown> | undefined;
    const off = under.stack.on((event) => {
      if (event.type === 'batch-submitted') submitted += 1;
      if (event.type === 'chunk-collected') collected = true;
      if (submitted === 2 && collected && canceling === undefined && 'jobId' in event && event.jobId) {
        canceling = updateItem(under.stack.dynamo, under.stack.table, { pk: jobPk(event.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
      }
    });
    const run = await runJob(under, 'canceled.jsonl', customIds);
    off();
    await canceling;

    expect(run.outcome.status).toBe('canceled');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    // Batches in creation order: the first ran, the second (either chunk's) stalled until the cancel.
    const [finished, stalled] = run.batches;
    const rowsOf = (batchId: string | undefined) => run.results.filter((row) => row.batch_id === batchId).map((row) => row.status);
    expect(rowsOf(finished)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    expect(rowsOf(stalled)).toEqual(['canceled', 'canceled', 'canceled', 'canceled']);
    expect(run.outcome.summary?.counts).toEqual({ total: 8, succeeded: 4, errored: 0, expired: 0, canceled: 4, invalid: 0 });
    const [, stalledBatch] = await expectAllEnded(run.batches);
    expect(stalledBatch!.request_counts).toMatchObject({ canceled: 4, processing: 0 });
  });

  it('cancels every batch in flight and marks the job failed when its execution is aborted', async () => {
    under.stack.simulator!.setBatchFaults({ stall: true });
    const file = await writeRequests(under, 'aborted.jsonl', ids('row', 8).map(request));
    const before = under.stack.simulator!.stats().batchesCreated.length;
    const jobId = await under.stack.submitFile(file);
    const { executionArn } = await registered(jobId);
    await until(async () => under.stack.simulator!.stats().batchesCreated.length - before === 2);
    under.stack.simulator!.setBatchFaults(undefined);

    expect((await under.stack.stepFunctions.stop(executionArn, { error: 'Operator', cause: 'stopped' })).status).toBe('ABORTED');
    await until(async () => (await jobRecord(jobId))?.status === 'failed');
    await until(async () => under.stack.shim.published.some((message) => message.message.includes(jobId)));

    expect((await jobRecord(jobId))?.failure?.error).toBe('ExecutionAborted');
    const batches = under.stack.simulator!.stats().batchesCreated.slice(before);
    expect(batches).toHaveLength(2);
    const states = await expectAllEnded(batches);
    expect(states.map((batch) => batch.request_counts)).toEqual(batches.map(() => expect.objectContaining({ canceled: 4, processing: 0 })));
  });

  it('cancels every batch in flight and marks the job failed when its execution fails', async () => {
    under.stack.simulator!.setBatchFaults({ stall: true });
    const file = await writeRequests(under, 'failing.jsonl', ids('row', 8).map(request));
    const before = under.stack.simulator!.stats().batchesCreated.length;
    // Chunk 0's wait crashes (its arm, AwaitBatch, or a poll), and so does the RecordChunkFailure
    // that catches it: nothing in the chunk catches that, so the Map fails and the job's Catch
    // (MarkJobFailed) takes over. The crash waits until both chunks' batches exist: the chunks are
    // of one size, so one create waits for the other's answer (the create slot), and without the
    // wait the job could fail before the second batch is made.
    const crash = (state: string) => new LambdaFunctionError('Runtime.ExitError', `${state}: the runtime exited (injected)`);
    const undoWaits = ['AwaitBatch', 'PollBatch'].map((state) =>
      interceptTask(under.stack, state, async (input, invoke) => {
        if ((input as { Payload?: { chunk?: number } }).Payload?.chunk === 0 || (input as { chunk?: number }).chunk === 0) {
          await until(async () => under.stack.simulator!.stats().batchesCreated.length - before === 2);
          throw crash(state);
        }
        return invoke(input);
      }),
    );
    const undoPoll = () => [...undoWaits].reverse().forEach((undo) => undo());
    const undoRecord = interceptTask(under.stack, 'RecordChunkFailure', async () => {
      throw crash('RecordChunkFailure');
    });
    const jobId = await under.stack.submitFile(file);
    const { executionArn } = await registered(jobId);
    const ended = await under.stack.stepFunctions.describe(executionArn)!.done;
    undoPoll();
    undoRecord();
    under.stack.simulator!.setBatchFaults(undefined);

    expect({ status: ended.status, error: ended.error }).toEqual({ status: 'FAILED', error: 'Runtime.ExitError' });
    const job = await jobRecord(jobId);
    expect({ status: job?.status, error: job?.failure?.error }).toEqual({ status: 'failed', error: 'Runtime.ExitError' });
    const batches = under.stack.simulator!.stats().batchesCreated.slice(before);
    expect(batches).toHaveLength(2);
    await expectAllEnded(batches);
  });

  it('creates nothing when the job fails while a Submit waits for the create slot', async () => {
    under.stack.simulator!.setBatchFaults({ stall: true });
    // Another attempt's create of 4 requests is unanswered: its slot is held (shared/jobs/create-slot.ts).
    const slot = { pk: createSlotPk(4), sk: CREATE_SLOT_SK };
    await putItem(under.stack.dynamo, under.stack.table, {
      ...slot,
      type: 'create-slot',
      requests: 4,
      jobId: 'elsewhere',
      chunk: 0,
      attempt: 1,
      heldUntil: Date.now() + 3_600_000,
    });
    const file = await writeRequests(under, 'failing-while-waiting.jsonl', ids('row', 8).map(request));
    const before = under.stack.simulator!.stats().batchesCreated.length;
    // Chunk 1's Submit waits for the slot; chunk 0's crashes once chunk 1's has started, and so does
    // the RecordChunkFailure that catches it: the Map fails, MarkJobFailed sweeps a job with no batch.
    const chunkOf = (input: unknown) => (input as { Payload?: { chunk?: number } }).Payload?.chunk ?? (input as { chunk?: number }).chunk;
    const crash = (state: string) => new LambdaFunctionError('Runtime.ExitError', `${state}: the runtime exited (injected)`);
    let waiting: Promise<unknown> | undefined;
    const undoSubmit = interceptTask(under.stack, 'SubmitChunk', async (input, invoke) => {
      if (chunkOf(input) !== 0) return (waiting = invoke(input));
      await until(async () => waiting !== undefined);
      throw crash('SubmitChunk');
    });
    const undoRecord = interceptTask(under.stack, 'RecordChunkFailure', async () => {
      throw crash('RecordChunkFailure');
    });
    const jobId = await under.stack.submitFile(file);
    const { executionArn } = await registered(jobId);
    const ended = await under.stack.stepFunctions.describe(executionArn)!.done;
    undoSubmit();
    undoRecord();

    expect(ended.status).toBe('FAILED');
    expect((await jobRecord(jobId))?.status).toBe('failed');
    expect(under.stack.simulator!.stats().batchesCreated.slice(before)).toEqual([]);
    // The slot comes free while the Submit still waits (a Lambda runs on after its execution failed).
    await updateItem(under.stack.dynamo, under.stack.table, slot, { set: { heldUntil: 0 }, remove: ['jobId', 'chunk', 'attempt'] });
    await waiting!.catch(() => undefined);
    under.stack.simulator!.setBatchFaults(undefined);

    // Once it has the slot, Submit sees the job stopped and creates nothing.
    expect(under.stack.simulator!.stats().batchesCreated.slice(before)).toEqual([]);
    const [, chunk1] = await chunkRecords(under.stack, jobId);
    expect(chunk1!.attempts.map((attempt) => attempt.batchId)).toEqual([undefined]);
  });
});
