import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SendTaskHeartbeatCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { armRetryWatch, armWatch, PollerUnavailable } from '../../shared/jobs/await-batch';
import { ChunkStateConflict } from '../../shared/jobs/chunk-state';
import { pollBatch } from '../../shared/jobs/poll-batch';
import { pollerTick, type TaskCallbacks } from '../../shared/jobs/poller';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { pollerHealthKey, WATCH_ARMS_CAP } from '../../shared/jobs/watch';
import { getItem, putItem, queryPartition, updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk, WATCH_PK, type PollerHealthItem, type RetryWatchItem, type WatchItem } from '../../shared/store/items';
import { BatchesClient } from '../../shared/anthropic/client';
import { startAwsShim, type AwsShim } from '../../local/aws-shim';
import { LocalTaskTokens, TOKEN_PLACEHOLDER } from '../../local/task-tokens';
import { useLocalAws } from '../support/aws';
import { readChunkItem, seedJob, sharedClock, startApi, stopApi, TEST_API_KEY, type ApiContext } from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

/**
 * The arm, the poller and PollBatch together, on real parts: dynalite, the Batches API simulator
 * over HTTP, and task tokens settled through the local AWS shim with the real SFN client, as
 * functions/poll-batches.ts sends them. The clock is the simulator's (shared), ticks are called.
 */
describe('the poller', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let shim: AwsShim;
  let sfn: SFNClient;
  const tokens = new LocalTaskTokens(1);
  const callbacks: TaskCallbacks = {
    success: async (taskToken, output) => void (await sfn.send(new SendTaskSuccessCommand({ taskToken, output }))),
    heartbeat: async (taskToken) => void (await sfn.send(new SendTaskHeartbeatCommand({ taskToken }))),
  };
  beforeAll(async () => {
    ctx = await startApi({ processingSeconds: 600, apiKeys: [TEST_API_KEY] });
    shim = await startAwsShim({
      secret: () => undefined,
      startExecution: () => {
        throw new Error('unused');
      },
      describeExecution: () => undefined,
      listExecutions: () => [],
      taskTokens: tokens,
    });
    sfn = new SFNClient({ endpoint: shim.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });
  });
  afterAll(async () => {
    sfn?.destroy();
    await shim?.stop();
    await stopApi(ctx);
  });

  const poller = { periodSeconds: 60, staleSeconds: 180 };
  const clock = () => sharedClock(ctx.sim);

  /** A chunk attempt submitted, and a callback task waiting on its token (as AwaitBatch would be). */
  async function waiting(now: () => number) {
    const job = await seedJob(aws, { chunks: [requests(2)] });
    const config = pipelineConfig(aws);
    const submit = await submitChunk({ jobId: job.jobId, chunk: 0 }, { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config });
    const ref = { jobId: job.jobId, chunk: 0, attempt: 1, batchId: submit.batchId! };
    const controller = new AbortController();
    let arm: Promise<unknown> | undefined;
    const woken = tokens.run(
      'AwaitBatch',
      { HeartbeatSeconds: 900 },
      { Payload: { ...ref, taskToken: TOKEN_PLACEHOLDER } },
      (payload) => {
        arm = armWatch(payload as typeof ref & { taskToken: string }, { dynamo: aws.dynamo, config: { table: aws.table, ...poller }, now });
        return arm;
      },
      controller.signal,
    );
    woken.catch(() => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    await arm;
    return { ref, woken, controller, config };
  }
  const tick = (now: () => number) => pollerTick({ dynamo: aws.dynamo, api: ctx.api, callbacks, config: { table: aws.table, ...poller }, now });
  const watches = async () => {
    const found: WatchItem[] = [];
    for await (const watch of queryPartition<WatchItem>(aws.dynamo, aws.table, WATCH_PK)) found.push(watch);
    return found;
  };

  it('refuses to arm while its health record is stale (PollerUnavailable), and arms once it ticked', async () => {
    const time = clock();
    await putItem(aws.dynamo, aws.table, { ...pollerHealthKey, type: 'poller', lastTickAt: new Date(time.now() - 181_000).toISOString() });
    const job = await seedJob(aws, { chunks: [requests(1)] });
    const submit = await submitChunk({ jobId: job.jobId, chunk: 0 }, { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws) });
    const ref = { jobId: job.jobId, chunk: 0, attempt: 1, batchId: submit.batchId!, taskToken: 'local-x' };
    const deps = { dynamo: aws.dynamo, config: { table: aws.table, ...poller }, now: time.now };
    await expect(armWatch(ref, deps)).rejects.toThrow(PollerUnavailable);
    expect(await watches()).toEqual([]);

    await tick(time.now);
    await expect(armWatch(ref, deps)).resolves.toEqual({ armed: true, arms: 1 });
    await expect(armWatch({ ...ref, batchId: 'msgbatch_other' }, deps)).rejects.toThrow(ChunkStateConflict);
    const [watch] = await watches();
    expect(watch).toMatchObject({ jobId: ref.jobId, chunk: 0, attempt: 1, batchId: ref.batchId, taskToken: 'local-x' });
    expect(watch!.sk).toBe(`${watch!.expiresAt}#${ref.batchId}`);
    // Its token is no task's: the first heartbeat due (5 periods after the arm) finds out, and drops it.
    time.advance(300);
    expect(await tick(time.now)).toMatchObject({ heartbeats: 0, dropped: 1 });
    expect(await watches()).toEqual([]);
  });

  it('wakes an attempt once its batch has ended, with the batch and no rows; PollBatch then sees it ended without a retrieve', async () => {
    const time = clock();
    await tick(time.now);
    const { ref, woken, config } = await waiting(time.now);
    const first = await tick(time.now);
    expect(first).toMatchObject({ watches: 1, listCalls: 1, woken: 0 });
    expect(tokens.openTokens()).toHaveLength(1);

    time.advance(700);
    const second = await tick(time.now);
    expect(second).toMatchObject({ watches: 1, woken: 1, errors: 0 });
    const wake = (await woken) as { reason: string; batch: Record<string, unknown> };
    expect(wake.reason).toBe('ended');
    expect(Object.keys(wake.batch).sort()).toEqual(['created_at', 'ended_at', 'expires_at', 'id', 'processing_status', 'request_counts']);
    expect(await watches()).toEqual([]);
    expect(await getItem<PollerHealthItem>(aws.dynamo, aws.table, pollerHealthKey)).toMatchObject({
      lastTickAt: new Date(time.now()).toISOString(),
      watches: 1,
      woken: 1,
    });

    const retrieves = ctx.sim.stats().calls.retrieve;
    const polled = await pollBatch({ ...ref, wake: wake as never }, { dynamo: aws.dynamo, api: ctx.api, config, poller, now: time.now });
    expect(polled).toMatchObject({ ended: true, watch: false });
    expect(ctx.sim.stats().calls.retrieve).toBe(retrieves);
    expect((await readChunkItem(aws, ref.jobId, 0)).attempts[0]).toMatchObject({ processingStatus: 'ended', arms: 1 });
  });

  it('a second send of a used token is refused (TaskTimedOut): the watch is dropped and nothing is woken twice', async () => {
    const time = clock();
    await tick(time.now);
    const { woken } = await waiting(time.now);
    const [watch] = await watches();
    time.advance(700);
    expect(await tick(time.now)).toMatchObject({ woken: 1 });
    await woken;
    // As if the poller had crashed between its send and its delete.
    await putItem(aws.dynamo, aws.table, watch!);
    expect(await tick(time.now)).toMatchObject({ woken: 0, dropped: 1 });
    expect(await watches()).toEqual([]);
    expect(tokens.counts.succeeded).toBe(2);
  });

  it('keeps heartbeating through a list that fails (5xx, 429), and wakes once it answers again', async () => {
    const time = clock();
    await tick(time.now);
    const { woken } = await waiting(time.now);
    time.advance(700);
    ctx.sim.setHttpFaults([
      { endpoint: 'list', status: 529, rate: 1 },
      { endpoint: 'retrieve', status: 429, retryAfterSeconds: 1, rate: 1 },
    ]);
    try {
      // Heartbeats every 5 periods: 5 minutes later one is due.
      time.advance(300);
      expect(await tick(time.now)).toMatchObject({ woken: 0, heartbeats: 1, errors: 1 });
      expect(tokens.openTokens()).toHaveLength(1);
    } finally {
      ctx.sim.setHttpFaults([]);
    }
    expect(await tick(time.now)).toMatchObject({ woken: 1, errors: 0 });
    await expect(woken).resolves.toMatchObject({ reason: 'ended' });
  });

  it('stops heartbeating while the API refuses the key, so PollBatch takes the chunks over as it always has', async () => {
    const time = clock();
    await tick(time.now);
    const { controller } = await waiting(time.now);
    const refused = new BatchesClient({ apiKey: 'sk-revoked', baseUrl: ctx.sim.url, sleep: async () => undefined });
    try {
      time.advance(300);
      const report = await pollerTick({ dynamo: aws.dynamo, api: refused, callbacks, config: { table: aws.table, ...poller }, now: time.now });
      expect(report).toMatchObject({ woken: 0, heartbeats: 0, errors: 1 });
      expect(tokens.openTokens()).toHaveLength(1);
    } finally {
      await refused.close();
      controller.abort();
    }
    time.advance(300);
    expect(await tick(time.now)).toMatchObject({ dropped: 1 });
  });

  it("forwards a job's cancel request by waking its attempt, once: PollBatch cancels, and the re-armed watch waits for the end", async () => {
    const time = clock();
    await tick(time.now);
    const { ref, woken, config } = await waiting(time.now);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(ref.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
    expect(await tick(time.now)).toMatchObject({ cancels: 1 });
    await expect(woken).resolves.toEqual({ reason: 'cancel' });
    const cancels = ctx.sim.stats().calls.cancel;
    const polled = await pollBatch({ ...ref, wake: { reason: 'cancel' } }, { dynamo: aws.dynamo, api: ctx.api, config, poller, now: time.now });
    expect(ctx.sim.stats().calls.cancel).toBe(cancels + 1);
    expect((await readChunkItem(aws, ref.jobId, 0)).attempts[0]!.cancelSentAt).toBeDefined();
    if (!polled.ended) {
      expect(polled.watch).toBe(true);
      // Re-armed with the cancel sent: the next tick does not wake it for the cancel again.
      const again = tokens.run(
        'AwaitBatch',
        {},
        { Payload: { ...ref, taskToken: TOKEN_PLACEHOLDER } },
        (payload) => armWatch(payload as never, { dynamo: aws.dynamo, config: { table: aws.table, ...poller }, now: time.now }),
        new AbortController().signal,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await tick(time.now)).toMatchObject({ cancels: 0 });
      time.advance(120);
      await tick(time.now);
      await expect(again).resolves.toMatchObject({ reason: 'ended' });
    }
  });

  it("wakes an attempt for its job's deadline once deadline − margin has come on the API's clock, not before; PollBatch cancels", async () => {
    const time = clock();
    await tick(time.now);
    const { ref, woken, config } = await waiting(time.now);
    // The cancel is due in 5 simulated minutes (the batch takes 10).
    const deadline = { at: new Date(ctx.sim.now() + 3_600_000).toISOString(), marginSeconds: 3300 };
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(ref.jobId), sk: JOB_SK }, { set: { deadline } });
    expect(await tick(time.now)).toMatchObject({ cancels: 0, woken: 0 });
    time.advance(301);
    expect(await tick(time.now)).toMatchObject({ cancels: 1 });
    await expect(woken).resolves.toEqual({ reason: 'deadline' });
    const cancels = ctx.sim.stats().calls.cancel;
    await pollBatch({ ...ref, wake: { reason: 'deadline' } }, { dynamo: aws.dynamo, api: ctx.api, config, poller, now: time.now });
    expect(ctx.sim.stats().calls.cancel).toBe(cancels + 1);
    expect((await readChunkItem(aws, ref.jobId, 0)).attempts[0]!.deadlineCanceledAt).toBeDefined();
  });

  it('wakes a chunk waiting out its retry backoff only to forward a cancel, with no API call; drops the watch once the backoff is over', async () => {
    const time = clock();
    await tick(time.now);
    const job = await seedJob(aws, { chunks: [requests(2), requests(2)] });
    /** AwaitRetry as the workflow runs it: a callback task whose timeout is the backoff (a day). */
    const controller = new AbortController();
    const backoff = (chunk: number) => {
      const ended = tokens.run(
        'AwaitRetry',
        { TimeoutSecondsPath: '$.retryWaitSeconds' },
        { Payload: { wait: 'retry', jobId: job.jobId, chunk, attempt: 1, retryWaitSeconds: 86_400, taskToken: TOKEN_PLACEHOLDER } },
        (payload) => armRetryWatch(payload as never, { dynamo: aws.dynamo, config: { table: aws.table }, now: time.now }),
        controller.signal,
      );
      ended.catch(() => undefined);
      return ended;
    };
    const first = backoff(0);
    const retryWatches = async () => (await watches()).filter((watch) => (watch as Partial<RetryWatchItem>).wait === 'retry' && watch.jobId === job.jobId);
    await vi.waitFor(async () => expect(await retryWatches()).toHaveLength(1));
    const calls = { ...ctx.sim.stats().calls };
    // Not canceled, not due: left alone (no heartbeat: its timeout alone ends it).
    expect(await tick(time.now)).toMatchObject({ cancels: 0, heartbeats: 0, woken: 0 });
    expect(await retryWatches()).toHaveLength(1);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
    expect(await tick(time.now)).toMatchObject({ cancels: 1 });
    await expect(first).resolves.toEqual({ reason: 'cancel' });
    expect(await retryWatches()).toHaveLength(0);
    // A backoff whose task ended by its timeout leaves its watch: dropped one period past its end.
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { cancelRequested: false } });
    const second = backoff(1);
    await vi.waitFor(async () => expect(await retryWatches()).toHaveLength(1));
    time.advance(86_400 + 61);
    await tick(time.now);
    expect(await retryWatches()).toHaveLength(0);
    expect(ctx.sim.stats().calls.list).toBe(calls.list);
    expect(ctx.sim.stats().calls.retrieve).toBe(calls.retrieve);
    // Its task would end by its timeout a simulated day on; the test ends it here.
    controller.abort();
    await expect(second).rejects.toMatchObject({ name: 'States.Aborted' });
  });

  it('answers watch only while the poller is healthy and the attempt is under its arms cap', async () => {
    const time = clock();
    await tick(time.now);
    const { ref, config, controller } = await waiting(time.now);
    controller.abort();
    const deps = { dynamo: aws.dynamo, api: ctx.api, config, poller, now: time.now };
    expect(await pollBatch(ref, deps)).toMatchObject({ ended: false, watch: true });
    time.advance(181);
    expect(await pollBatch(ref, deps)).toMatchObject({ ended: false, watch: false });
    await tick(time.now);
    const chunk = await readChunkItem(aws, ref.jobId, 0);
    await updateItem(aws.dynamo, aws.table, { pk: chunk.pk, sk: chunk.sk }, { set: { attempts: [{ ...chunk.attempts[0]!, arms: WATCH_ARMS_CAP }] } });
    expect(await pollBatch(ref, deps)).toMatchObject({ ended: false, watch: false });
    // The aborted task's watch: its token was closed with its execution, so its next heartbeat drops it.
    time.advance(300);
    expect(await tick(time.now)).toMatchObject({ dropped: 1 });
    expect(await watches()).toEqual([]);
  });
});
