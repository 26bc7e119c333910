import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk } from '../../shared/store/items';
import { KEY_REFUSED_PAST_EXPIRY_MS, nextPollDelay, pollBatch, simulatePolling, type PollSettings } from '../../shared/jobs/poll-batch';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { useLocalAws } from '../support/aws';
import { ApiAuthError } from '../../shared/anthropic/errors';
import { readChunkItem, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

const DEFAULTS: PollSettings = { pollMinSeconds: 30, pollMaxSeconds: 900, pollFraction: 0.1 };
const HOUR = 3600;
const DAY = 24 * HOUR;

describe('nextPollDelay', () => {
  const at = (ageSeconds: number) => nextPollDelay({ createdAt: 0, expiresAt: DAY * 1000, serverNow: ageSeconds * 1000, settings: DEFAULTS });

  it.each([
    [0, 30],
    [100, 30],
    [300, 30],
    [301, 30],
    [600, 60],
    [1234, 123],
    [HOUR, 360],
    [9000, 900],
    [12 * HOUR, 900],
    [DAY - 400, 400 + 5],
    [DAY - 2, 2 + 5],
    [DAY + 60, 30],
  ])('a batch %i s old waits %i s', (age, wait) => {
    expect(at(age)).toBe(wait);
  });

  it('takes RFC 3339 timestamps as the API writes them', () => {
    expect(
      nextPollDelay({
        createdAt: '2026-01-01T00:00:00.000000Z',
        expiresAt: '2026-01-02T00:00:00.000000Z',
        serverNow: '2026-01-01T02:00:00Z',
        settings: DEFAULTS,
      }),
    ).toBe(720);
  });

  it('waits at least one second whatever the settings', () => {
    expect(nextPollDelay({ createdAt: 0, expiresAt: 1000, serverNow: 999, settings: { pollMinSeconds: 1, pollMaxSeconds: 1, pollFraction: 0.001 } })).toBe(1);
    expect(
      nextPollDelay({ createdAt: 0, expiresAt: DAY * 1000, serverNow: 5_000, settings: { pollMinSeconds: 1, pollMaxSeconds: 10, pollFraction: 0.1 } }),
    ).toBe(1);
  });

  it('treats a server clock behind created_at as age 0', () => {
    expect(nextPollDelay({ createdAt: 10_000, expiresAt: DAY * 1000, serverNow: 0, settings: DEFAULTS })).toBe(30);
  });
});

describe('simulatePolling with the default settings', () => {
  it('polls a 24 h batch at most 200 times and sees its expiry within seconds', () => {
    const run = simulatePolling(DAY, DEFAULTS);
    expect(run.polls).toBeLessThanOrEqual(200);
    expect(run.noticeDelaySeconds).toBeLessThanOrEqual(5);
  });

  it('notices any end within max(60 s, 10 % of the time it took)', () => {
    for (let duration = 1; duration <= DAY; duration += 97) {
      const run = simulatePolling(duration, DEFAULTS);
      expect(run.noticeDelaySeconds, `batch of ${duration} s`).toBeLessThanOrEqual(Math.max(60, 0.1 * duration));
      expect(run.polls, `batch of ${duration} s`).toBeLessThanOrEqual(200);
    }
  });

  it('a batch that ends as the first poll comes costs one poll', () => {
    expect(simulatePolling(30, DEFAULTS)).toEqual({ polls: 1, noticeDelaySeconds: 0 });
    expect(simulatePolling(31, DEFAULTS)).toEqual({ polls: 2, noticeDelaySeconds: 29 });
  });
});

describe('pollBatch', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  beforeAll(async () => {
    ctx = await startApi({ processingSeconds: 60, batchFaultsBySequence: { 3: { stall: true } } });
  });
  afterAll(() => stopApi(ctx));

  async function submitted(rows: number) {
    const job = await seedJob(aws, { chunks: [requests(rows)] });
    const deps = { s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: pipelineConfig(aws) };
    const submit = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps);
    return { job, deps, ref: { jobId: job.jobId, chunk: 0, attempt: 1, batchId: submit.batchId! } };
  }

  it('records each look at the batch on the chunk attempt, and says when it ended', async () => {
    const { deps, ref } = await submitted(3);
    ctx.sim.advance(10);
    expect(await pollBatch(ref, deps)).toEqual({ ...ref, ended: false, waitSeconds: 30, watch: false });
    let chunk = await readChunkItem(aws, ref.jobId, 0);
    expect(chunk.status).toBe('in_progress');
    expect(chunk.attempts[0]).toMatchObject({
      polls: 1,
      processingStatus: 'in_progress',
      requestCounts: { processing: 3, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
    });

    ctx.sim.advance(120);
    expect(await pollBatch(ref, deps)).toEqual({ ...ref, ended: true, waitSeconds: 0, watch: false });
    chunk = await readChunkItem(aws, ref.jobId, 0);
    expect(chunk.status).toBe('collecting');
    expect(chunk.attempts[0]).toMatchObject({
      polls: 2,
      processingStatus: 'ended',
      requestCounts: { processing: 0, succeeded: 3, errored: 0, canceled: 0, expired: 0 },
    });
    expect(chunk.attempts[0]!.endedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('cancels the batch once when the job asks to stop', async () => {
    const { deps, ref } = await submitted(2);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(ref.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
    const cancelsBefore = ctx.sim.stats().calls.cancel;
    ctx.sim.advance(5);
    await pollBatch(ref, deps);
    const chunk = await readChunkItem(aws, ref.jobId, 0);
    expect(chunk.attempts[0]!.processingStatus).not.toBe('in_progress');
    expect(chunk.attempts[0]!.cancelSentAt).toBeDefined();
    expect(ctx.sim.stats().calls.cancel).toBe(cancelsBefore + 1);

    ctx.sim.advance(120);
    const last = await pollBatch(ref, deps);
    expect(last.ended).toBe(true);
    expect(ctx.sim.stats().calls.cancel).toBe(cancelsBefore + 1);
    expect((await ctx.api.retrieve(ref.batchId)).request_counts.canceled + (await ctx.api.retrieve(ref.batchId)).request_counts.succeeded).toBe(2);
  });

  it('waits longer as a batch ages, and sees it end at its expiry', async () => {
    const { deps, ref } = await submitted(2); // the third batch of this file: it stalls
    ctx.sim.advance(HOUR);
    const hourOld = await pollBatch(ref, deps);
    expect(hourOld.ended).toBe(false);
    expect(hourOld.waitSeconds).toBeGreaterThanOrEqual(359);
    expect(hourOld.waitSeconds).toBeLessThanOrEqual(360);

    ctx.sim.advance(DAY - HOUR - 100);
    const nearExpiry = await pollBatch(ref, deps);
    expect(nearExpiry.waitSeconds).toBeGreaterThanOrEqual(100);
    expect(nearExpiry.waitSeconds).toBeLessThanOrEqual(106);

    ctx.sim.advance(nearExpiry.waitSeconds);
    expect((await pollBatch(ref, deps)).ended).toBe(true);
    expect((await readChunkItem(aws, ref.jobId, 0)).attempts[0]!.requestCounts).toEqual({
      processing: 0,
      succeeded: 0,
      errored: 0,
      canceled: 0,
      expired: 2,
    });
  });

  it('carries on when the cancel is refused (a 400) while the batch still runs, recording no cancel, and sees the end later', async () => {
    const { deps, ref } = await submitted(2);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(ref.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
    ctx.sim.setHttpFaults([{ endpoint: 'cancel', status: 400, times: 1 }]);
    ctx.sim.advance(5);
    expect(await pollBatch(ref, deps)).toMatchObject({ ...ref, ended: false });
    expect((await readChunkItem(aws, ref.jobId, 0)).attempts[0]!.cancelSentAt).toBeUndefined();
    ctx.sim.setHttpFaults([]);

    ctx.sim.advance(120);
    expect((await pollBatch(ref, deps)).ended).toBe(true);
  });

  it('records the end at once when the batch ended between its retrieve and a cancel refused with a 400', async () => {
    const { deps, ref } = await submitted(2);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(ref.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });
    ctx.sim.advance(5);
    ctx.sim.setHttpFaults([{ endpoint: 'cancel', status: 400, times: 1 }]);
    // The batch ends while the cancel is on its way (the real client over HTTP, with the clock moved first).
    const endsOnCancel = new Proxy(ctx.api, {
      get(target, property) {
        if (property === 'cancel') {
          return (batchId: string) => {
            ctx.sim.advance(120);
            return target.cancel(batchId);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    try {
      expect(await pollBatch(ref, { ...deps, api: endsOnCancel, now: () => Date.parse('2030-01-01T00:00:00Z') })).toEqual({
        ...ref,
        ended: true,
        waitSeconds: 0,
        watch: false,
      });
    } finally {
      ctx.sim.setHttpFaults([]);
    }
    const chunk = await readChunkItem(aws, ref.jobId, 0);
    expect(chunk.status).toBe('collecting');
    expect(chunk.attempts[0]).toMatchObject({ processingStatus: 'ended', cancelSentAt: '2030-01-01T00:00:00.000Z' });
  });

  it('waits on a refused key (401) without failing the chunk, records since when, and clears it once the key is taken', async () => {
    const { deps, ref } = await submitted(2);
    const created = Date.parse((await readChunkItem(aws, ref.jobId, 0)).attempts[0]!.createdAt!);
    const after = (minutes: number) => ({ ...deps, now: () => created + minutes * 60_000 });
    const iso = (minutes: number) => new Date(created + minutes * 60_000).toISOString();
    ctx.sim.setHttpFaults([{ endpoint: 'retrieve', status: 401, times: 2 }]);
    try {
      expect(await pollBatch(ref, after(1))).toEqual({ ...ref, ended: false, waitSeconds: deps.config.pollMaxSeconds, watch: false });
      expect(await pollBatch(ref, after(16))).toEqual({ ...ref, ended: false, waitSeconds: deps.config.pollMaxSeconds, watch: false });
    } finally {
      ctx.sim.setHttpFaults([]);
    }
    let chunk = await readChunkItem(aws, ref.jobId, 0);
    expect(chunk.status).toBe('in_progress');
    // Since the first refusal, not the last.
    expect(chunk.attempts[0]).toMatchObject({ polls: 2, keyRefusedSince: iso(1), lastPolledAt: iso(16) });

    expect((await pollBatch(ref, deps)).ended).toBe(false);
    chunk = await readChunkItem(aws, ref.jobId, 0);
    expect(chunk.attempts[0]!.keyRefusedSince).toBeUndefined();
  });

  it("fails the chunk with the key's error once the batch is an hour past its expiry and the key is still refused", async () => {
    const { deps, ref } = await submitted(2);
    const { expiresAt } = (await readChunkItem(aws, ref.jobId, 0)).attempts[0]!;
    ctx.sim.setHttpFaults([{ endpoint: 'retrieve', status: 401, times: 1 }]);
    try {
      const late = { ...deps, now: () => Date.parse(expiresAt!) + KEY_REFUSED_PAST_EXPIRY_MS + 1 };
      await expect(pollBatch(ref, late)).rejects.toBeInstanceOf(ApiAuthError);
    } finally {
      ctx.sim.setHttpFaults([]);
    }
  });
  it("never waits past a deadline's cancel time, then cancels the batch still running, once, and records that the deadline did", async () => {
    const { deps, ref } = await submitted(4);
    // The deadline 2 h away on the API's clock with a margin of 2 h less 20 s: the cancel is due in 20 s.
    const deadline = { at: new Date(ctx.sim.now() + 2 * HOUR * 1000).toISOString(), marginSeconds: 2 * HOUR - 20 };
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(ref.jobId), sk: JOB_SK }, { set: { deadline } });
    const cancelsBefore = ctx.sim.stats().calls.cancel;
    const first = await pollBatch(ref, deps);
    expect(first.ended).toBe(false);
    // 20 s, or 21: the API's Date header counts whole seconds.
    expect(first.waitSeconds).toBeGreaterThanOrEqual(20);
    expect(first.waitSeconds).toBeLessThanOrEqual(21);
    expect(ctx.sim.stats().calls.cancel).toBe(cancelsBefore);

    ctx.sim.advance(22);
    await pollBatch(ref, deps);
    const attempt = (await readChunkItem(aws, ref.jobId, 0)).attempts[0]!;
    expect(attempt.cancelSentAt).toBeDefined();
    expect(attempt.deadlineCanceledAt).toBe(attempt.cancelSentAt);
    expect(ctx.sim.stats().calls.cancel).toBe(cancelsBefore + 1);

    ctx.sim.advance(120);
    expect((await pollBatch(ref, deps)).ended).toBe(true);
    expect(ctx.sim.stats().calls.cancel).toBe(cancelsBefore + 1);
  });
});
