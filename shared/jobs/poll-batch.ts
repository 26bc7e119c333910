/**
 * Poll: one look at a chunk's batch. Records its progress on the chunk attempt, forwards a job's
 * cancel request to the API, and says how long to wait before the next look.
 *
 * Polling is adaptive (docs/design.md: a 24 h batch must fit a Step Functions history): the wait grows
 * with the batch's age — a batch that has run for an hour is unlikely to end in the next minute —
 * so a 24 h batch costs ~130 polls with the defaults while an early end is still noticed within
 * about a tenth of the time it took. Age is measured on the API's clock, so a simulator whose clock
 * runs fast drives the same schedule.
 *
 * A key the API refuses (401/403: revoked or rotated while batches run) does not fail the chunk:
 * the batch keeps running, and billing, at the API whatever we do, and failing the chunk would
 * leave its results uncollected. Poll says so loudly (an error log line, the ApiKeyRefused metric
 * and its alarm, `batchline status`) and looks again after pollMaxSeconds, until a fixed key is
 * taken (the secret is re-read every 5 minutes) or the batch is KEY_REFUSED_PAST_EXPIRY_MS past
 * its expiry — then the chunk fails with the key's error.
 *
 * With the poller (shared/jobs/poller.ts), Poll runs after a wake, a heartbeat timeout or a Wait,
 * and still decides: a wake is only a hint. Its `watch` says whether the next wait is AwaitBatch
 * (the poller ticked lately and the attempt is under WATCH_ARMS_CAP arms) or the Wait loop. A wake
 * that carries the batch already ended (terminal, so it cannot be stale) spares the retrieve.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import type { PipelineConfig, PollerConfig } from '../config';
import type { MessageBatch } from '../anthropic/types';
import { quietObserver, type Observer } from '../observability';
import { ApiAuthError } from '../anthropic/errors';
import type { ChunkAttempt, ChunkItem } from '../store/items';
import { cancelBatch, type CancelResult } from './cancel';
import { attemptOf, ChunkStateConflict, chunkCondition, isoAt, patchAttempt, readChunk, readJob, updateChunk } from './chunk-state';
import type { PollInput, PollOutput } from './contract';
import { pollerHealthy, readPollerHealth, WATCH_ARMS_CAP } from './watch';
import { clockOf } from '../clock';
import { deadlineCancelDue, deadlineOf } from './deadline';

export interface PollSettings {
  pollMinSeconds: number;
  pollMaxSeconds: number;
  pollFraction: number;
}

/** The batch ends at expires_at at the latest; poll this soon after it, not a full interval later. */
export const EXPIRY_SLACK_SECONDS = 5;

/** Epoch ms, or an RFC 3339 timestamp as the API writes them. */
export type Instant = number | string;

const toMs = (t: Instant): number => (typeof t === 'number' ? t : Date.parse(t));

export interface PollDelayInputs {
  createdAt: Instant;
  expiresAt: Instant;
  /** Now on the API's clock. */
  serverNow: Instant;
  settings: PollSettings;
}

/**
 * Seconds until the next poll: clamp(pollFraction × age, pollMinSeconds, pollMaxSeconds), but never
 * later than expires_at + EXPIRY_SLACK_SECONDS. Whole seconds (a Wait state's unit), at least 1,
 * rounded down so the wait never exceeds the fraction of the age.
 */
export function nextPollDelay({ createdAt, expiresAt, serverNow, settings }: PollDelayInputs): number {
  const now = toMs(serverNow);
  const ageSeconds = Math.max(0, (now - toMs(createdAt)) / 1000);
  let delay = Math.min(Math.max(settings.pollFraction * ageSeconds, settings.pollMinSeconds), settings.pollMaxSeconds);
  const untilExpiry = (toMs(expiresAt) - now) / 1000 + EXPIRY_SLACK_SECONDS;
  // Past expiry (+ slack) the batch is due to end any moment: look again after the shortest wait.
  delay = untilExpiry > 0 ? Math.min(delay, untilExpiry) : Math.min(delay, settings.pollMinSeconds);
  return Math.max(1, Math.floor(delay));
}

export interface PollingRun {
  /** Polls until the end was seen (the one that saw it included). */
  polls: number;
  /** Seconds between the batch's end and the poll that saw it. */
  noticeDelaySeconds: number;
}

/**
 * Replays the schedule for a batch that ends `durationSeconds` after create (capped at its expiry):
 * the first wait is Submit's, then one poll per wait. Pure, for tests and benchmarks.
 */
export function simulatePolling(durationSeconds: number, settings: PollSettings, expiresAfterSeconds = 86_400): PollingRun {
  const expiresAt = expiresAfterSeconds * 1000;
  const end = Math.min(durationSeconds, expiresAfterSeconds);
  let now = 0;
  let polls = 0;
  for (;;) {
    now += nextPollDelay({ createdAt: 0, expiresAt, serverNow: now * 1000, settings });
    polls += 1;
    if (now >= end) return { polls, noticeDelaySeconds: now - end };
  }
}

export interface PollDeps {
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: Pick<PipelineConfig, 'table'> & PollSettings;
  /** The poller's staleness bound; without it Poll never answers `watch` (the stack has no poller). */
  poller?: Pick<PollerConfig, 'staleSeconds'>;
  /** The local clock (epoch ms), for the record's timestamps. */
  now?: () => number;
  /** Where the step's log lines go (the handler's invocation). */
  observer?: Observer;
}

/** How long past the batch's expiry a refused key is waited for before the chunk fails. */
export const KEY_REFUSED_PAST_EXPIRY_MS = 60 * 60_000;

export async function pollBatch(input: PollInput, deps: PollDeps): Promise<PollOutput> {
  const { dynamo, api, config } = deps;
  const now = clockOf(deps);
  const [chunk, job, health] = await Promise.all([
    readChunk(dynamo, config.table, input.jobId, input.chunk),
    readJob(dynamo, config.table, input.jobId),
    deps.poller ? readPollerHealth(dynamo, config.table) : undefined,
  ]);
  const { record, index } = attemptOf(chunk, input.attempt);
  if (record.batchId !== input.batchId) {
    throw new ChunkStateConflict(
      `chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId} has batch ${record.batchId ?? 'none'}, not ${input.batchId}`,
    );
  }
  // A fresh container has not seen the create: tell the client, so an early 404 is retried.
  if (record.createdAt) api.rememberCreated(input.batchId, record.createdAt);

  let seen: Awaited<ReturnType<BatchesApi['retrieveWithTime']>>;
  const snapshot = input.wake?.batch;
  if (snapshot && snapshot.id === input.batchId && snapshot.processing_status === 'ended' && typeof snapshot.ended_at === 'string') {
    seen = { value: snapshot as MessageBatch, serverTime: Date.parse(snapshot.ended_at), requestId: null };
  } else {
    try {
      seen = await api.retrieveWithTime(input.batchId);
    } catch (error) {
      if (!(error instanceof ApiAuthError)) throw error;
      return keyRefused(input, chunk, index, record, error, deps);
    }
  }
  let batch = seen.value;
  let cancelSentAt = record.cancelSentAt;
  let deadlineCanceledAt = record.deadlineCanceledAt;
  // The deadline is near and the batch still runs: canceled, its finished rows kept, the rest sent synchronously (deadline.ts).
  const forDeadline = batch.processing_status === 'in_progress' && deadlineCancelDue(job, seen.serverTime);
  const cancelNow = (job.cancelRequested === true && batch.processing_status === 'in_progress') || forDeadline;
  let cancel: CancelResult | undefined;
  if (cancelNow) {
    cancel = await cancelBatch(api, input.batchId);
    // Deleted since the retrieve: the chunk fails as for any batch that is gone.
    if (cancel.outcome === 'gone') throw cancel.error;
    // Refused while still in progress: the next poll asks again. Ended meanwhile: this poll records the end.
    batch = cancel.batch;
    if (cancel.outcome !== 'refused') {
      cancelSentAt = isoAt(now());
      if (forDeadline) deadlineCanceledAt ??= cancelSentAt;
    }
  }
  const ended = batch.processing_status === 'ended';
  await updateChunk(dynamo, config.table, chunk, {
    set: {
      attempts: patchAttempt(chunk, index, {
        polls: (record.polls ?? 0) + 1,
        processingStatus: batch.processing_status,
        requestCounts: batch.request_counts,
        lastPolledAt: isoAt(now()),
        endedAt: batch.ended_at ?? undefined,
        cancelSentAt,
        deadlineCanceledAt,
        keyRefusedSince: undefined,
      }),
      status: ended ? 'collecting' : 'in_progress',
      updatedAt: isoAt(now()),
    },
    condition: chunkCondition(`#ca = :attempt AND #att[${index}].#bid = :batchId`, { ':attempt': input.attempt, ':batchId': input.batchId }),
  });
  const waitSeconds = ended
    ? 0
    : untilDeadlineCancel(
        job,
        seen.serverTime,
        nextPollDelay({ createdAt: batch.created_at, expiresAt: batch.expires_at, serverNow: seen.serverTime, settings: config }),
      );
  const watch = !ended && deps.poller !== undefined && (record.arms ?? 0) < WATCH_ARMS_CAP && pollerHealthy(health, now(), deps.poller);
  (deps.observer ?? quietObserver).info('polled', {
    woken: input.wake?.reason ?? null,
    watch,
    status: batch.processing_status,
    counts: batch.request_counts,
    ended,
    waitSeconds,
    polls: (record.polls ?? 0) + 1,
    cancelSent: cancelNow,
    ...(forDeadline ? { deadlineCancel: true } : {}),
    ...(cancel ? { cancel: cancel.outcome } : {}),
  });
  return { jobId: input.jobId, chunk: input.chunk, attempt: input.attempt, batchId: input.batchId, ended, waitSeconds, watch };
}

/** A wait that would pass the moment a deadline's cancel is due ends then instead (whole seconds, at least 1). */
function untilDeadlineCancel(job: Parameters<typeof deadlineOf>[0], apiNow: number, waitSeconds: number): number {
  const deadline = deadlineOf(job);
  if (!deadline || apiNow >= deadline.cancelAt) return waitSeconds;
  return Math.max(1, Math.min(waitSeconds, Math.ceil((deadline.cancelAt - apiNow) / 1000)));
}

/** The API refused the key on a poll: recorded and said, and the chunk waits (see the header). */
async function keyRefused(input: PollInput, chunk: ChunkItem, index: number, record: ChunkAttempt, error: ApiAuthError, deps: PollDeps): Promise<PollOutput> {
  const now = clockOf(deps)();
  const observer = deps.observer ?? quietObserver;
  const expiresAt = record.expiresAt ? Date.parse(record.expiresAt) : Number.POSITIVE_INFINITY;
  if (now > expiresAt + KEY_REFUSED_PAST_EXPIRY_MS) throw error;
  const since = record.keyRefusedSince ?? isoAt(now);
  await updateChunk(deps.dynamo, deps.config.table, chunk, {
    set: {
      attempts: patchAttempt(chunk, index, { polls: (record.polls ?? 0) + 1, lastPolledAt: isoAt(now), keyRefusedSince: since }),
      updatedAt: isoAt(now),
    },
    condition: chunkCondition(`#ca = :attempt AND #att[${index}].#bid = :batchId`, { ':attempt': input.attempt, ':batchId': input.batchId }),
  });
  observer.metric('ApiKeyRefused', 1);
  observer.error('the API refuses the key (401/403): the batch runs on at the API; put a valid key in the secret and the job goes on', {
    status: error.status,
    keyRefusedSince: since,
    waitSeconds: deps.config.pollMaxSeconds,
  });
  // The Wait loop, not the poller: its list calls would be refused too.
  return {
    jobId: input.jobId,
    chunk: input.chunk,
    attempt: input.attempt,
    batchId: input.batchId,
    ended: false,
    waitSeconds: deps.config.pollMaxSeconds,
    watch: false,
  };
}
