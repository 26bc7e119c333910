import { describe, expect, it } from 'vitest';
import { deleteItemIf, putItem, queryPartition, updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk, WATCH_PK, type WatchItem } from '../../shared/store/items';
import type { LocalEvent } from '../../local/runtime';
import { ids, nextEvent, request, until, useLocalStack, writeRequests } from '../e2e/support';
import { chunkRecords, expectEveryRowOnce, expectOneBatchPerAttempt, runJob, startJob, type JobRun } from './support';

/**
 * The poller's failure modes (docs/architecture.md, "Waiting for a batch", and its failure table) on the local pipeline: the synthesized state
 * machine, AwaitBatch's tokens, the poller's schedule ticking on the runtime's timer. Each run ends
 * with every row in one terminal state, one batch per attempt (no second create) and no token
 * left open. At time scale 120 a tick is 0.5 s real apart, a heartbeat timeout (900 s) 7.5 s real.
 * The fault of 1,000 batches across 100 jobs runs in `npm run bench -- polling` (one tick over
 * 1,000 watches), not here: too slow for a test on two cores.
 */
describe("the poller's faults, on the local pipeline", () => {
  // A day's retry backoff (720 s real): only a cancel forwarded by the poller ends it within a test's time.
  const under = useLocalStack({ timeScale: 120, settings: { maxRequestsPerChunk: 2, retryBackoffSeconds: 86_400 }, simulator: { processingSeconds: 600 } });
  const of = <T extends LocalEvent['type']>(type: T, jobId: string) =>
    under.events.filter((event): event is Extract<LocalEvent, { type: T }> => event.type === type && 'jobId' in event && event.jobId === jobId);
  const watches = async () => {
    const found: WatchItem[] = [];
    for await (const watch of queryPartition<WatchItem>(under.stack.dynamo, under.stack.table, WATCH_PK)) found.push(watch);
    return found;
  };
  /** These runs wait out heartbeat timeouts and simulated minutes: margins for a loaded machine, not expectations. */
  const SLOW = 180_000;
  const watchesOf = async (jobId: string) => (await watches()).filter((watch) => watch.jobId === jobId);
  async function settled(run: JobRun, customIds: string[]) {
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    await until(async () => under.stack.taskTokens.openTokens().length === 0);
    await until(async () => (await watchesOf(run.jobId)).length === 0);
  }
  /** Submits and resolves once `count` of the job's attempts have armed a watch. */
  async function armed(name: string, customIds: string[], count: number) {
    const job = await startJob(under, await writeRequests(under, name, customIds.map(request)));
    await until(async () => (await watchesOf(job.jobId)).length >= count);
    return job;
  }

  it(
    'a. poller stopped for an hour: waiting chunks resume by their heartbeat timeout, new arms go to the Wait loop, and after the restart chunks wait on the poller again',
    async () => {
      const rows = ids('a', 4);
      const { jobId, finish } = await armed('a.jsonl', rows, 2);
      await under.stack.poller!.pause();
      try {
        await until(async () => of('batch-woken', jobId).filter((event) => event.error === 'States.HeartbeatTimeout').length === 2);
        // PollBatch saw the health record stale: the Wait loop, not AwaitBatch again.
        await until(async () => of('batch-polled', jobId).some((event) => event.watch === false));
      } finally {
        under.stack.poller!.resume();
      }
      const run = await finish();
      expect(run.outcome.status).toBe('succeeded');
      await settled(run, rows);
      const after = await runJob(under, 'a-after.jsonl', ids('a2', 2));
      expect(of('batch-woken', after.jobId).map((event) => event.reason)).toEqual(['ended']);
    },
    SLOW,
  );

  it(
    'b. a wake sent twice (a crash between send and delete): the second is refused, nothing wakes twice',
    async () => {
      const rows = ids('b', 2);
      const { jobId, finish } = await armed('b.jsonl', rows, 1);
      const [watch] = await watchesOf(jobId);
      const run = await finish();
      await putItem(under.stack.dynamo, under.stack.table, watch!);
      const report = (await under.stack.poller!.tick()) as { dropped: number };
      expect(report.dropped).toBeGreaterThanOrEqual(1);
      expect(of('batch-woken', jobId)).toHaveLength(1);
      await settled(run, rows);
    },
    SLOW,
  );

  it(
    'c. a watch deleted by hand: its chunk resumes by the heartbeat timeout',
    async () => {
      const rows = ids('c', 2);
      const { jobId, finish } = await armed('c.jsonl', rows, 1);
      const [watch] = await watchesOf(jobId);
      await deleteItemIf(under.stack.dynamo, under.stack.table, { pk: watch!.pk, sk: watch!.sk }, { expression: 'attribute_exists(pk)' });
      const run = await finish();
      expect(of('batch-woken', jobId)[0]).toMatchObject({ error: 'States.HeartbeatTimeout' });
      expect(run.outcome.status).toBe('succeeded');
      await settled(run, rows);
    },
    SLOW,
  );

  it(
    'd. a job execution stopped while its chunks wait: tokens closed, watches dropped, batches canceled by execution-ended',
    async () => {
      const { jobId } = await armed('d.jsonl', ids('d', 4), 2);
      const { executionArn } = under.events.find(
        (event): event is Extract<LocalEvent, { type: 'job-registered' }> => event.type === 'job-registered' && event.jobId === jobId,
      )!;
      const cancels = under.stack.simulator!.stats().calls.cancel;
      await under.stack.stepFunctions.stop(executionArn, { error: 'Operator', cause: 'stopped' });
      expect(under.stack.taskTokens.openTokens()).toEqual([]);
      await until(async () => (await watchesOf(jobId)).length === 0);
      await until(async () => under.stack.simulator!.stats().calls.cancel >= cancels + 2);
      const chunks = await chunkRecords(under.stack, jobId);
      expect(chunks.map((chunk) => chunk.attempts.length)).toEqual([1, 1]);
    },
    SLOW,
  );

  it(
    'e. a batch that ends in the same simulated second as its arm is woken by the next tick',
    async () => {
      under.stack.simulator!.setBatchFaults({ processingSeconds: 0 });
      try {
        const rows = ids('e', 2);
        const run = await runJob(under, 'e.jsonl', rows);
        expect(of('batch-woken', run.jobId).map((event) => event.reason ?? event.error)).toEqual(['ended']);
        await settled(run, rows);
      } finally {
        under.stack.simulator!.setBatchFaults(undefined);
      }
    },
    SLOW,
  );

  it(
    'f. half the list calls failing (5xx, 429 with retry-after) for 10 simulated minutes: no chunk falls back, and wakes resume after',
    async () => {
      const rows = ids('f', 2);
      const { jobId, finish } = await armed('f.jsonl', rows, 1);
      under.stack.simulator!.setHttpFaults([
        { endpoint: 'list', status: 500, rate: 0.25 },
        { endpoint: 'list', status: 429, retryAfterSeconds: 1, rate: 0.25 },
      ]);
      // Ten simulated minutes: 5 s real at time scale 120.
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      under.stack.simulator!.setHttpFaults([]);
      const run = await finish();
      expect(of('batch-woken', jobId).map((event) => event.reason ?? event.error)).toEqual(['ended']);
      await settled(run, rows);
    },
    SLOW,
  );

  it(
    'a key refused by the API (401) on the list: the poller stops heartbeating, the chunks poll on their own and wait for a valid key',
    async () => {
      const rows = ids('k', 2);
      const { jobId, finish } = await armed('k.jsonl', rows, 1);
      under.stack.simulator!.setHttpFaults([{ endpoint: ['list', 'retrieve'], status: 401, rate: 1 }]);
      try {
        await until(async () => of('batch-woken', jobId).some((event) => event.error === 'States.HeartbeatTimeout'));
        await until(async () => (await chunkRecords(under.stack, jobId))[0]!.attempts[0]!.keyRefusedSince !== undefined);
      } finally {
        under.stack.simulator!.setHttpFaults([]);
      }
      const run = await finish();
      expect(run.outcome.status).toBe('succeeded');
      expect((await chunkRecords(under.stack, jobId))[0]!.attempts[0]!.keyRefusedSince).toBeUndefined();
      await settled(run, rows);
    },
    SLOW,
  );

  it(
    'h. a cancel requested while chunks wait is forwarded: the poller wakes the chunks, PollBatch sends it',
    async () => {
      under.stack.simulator!.setBatchFaults({ stall: true });
      try {
        const rows = ids('h', 4);
        const { jobId, finish } = await armed('h.jsonl', rows, 2);
        const requestedAt = Date.now();
        await updateItem(under.stack.dynamo, under.stack.table, { pk: jobPk(jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
        await nextEvent(under, (event): event is LocalEvent => event.type === 'batch-woken' && event.jobId === jobId && event.reason === 'cancel');
        const run = await finish();
        expect(run.outcome.status).toBe('canceled');
        const chunks = await chunkRecords(under.stack, jobId);
        // Sent by PollBatch after the poller's cancel wake (how soon is the bench's to say, not a test's).
        for (const chunk of chunks) expect(Date.parse(chunk.attempts[0]!.cancelSentAt!)).toBeGreaterThanOrEqual(requestedAt - 1000);
        await settled(run, rows);
      } finally {
        under.stack.simulator!.setBatchFaults(undefined);
      }
    },
    SLOW,
  );

  it(
    'i. a cancel requested while a chunk waits out its retry backoff (a day) is forwarded by the poller: no second batch, the job ends canceled',
    async () => {
      // Every row of the first attempt errs overloaded: transient, so the chunk waits to retry.
      under.stack.simulator!.setBatchFaults({ errored: { overloaded_error: 1 } });
      const rows = ids('i', 2);
      const { jobId, finish } = await startJob(under, await writeRequests(under, 'i.jsonl', rows.map(request)));
      try {
        await until(async () => of('chunk-collected', jobId).some((event) => event.retry));
        await until(async () => (await watchesOf(jobId)).some((watch) => (watch as { wait?: string }).wait === 'retry'));
      } finally {
        under.stack.simulator!.setBatchFaults(undefined);
      }
      await updateItem(under.stack.dynamo, under.stack.table, { pk: jobPk(jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
      await nextEvent(under, (event): event is LocalEvent => event.type === 'backoff-ended' && event.jobId === jobId && event.reason === 'cancel');
      const run = await finish();
      expect(run.outcome.status).toBe('canceled');
      // The first attempt's batch only: the retry was never submitted.
      expect(run.batches).toHaveLength(1);
      const chunks = await chunkRecords(under.stack, jobId);
      expect(chunks[0]!.attempts.filter((attempt) => attempt.batchId)).toHaveLength(1);
      expect(run.results.every((row) => row.status !== 'succeeded')).toBe(true);
      await settled(run, rows);
    },
    SLOW,
  );
});
