/**
 * The poller: one tick a minute (EventBridge Scheduler, reserved concurrency 1) for every batch in
 * flight, instead of one Wait → Poll loop per chunk. A tick
 *
 *   1. reads every watch (one strongly consistent Query of the WATCH partition, sorted by expiry);
 *   2. lists batches newest first, 1,000 a page, until it has seen every watched batch or passed
 *      the oldest one's created_at, and retrieves (at most MAX_RETRIEVES_PER_TICK) what the pages
 *      missed;
 *   3. wakes each watch whose batch has ended (SendTaskSuccess with the batch's snapshot: ids,
 *      status and counts, never row data), and each whose job has a cancel to forward, then deletes
 *      the watch on condition that it still holds the token it woke;
 *   4. heartbeats the others every HEARTBEAT_PERIODS ticks, whatever the API said (so an API
 *      outage keeps chunks waiting rather than failing over) — unless the API refused the key
 *      (401/403): then no heartbeats, so within 15 minutes the chunks' PollBatch takes over and
 *      waits for a valid key as it always has (ApiKeyRefused, its alarm, `batchline status`);
 *   5. wakes each chunk waiting out a retry backoff (AwaitRetry) whose job has a cancel request, so
 *      the cancel takes effect now rather than when the backoff ends, and drops the retry watches
 *      whose backoff is over (their task ended by its own timeout);
 *   6. writes its health record, which the arm and PollBatch read.
 *
 * A wake is a hint: PollBatch decides. Comparing current state every tick (level, not edge), a
 * missed tick or a lost watch only delays a wake, and a token settles once, so a doubled send is
 * refused (TaskTimedOut) and nothing is woken twice. The poller creates nothing at the API.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import { ApiAuthError, ApiNotFound } from '../anthropic/errors';
import type { MessageBatch } from '../anthropic/types';
import type { PipelineConfig, PollerConfig } from '../config';
import { quietObserver, type Observer } from '../observability';
import { deleteItemIf, putItem, queryPartition } from '../store/dynamo';
import { POLLER_PK, POLLER_SK, WATCH_PK, type JobItem, type PollerHealthItem, type RetryWatchItem, type WatchItem } from '../store/items';
import { isoAt, readJob } from './chunk-state';
import type { WakeOutput } from './contract';
import { readPollerHealth, watchKey } from './watch';
import { clockOf } from '../clock';
import { deadlineCancelDue } from './deadline';

/** The list endpoint's largest page. */
export const LIST_PAGE_LIMIT = 1000;
/** List pages per tick at most: 5,000 batches created in the window (more would outrun the tick). */
export const MAX_LIST_PAGES = 5;
/** Watched batches the pages missed (deleted, another workspace's key, a lagging list) retrieved per tick. */
export const MAX_RETRIEVES_PER_TICK = 10;
/** A watch is heartbeated once every this many ticks (300 s at 1 a minute; AwaitBatch allows 900 s). */
export const HEARTBEAT_PERIODS = 5;
/** SendTask* calls in flight at once. */
const SEND_CONCURRENCY = 16;

/** Token errors that mean the task is closed (settled, timed out, its execution stopped) or never was: drop the watch. */
export const CLOSED_TOKEN_ERRORS: ReadonlySet<string> = new Set(['TaskTimedOut', 'InvalidToken', 'TaskDoesNotExist']);

/** Step Functions' task callbacks (SendTaskSuccess, SendTaskHeartbeat), as the handler's SFN client makes them. */
export interface TaskCallbacks {
  success(taskToken: string, output: string): Promise<void>;
  heartbeat(taskToken: string): Promise<void>;
}

export interface PollerDeps {
  dynamo: DynamoDBClient;
  api: BatchesApi;
  callbacks: TaskCallbacks;
  config: Pick<PipelineConfig, 'table'> & PollerConfig;
  now?: () => number;
  observer?: Observer;
}

export interface TickReport {
  watches: number;
  listCalls: number;
  retrieves: number;
  /** Watches woken because their batch ended (or is gone). */
  woken: number;
  /** Watches woken to forward a job's cancel request. */
  cancels: number;
  heartbeats: number;
  /** Watches whose token was closed, deleted. */
  dropped: number;
  /** Calls that failed and are tried again next tick (list, retrieve, sends, job reads). */
  errors: number;
}

export async function pollerTick(deps: PollerDeps): Promise<TickReport> {
  const { dynamo, api, callbacks, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  const report: TickReport = { watches: 0, listCalls: 0, retrieves: 0, woken: 0, cancels: 0, heartbeats: 0, dropped: 0, errors: 0 };
  const previous = await readPollerHealth(dynamo, config.table);
  const watches: WatchItem[] = [];
  const backoffs: RetryWatchItem[] = [];
  for await (const watch of queryPartition<WatchItem | RetryWatchItem>(dynamo, config.table, WATCH_PK)) {
    if ('wait' in watch && watch.wait === 'retry') backoffs.push(watch);
    else watches.push(watch as WatchItem);
  }
  report.watches = watches.length + backoffs.length;
  if (backoffs.length > 0) await endBackoffs(backoffs, deps, report);

  if (watches.length > 0) {
    const { seen, keyRefused } = await lookUp(watches, api, report, observer);
    const pending: WatchItem[] = [];
    const wakes: Array<{ watch: WatchItem; output: WakeOutput }> = [];
    for (const watch of watches) {
      const batch = seen.get(watch.batchId);
      if (batch === 'gone') wakes.push({ watch, output: { reason: 'ended' } });
      else if (batch?.processing_status === 'ended') wakes.push({ watch, output: { reason: 'ended', batch: snapshot(batch) } });
      else pending.push(watch);
    }
    // A cancel request waits for no poll now: wake the chunk, and PollBatch forwards it as before.
    // So does a deadline's cancel, once due on the API's clock (PollBatch decides it again).
    const jobs = await readJobs(pending, deps, report);
    const apiNow = api.lastServerTime() ?? now();
    const waiting: WatchItem[] = [];
    for (const watch of pending) {
      const job = jobs.get(watch.jobId);
      if (job?.cancelRequested === true && !watch.cancelSentAt) wakes.push({ watch, output: { reason: 'cancel' } });
      else if (job && !watch.cancelSentAt && deadlineCancelDue(job, apiNow)) wakes.push({ watch, output: { reason: 'deadline' } });
      else waiting.push(watch);
    }
    await eachLimited(wakes, async ({ watch, output }) => {
      const sent = await settle(() => callbacks.success(watch.taskToken, JSON.stringify(output)), report);
      if (sent === 'retry') return;
      if (sent === 'sent') {
        if (output.reason !== 'ended') report.cancels += 1;
        else report.woken += 1;
      }
      // Only the watch that held this token: a re-arm since then stored a new one under the same key.
      await dropWatch(watch, deps);
    });
    const period = config.periodSeconds * 1000 * HEARTBEAT_PERIODS;
    const lastTick = previous ? Date.parse(previous.lastTickAt) : Number.NaN;
    const at = now();
    const due = (watch: WatchItem) => {
      const armed = Date.parse(watch.armedAt);
      return !Number.isFinite(lastTick) || Math.floor((at - armed) / period) > Math.floor((lastTick - armed) / period);
    };
    if (keyRefused) {
      observer.metric('ApiKeyRefused', 1);
      observer.error('the API refuses the key (401/403): no heartbeats, so waiting chunks hand over to PollBatch within 15 minutes', {
        watches: waiting.length,
      });
    }
    await eachLimited(keyRefused ? [] : waiting.filter(due), async (watch) => {
      const sent = await settle(() => callbacks.heartbeat(watch.taskToken), report);
      if (sent === 'sent') report.heartbeats += 1;
      if (sent === 'closed') await dropWatch(watch, deps);
    });
  }

  const health: PollerHealthItem = { pk: POLLER_PK, sk: POLLER_SK, type: 'poller', lastTickAt: isoAt(now()), ...pick(report) };
  await putItem(dynamo, config.table, health);
  observer.metric('PollerTicks', 1);
  if (report.woken + report.cancels > 0) observer.metric('PollerWakes', report.woken + report.cancels);
  if (report.errors > 0) observer.metric('PollerErrors', report.errors);
  if (report.watches > 0 || report.errors > 0) observer.info('ticked', { ...report });
  return report;
}

/**
 * Retry backoffs: a job canceled wakes its chunks now (SubmitChunk then creates nothing and the rows
 * end canceled); a backoff over by a period has ended by its task's timeout, so its watch goes.
 */
async function endBackoffs(backoffs: RetryWatchItem[], deps: PollerDeps, report: TickReport): Promise<void> {
  const jobs = await readJobs(backoffs, deps, report);
  const at = clockOf(deps)();
  await eachLimited(backoffs, async (watch) => {
    if (jobs.get(watch.jobId)?.cancelRequested === true) {
      const output: WakeOutput = { reason: 'cancel' };
      const sent = await settle(() => deps.callbacks.success(watch.taskToken, JSON.stringify(output)), report);
      if (sent === 'retry') return;
      if (sent === 'sent') report.cancels += 1;
      await dropWatch(watch, deps);
    } else if (Date.parse(watch.dueAt) + deps.config.periodSeconds * 1000 < at) {
      await dropWatch(watch, deps);
    }
  });
}

/** Deletes a watch only while it holds the token it held when read: a re-arm since then stored a new one under the same key. */
async function dropWatch(watch: WatchItem | RetryWatchItem, deps: PollerDeps): Promise<void> {
  await deleteItemIf(deps.dynamo, deps.config.table, watchKey(watch), { expression: 'taskToken = :token', values: { ':token': watch.taskToken } });
}

/** The watched batches as the API has them: listed newest first, then retrieved one by one if missed. */
async function lookUp(
  watches: WatchItem[],
  api: BatchesApi,
  report: TickReport,
  observer: Observer,
): Promise<{ seen: Map<string, MessageBatch | 'gone'>; keyRefused: boolean }> {
  const seen = new Map<string, MessageBatch | 'gone'>();
  const wanted = new Set(watches.map((watch) => watch.batchId));
  const oldest = Math.min(...watches.map((watch) => Date.parse(watch.createdAt)));
  let afterId: string | undefined;
  try {
    while (seen.size < wanted.size && report.listCalls < MAX_LIST_PAGES) {
      const page = await api.listPage({ limit: LIST_PAGE_LIMIT, afterId });
      report.listCalls += 1;
      for (const batch of page.data) if (wanted.has(batch.id)) seen.set(batch.id, batch);
      const last = page.data.at(-1);
      if (!page.has_more || !last || !page.last_id || Date.parse(last.created_at) < oldest) break;
      afterId = page.last_id;
    }
  } catch (error) {
    report.errors += 1;
    if (error instanceof ApiAuthError) return { seen, keyRefused: true };
    observer.warn('the list failed: no wakes this tick, heartbeats go on', { error: (error as Error).name });
    return { seen, keyRefused: false };
  }
  // Sorted by expiry: the batches due soonest are looked up first.
  const missed = watches.filter((watch) => !seen.has(watch.batchId)).slice(0, MAX_RETRIEVES_PER_TICK);
  for (const watch of missed) {
    report.retrieves += 1;
    try {
      api.rememberCreated(watch.batchId, watch.createdAt);
      seen.set(watch.batchId, await api.retrieve(watch.batchId));
    } catch (error) {
      // Gone: wake the chunk, and PollBatch fails it as it fails any batch that is gone.
      if (error instanceof ApiNotFound) seen.set(watch.batchId, 'gone');
      else report.errors += 1;
    }
  }
  return { seen, keyRefused: false };
}

async function readJobs(watches: Array<Pick<WatchItem, 'jobId'>>, deps: PollerDeps, report: TickReport): Promise<Map<string, JobItem>> {
  const jobs = new Map<string, JobItem>();
  await eachLimited([...new Set(watches.map((watch) => watch.jobId))], async (jobId) => {
    try {
      jobs.set(jobId, await readJob(deps.dynamo, deps.config.table, jobId));
    } catch {
      report.errors += 1;
    }
  });
  return jobs;
}

/** sent; closed (the token is spent or unknown: drop the watch); retry (throttled or failed: next tick). */
async function settle(send: () => Promise<void>, report: TickReport): Promise<'sent' | 'closed' | 'retry'> {
  try {
    await send();
    return 'sent';
  } catch (error) {
    if (CLOSED_TOKEN_ERRORS.has((error as Error).name)) {
      report.dropped += 1;
      return 'closed';
    }
    report.errors += 1;
    return 'retry';
  }
}

function snapshot(batch: MessageBatch): NonNullable<WakeOutput['batch']> {
  const { id, processing_status, request_counts, created_at, expires_at, ended_at } = batch;
  return { id, processing_status, request_counts, created_at, expires_at, ended_at };
}

function pick(report: TickReport): Omit<PollerHealthItem, 'pk' | 'sk' | 'type' | 'lastTickAt'> {
  const { watches, listCalls, retrieves, woken, heartbeats, dropped, errors } = report;
  return { watches, listCalls, retrieves, woken: woken + report.cancels, heartbeats, dropped, errors };
}

async function eachLimited<T>(items: T[], run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(SEND_CONCURRENCY, items.length) }, worker));
}
