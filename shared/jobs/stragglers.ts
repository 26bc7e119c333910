/**
 * RunStragglers: the rows a deadline's cancel left unfinished (Collect wrote them as the next
 * attempt's requests, an attempt with `sync` and no batch) sent as synchronous Messages calls, at
 * standard price, until every row is answered or the deadline passes (docs/architecture.md,
 * "Deadline fallback").
 *
 * - **Bounded.** One invocation claims slices of SLICE_ROWS rows (one call per worker, so a slice
 *   lasts one call), until ROWS_PER_INVOCATION rows or until the time it has left, less RESERVE_MS,
 *   would not cover one more call (the client's timeout); each call is aborted when only RESERVE_MS
 *   is left, so the slice is stored before the Lambda is stopped. The workflow runs it again while
 *   rows remain and the deadline has not passed, at most MAX_INVOCATIONS times
 *   (infra/history-budget.ts counts them).
 * - **Never sent twice.** A slice is claimed on the attempt's record (a conditional write of
 *   `sync.claimed`) before any of its rows is sent, and its answers are stored (one object per slice)
 *   before it is marked `stored`. A re-run sends only rows past `claimed`. A slice claimed but never
 *   stored (the invocation was killed mid-slice) cannot say which of its calls were made: its rows end
 *   errored SYNC_OUTCOME_UNKNOWN, final, and are not sent again; so does a call aborted for time.
 * - **The deadline.** Compared on the API's clock (each response's `Date`): a row not sent by then is
 *   not sent, and ends `expired`. A call already under way when it passes is waited for and kept.
 * - **Stopping early.** Before each claim the job is read again: the user's cancel stops the step
 *   (rows never claimed end `canceled`), and a slice whose worst cost would take the job past its
 *   budget is not sent (`budget_exceeded`). Out of invocations with the deadline ahead, the rows left
 *   end SYNC_STEPS_EXHAUSTED. A refused key fails the step (ApiKeyRefused); a step that fails is
 *   settled by FinalizeChunk through finishStragglers.
 * - **The outcome.** Once done, the attempt's results file is written as a batch's would be (one
 *   `{custom_id, result}` line per row, in the attempt's order) with row records and counts, so
 *   FinalizeChunk orders it like any collected attempt; rows carry `batch_id` null and cost at
 *   standard rates.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi, MessagesApi } from '../anthropic/api';
import { setTimeout as delay } from 'node:timers/promises';
import { AnthropicError, ApiAuthError } from '../anthropic/errors';
import type { BatchResult, MessageParams } from '../anthropic/types';
import { clockOf } from '../clock';
import type { PipelineConfig } from '../config';
import { EstimateTotals, readMessageUsage, roundUsd, tokenTotals } from '../cost/cost';
import { priceTableFromConfig } from '../cost/prices';
import { errorFields, quietObserver, type Observer } from '../observability';
import { ConditionFailed, updateItem } from '../store/dynamo';
import { ttlAfter, type ChunkItem, type JobItem, type SyncProgress } from '../store/items';
import { jobKeys } from '../store/keys';
import { ObjectWriter, objectExists } from '../store/s3';
import { objectLines, requestCustomIds, requestEntries, requestPositions } from './chunk-files';
import { attemptOf, ChunkStateConflict, chunkCondition, isoAt, jobKey, patchAttempt, readChunk, readJob, updateChunk } from './chunk-state';
import { ApiKeyRefused } from './collect-results';
import type { StragglersInput, StragglersOutput } from './contract';
import { deadlineOf } from './deadline';
import { BUDGET_EXCEEDED, rowCostUsd, type ResultStatus } from './outcome';
import { rowShardsOf, RowRecordWriter } from './row-records';

/** Calls in flight at once. */
export const CONCURRENCY = 8;
/** Rows claimed at once: one call per worker, so a slice lasts one call; what a killed invocation may leave unknown. */
export const SLICE_ROWS = CONCURRENCY;
/** Rows one invocation sends at most. */
export const ROWS_PER_INVOCATION = 5000;
/** The time an invocation allows itself when it cannot ask its Lambda (getRemainingTimeInMillis): the function's 900 s, less a minute. */
export const INVOCATION_MS = 14 * 60_000;
/** Kept back at the end of an invocation: calls still under way are aborted then, and the slice stored and the step answered in it. */
export const RESERVE_MS = 60_000;
/** The longest one call may wait when the client's timeout is not given: the client's default. */
export const CALL_MS = 600_000;
/** Invocations per synchronous attempt at most; past them the rows left end expired (the history budget counts them). */
export const MAX_INVOCATIONS = 6;

/** Times a row still rate limited or overloaded after the client's retries is put back in its slice. */
export const RATE_LIMITED_ROUNDS = 3;
/** The wait before a put-back row is sent again, times its round. */
const RATE_LIMITED_WAIT_MS = 30_000;

/** A row whose synchronous call may have been made by an invocation that was killed before storing its answer. */
export const SYNC_OUTCOME_UNKNOWN = 'sync_outcome_unknown';

export interface StragglersDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  /** The one client: Messages calls, and a retrieve of the canceled batch to read the API's clock. */
  api: MessagesApi & Pick<BatchesApi, 'retrieveWithTime'>;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'rowTtlDays' | 'pricesJson'>;
  now?: () => number;
  observer?: Observer;
  /** The time the invocation has left (the Lambda context's getRemainingTimeInMillis); INVOCATION_MS from the start without it. */
  timeLeftMs?: () => number;
  /** The longest one call may wait (the client's per-call timeout); CALL_MS without it. */
  callMs?: number;
  /** Waits before a rate-limited row is sent again (tests: at once). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<unknown>;
  /** Overrides for tests: rows per slice and per invocation. */
  sliceRows?: number;
  rowsPerInvocation?: number;
}

export async function runStragglers(input: StragglersInput, deps: StragglersDeps): Promise<StragglersOutput> {
  const { dynamo, config } = deps;
  const observer = deps.observer ?? quietObserver;
  const [job, first] = await Promise.all([readJob(dynamo, config.table, input.jobId), readChunk(dynamo, config.table, input.jobId, input.chunk)]);
  let chunk = first;
  const { record, index } = attemptOf(chunk, input.attempt);
  if (!record.sync) throw new ChunkStateConflict(`chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId} is not a synchronous attempt`);
  const out = (done: boolean, remaining: number): StragglersOutput => ({ jobId: input.jobId, chunk: input.chunk, attempt: input.attempt, done, remaining });
  if (record.collectedAt) return out(true, 0);

  const deadline = deadlineOf(job);
  const apiNow = await apiClock(chunk, index, deps);
  const pastDeadline = () => deadline !== undefined && apiNow() >= deadline.at;
  let sync: SyncProgress = { ...record.sync, invocations: record.sync.invocations + 1 };
  chunk = await writeSync(chunk, index, sync, record.sync.claimed, deps);

  const sliceRows = deps.sliceRows ?? SLICE_ROWS;
  const limit = deps.rowsPerInvocation ?? ROWS_PER_INVOCATION;
  const started = Date.now();
  const timeLeft = deps.timeLeftMs ?? (() => INVOCATION_MS - (Date.now() - started));
  // A slice is claimed only while one more call fits before the reserve.
  const callFits = () => timeLeft() - RESERVE_MS >= (deps.callMs ?? CALL_MS);
  let sent = 0;
  let expiredUnsent = 0;
  // The user's cancel stops the step between slices: the job is read again before each claim.
  let canceled = job.cancelRequested === true;
  let current = job;
  const cancelSeen = async () => {
    current = await readJob(dynamo, config.table, input.jobId);
    return (canceled ||= current.cancelRequested === true);
  };
  const prices = priceTableFromConfig(config);
  let budgetStopped: SettledFailure | undefined;
  const requests = requestEntries(deps.s3, config.bucket, input)[Symbol.asyncIterator]();
  try {
    for (let skip = 0; skip < sync.claimed; skip++) await requests.next();
    while (sync.claimed < record.rows && !pastDeadline() && sent < limit && callFits() && !(await cancelSeen())) {
      const start = sync.claimed;
      const end = Math.min(record.rows, start + sliceRows);
      const slice: Array<{ customId: string; params: MessageParams }> = [];
      for (let p = start; p < end; p++) {
        const next = await requests.next();
        if (next.done) throw new ChunkStateConflict(`the requests of chunk ${input.chunk} attempt ${input.attempt} end before row ${p}`);
        const { customId, line } = next.value;
        slice.push({ customId, params: (JSON.parse(line.bytes.toString('utf8')) as { params: MessageParams }).params });
      }
      budgetStopped = overBudget(slice, current, sync, prices);
      if (budgetStopped) {
        observer.warn('not sending: the synchronous calls would take the job past its budget', { rows: record.rows - start });
        break;
      }
      // Claimed before any call: a re-run never sends these rows again.
      sync = { ...sync, claimed: end, slices: [...(sync.slices ?? []), start] };
      chunk = await writeSync(chunk, index, sync, start, deps);
      const outcome = await sendSlice(slice, deps, pastDeadline, AbortSignal.timeout(Math.max(0, timeLeft() - RESERVE_MS)), observer);
      if (outcome.refused && outcome.lines.every((line) => line === undefined || !line.sent)) {
        // Nothing of the slice can have been billed: its claim is given back, for a run with a valid key.
        sync = { ...sync, claimed: start, slices: (sync.slices ?? []).filter((at) => at !== start) };
        chunk = await writeSync(chunk, index, sync, end, deps);
        throw keyRefused(input, outcome.refused);
      }
      const lines = outcome.lines.map((line, i) => line ?? refusedLine(slice[i]!.customId, outcome.refused!));
      sent += lines.filter((line) => line.sent).length;
      expiredUnsent += lines.filter((line) => !line.sent).length;
      await putSlice(input, start, lines, deps);
      const sliceE10 = lines.reduce((sum, line) => sum + Math.round((standardCost(line.result, prices).costUsd ?? 0) * 1e10), 0);
      sync = { ...sync, stored: [...sync.stored, start], spentUsd: (Math.round((sync.spentUsd ?? 0) * 1e10) + sliceE10) / 1e10 };
      chunk = await writeSync(chunk, index, sync, end, deps);
      if (outcome.refused) throw keyRefused(input, outcome.refused);
    }
  } finally {
    await requests.return?.(undefined);
  }

  const remaining = record.rows - sync.claimed;
  const done = remaining === 0 || pastDeadline() || sync.invocations >= MAX_INVOCATIONS || canceled || budgetStopped !== undefined;
  observer.info('ran stragglers', { sent, expiredUnsent, claimed: sync.claimed, rows: record.rows, remaining, invocation: sync.invocations, done });
  if (!done) return out(false, remaining);
  // Out of invocations before the deadline: the rows left were not sent, and the deadline is not why.
  const exhausted = remaining > 0 && !pastDeadline() && !canceled;
  await finish(input, chunk, index, sync, deps, observer, budgetStopped ? { unclaimed: budgetStopped } : exhausted ? { unclaimed: STEPS_EXHAUSTED } : {});
  return out(true, 0);
}

/**
 * Whether a slice's calls, at their worst (max_tokens) and at standard rates, would take the job past
 * its budget: what the job had recorded as paid, plus this attempt's stored answers (not yet in it),
 * plus the slice. Chunks run side by side, so each judges by what the others had recorded.
 */
function overBudget(
  slice: ReadonlyArray<{ params: MessageParams }>,
  job: JobItem,
  sync: SyncProgress,
  prices: ReturnType<typeof priceTableFromConfig>,
): SettledFailure | undefined {
  if (job.maxCostUsd === undefined) return undefined;
  const estimate = new EstimateTotals({ prices });
  for (const row of slice) estimate.add(row.params);
  const estimateUsd = estimate.toJSON().standardTotalUsd;
  const paidUsd = roundUsd((job.paidUsd ?? 0) + (sync.spentUsd ?? 0));
  if (paidUsd + estimateUsd <= job.maxCostUsd) return undefined;
  return {
    type: BUDGET_EXCEEDED,
    message:
      `Not sent: the synchronous calls after the deadline's cancel, estimated at $${estimateUsd.toFixed(4)} at standard rates for the next ${slice.length}, ` +
      `would have taken the job's cost ($${paidUsd.toFixed(4)} paid) past its budget of $${job.maxCostUsd}.`,
  };
}

/** How the rows nobody claimed end when the attempt is settled for a failed step: errored, as the chunk's failure says. */
export interface SettledFailure {
  type: string;
  message: string;
}

/**
 * A synchronous attempt settled without sending anything more: stored answers kept, an unstored
 * slice's rows unknown; unclaimed rows canceled (the reconciler, for a job whose workflow is gone,
 * which has asked the job to stop) or, given `failure` (FinalizeChunk, after RunStragglers failed
 * past its retries), errored as it says, the chunk left `failed`.
 */
export async function finishStragglers(input: StragglersInput, deps: Omit<StragglersDeps, 'api'>, failure?: SettledFailure): Promise<void> {
  const chunk = await readChunk(deps.dynamo, deps.config.table, input.jobId, input.chunk);
  const { record, index } = attemptOf(chunk, input.attempt);
  if (!record.sync) throw new ChunkStateConflict(`chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId} is not a synchronous attempt`);
  if (record.collectedAt) return;
  await finish(input, chunk, index, record.sync, deps, deps.observer ?? quietObserver, failure ? { unclaimed: failure, keepStatus: true } : {});
}

/**
 * The API's clock: read now from a retrieve of the canceled batch (a warm client's last `Date` may be
 * minutes old), then each response's `Date` as the calls come back.
 */
async function apiClock(chunk: ChunkItem, index: number, deps: StragglersDeps): Promise<() => number> {
  const now = clockOf(deps);
  const batchId = chunk.attempts[index - 1]?.batchId;
  const start = batchId ? (await deps.api.retrieveWithTime(batchId)).serverTime : now();
  return () => Math.max(start, deps.api.lastServerTime() ?? start);
}

/** Writes the attempt's sync progress, on condition that nobody claimed past `claimed` meanwhile nor collected it. */
async function writeSync(chunk: ChunkItem, index: number, sync: SyncProgress, claimed: number, deps: StragglersDeps): Promise<ChunkItem> {
  return updateChunk(deps.dynamo, deps.config.table, chunk, {
    set: { attempts: patchAttempt(chunk, index, { sync }), updatedAt: isoAt(clockOf(deps)()) },
    condition: chunkCondition(`#ca = :attempt AND #att[${index}].#syn.#clm = :claimed AND attribute_not_exists(#att[${index}].#col)`, {
      ':attempt': chunk.currentAttempt,
      ':claimed': claimed,
    }),
  });
}

function keyRefused(input: StragglersInput, error: ApiAuthError): ApiKeyRefused {
  return new ApiKeyRefused(`chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId}: ${error.message}`);
}

/** A row of a slice the key was refused in, once others of it were answered: the refusal is its answer (401/403 are not billed). */
function refusedLine(customId: string, error: ApiAuthError): SliceLine {
  const result = { type: 'errored', error: { type: 'error', error: { type: error.type ?? 'authentication_error', message: error.message } } } as BatchResult;
  return { customId, result, sent: true };
}

interface SliceLine {
  customId: string;
  result: BatchResult;
  /** A call was made for it. */
  sent: boolean;
}

/** What became of one slice's calls; `refused`: the API refused the key (401/403), and the rows it left have no line. */
interface SentSlice {
  lines: Array<SliceLine | undefined>;
  refused?: ApiAuthError;
}

/**
 * One slice's calls, CONCURRENCY at a time; a row not started by the deadline is not sent. A call
 * still under way when `stop` fires (the invocation's time is nearly up) is aborted: it may have been
 * billed, so its row is unknown, and the slice's other answers are stored all the same. A row still
 * rate limited or overloaded (429, 529) after the client's retries was not billed: it is put back at
 * the end of the slice, after a wait, at most RATE_LIMITED_ROUNDS times while the deadline and the
 * time allow. A refused key (401/403) stops the slice: no row is started after it.
 */
async function sendSlice(
  slice: Array<{ customId: string; params: MessageParams }>,
  deps: StragglersDeps,
  pastDeadline: () => boolean,
  stop: AbortSignal,
  observer: Observer,
): Promise<SentSlice> {
  const sent: SentSlice = { lines: new Array(slice.length) };
  const queue = slice.map((_, i) => i);
  const rounds = new Array<number>(slice.length).fill(0);
  const sleep = deps.sleep ?? ((ms: number, signal: AbortSignal) => delay(ms, undefined, { signal }));
  const worker = async () => {
    while (queue.length > 0 && !sent.refused) {
      const i = queue.shift()!;
      const { customId, params } = slice[i]!;
      if (pastDeadline()) {
        sent.lines[i] = { customId, result: { type: 'expired' }, sent: false };
        continue;
      }
      try {
        const message = await deps.api.createMessage(params, { signal: stop });
        sent.lines[i] = { customId, result: { type: 'succeeded', message }, sent: true };
      } catch (error) {
        if (stop.aborted) {
          observer.warn('a synchronous call was aborted: the invocation is nearly out of time', { error: errorFields(error) });
          sent.lines[i] = { customId, result: UNKNOWN_RESULT, sent: true };
          continue;
        }
        // Never the prompt: the error's name, status and type only.
        observer.warn('a synchronous call failed', { error: errorFields(error) });
        if (error instanceof ApiAuthError) {
          sent.refused ??= error;
          continue;
        }
        if (isRateLimited(error) && rounds[i]! < RATE_LIMITED_ROUNDS && !pastDeadline()) {
          rounds[i]! += 1;
          const waited = await sleep(RATE_LIMITED_WAIT_MS * rounds[i]!, stop).then(
            () => true,
            () => false,
          );
          if (waited) {
            queue.push(i);
            continue;
          }
        }
        const type = error instanceof AnthropicError ? (error.type ?? 'api_error') : 'api_error';
        const message = error instanceof AnthropicError ? error.message : 'The synchronous call failed.';
        sent.lines[i] = { customId, result: { type: 'errored', error: { type: 'error', error: { type, message } } } as BatchResult, sent: true };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, slice.length) }, worker));
  return sent;
}

/** Rate limited or overloaded once the client's retries were spent: not billed, so safe to send again. */
function isRateLimited(error: unknown): boolean {
  return error instanceof AnthropicError && (error.status === 429 || error.status === 529);
}

async function putSlice(input: StragglersInput, start: number, lines: SliceLine[], deps: StragglersDeps): Promise<void> {
  const writer = new ObjectWriter(deps.s3, deps.config.bucket, jobKeys(input.jobId).syncSlice(input.chunk, input.attempt, start));
  try {
    for (const line of lines) await writer.writeLine({ custom_id: line.customId, result: line.result });
    await writer.finish();
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

const UNKNOWN_MESSAGE =
  'The synchronous call for this request may have been made, but its answer was never stored (the step was stopped, or the call cut off as the step ran out of time); ' +
  'it was not sent again, so as never to pay twice. It may have been billed.';
const UNKNOWN_RESULT = { type: 'errored', error: { type: 'error', error: { type: SYNC_OUTCOME_UNKNOWN, message: UNKNOWN_MESSAGE } } } as BatchResult;
const EXPIRED_AT_DEADLINE: BatchResult = { type: 'expired' };
const NOT_SENT_CANCELED: BatchResult = { type: 'canceled' };

/** A row left unclaimed when RunStragglers ran MAX_INVOCATIONS times before the deadline. */
export const SYNC_STEPS_EXHAUSTED = 'sync_steps_exhausted';
const STEPS_EXHAUSTED: SettledFailure = {
  type: SYNC_STEPS_EXHAUSTED,
  message:
    `Not sent: the synchronous calls after the batch was canceled for the job's deadline used all ${MAX_INVOCATIONS} of their steps ` +
    'before reaching this request, with the deadline still ahead.',
};

/**
 * The attempt's results file, in its requests' order: a stored slice's lines, an unknown slice's
 * rows errored SYNC_OUTCOME_UNKNOWN, unclaimed rows expired (canceled, when the job was asked to
 * stop; errored as `unclaimed` says when given); then row records, counts and the job's paid cost,
 * and the attempt is collected (once: conditioned on it not being so yet). The chunk is left done,
 * or as it is with `keepStatus` (a failed step's).
 */
async function finish(
  input: StragglersInput,
  chunk: ChunkItem,
  index: number,
  sync: SyncProgress,
  deps: Omit<StragglersDeps, 'api'>,
  observer: Observer,
  { unclaimed, keepStatus }: { unclaimed?: SettledFailure; keepStatus?: boolean },
): Promise<void> {
  const { s3, dynamo, config } = deps;
  const now = clockOf(deps)();
  const keys = jobKeys(input.jobId);
  const job = await readJob(dynamo, config.table, input.jobId);
  const prices = priceTableFromConfig(config);
  const starts = [...(sync.slices ?? [])].sort((a, b) => a - b);
  const stored = new Set(sync.stored);
  const records = new RowRecordWriter(dynamo, config.table, {
    jobId: input.jobId,
    chunk: input.chunk,
    attempt: input.attempt,
    shards: rowShardsOf(job),
    writer: 'C',
    updatedAt: isoAt(now),
    ttl: ttlAfter(now, config.rowTtlDays),
  });
  // The row index alone, as Collect reads it: the input may be gone, and the reconciler may not read it.
  const positions = await requestPositions(s3, config.bucket, { ...input, attempt: 1 });

  const counts: Record<ResultStatus, number> = { succeeded: 0, errored: 0, expired: 0, canceled: 0 };
  let paidE10 = 0;
  let unknown = 0;
  const writer = new ObjectWriter(s3, config.bucket, keys.chunkResults(input.chunk, input.attempt));
  try {
    let position = 0;
    let slice = -1;
    let sliceLines: AsyncIterator<{ bytes: Buffer }> | undefined;
    for await (const customId of requestCustomIds(s3, config.bucket, input)) {
      while (slice + 1 < starts.length && starts[slice + 1]! <= position) {
        slice += 1;
        await sliceLines?.return?.(undefined);
        const key = keys.syncSlice(input.chunk, input.attempt, starts[slice]!);
        // A slice whose object exists was stored whole, even if the step was stopped before marking it so.
        sliceLines = stored.has(starts[slice]!) || (await objectExists(s3, config.bucket, key)) ? objectLines(s3, config.bucket, key) : undefined;
      }
      let raw: Buffer;
      let result: BatchResult;
      if (position >= sync.claimed) {
        // Never sent: the step failed, the deadline came first, or the job was asked to stop (the user's cancel, or the reconciler's).
        result = unclaimed
          ? ({ type: 'errored', error: { type: 'error', error: unclaimed } } as BatchResult)
          : job.cancelRequested === true
            ? NOT_SENT_CANCELED
            : EXPIRED_AT_DEADLINE;
        raw = Buffer.from(JSON.stringify({ custom_id: customId, result }));
      } else if (sliceLines) {
        const next = await sliceLines.next();
        if (next.done) throw new ChunkStateConflict(`the stored answers of chunk ${input.chunk} attempt ${input.attempt} end before row ${position}`);
        raw = next.value.bytes;
        result = (JSON.parse(raw.toString('utf8')) as { result: BatchResult }).result;
      } else {
        unknown += 1;
        result = UNKNOWN_RESULT;
        raw = Buffer.from(JSON.stringify({ custom_id: customId, result }));
      }
      const offset = writer.bytes;
      await writer.writeLine(raw);
      const status: ResultStatus = result.type === 'errored' ? 'errored' : result.type;
      counts[status] += 1;
      const priced = status === 'succeeded' ? standardCost(result, prices) : {};
      if (priced.costUsd !== undefined) paidE10 += Math.round(priced.costUsd * 1e10);
      const errorType = result.type === 'errored' ? (result.error?.error?.type ?? 'api_error') : undefined;
      const inputIndex = positions.get(customId);
      if (inputIndex === undefined) throw new ChunkStateConflict(`${customId} is in attempt ${input.attempt} of chunk ${input.chunk} but not in its first`);
      records.add({ customId, index: inputIndex, status, final: true, errorType, ...priced, line: { offset, length: raw.length + 1 } });
      position += 1;
    }
    await sliceLines?.return?.(undefined);
    await writer.finish();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  await records.flush();
  const collectedAt = isoAt(clockOf(deps)());
  try {
    await updateChunk(dynamo, config.table, chunk, {
      // A failed step's chunk stays failed; otherwise done, as Collect leaves a chunk with no next attempt.
      set: { attempts: patchAttempt(chunk, index, { counts, collectedAt, sync }), ...(keepStatus ? {} : { status: 'done' as const }), updatedAt: collectedAt },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#col)`, { ':attempt': input.attempt }),
    });
  } catch (error) {
    if (error instanceof ConditionFailed) return;
    throw error;
  }
  await updateItem(dynamo, config.table, jobKey(input.jobId), {
    add: { rowsFinal: chunk.attempts[index]!.rows, paidUsd: paidE10 / 1e10 },
    set: { updatedAt: collectedAt },
  });
  observer.info('stragglers collected', { ...counts, unknown, paidUsd: paidE10 / 1e10 });
}

/** A synchronous answer's usage and its cost at standard rates (no batch discount). */
function standardCost(result: BatchResult, prices: ReturnType<typeof priceTableFromConfig>): { usage?: ReturnType<typeof tokenTotals>; costUsd?: number } {
  const read = readMessageUsage((result as { message?: unknown }).message);
  if (read.unpriced !== undefined) return read.usage ? { usage: tokenTotals(read.usage) } : {};
  return { usage: tokenTotals(read.usage), costUsd: rowCostUsd(read.usage, read.model, prices, false) };
}
