/**
 * Finalize: the job's outputs under `results/<jobId>/`, the job record marked done, and a `Job
 * Ended` event.
 *
 * - results.jsonl: exactly one line per valid input row, in input order, with its final state.
 * - errors.jsonl: every final row that did not succeed. invalid.jsonl: Prepare's report, copied.
 * - summary.json: counts, errors by type, tokens, cost, batches, retries, timings — written only
 *   after the counts are checked to add up (CountsMismatch otherwise).
 *
 * Input order in bounded memory: chunks are taken one at a time, in order. For a chunk, attempt
 * 1's requests file gives the rows in input order (custom_id → position); each attempt's results
 * file is then streamed, and every row's line (from its latest attempt) staged in a temp file by
 * position, a file per 2,000 rows, since the API returns results in any order. The rows are written
 * a window at a time, the window's lines read back in a few large reads. Memory is bounded by one
 * chunk's row count and two windows of lines, never by result text.
 *
 * A row's final state comes from its latest attempt (the last requests file it is in):
 *   that attempt's result line → its status (a line Collect would retry, in an attempt that was
 *   never collected, becomes chunk_failed); a line that cannot be read (Collect's stand-in for an
 *   API line it could not read, or anything else) → errored result_unreadable; no line, attempt
 *   collected without a batch → canceled
 *   (the job was canceled before it was submitted); no line, attempt collected → errored
 *   missing_result; no line, attempt never collected → errored chunk_failed with the chunk's cause.
 *
 * Nothing in a result's shape fails the job: a succeeded row without a message, usage or model, or
 * with token counts that are not counts, keeps what it has, with cost null; summary.json counts
 * such rows by reason (`cost.unpricedRows`).
 *
 * Re-runnable: every output is rewritten whole, and endedAt is kept from an earlier run.
 *
 * After a failure (`recovering`, the reconciler's re-run of a FinalizeJob that failed): the job
 * record keeps the failure MarkJobFailed wrote, and summary.json reports it as `recoveredFrom`.
 * MarkJobFailed set cancelRequested, so the flag no longer tells a user's cancel from the failure:
 * the job ends `canceled` only when some row was canceled; a rejected job is recognised by Prepare's
 * rule (strict, with invalid lines), since its `rejected` status was overwritten.
 */
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CopyObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { asResultLine, type DamageKind } from '../anthropic/api';
import type { BatchResult, Message, Usage } from '../anthropic/types';
import type { NotifyConfig, PipelineConfig } from '../config';
import { CostTotals, readMessageUsage, tokenTotals, type UnpricedReason } from '../cost/cost';
import { priceTableFromConfig, type PriceTable } from '../cost/prices';
import { isBlank, splitLines, type RawLine } from '../jsonl/lines';
import { jsonKey, leadingCustomId, memberValue, objectEnd, rawAt, skipSpace, valueEnd } from '../jsonl/raw-json';
import { AnnounceFailed, announceJobEnded, type NotifyClients } from '../notify';
import { errorFields, quietObserver, type Observer } from '../observability';
import { queryPartition, updateItem } from '../store/dynamo';
import {
  CHUNK_SK_PREFIX,
  jobPk,
  ttlAfter,
  type ChunkAttempt,
  type ChunkItem,
  type JobItem,
  type OrphanBatch,
  type JobStatus,
  type RowCounts,
  type TokenTotals,
} from '../store/items';
import { jobKeys } from '../store/keys';
import { isS3NotFound, ObjectWriter, putJson, readObject } from '../store/s3';
import { ChunkFileCorrupt, objectLines, requestCustomIds, requestEntries, requestsKey } from './chunk-files';
import { InvalidStateInput, isoAt, jobKey, readJob } from './chunk-state';
import type { UnreadableLine } from './collect';
import {
  CHUNK_FAILED,
  CREATE_UNKNOWN,
  decideRow,
  errorMessageOf,
  errorTypeOf,
  MISSING_RESULT,
  RESULT_UNREADABLE,
  rowCostUsd,
  unknownResultType,
  type ResultStatus,
} from './outcome';
import type { PrepareOutcome } from './prepare';
import { rowBucketsOf, RowRecordWriter } from './row-records';

/** The outputs would not add up: nothing is claimed (no summary, no job status) until they do. */
export class CountsMismatch extends Error {
  override readonly name = 'CountsMismatch';
}

/** A file Finalize needs is missing (a collected attempt's results, a retry's requests). */
export class WorkFileMissing extends Error {
  override readonly name = 'WorkFileMissing';
}

export interface FinalizeInput {
  jobId: string;
  /** Prepare's outcome, when the workflow passes it on. */
  outcome?: PrepareOutcome;
  /** The reconciler finalizes a job whose FinalizeJob failed (its status is `failed`); never from state input. */
  recovering?: boolean;
}

const OUTCOMES: readonly PrepareOutcome[] = ['ready', 'rejected', 'empty'];

/** `{jobId, outcome?}` from the state's input (Prepare's output, or the Map's input passed on). */
export function parseFinalizeInput(input: unknown): FinalizeInput {
  if (typeof input !== 'object' || input === null) throw new InvalidStateInput('the state input must be an object');
  const { jobId, outcome } = input as { jobId?: unknown; outcome?: unknown };
  if (typeof jobId !== 'string' || jobId === '') throw new InvalidStateInput('jobId must be a non-empty string');
  return OUTCOMES.includes(outcome as PrepareOutcome) ? { jobId, outcome: outcome as PrepareOutcome } : { jobId };
}

export interface FinalizeOutput {
  jobId: string;
  status: JobStatus;
  counts: RowCounts;
}

export interface FinalizeDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'maxAttempts' | 'pricesJson' | 'rowTtlDays'>;
  notify: { clients: NotifyClients; config: NotifyConfig };
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where results files are staged (default os.tmpdir()). */
  tmpDir?: string;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
}

/** One line of results.jsonl. */
export interface ResultRow {
  custom_id: string;
  status: ResultStatus;
  /** The attempt that decided the row (0: never submitted, the job was rejected). */
  attempts: number;
  batch_id: string | null;
  message?: unknown;
  error?: { type: string; message: string };
  usage: TokenTotals | null;
  cost_usd: number | null;
}

/** One line of errors.jsonl. */
export interface ErrorRow {
  custom_id: string;
  status: Exclude<ResultStatus, 'succeeded'>;
  error_type: string | null;
  message: string;
  attempts: number;
  batch_id: string | null;
  /** For chunk_failed: the chunk's failure. */
  cause?: string;
}

export interface JobSummary {
  jobId: string;
  /** Batches of creates whose answers were lost, found by the reconciler after the job ended (shared/jobs/orphans.ts). */
  orphanBatches?: OrphanBatch[];
  input: { bucket: string; key: string };
  status: JobStatus;
  validationMode: 'strict' | 'lenient';
  counts: RowCounts & { total: number };
  errorsByType: Record<string, number>;
  tokens: { input: number; output: number; cache_creation_input: number; cache_read_input: number };
  cost: {
    batchUsd: number;
    standardUsd: number;
    savedUsd: number;
    byModel: Record<string, { requests: number; batchUsd: number | null; standardUsd: number | null }>;
    unpricedModels: string[];
    /**
     * Succeeded rows whose cost is null, by reason (cost/cost.ts UnpricedReason); absent when every
     * succeeded row has a cost. The dollar figures leave them out; so do the tokens, but for
     * `unknown_model` rows, whose tokens are counted.
     */
    unpricedRows?: Partial<Record<UnpricedReason, number>>;
  };
  chunks: number;
  batches: Array<{ chunk: number; attempt: number; batchId: string; counts: ChunkAttempt['counts'] | null }>;
  retries: { attempts: number; rows: number };
  timings: { createdAt: string; endedAt: string; durationSeconds: number };
  /** The failure a recovered job had (its FinalizeJob failed; the reconciler finalized it later). */
  recoveredFrom?: { error: string; cause: string };
}

/** Errors that say the API key itself is wrong or missing: no chunk of the job can succeed. */
const API_KEY_ERRORS: ReadonlySet<string> = new Set(['ApiAuthError', 'ApiKeyMissing']);

const MESSAGES = {
  expired: 'The batch expired before this request was processed.',
  canceled: 'The request was canceled before it was processed.',
  notSubmitted: 'The request was not submitted: the job was canceled first.',
  rejected: 'The request was not submitted: strict validation rejected the file (see invalid.jsonl).',
  missing: 'The batch returned no result for this request.',
} as const;

/** A row without a line in an attempt whose results had lines that could not be read, nor told whose. */
const missingAmongUnreadable = (lines: number) =>
  'The batch returned no readable result for this request: ' +
  (lines === 1
    ? "one of its result lines could not be read, nor whose it was, and was likely this request's."
    : `${lines} of its result lines could not be read, nor whose they were, and this request's was likely among them.`) +
  ' It may have been billed.';

const DAMAGE_TEXT: Readonly<Record<DamageKind, string>> = {
  not_json: 'cut short, or not JSON',
  not_result: 'not a result',
  too_long: 'longer than the longest line batchline reads',
};

/** The message of a result_unreadable row: why, and where the line is in the API's results file. */
function unreadableMessage(line: UnreadableLine['unreadable'] | undefined): string {
  if (line === undefined) return 'The stored result line for this request could not be read.';
  return (
    `The API's result line for this request could not be read (${DAMAGE_TEXT[line.damage]}; at byte ${line.offset} of the batch's ` +
    `results file). The request was processed and may have been billed.`
  );
}

export async function finalizeJob(input: FinalizeInput, deps: FinalizeDeps): Promise<FinalizeOutput> {
  const { s3, dynamo, config } = deps;
  const now = deps.now ?? Date.now;
  const observer = deps.observer ?? quietObserver;
  const job = await readJob(dynamo, config.table, input.jobId);
  if (job.totalRows === undefined || job.validRows === undefined || job.invalidRows === undefined) {
    throw new CountsMismatch(`job ${job.jobId} has no row counts: Prepare did not finish`);
  }
  const keys = jobKeys(job.jobId);
  const recovering = input.recovering === true && job.status === 'failed';
  const rejected =
    input.outcome === 'rejected' || job.status === 'rejected' || (recovering && job.validationMode === 'strict' && job.invalidRows > 0);
  const tally = new Tally(priceTableFromConfig(config));
  const outputs = new Outputs(s3, config.bucket, keys);
  // A rejected API key fails every chunk alike: the job has failed, though every row is accounted for.
  let keyFailure: { error: string; cause: string } | undefined;

  try {
    if (rejected) {
      for await (const customId of validCustomIds(job, deps)) {
        await outputs.write(tally.add({ custom_id: customId, status: 'canceled', attempts: 0, batch_id: null, usage: null, cost_usd: null }), {
          message: MESSAGES.rejected,
        });
      }
    } else {
      for await (const chunk of queryPartition<ChunkItem>(dynamo, config.table, jobPk(job.jobId), CHUNK_SK_PREFIX)) {
        await finalizeChunk(chunk, job, tally, outputs, deps);
        tally.chunk(chunk);
        if (chunk.status === 'failed' && chunk.failure && API_KEY_ERRORS.has(chunk.failure.error)) keyFailure ??= chunk.failure;
      }
    }
    checkCounts(job, tally);
    await outputs.finish();
  } catch (error) {
    await outputs.abort();
    throw error;
  }
  await copyObject(s3, config.bucket, keys.invalidWork, keys.invalid);

  const canceled = job.cancelRequested === true && (!recovering || tally.counts.canceled > 0);
  const status: JobStatus = rejected ? 'rejected' : keyFailure ? 'failed' : canceled ? 'canceled' : 'succeeded';
  const endedAt = job.endedAt ?? isoAt(now());
  const summary = tally.summary(job, status, endedAt);
  if (recovering && job.failure) summary.recoveredFrom = job.failure;
  await putJson(s3, config.bucket, keys.summary, summary);
  const counts = rowCounts(summary.counts);
  await updateItem(dynamo, config.table, jobKey(job.jobId), {
    set: { status, endedAt, counts, costUsd: summary.cost.batchUsd, failure: keyFailure, updatedAt: isoAt(now()) },
  });
  observer.metric('JobsEnded', 1);
  observer.metric('CostUsd', summary.cost.batchUsd);
  if (summary.cost.unpricedModels.length > 0) {
    observer.warn('no price for these models: the cost leaves their rows out', { models: summary.cost.unpricedModels });
  }
  observer.info('finalized', {
    status,
    counts,
    errorsByType: summary.errorsByType,
    costUsd: summary.cost.batchUsd,
    chunks: summary.chunks,
    batches: summary.batches.length,
    retries: summary.retries,
    durationSeconds: summary.timings.durationSeconds,
  });
  try {
    await announceJobEnded(
      {
        jobId: job.jobId,
        status,
        bucket: job.bucket,
        key: job.key,
        counts,
        costUsd: summary.cost.batchUsd,
        resultsPrefix: keys.resultsPrefix,
        failure: keyFailure,
      },
      deps.notify.clients,
      deps.notify.config,
    );
  } catch (error) {
    // The job is done and its outputs are written: a lost notification must not turn it into a
    // failed job (the workflow's Catch would). It is logged for the alarm on errors instead.
    if (!(error instanceof AnnounceFailed)) throw error;
    observer.error('the job ended, but announcing it failed', { status, error: errorFields(error) });
  }
  return { jobId: job.jobId, status, counts };
}

function rowCounts(counts: JobSummary['counts']): RowCounts {
  const { succeeded, errored, expired, canceled, invalid } = counts;
  return { succeeded, errored, expired, canceled, invalid };
}

function checkCounts(job: JobItem, tally: Tally): void {
  const c = tally.counts;
  const sum = c.succeeded + c.errored + c.expired + c.canceled + (job.invalidRows ?? 0);
  if (sum !== job.totalRows || tally.lines !== job.validRows) {
    throw new CountsMismatch(
      `job ${job.jobId}: ${tally.lines} result lines for ${job.validRows} valid rows; ` +
        `succeeded ${c.succeeded} + errored ${c.errored} + expired ${c.expired} + canceled ${c.canceled} + invalid ${job.invalidRows} = ${sum}, ` +
        `not the ${job.totalRows} rows of the input`,
    );
  }
}

/** results.jsonl and errors.jsonl, written together. */
class Outputs {
  private readonly results: GatheredWriter;
  private readonly errors: GatheredWriter;

  constructor(s3: S3Client, bucket: string, keys: ReturnType<typeof jobKeys>) {
    this.results = new GatheredWriter(new ObjectWriter(s3, bucket, keys.results));
    this.errors = new GatheredWriter(new ObjectWriter(s3, bucket, keys.errors));
  }

  /**
   * Writes a row. `rawMessage` is the succeeded message's JSON exactly as the API sent it (so large
   * integers in tool inputs survive), written as the row's `message` (the row then has none of its
   * own); `detail` is what errors.jsonl needs beyond the row.
   */
  async write(row: ResultRow, detail: { message?: string; cause?: string } = {}, rawMessage?: Buffer): Promise<void> {
    if (rawMessage) {
      const head = JSON.stringify(row);
      this.results.add(`${head.slice(0, -1)},"message":`);
      this.results.add(rawMessage);
      this.results.add('}\n');
    } else {
      this.results.add(`${JSON.stringify(row)}\n`);
    }
    if (row.status !== 'succeeded') {
      const error: ErrorRow = {
        custom_id: row.custom_id,
        status: row.status,
        error_type: row.error?.type ?? null,
        message: row.error?.message ?? detail.message ?? '',
        attempts: row.attempts,
        batch_id: row.batch_id,
        ...(detail.cause === undefined ? {} : { cause: detail.cause }),
      };
      this.errors.add(`${JSON.stringify(error)}\n`);
    }
    const results = this.results.backpressure();
    const errors = this.errors.backpressure();
    if (results || errors) await Promise.all([results, errors]);
  }

  async finish(): Promise<void> {
    await Promise.all([this.results.finish(), this.errors.finish()]);
  }

  async abort(): Promise<void> {
    await Promise.all([this.results.abort(), this.errors.abort()]);
  }
}

/** What a GatheredWriter copies together before handing it to the upload. */
const GATHER_BYTES = 256 * 1024;

/**
 * An ObjectWriter fed in large pieces: small writes (a row is three) are copied into a buffer that
 * is handed over when full, so a row costs a copy rather than stream writes and awaits.
 */
class GatheredWriter {
  private buffer = Buffer.allocUnsafe(GATHER_BYTES);
  private used = 0;
  /** The upload asked to wait (its buffer is full): settles when it drained, or fails with it. */
  private pressure: Promise<unknown> | undefined;

  constructor(private readonly writer: ObjectWriter) {}

  add(piece: string | Buffer): void {
    const bytes = typeof piece === 'string' ? Buffer.byteLength(piece) : piece.length;
    if (bytes > this.buffer.length - this.used) {
      this.handOver();
      if (bytes > this.buffer.length) {
        this.send(typeof piece === 'string' ? Buffer.from(piece) : piece);
        return;
      }
    }
    this.used += typeof piece === 'string' ? this.buffer.write(piece, this.used) : piece.copy(this.buffer, this.used);
  }

  /** What the caller must wait for before adding more, if anything. */
  backpressure(): Promise<unknown> | undefined {
    const pressure = this.pressure;
    this.pressure = undefined;
    return pressure;
  }

  async finish(): Promise<void> {
    this.handOver();
    await this.backpressure();
    await this.writer.finish();
  }

  async abort(): Promise<void> {
    // A failed upload's pending wait fails too; the abort is what reports.
    this.backpressure()?.catch(() => undefined);
    await this.writer.abort();
  }

  private handOver(): void {
    if (this.used === 0) return;
    this.send(this.buffer.subarray(0, this.used));
    this.buffer = Buffer.allocUnsafe(GATHER_BYTES);
    this.used = 0;
  }

  private send(bytes: Buffer): void {
    const wait = this.writer.append(bytes);
    // Both waits are kept: a failed upload rejects each, and neither may go unobserved.
    if (wait) this.pressure = this.pressure ? Promise.all([this.pressure, wait]) : wait;
  }
}

/** What the summary reports, gathered row by row and chunk by chunk. */
class Tally {
  readonly counts: Record<ResultStatus, number> = { succeeded: 0, errored: 0, expired: 0, canceled: 0 };
  readonly errorsByType = new Map<string, number>();
  readonly unpricedRows = new Map<UnpricedReason, number>();
  readonly cost: CostTotals;
  readonly batches: JobSummary['batches'] = [];
  chunks = 0;
  retryAttempts = 0;
  retriedRows = 0;
  lines = 0;

  constructor(readonly prices: PriceTable) {
    this.cost = new CostTotals(prices);
  }

  /** Counts a row; `usage` (a priced model's or an unknown one's) goes into the totals, `unpriced` says why it has no cost. */
  add(row: ResultRow, usage?: { usage: Usage; model: string }, unpriced?: UnpricedReason): ResultRow {
    this.lines += 1;
    this.counts[row.status] += 1;
    if (row.error) this.errorsByType.set(row.error.type, (this.errorsByType.get(row.error.type) ?? 0) + 1);
    if (usage) this.cost.add(usage.usage, usage.model);
    if (unpriced) this.unpricedRows.set(unpriced, (this.unpricedRows.get(unpriced) ?? 0) + 1);
    return row;
  }

  chunk(chunk: ChunkItem): void {
    this.chunks += 1;
    for (const attempt of chunk.attempts) {
      if (attempt.batchId) this.batches.push({ chunk: chunk.chunk, attempt: attempt.attempt, batchId: attempt.batchId, counts: attempt.counts ?? null });
      if (attempt.attempt > 1) this.retryAttempts += 1;
      this.retriedRows += attempt.retryRows ?? 0;
    }
  }

  summary(job: JobItem, status: JobStatus, endedAt: string): JobSummary {
    const cost = this.cost.toJSON();
    const tokens = cost.tokens;
    // fromEntries: a model id is the API's text, and `__proto__` must stay an ordinary key.
    const byModel: JobSummary['cost']['byModel'] = Object.fromEntries(
      Object.entries(cost.models).map(([model, entry]) => [
        model,
        { requests: entry.requests, batchUsd: entry.usd?.totalUsd ?? null, standardUsd: entry.usd?.standardTotalUsd ?? null },
      ]),
    );
    return {
      jobId: job.jobId,
      input: { bucket: job.bucket, key: job.key },
      status,
      validationMode: job.validationMode,
      counts: { total: job.totalRows ?? 0, ...this.counts, invalid: job.invalidRows ?? 0 },
      errorsByType: Object.fromEntries([...this.errorsByType].sort(([a], [b]) => a.localeCompare(b))),
      tokens: {
        input: tokens.input_tokens,
        output: tokens.output_tokens,
        cache_creation_input: tokens.cache_creation_input_tokens,
        cache_read_input: tokens.cache_read_input_tokens,
      },
      cost: {
        batchUsd: cost.totalUsd,
        standardUsd: cost.standardTotalUsd,
        savedUsd: cost.discountUsd,
        byModel,
        unpricedModels: cost.unpricedModels,
        ...(this.unpricedRows.size > 0 ? { unpricedRows: Object.fromEntries([...this.unpricedRows].sort(([a], [b]) => a.localeCompare(b))) } : {}),
      },
      chunks: this.chunks,
      batches: this.batches,
      retries: { attempts: this.retryAttempts, rows: this.retriedRows },
      timings: {
        createdAt: job.createdAt,
        endedAt,
        durationSeconds: Math.max(0, Math.round((Date.parse(endedAt) - Date.parse(job.createdAt)) / 1000)),
      },
    };
  }
}

/** One chunk's rows, in input order, into the outputs. */
async function finalizeChunk(chunk: ChunkItem, job: JobItem, tally: Tally, outputs: Outputs, deps: FinalizeDeps): Promise<void> {
  const { s3, config } = deps;
  const keys = jobKeys(job.jobId);
  const attempts = new Map(chunk.attempts.map((a) => [a.attempt, a]));

  // The last attempt each retried row is in (rows in no retry file: attempt 1).
  const lastAttempt = new Map<string, number>();
  for (const attempt of [...attempts.keys()].sort((a, b) => a - b)) {
    if (attempt < 2) continue;
    const ref = { jobId: job.jobId, chunk: chunk.chunk, attempt };
    await needed(requestsKey(ref), async () => {
      for await (const { customId } of requestEntries(s3, config.bucket, ref)) lastAttempt.set(customId, attempt);
    });
  }
  const latest = (customId: string) => lastAttempt.get(customId) ?? 1;

  // The chunk's rows in input order (attempt 1's requests file), and where each custom_id is first.
  const customIds: string[] = [];
  const positions = new Map<string, number>();
  for await (const customId of requestCustomIds(s3, config.bucket, { jobId: job.jobId, chunk: chunk.chunk, attempt: 1 })) {
    if (!positions.has(customId)) positions.set(customId, customIds.length);
    customIds.push(customId);
  }
  const slotOf = (index: number) => positions.get(customIds[index]!)!;

  // Rows an uncollected attempt left: their records, one writer per attempt (Collect never wrote them).
  const failedRows = new Map<number, RowRecordWriter>();
  const failedRowsOf = (attempt: number, batchId: string | undefined) => {
    let writer = failedRows.get(attempt);
    if (!writer) {
      const now = (deps.now ?? Date.now)();
      const page = { jobId: job.jobId, chunk: chunk.chunk, attempt, batchId, buckets: rowBucketsOf(job), writer: 'F' as const };
      writer = new RowRecordWriter(deps.dynamo, config.table, { ...page, updatedAt: isoAt(now), ttl: ttlAfter(now, config.rowTtlDays) });
      failedRows.set(attempt, writer);
    }
    return writer;
  };

  const staged = new StagedLines(await mkdtemp(path.join(deps.tmpDir ?? tmpdir(), 'batchline-finalize-')), customIds.length);
  let reading: Promise<unknown> | undefined;
  try {
    for (const [attempt, record] of attempts) {
      if (!record.batchId) continue;
      const found = await stageResults(s3, config.bucket, keys.chunkResults(chunk.chunk, attempt), (customId, line) => {
        const slot = positions.get(customId);
        return slot !== undefined && latest(customId) === attempt ? staged.add(slot, line) : undefined;
      });
      if (!found && record.collectedAt) throw new WorkFileMissing(`${keys.chunkResults(chunk.chunk, attempt)} is missing, yet attempt ${attempt} was collected`);
    }
    await staged.flush();

    // A window: up to WINDOW_ROWS rows from `start`, fewer once their lines reach WINDOW_BYTES.
    const windowAt = (start: number) => {
      const slots: number[] = [];
      let bytes = 0;
      while (start + slots.length < customIds.length && slots.length < WINDOW_ROWS && bytes < WINDOW_BYTES) {
        const slot = slotOf(start + slots.length);
        slots.push(slot);
        bytes += staged.lengthOf(slot);
      }
      const lines = staged.read(slots);
      // Awaited when its turn comes (or in `finally`): meanwhile a failure must not count as unhandled.
      lines.catch(() => undefined);
      reading = lines;
      return { start, slots, lines };
    };

    const failure = chunkFailureText(chunk);
    for (let next = windowAt(0); next.slots.length > 0; ) {
      const { start, slots } = next;
      const raws = await next.lines;
      // The next window's lines are read while this one's rows are written.
      next = windowAt(start + slots.length);
      for (let i = 0; i < slots.length; i++) {
        const index = start + i;
        const customId = customIds[index]!;
        const raw = raws[i];
        const attempt = latest(customId);
        const record = attempts.get(attempt);
        if (!record) throw new WorkFileMissing(`${customId} is in a requests file of chunk ${chunk.chunk} attempt ${attempt}, which the chunk has no record of`);
        const base = { custom_id: customId, attempts: attempt, batch_id: record.batchId ?? null, usage: null, cost_usd: null };
        let written = false;
        const line = raw && readResultLine(raw);
        if (line && 'unreadable' in line) {
          // As Collect decided: final, whether or not the attempt was collected.
          const error = { type: RESULT_UNREADABLE, message: unreadableMessage(line.unreadable) };
          await outputs.write(tally.add({ ...base, status: 'errored', error }));
          written = true;
        } else if (line) {
          const decision = decideRow(line.result, { attempt, maxAttempts: config.maxAttempts, cancelRequested: job.cancelRequested === true });
          // Collect made this line the row's last word; or the attempt died before Collect decided, and
          // the line is final anyway.
          if (record.collectedAt || decision.final) {
            await writeResult(base, line, tally, outputs);
            written = true;
          }
        } else if (record.collectedAt) {
          const missing = record.unreadableLines ? missingAmongUnreadable(record.unreadableLines) : MESSAGES.missing;
          const row: ResultRow = record.batchId
            ? { ...base, status: 'errored', error: { type: MISSING_RESULT, message: missing } }
            : { ...base, status: 'canceled' };
          await outputs.write(tally.add(row), { message: record.batchId ? missing : MESSAGES.notSubmitted });
          written = true;
        }
        if (!written) {
          const row: ResultRow = { ...base, status: 'errored', error: { type: failure.type, message: failure.message } };
          await outputs.write(tally.add(row), { cause: failure.cause });
          failedRowsOf(attempt, record.batchId).add({ customId, index, status: 'errored', final: true, errorType: failure.type });
        }
      }
    }
    for (const writer of failedRows.values()) await writer.flush();
  } finally {
    await reading?.catch(() => undefined);
    await staged.remove();
  }
}

/**
 * Rows are written a window at a time, their result lines read together: at most this many rows,
 * fewer once their lines reach this many bytes (a window holds at most that and one more line).
 */
const WINDOW_ROWS = 2_000;
const WINDOW_BYTES = 16 * 1024 * 1024;

/** Where a staged line is: its file (StagedLines' files) and its bytes there. */
interface LineAt {
  file: number;
  offset: number;
  length: number;
}

/**
 * Lines of one file nearer than this are read together: the bytes between are read and dropped.
 * A window spends at most its row count times this on such bytes.
 */
const READ_GAP_BYTES = 4 * 1024;
/** The most one read takes in (a longer line is read whole). */
const READ_MAX_BYTES = 8 * 1024 * 1024;
/** Reads in flight at once (libuv's thread pool has 4 threads). */
const READ_CONCURRENCY = 4;

/**
 * A chunk's result lines, one per row (its slot: its position in input order), staged in temp
 * files by slot: rows [k·WINDOW_ROWS, (k+1)·WINDOW_ROWS) go to file k. The API returns results in
 * any order (the simulator shuffles them), yet the lines of a window of rows then lie together in
 * a file or two, read in a few large reads rather than one small read per row. Memory holds the
 * rows' locations and a buffer per file; result text only as the windows being read and written.
 */
class StagedLines {
  private readonly files: StagingFile[] = [];
  private readonly lines: Array<LineAt | undefined>;

  constructor(
    private readonly dir: string,
    rows: number,
  ) {
    this.lines = new Array<LineAt | undefined>(rows);
  }

  /** Stages the line of the row in `slot`, unless the row has one already (the first line wins). */
  add(slot: number, line: Buffer): Promise<void> | undefined {
    if (this.lines[slot]) return undefined;
    const file = Math.floor(slot / WINDOW_ROWS);
    const staging = (this.files[file] ??= new StagingFile(path.join(this.dir, `rows-${file}.jsonl`)));
    this.lines[slot] = { file, offset: staging.size, length: line.length };
    return staging.add(line);
  }

  /** Writes what is still buffered: reads see every line staged so far. */
  async flush(): Promise<void> {
    for (const file of this.files) await file?.flush();
  }

  lengthOf(slot: number): number {
    return this.lines[slot]?.length ?? 0;
  }

  /**
   * The staged lines of `slots` (undefined for a row without one), in the same order. They are
   * sorted by file and offset, and runs of nearby lines read in one piece.
   */
  async read(slots: readonly number[]): Promise<Array<Buffer | undefined>> {
    const wanted: Array<{ i: number; at: LineAt }> = [];
    slots.forEach((slot, i) => {
      const at = this.lines[slot];
      if (at) wanted.push({ i, at });
    });
    wanted.sort((a, b) => a.at.file - b.at.file || a.at.offset - b.at.offset);

    // wanted[from, to) is read as one range [start, end) of one file.
    const runs: Array<{ file: number; start: number; end: number; from: number; to: number }> = [];
    let run: (typeof runs)[number] | undefined;
    wanted.forEach(({ at }, k) => {
      const end = at.offset + at.length;
      if (run && at.file === run.file && at.offset - run.end <= READ_GAP_BYTES && end - run.start <= READ_MAX_BYTES) {
        run.end = Math.max(run.end, end);
        run.to = k + 1;
      } else {
        run = { file: at.file, start: at.offset, end, from: k, to: k + 1 };
        runs.push(run);
      }
    });

    const lines = new Array<Buffer | undefined>(slots.length);
    let next = 0;
    const reader = async () => {
      for (let r = next++; r < runs.length; r = next++) {
        const { file, start, end, from, to } = runs[r]!;
        const bytes = await this.files[file]!.read(start, end - start);
        for (const { i, at } of wanted.slice(from, to)) lines[i] = bytes.subarray(at.offset - start, at.offset - start + at.length);
      }
    };
    // All settled before returning: no read is left in flight on a file about to be closed.
    const settled = await Promise.allSettled(Array.from({ length: Math.min(READ_CONCURRENCY, runs.length) }, reader));
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
    return lines;
  }

  async remove(): Promise<void> {
    for (const file of this.files) await file?.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Bytes a staging file gathers before it writes them. */
const STAGING_BUFFER_BYTES = 64 * 1024;

/** A temp file that lines are appended to through a buffer, then read back by position. */
class StagingFile {
  private handle: FileHandle | undefined;
  private readonly buffer = Buffer.allocUnsafe(STAGING_BUFFER_BYTES);
  private used = 0;
  private written = 0;
  /** Where the next line lands: the bytes added so far, buffered ones included. */
  size = 0;

  constructor(private readonly path: string) {}

  /** Appends bytes; a promise only when the buffer had to be written out first. */
  add(bytes: Buffer): Promise<void> | undefined {
    this.size += bytes.length;
    if (bytes.length <= this.buffer.length - this.used) {
      this.used += bytes.copy(this.buffer, this.used);
      return undefined;
    }
    return this.spill(bytes);
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await this.write(this.buffer.subarray(0, this.used));
    this.used = 0;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle!.read(buffer, filled, length - filled, offset + filled);
      if (bytesRead === 0) throw new WorkFileMissing(`a staged results file ended at ${offset + filled}, before ${offset + length}`);
      filled += bytesRead;
    }
    return buffer;
  }

  async close(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
  }

  private async spill(bytes: Buffer): Promise<void> {
    await this.flush();
    if (bytes.length > this.buffer.length) await this.write(bytes);
    else this.used = bytes.copy(this.buffer, 0);
  }

  private async write(bytes: Buffer): Promise<void> {
    this.handle ??= await open(this.path, 'w+');
    let done = 0;
    while (done < bytes.length) done += (await this.handle.write(bytes, done, bytes.length - done, this.written + done)).bytesWritten;
    this.written += bytes.length;
  }
}

/**
 * A result line: its result, and for a succeeded one its message's bytes as the API sent them; or a
 * line that cannot be read, with what Collect stored of the API's line when it stood in for one.
 */
type ResultLine = { result: BatchResult; message?: Buffer } | { unreadable: UnreadableLine['unreadable'] | undefined };

const SUCCEEDED = Buffer.from('"succeeded"');
const RESULT_KEY = jsonKey('result');
const TYPE_KEY = jsonKey('type');
const MESSAGE_KEY = jsonKey('message');
const MODEL_KEY = jsonKey('model');
const USAGE_KEY = jsonKey('usage');

/**
 * Reads a result line. A succeeded line (nearly all of them) is not parsed whole: its message is
 * the bulk of it and is copied into results.jsonl as bytes (big integers in tool inputs survive a
 * copy, not a JSON round trip), so only the message's model and usage are parsed, found in one
 * scan of the line. Any other line, or one the scan cannot follow (keys spelled with escapes), is
 * parsed whole. The scan trusts the line to be JSON: Collect stores only lines that parsed (the
 * API's) or that it wrote itself. Model and usage are whatever the line holds: they are read for
 * pricing with readMessageUsage, which takes any shape.
 */
function readResultLine(raw: Buffer): ResultLine {
  try {
    const scanned = scanSucceeded(raw);
    if (scanned) return scanned;
  } catch {
    // A line the scan cannot follow is parsed whole.
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return { unreadable: undefined };
  }
  const line = asResultLine(parsed);
  if (!line) return { unreadable: storedUnreadable(parsed) };
  return { result: line.result, message: line.result.type === 'succeeded' ? rawAt(raw, [RESULT_KEY, MESSAGE_KEY]) : undefined };
}

/** A succeeded line read by the scan (see readResultLine), or undefined when the scan cannot take it. */
function scanSucceeded(raw: Buffer): ResultLine | undefined {
  const result = memberValue(raw, skipSpace(raw, 0), RESULT_KEY);
  const type = result < 0 ? -1 : memberValue(raw, result, TYPE_KEY);
  if (type < 0 || !raw.subarray(type, type + SUCCEEDED.length).equals(SUCCEEDED)) return undefined;
  const message = memberValue(raw, result, MESSAGE_KEY);
  const model = message < 0 ? -1 : memberValue(raw, message, MODEL_KEY);
  // The API writes usage last: the scan for it steps over the content once, and is then near the end.
  const usage = model < 0 ? -1 : memberValue(raw, message, USAGE_KEY);
  const usageEnd = usage < 0 ? -1 : valueEnd(raw, usage);
  const messageEnd = usage < 0 ? -1 : objectEnd(raw, usageEnd);
  if (messageEnd < 0) return undefined;
  const parsed: unknown = {
    model: JSON.parse(raw.toString('utf8', model, valueEnd(raw, model))),
    usage: JSON.parse(raw.toString('utf8', usage, usageEnd)),
  };
  return { result: { type: 'succeeded', message: parsed as Message }, message: raw.subarray(message, messageEnd) };
}

/** What Collect stored in place of an API line it could not read, if `parsed` is that (collect.ts UnreadableLine). */
function storedUnreadable(parsed: unknown): UnreadableLine['unreadable'] | undefined {
  const unreadable = (parsed as { unreadable?: unknown } | null)?.unreadable;
  if (typeof unreadable !== 'object' || unreadable === null) return undefined;
  const { damage, offset } = unreadable as { damage?: unknown; offset?: unknown };
  if (typeof damage !== 'string' || !Object.hasOwn(DAMAGE_TEXT, damage) || typeof offset !== 'number') return undefined;
  return unreadable as UnreadableLine['unreadable'];
}

/**
 * A result line's row: succeeded → message, usage, cost (whatever of them it has); errored → error;
 * expired/canceled → neither.
 */
async function writeResult(
  base: Pick<ResultRow, 'custom_id' | 'attempts' | 'batch_id' | 'usage' | 'cost_usd'>,
  { result, message }: { result: BatchResult; message?: Buffer },
  tally: Tally,
  outputs: Outputs,
): Promise<void> {
  switch (result.type) {
    case 'succeeded': {
      const parsedMessage: unknown = (result as { message?: unknown }).message;
      const read = readMessageUsage(parsedMessage);
      const cost = read.unpriced === undefined ? (rowCostUsd(read.usage, read.model, tally.prices) ?? null) : null;
      const row: ResultRow = { ...base, status: 'succeeded', usage: read.usage ? tokenTotals(read.usage) : null, cost_usd: cost };
      const priced = read.unpriced === undefined ? { usage: read.usage, model: read.model } : undefined;
      const unpriced = read.unpriced ?? (cost === null ? 'unknown_model' : undefined);
      // A message the scan missed (keys spelled with escapes) is written as parsed; a row without one has none.
      const bytes = message ?? (parsedMessage === undefined ? undefined : Buffer.from(JSON.stringify(parsedMessage)));
      await outputs.write(tally.add(row, priced, unpriced), {}, bytes);
      return;
    }
    case 'errored': {
      const error = { type: errorTypeOf(result), message: errorMessageOf(result) ?? '' };
      await outputs.write(tally.add({ ...base, status: 'errored', error, usage: null, cost_usd: null }));
      return;
    }
    case 'expired':
      await outputs.write(tally.add({ ...base, status: 'expired', usage: null, cost_usd: null }), { message: MESSAGES.expired });
      return;
    case 'canceled':
      await outputs.write(tally.add({ ...base, status: 'canceled', usage: null, cost_usd: null }), { message: MESSAGES.canceled });
      return;
    default: {
      const type = unknownResultType((result as { type?: unknown }).type);
      await outputs.write(tally.add({ ...base, status: 'errored', error: { type, message: 'The API returned a result type batchline does not know.' }, usage: null, cost_usd: null }));
    }
  }
}

function chunkFailureText(chunk: ChunkItem): { type: string; message: string; cause: string } {
  if (chunk.failure?.error === 'CreateOutcomeUnknown') {
    return { type: CREATE_UNKNOWN, message: `The batch create went unanswered and was not repeated: ${chunk.failure.cause}`, cause: chunk.failure.cause };
  }
  if (chunk.failure) return { type: CHUNK_FAILED, message: `The chunk failed: ${chunk.failure.error}`, cause: chunk.failure.cause };
  return { type: CHUNK_FAILED, message: `The chunk did not finish (status ${chunk.status}).`, cause: `chunk ${chunk.chunk} ended in status ${chunk.status}` };
}

/**
 * Streams a results object's lines to `onLine` with their custom_ids, waiting on the promise it
 * returns, if any. Returns false when the object does not exist.
 */
async function stageResults(
  s3: S3Client,
  bucket: string,
  key: string,
  onLine: (customId: string, line: Buffer) => Promise<void> | undefined,
): Promise<boolean> {
  let body: Readable & AsyncIterable<Uint8Array>;
  try {
    body = await readObject(s3, bucket, key);
  } catch (error) {
    if (isS3NotFound(error)) return false;
    throw error;
  }
  try {
    for await (const line of splitLines(body, { stripBom: false })) {
      if (isBlank(line.bytes)) continue;
      const customId = resultCustomId(line.bytes);
      if (customId === undefined) continue;
      const pending = onLine(customId, line.bytes);
      if (pending) await pending;
    }
  } finally {
    body.destroy();
  }
  return true;
}

/**
 * A results line's custom_id: read from the line's head (the API writes it first) without parsing
 * the line, whose message may be large; a line of any other shape is parsed. Undefined when the
 * line names none (or is not JSON): such a line is no row's.
 */
export function resultCustomId(line: Buffer): string | undefined {
  const leading = leadingCustomId(line, { mayRepeat: false });
  if (leading !== undefined) return leading;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.toString('utf8'));
  } catch {
    return undefined;
  }
  const customId = (parsed as { custom_id?: unknown } | null)?.custom_id;
  return typeof customId === 'string' ? customId : undefined;
}

async function needed(key: string, read: () => Promise<void>): Promise<void> {
  try {
    await read();
  } catch (error) {
    if (isS3NotFound(error)) throw new WorkFileMissing(`${key} is missing`);
    throw error;
  }
}


/** Copies a work file to the outputs inside S3 (no bytes through the function); a missing one becomes empty. */
async function copyObject(s3: S3Client, bucket: string, from: string, to: string): Promise<void> {
  try {
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: `${bucket}/${encodeURIComponent(from).replace(/%2F/g, '/')}` }));
  } catch (error) {
    if (!isS3NotFound(error)) throw error;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: to, Body: '', ContentLength: 0, ContentType: 'application/x-ndjson' }));
  }
}

/**
 * The custom_ids of a rejected job's valid rows, in input order, from what Prepare recorded (never
 * the input, which may have been overwritten or deleted since): the rows before the first invalid
 * line are in the chunk files `rejectedValidIds` names, the ids of the later ones follow in it.
 */
async function* validCustomIds(job: JobItem, deps: FinalizeDeps): AsyncGenerator<string> {
  const { s3, config } = deps;
  const keys = jobKeys(job.jobId);
  const key = keys.rejectedValidIds;
  // The header alone first: the ids after it are read once the chunk files have been.
  let header: unknown;
  for await (const line of neededLines(key, objectLines(s3, config.bucket, key))) {
    header = parseJsonLine(line, key);
    break;
  }
  const chunkFiles = (header as { chunkFiles?: unknown } | undefined)?.chunkFiles;
  if (typeof chunkFiles !== 'number' || !Number.isInteger(chunkFiles) || chunkFiles < 0) {
    throw new ChunkFileCorrupt(`${key} does not start with {"chunkFiles": n}`);
  }
  for (let chunk = 0; chunk < chunkFiles; chunk++) {
    const ref = { jobId: job.jobId, chunk, attempt: 1 };
    yield* neededLines(requestsKey(ref), requestCustomIds(s3, config.bucket, ref));
  }
  let first = true;
  for await (const line of neededLines(key, objectLines(s3, config.bucket, key))) {
    if (first) {
      first = false;
      continue;
    }
    const customId = parseJsonLine(line, key);
    if (typeof customId !== 'string') throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} is not a custom_id`);
    yield customId;
  }
}

/** A work file's entries, streamed; a missing file is WorkFileMissing (as `needed` makes it). */
async function* neededLines<T>(key: string, entries: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    yield* entries;
  } catch (error) {
    if (isS3NotFound(error)) throw new WorkFileMissing(`${key} is missing`);
    throw error;
  }
}

function parseJsonLine(line: RawLine, key: string): unknown {
  try {
    return JSON.parse(line.bytes.toString('utf8'));
  } catch {
    throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} is not JSON`);
  }
}
