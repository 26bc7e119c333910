/**
 * Collect: an ended batch's results into S3 and every row's status into DynamoDB, and the rows
 * worth another attempt into the next attempt's requests file.
 *
 * - The results stream is stored line by line, bytes untouched, in segments with a checkpoint after
 *   each (./collect-checkpoint.ts), joined at the end into `chunkResults(chunk, attempt)`; a row
 *   records where its line is (offset, length) rather than any of its text.
 * - A Collect that finds a checkpoint (its predecessor was killed, or failed) goes on from it: the
 *   stored lines are decided again (rowFate), never downloaded or counted twice, and the API's file
 *   is read from the checkpoint's offset.
 * - Row records are packed into pages (./row-records.ts), written once the stream has ended: about
 *   one DynamoDB item per thousand rows instead of one per row.
 * - A results line that cannot be read (cut, not a result, too long) costs only its own row: when its
 *   start names the row, the row ends errored `result_unreadable` and the stored file gets a line
 *   batchline writes in its place (`{custom_id, unreadable}`, see UnreadableLine); when nothing
 *   names it, its row ends `missing_result` like any row without a line.
 * - A Collect that fails still stores the results it read (and its checkpoint) before it rethrows,
 *   so the next Collect goes on from there and a Finalize after the chunk's failure keeps them.
 * - Memory is bounded by the chunk's row count (custom_id → position, the records), never by result text.
 * - Re-runnable: the joined object and row pages are rewritten to the same content, and the chunk record
 *   is updated once, conditioned on the attempt not being collected yet; a Collect that finds the
 *   chunk already past this attempt answers from the record without redoing anything.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { ApiAuthError } from '../anthropic/errors';
import type { BatchesApi, DamagedResultLine } from '../anthropic/api';
import type { BatchResult, MessageParams } from '../anthropic/types';
import type { PipelineConfig } from '../config';
import { EstimateTotals, readMessageUsage, roundUsd, tokenTotals, type UnpricedReason } from '../cost/cost';
import { priceTableFromConfig, type PriceTable } from '../cost/prices';
import { ConditionFailed, updateItem, type BulkWriteOptions } from '../store/dynamo';
import { ttlAfter, type ChunkAttempt, type TokenTotals } from '../store/items';
import { jobKeys } from '../store/keys';
import { ObjectWriter } from '../store/s3';
import { quietObserver, rowsErroredMetric, type Observer } from '../observability';
import { BATCH_BODY_OVERHEAD } from '../validation/request';
import { requestEntries, requestIds, requestPositions } from './chunk-files';
import { attemptOf, ChunkStateConflict, chunkCondition, isoAt, jobKey, patchAttempt, readChunk, readJob, updateChunk } from './chunk-state';
import type { CollectInput, CollectOutput } from './contract';
import { rowShardsOf, RowRecordWriter, type RowEntry } from './row-records';
import { SentRequests, userResultLine } from './wire-ids';
import { readCheckpoint, SegmentedResults, SegmentMissing, storedLines, type CollectCheckpoint, type LineTallies } from './collect-checkpoint';
import {
  CHUNK_FAILED,
  MISSING_RESULT,
  retryWaitSeconds,
  rowCostUsd,
  rowFate,
  type AttemptFacts,
  type ResultStatus,
  type RowDecision,
  type RowEvidence,
} from './outcome';
import { readResultLine, resultCustomId, type UnreadableLine } from './result-lines';
import { clockOf } from '../clock';
import { deadlineOf } from './deadline';

/** The API refused the key while Collect read results: retried by the workflow for about a day. */
export class ApiKeyRefused extends Error {
  override readonly name = 'ApiKeyRefused';
}

export interface CollectDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'maxAttempts' | 'retryBackoffSeconds' | 'rowTtlDays' | 'pricesJson'>;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Options of the row pages' writer (tests and benchmarks count requests with onRequest). */
  rowWrites?: BulkWriteOptions;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
  /** Bytes of stored results between checkpoints (default collect-checkpoint.ts DEFAULT_SEGMENT_BYTES). */
  segmentBytes?: number;
  /** No next attempt of any kind (the reconciler, with no workflow to run it): no deadline fallback either. */
  final?: boolean;
}

export async function collectResults(input: CollectInput, deps: CollectDeps): Promise<CollectOutput> {
  const { s3, dynamo, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  const [chunk, job] = await Promise.all([readChunk(dynamo, config.table, input.jobId, input.chunk), readJob(dynamo, config.table, input.jobId)]);
  const { record, index } = attemptOf(chunk, input.attempt);
  if (record.collectedAt || chunk.currentAttempt > input.attempt) return collectedBefore(input, record, config, observer);
  if (chunk.currentAttempt < input.attempt) {
    throw new ChunkStateConflict(`chunk ${input.chunk} of job ${input.jobId} is at attempt ${chunk.currentAttempt}, not ${input.attempt}`);
  }
  if ((record.batchId ?? null) !== input.batchId) {
    throw new ChunkStateConflict(
      `chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId} has batch ${record.batchId ?? 'none'}, not ${input.batchId ?? 'none'}`,
    );
  }

  const positions = await requestPositions(s3, config.bucket, { ...input, attempt: 1 });
  const members: ReadonlyMap<string, number> | ReadonlySet<string> = input.attempt === 1 ? positions : await requestIds(s3, config.bucket, input);
  const sent = new SentRequests(record.nonce, [...members.keys()]);

  // A fresh container has not seen this batch created: a 404 on its results soon after is transient.
  if (input.batchId !== null && record.createdAt) deps.api.rememberCreated(input.batchId, record.createdAt);
  // A batch canceled for the deadline: the rows it did not finish go to the synchronous attempt (./stragglers.ts).
  const deadlineFallback = record.deadlineCanceledAt !== undefined && job.cancelRequested !== true && deps.final !== true;
  const recorder = () =>
    new RowRecorder({ input, positions, shards: rowShardsOf(job), deps, cancelRequested: job.cancelRequested === true, deadlineFallback, observer });
  let rows = recorder();
  try {
    if (input.batchId !== null) {
      const batchId = input.batchId;
      const checkpoint = await readCheckpoint(s3, config.bucket, input, batchId);
      const store = (from: CollectCheckpoint | undefined) =>
        new SegmentedResults(s3, config.bucket, input, batchId, from, { segmentBytes: deps.segmentBytes, now });
      try {
        await rows.collect(batchId, sent, store(checkpoint), checkpoint);
      } catch (error) {
        if (!(error instanceof SegmentMissing)) throw error;
        // The stored lines are gone (work/ expired, or removed): collected again from the start.
        observer.warn('a segment the collect checkpoint names is missing: collecting from the start', { error: error.message });
        rows = recorder();
        await rows.collect(batchId, sent, store(undefined), undefined);
      }
    }
    for (const customId of members.keys()) if (!rows.seen.has(customId)) rows.record(customId, rows.fate({ kind: 'none' }));
    await rows.flush();
  } catch (error) {
    await rows.keepWhatWasRead(async () => {
      const current = attemptOf(await readChunk(dynamo, config.table, input.jobId, input.chunk), input.attempt).record;
      return current.collectedAt !== undefined;
    });
    if (error instanceof ApiAuthError) {
      // The results stay at the API for 29 days: wait for a valid key rather than fail the chunk.
      observer.metric('ApiKeyRefused', 1);
      observer.error('the API refuses the key (401/403) reading results; put a valid key in the secret and Collect goes on', { status: error.status });
      throw new ApiKeyRefused(`chunk ${input.chunk} attempt ${input.attempt} of job ${input.jobId}: ${error.message}`);
    }
    throw error;
  }

  const retry = rows.retry;
  const paidUsd = rows.paidE10 / 1e10;
  // No batch retry once the deadline's cancel is due: the rows go to synchronous calls instead.
  const deadline = deadlineOf(job);
  // A retry whose backoff would end past the cancel time would only be canceled at once: no batch for it either.
  const retryStartsAt = (deps.api.lastServerTime() ?? now()) + retryWaitSeconds(input.attempt, config.retryBackoffSeconds) * 1000;
  const straggle =
    retry.size > 0 &&
    job.cancelRequested !== true &&
    deps.final !== true &&
    (deadlineFallback || (deadline !== undefined && retryStartsAt >= deadline.cancelAt));
  const budgetStopped =
    retry.size > 0 && !straggle && job.maxCostUsd !== undefined
      ? await overBudget(input, retry, (job.paidUsd ?? 0) + paidUsd, job.maxCostUsd, deps)
      : undefined;
  if (budgetStopped) observer.warn('not retrying: the retry would take the job past its budget', budgetStopped);
  const next = retry.size > 0 && !budgetStopped ? await writeRetryFile(input, retry, deps) : undefined;
  const collectedAt = isoAt(now());
  const patch: Partial<ChunkAttempt> = {
    counts: rows.counts,
    collectedAt,
    retryRows: budgetStopped ? 0 : retry.size,
    budgetStopped,
    missingRows: rows.missing,
    unreadableLines: rows.unattributed > 0 ? rows.unattributed : undefined,
    unpricedModels: rows.unpricedModels.size > 0 ? [...rows.unpricedModels].sort() : undefined,
    straggled: straggle ? true : undefined,
  };
  const attempts = patchAttempt(chunk, index, patch);
  if (next) {
    attempts.push({
      attempt: input.attempt + 1,
      rows: retry.size,
      bytes: next.bytes,
      intentAt: '',
      ...(straggle ? { sync: { claimed: 0, stored: [], invocations: 0 } } : {}),
    });
  }
  try {
    await updateChunk(dynamo, config.table, chunk, {
      set: {
        attempts,
        currentAttempt: next ? input.attempt + 1 : input.attempt,
        status: next ? (straggle ? 'in_progress' : 'retry_wait') : 'done',
        updatedAt: collectedAt,
      },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#col)`, { ':attempt': input.attempt }),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // A concurrent Collect of this attempt finished first: its record stands.
    const current = attemptOf(await readChunk(dynamo, config.table, input.jobId, input.chunk), input.attempt).record;
    if (!current.collectedAt) throw error;
    return collectedBefore(input, current, config, observer);
  }
  // Progress only (Finalize counts from the files); added once, after the record says "collected".
  await updateItem(dynamo, config.table, jobKey(input.jobId), {
    add: { rowsFinal: rows.finalRows + (budgetStopped ? retry.size : 0), paidUsd },
    set: { updatedAt: collectedAt },
  });
  // The joined object is what every reader uses from now on.
  await rows.removeCheckpoint();
  const output = answer(input, { ...record, ...patch }, config);
  // Rows the budget stopped are final, not retried: the metrics and the log line count them so.
  if (budgetStopped) rows.retry.clear();
  report(rows, record, output, observer);
  return output;
}

/** The attempt's tallies as metrics and one log line; only once, by the Collect that recorded them. */
function report(rows: RowRecorder, record: ChunkAttempt, output: CollectOutput, observer: Observer): void {
  const { succeeded, errored, expired, canceled } = rows.counts;
  observer.metric('RowsSucceeded', succeeded);
  observer.metric('RowsErrored', errored);
  observer.metric('RowsExpired', expired);
  observer.metric('RowsCanceled', canceled);
  observer.metric('RowsRetried', rows.retry.size);
  for (const [type, count] of rows.errorTypes) observer.metric(rowsErroredMetric(type), count);
  const waitSeconds = record.createdAt && record.endedAt ? (Date.parse(record.endedAt) - Date.parse(record.createdAt)) / 1000 : undefined;
  if (waitSeconds !== undefined && Number.isFinite(waitSeconds)) observer.metric('BatchWaitSeconds', waitSeconds);
  if (rows.unpricedModels.size > 0) observer.warn('no price for these models: their rows have no cost', { models: [...rows.unpricedModels].sort() });
  if (rows.unpricedRows.size > 0)
    observer.warn('succeeded rows whose usage could not be priced: they have no cost', { unpricedRows: Object.fromEntries(rows.unpricedRows) });
  observer.info('collected', {
    ...rows.counts,
    errorTypes: Object.fromEntries([...rows.errorTypes].sort(([a], [b]) => a.localeCompare(b))),
    retryRows: rows.retry.size,
    missingRows: rows.missing,
    foreignLines: rows.foreign,
    unreadableLines: rows.unreadable,
    unattributedLines: rows.unattributed,
    resultBytes: rows.resultBytes,
    resumedFromBytes: rows.resumedFrom,
    batchWaitSeconds: waitSeconds,
    retry: output.retry,
    retryWaitSeconds: output.retryWaitSeconds,
    stragglers: output.stragglers,
  });
}

function collectedBefore(input: CollectInput, record: ChunkAttempt, config: Pick<PipelineConfig, 'retryBackoffSeconds'>, observer: Observer): CollectOutput {
  const output = answer(input, record, config);
  observer.info('collected before', { counts: record.counts, retryRows: record.retryRows ?? 0, retry: output.retry });
  return output;
}

function answer(input: CollectInput, record: ChunkAttempt, config: Pick<PipelineConfig, 'retryBackoffSeconds'>): CollectOutput {
  const next = (record.retryRows ?? 0) > 0;
  const retry = next && record.straggled !== true;
  return {
    jobId: input.jobId,
    chunk: input.chunk,
    attempt: input.attempt,
    retry,
    retryWaitSeconds: retry ? retryWaitSeconds(input.attempt, config.retryBackoffSeconds) : 0,
    stragglers: next && record.straggled === true,
  };
}

/**
 * Whether the retry would take the job past its budget: what the job has paid (this attempt
 * included) plus the retry's estimate (cost.ts, its upper bound: output at max_tokens, every row writing its cached prefixes), against the budget. Chunks run
 * side by side, so each judges by what the others had recorded when it collected.
 */
async function overBudget(
  input: CollectInput,
  retry: ReadonlySet<string>,
  paidUsd: number,
  budgetUsd: number,
  deps: CollectDeps,
): Promise<ChunkAttempt['budgetStopped']> {
  const estimate = new EstimateTotals({ prices: priceTableFromConfig(deps.config) });
  for await (const { customId, line } of requestEntries(deps.s3, deps.config.bucket, input)) {
    if (!retry.has(customId)) continue;
    const params = (JSON.parse(line.bytes.toString('utf8')) as { params?: MessageParams }).params;
    if (params) estimate.add(params);
  }
  const estimateUsd = estimate.toJSON().totalUsd;
  if (paidUsd + estimateUsd <= budgetUsd) return undefined;
  return { rows: retry.size, estimateUsd, paidUsd: roundUsd(paidUsd), budgetUsd };
}

/** The rows to retry, copied line for line (original params) from this attempt's requests file. */
async function writeRetryFile(input: CollectInput, retry: ReadonlySet<string>, deps: CollectDeps): Promise<{ bytes: number }> {
  const keys = jobKeys(input.jobId);
  const writer = new ObjectWriter(deps.s3, deps.config.bucket, keys.chunkRequests(input.chunk, input.attempt + 1));
  let rows = 0;
  let bodyBytes = BATCH_BODY_OVERHEAD;
  try {
    for await (const { customId, line } of requestEntries(deps.s3, deps.config.bucket, input)) {
      if (!retry.has(customId)) continue;
      await writer.writeLine(line.bytes);
      bodyBytes += line.bytes.length + (rows > 0 ? 1 : 0);
      rows += 1;
    }
    await writer.finish();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  return { bytes: bodyBytes };
}

/** A damaged line's bytes as text, its custom_id the user's again where the API's can be found in it. */
function receivedText(raw: Buffer, customId: string, sent: SentRequests): string {
  if (sent.nonce === undefined) return raw.toString('utf8');
  try {
    return userResultLine(raw, customId).toString('utf8');
  } catch {
    return raw.toString('utf8');
  }
}

/** Damaged lines logged one by one; the rest are counted in the `collected` line. */
const DAMAGED_LINES_LOGGED = 10;

/** What a RowRecorder records for: the attempt, where each of its rows is, and the job's state. */
interface RowRecorderFrom {
  input: CollectInput;
  /** Each custom_id's position in the attempt's requests. */
  positions: ReadonlyMap<string, number>;
  /** The job's row-record partitions (rowShardsOf). */
  shards: number;
  deps: CollectDeps;
  cancelRequested: boolean;
  /** The batch was canceled for the job's deadline (AttemptFacts.deadlineFallback). */
  deadlineFallback: boolean;
  observer: Observer;
}

/** Decides and records each row of one attempt; keeps the attempt's tallies. */
class RowRecorder {
  readonly seen = new Set<string>();
  readonly retry = new Set<string>();
  readonly counts: Record<ResultStatus, number> = { succeeded: 0, errored: 0, expired: 0, canceled: 0 };
  readonly unpricedModels = new Set<string>();
  /** Succeeded rows without a cost for another reason than their model's price. */
  readonly unpricedRows = new Map<UnpricedReason, number>();
  /** Errored rows by error type. */
  readonly errorTypes = new Map<string, number>();
  missing = 0;
  /** What the attempt's succeeded rows cost, in units of 1e-10 USD (exact sums). */
  paidE10 = 0;
  /** Bytes of the results file written. */
  resultBytes = 0;
  finalRows = 0;
  /** Result lines for custom_ids that are not rows of this attempt (or repeat one): ignored. */
  foreign = 0;
  /** Result lines that could not be read; `unattributed` of them named no row either. */
  unreadable = 0;
  unattributed = 0;

  private readonly records: RowRecordWriter;
  private readonly facts: AttemptFacts;
  private readonly prices: PriceTable;
  private store: SegmentedResults | undefined;
  /** Bytes of the API's results file a checkpoint had already taken into account (0: read from the start). */
  resumedFrom = 0;

  private readonly input: CollectInput;
  private readonly positions: ReadonlyMap<string, number>;
  private readonly deps: CollectDeps;
  private readonly observer: Observer;

  constructor(from: RowRecorderFrom) {
    const { input, deps, shards, cancelRequested, deadlineFallback } = from;
    this.input = input;
    this.positions = from.positions;
    this.deps = deps;
    this.observer = from.observer;
    const now = clockOf(deps)();
    this.records = new RowRecordWriter(
      deps.dynamo,
      deps.config.table,
      {
        jobId: input.jobId,
        chunk: input.chunk,
        attempt: input.attempt,
        batchId: input.batchId ?? undefined,
        shards,
        writer: 'C',
        updatedAt: isoAt(now),
        ttl: ttlAfter(now, deps.config.rowTtlDays),
      },
      deps.rowWrites,
    );
    this.facts = {
      attempt: input.attempt,
      maxAttempts: deps.config.maxAttempts,
      cancelRequested,
      submitted: input.batchId !== null,
      // Collect is the attempt's collection: every row it records is decided (failedAs is never used).
      collected: true,
      failedAs: CHUNK_FAILED,
      deadlineFallback,
    };
    this.prices = priceTableFromConfig(deps.config);
  }

  /**
   * Streams the batch's results into `store`, recording each row of the attempt as its line arrives.
   * A line stored is the API's, its custom_id the user's again; a line that is not provably one of
   * the attempt's requests (another create's nonce, a row already seen) is counted and left out.
   * With a checkpoint, the lines it stored are decided again first, and the API's file is read on
   * from where it stopped (all of it already, when it is complete).
   */
  async collect(batchId: string, sent: SentRequests, store: SegmentedResults, checkpoint: CollectCheckpoint | undefined): Promise<void> {
    this.store = store;
    if (checkpoint) {
      await this.rebuild(store, checkpoint);
      this.resumedFrom = checkpoint.apiOffset;
      this.observer.info('resuming the collection from its checkpoint', {
        batchId,
        apiOffset: checkpoint.apiOffset,
        complete: checkpoint.complete,
        segments: checkpoint.segments.length,
        storedRows: this.seen.size,
      });
    }
    if (!checkpoint?.complete) {
      let end = store.apiOffset;
      const onDamagedLine = async (line: DamagedResultLine) => {
        await this.damaged(batchId, sent, line);
        // A too-long line's end is not known yet: the next line's end covers it.
        if (line.length !== undefined) {
          end = line.offset + line.length;
          await store.commit(end, this.tallies());
        }
      };
      for await (const entry of this.deps.api.results(batchId, { onDamagedLine, startOffset: store.apiOffset })) {
        end = entry.offset + entry.length;
        const customId = sent.customIdOf(entry.line.custom_id);
        if (customId === undefined || this.seen.has(customId)) {
          this.foreign += 1;
          await store.commit(end, this.tallies());
          continue;
        }
        this.seen.add(customId);
        const raw = sent.nonce === undefined ? entry.raw : userResultLine(entry.raw, customId);
        const offset = store.offset;
        await store.writeLine(raw);
        this.record(customId, this.fate({ kind: 'result', result: entry.line.result }), {
          ...this.usageAndCost(entry.line.result),
          line: { offset, length: raw.length + 1 },
        });
        await store.commit(end, this.tallies());
      }
      await store.finishStream(end, this.tallies());
    }
    this.resultBytes = await store.join();
    if (this.foreign > 0) {
      // Every line foreign: the batch is not this attempt's (an adoption that guessed wrong). Its rows end missing_result.
      const fields = { batchId, foreignLines: this.foreign, ownLines: this.seen.size };
      if (this.seen.size === 0) this.observer.error('no result line is a request of this attempt: the batch is not its own', fields);
      else this.observer.warn('result lines that are not requests of this attempt were left out', fields);
    }
  }

  /** The lines a checkpoint stored, each row decided again as when it was read; the tallies the lines cannot tell come from the checkpoint. */
  private async rebuild(store: SegmentedResults, checkpoint: CollectCheckpoint): Promise<void> {
    this.foreign = checkpoint.foreign;
    this.unreadable = checkpoint.unreadable;
    this.unattributed = checkpoint.unattributed;
    for await (const { raw, offset, length } of storedLines(this.deps.s3, this.deps.config.bucket, store.storedSegments())) {
      const customId = resultCustomId(raw);
      if (customId === undefined || this.seen.has(customId)) {
        throw new ChunkStateConflict(
          `a stored results line of chunk ${this.input.chunk} attempt ${this.input.attempt} at byte ${offset} names no row, or one already stored`,
        );
      }
      this.seen.add(customId);
      const line = readResultLine(raw);
      if ('unreadable' in line) this.record(customId, this.fate({ kind: 'unreadable' }), { line: { offset, length } });
      else this.record(customId, this.fate({ kind: 'result', result: line.result }), { ...this.usageAndCost(line.result), line: { offset, length } });
    }
  }

  private tallies(): LineTallies {
    return { foreign: this.foreign, unreadable: this.unreadable, unattributed: this.unattributed };
  }

  /** A line that could not be read: its row, if its start names one of the attempt's, ends result_unreadable. */
  private async damaged(batchId: string, sent: SentRequests, line: DamagedResultLine): Promise<void> {
    this.unreadable += 1;
    const customId = line.customId === undefined ? undefined : sent.customIdOf(line.customId);
    if (this.unreadable <= DAMAGED_LINES_LOGGED) {
      this.observer.warn('a results line could not be read', {
        batchId,
        damage: line.damage,
        offset: line.offset,
        bytes: line.length ?? null,
        named: line.customId === undefined ? 'nothing' : customId === undefined ? 'another request' : 'a row of this attempt',
      });
    }
    if (line.customId === undefined) {
      this.unattributed += 1;
      return;
    }
    if (customId === undefined || this.seen.has(customId)) {
      this.foreign += 1;
      return;
    }
    this.seen.add(customId);
    const stored: UnreadableLine = {
      custom_id: customId,
      unreadable: { damage: line.damage, offset: line.offset, length: line.length ?? null, received: receivedText(line.raw, customId, sent) },
    };
    const raw = Buffer.from(JSON.stringify(stored));
    const offset = this.store!.offset;
    await this.store!.writeLine(raw);
    this.record(customId, this.fate({ kind: 'unreadable' }), { line: { offset, length: raw.length + 1 } });
  }

  /** The row's fate in this attempt (outcome.ts rowFate, the rule FinalizeChunk applies too). */
  fate(evidence: RowEvidence): RowDecision {
    return rowFate(evidence, this.facts);
  }

  record(customId: string, decision: RowDecision, extra: Pick<RowEntry, 'usage' | 'costUsd' | 'line'> = {}): void {
    const index = this.positions.get(customId);
    if (index === undefined) throw new ChunkStateConflict(`${customId} is in attempt ${this.input.attempt} of chunk ${this.input.chunk} but not in its first`);
    this.counts[decision.status] += 1;
    if (decision.errorType !== undefined) this.errorTypes.set(decision.errorType, (this.errorTypes.get(decision.errorType) ?? 0) + 1);
    if (decision.errorType === MISSING_RESULT) this.missing += 1;
    if (decision.final) this.finalRows += 1;
    else this.retry.add(customId);
    if (extra.costUsd !== undefined) this.paidE10 += Math.round(extra.costUsd * 1e10);
    this.records.add({ customId, index, status: decision.status, final: decision.final, errorType: decision.errorType, ...extra });
  }

  /** Pricing never fails a Collect: an odd message keeps what can be read of it, and no cost. */
  private usageAndCost(result: BatchResult): { usage?: TokenTotals; costUsd?: number } {
    if (result.type !== 'succeeded') return {};
    const read = readMessageUsage((result as { message?: unknown }).message);
    if (read.unpriced !== undefined) {
      this.unpricedRows.set(read.unpriced, (this.unpricedRows.get(read.unpriced) ?? 0) + 1);
      return read.usage ? { usage: tokenTotals(read.usage) } : {};
    }
    const costUsd = rowCostUsd(read.usage, read.model, this.prices);
    // An unpriced model's rows keep their tokens, and the attempt notes the model.
    if (costUsd === undefined) this.unpricedModels.add(read.model);
    return { usage: tokenTotals(read.usage), costUsd };
  }

  /** Writes the row pages. */
  async flush(): Promise<void> {
    await this.records.flush();
  }

  /**
   * After a failure: stores the results read so far and a checkpoint, so the next Collect goes on
   * from there; and, unless the attempt was collected meanwhile (by a Collect that ran beside this
   * one), joins them into the attempt's results object, so a Finalize after the chunk's failure
   * keeps them (the lines before the failure are the API's answers, some of them paid for).
   */
  async keepWhatWasRead(attemptCollected: () => Promise<boolean>): Promise<void> {
    const store = this.store;
    this.store = undefined;
    if (!store || !(await store.keepAfterFailure())) return;
    try {
      if (!(await attemptCollected())) await store.join();
    } catch (error) {
      this.observer.warn('the results read before the failure could not be joined; the next Collect does it', { error: (error as Error).message });
    }
  }

  /** The checkpoint and its segments, once the attempt is recorded collected. */
  async removeCheckpoint(): Promise<void> {
    await this.store?.remove();
  }
}
