import { describe, expect, it } from 'vitest';
import { putItem, queryPartition } from '../../shared/store/dynamo';
import { POLLER_PK, POLLER_SK, WATCH_PK, type PollerHealthItem, type WatchItem } from '../../shared/store/items';
import type { LocalEvent } from '../../local/runtime';
import { ids, request, useLocalStack, writeRequests } from './support';

/**
 * The wait of every chunk attempt on the synthesized definition: AwaitBatch's token stored in a
 * watch, the poller's schedule ticking on the local runtime's timer, SendTaskSuccess through the
 * local AWS shim. At time scale 60 a tick is a real second apart and a heartbeat timeout 15 s: a
 * busy machine's late timer does not push the chunks to the fallback.
 */
describe('waiting for batches through the poller', () => {
  const under = useLocalStack({ timeScale: 60, settings: { maxRequestsPerChunk: 2 }, simulator: { processingSeconds: 90 } });
  const of = <T extends LocalEvent['type']>(type: T, jobId: string) =>
    under.events.filter((event): event is Extract<LocalEvent, { type: T }> => event.type === type && 'jobId' in event && event.jobId === jobId);
  const watches = async () => {
    const found: WatchItem[] = [];
    for await (const watch of queryPartition<WatchItem>(under.stack.dynamo, under.stack.table, WATCH_PK)) found.push(watch);
    return found;
  };

  it('wakes each chunk attempt once its batch has ended, and PollBatch, seeing it ended, sends it to Collect', async () => {
    const file = await writeRequests(under, 'waited.jsonl', ids('w', 6).map(request));
    const created = under.stack.simulator!.stats().batchesCreated.length;

    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);

    expect(outcome.status).toBe('succeeded');
    const batches = under.stack.simulator!.stats().batchesCreated.length - created;
    expect(batches).toBe(3);
    const woken = of('batch-woken', jobId);
    expect(woken.map((event) => event.reason ?? event.error)).toEqual(['ended', 'ended', 'ended']);
    // One PollBatch per attempt, which sees the batch ended.
    expect(of('batch-polled', jobId).map((event) => event.ended)).toEqual([true, true, true]);
    // Every token settled; the poller deleted the watches it woke.
    expect(under.stack.taskTokens.openTokens()).toEqual([]);
    expect(await watches()).toEqual([]);
    expect(under.stack.simulator!.stats().batchesCreated.length - created).toBe(batches);
  });

  it("while the poller's health record is stale, the arm refuses (PollerUnavailable) and the chunks poll on the Wait loop", async () => {
    const poller = under.stack.poller!;
    // Once a tick in flight has ended: on a busy machine its fresh health record would land after the stale one below.
    await poller.pause();
    try {
      const stale: PollerHealthItem = {
        pk: POLLER_PK,
        sk: POLLER_SK,
        type: 'poller',
        lastTickAt: new Date(Date.now() - 3_600_000).toISOString(),
        watches: 0,
        listCalls: 0,
        retrieves: 0,
        woken: 0,
        heartbeats: 0,
        dropped: 0,
        errors: 0,
      };
      await putItem(under.stack.dynamo, under.stack.table, stale);
      const file = await writeRequests(under, 'fallback.jsonl', ids('f', 4).map(request));

      const jobId = await under.stack.submitFile(file);
      const outcome = await under.stack.waitForJob(jobId);

      expect(outcome.status).toBe('succeeded');
      expect(of('batch-woken', jobId).map((event) => event.error)).toEqual(['PollerUnavailable', 'PollerUnavailable']);
      const polled = of('batch-polled', jobId);
      expect(polled.every((event) => event.watch === false)).toBe(true);
      expect(polled.filter((event) => event.ended)).toHaveLength(2);
      expect(await watches()).toEqual([]);
    } finally {
      poller.resume();
    }
  });

  it('after the poller is back, PollBatch answers watch again and chunks wait on it', async () => {
    await under.stack.poller!.tick();
    const file = await writeRequests(under, 'back.jsonl', ids('b', 2).map(request));
    const jobId = await under.stack.submitFile(file);
    const outcome = await under.stack.waitForJob(jobId);
    expect(outcome.status).toBe('succeeded');
    expect(of('batch-woken', jobId).map((event) => event.reason)).toEqual(['ended']);
  });
});
