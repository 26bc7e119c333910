/**
 * Finalize: the job's outputs under `results/<jobId>/`, the job record marked done, and a `Job
 * Ended` event.
 *
 * - results.jsonl: exactly one line per valid input row, in input order, with its final state.
 * - errors.jsonl: every final row that did not succeed. invalid.jsonl: Prepare's report, copied.
 * - summary.json: counts, errors by type, tokens, cost, batches, retries, timings — written only
 *   after the counts are checked to add up (CountsMismatch otherwise).
 *
 * Input order in bounded memory: chunks are taken one at a time, in order. For a chunk, each
 * attempt's results file is downloaded to a temp file while its lines are indexed (custom_id →
 * offset, length; the row's latest attempt wins), then attempt 1's requests file — the chunk's rows
 * in input order — is streamed and each row's result line read back from the temp file by position.
 * Memory is bounded by one chunk's row count, never by result text.
 *
 * A row's final state comes from its latest attempt (the last requests file it is in):
 *   that attempt's result line → its status (a line Collect would retry, in an attempt that was
 *   never collected, becomes chunk_failed); no line, attempt collected without a batch → canceled
 *   (the job was canceled before it was submitted); no line, attempt collected → errored
 *   missing_result; no line, attempt never collected → errored chunk_failed with the chunk's cause.
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
import { CopyObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BatchResult, BatchResultLine, Usage } from '../anthropic/types';
import type { NotifyConfig, PipelineConfig } from '../config';
import { CostTotals, tokenTotals } from '../cost/cost';
import { priceTableFromConfig, type PriceTable } from '../cost/prices';
import { isBlank, splitLines } from '../jsonl/lines';
import { AnnounceFailed, announceJobEnded, type NotifyClients } from '../notify';
import { errorFields, quietObserver, type Observer } from '../observability';
import { queryPartition, updateItem } from '../store/dynamo';
import {
  CHUNK_SK_PREFIX,
  jobPk,
  type ChunkAttempt,
  type ChunkItem,
  type JobItem,
  type JobStatus,
  type RowCounts,
  type TokenTotals,
} from '../store/items';
import { jobKeys } from '../store/keys';
import { ObjectWriter, putJson, readObject } from '../store/s3';
import { BATCH_BODY_OVERHEAD, CustomIdSet, validateLine } from '../validation/request';
import { requestEntries } from './chunk-files';
import { InvalidStateInput, isoAt, jobKey, readJob } from './chunk-state';
import { CHUNK_FAILED, decideRow, errorMessageOf, errorTypeOf, MISSING_RESULT, rowCostUsd, type ResultStatus } from './outcome';
import { LINE_SLACK_BYTES, openSource, sourceLines, type PrepareOutcome } from './prepare';
import { ttlFrom } from './register';
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
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'maxAttempts' | 'maxBytesPerChunk' | 'pricesJson' | 'rowTtlDays'>;
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
  private readonly results: ObjectWriter;
  private readonly errors: ObjectWriter;

  constructor(s3: S3Client, bucket: string, keys: ReturnType<typeof jobKeys>) {
    this.results = new ObjectWriter(s3, bucket, keys.results);
    this.errors = new ObjectWriter(s3, bucket, keys.errors);
  }

  /**
   * Writes a row. `rawMessage` is the succeeded message's JSON exactly as the API sent it (so large
   * integers in tool inputs survive); `detail` is what errors.jsonl needs beyond the row.
   */
  async write(row: ResultRow, detail: { message?: string; cause?: string } = {}, rawMessage?: Buffer): Promise<void> {
    if (rawMessage) {
      const { message: _parsed, ...rest } = row;
      const head = JSON.stringify(rest);
      await this.results.write(`${head.slice(0, -1)},"message":`);
      await this.results.write(rawMessage);
      await this.results.write('}\n');
    } else {
      await this.results.writeLine(row);
    }
    if (row.status === 'succeeded') return;
    const error: ErrorRow = {
      custom_id: row.custom_id,
      status: row.status,
      error_type: row.error?.type ?? null,
      message: row.error?.message ?? detail.message ?? '',
      attempts: row.attempts,
      batch_id: row.batch_id,
      ...(detail.cause === undefined ? {} : { cause: detail.cause }),
    };
    await this.errors.writeLine(error);
  }

  async finish(): Promise<void> {
    await Promise.all([this.results.finish(), this.errors.finish()]);
  }

  async abort(): Promise<void> {
    await Promise.all([this.results.abort(), this.errors.abort()]);
  }
}

/** What the summary reports, gathered row by row and chunk by chunk. */
class Tally {
  readonly counts: Record<ResultStatus, number> = { succeeded: 0, errored: 0, expired: 0, canceled: 0 };
  readonly errorsByType = new Map<string, number>();
  readonly cost: CostTotals;
  readonly batches: JobSummary['batches'] = [];
  chunks = 0;
  retryAttempts = 0;
  retriedRows = 0;
  lines = 0;

  constructor(readonly prices: PriceTable) {
    this.cost = new CostTotals(prices);
  }

  add(row: ResultRow, usage?: { usage: Usage; model: string }): ResultRow {
    this.lines += 1;
    this.counts[row.status] += 1;
    if (row.error) this.errorsByType.set(row.error.type, (this.errorsByType.get(row.error.type) ?? 0) + 1);
    if (usage) this.cost.add(usage.usage, usage.model);
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
    const byModel: JobSummary['cost']['byModel'] = {};
    for (const [model, entry] of Object.entries(cost.models)) {
      byModel[model] = { requests: entry.requests, batchUsd: entry.usd?.totalUsd ?? null, standardUsd: entry.usd?.standardTotalUsd ?? null };
    }
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
      cost: { batchUsd: cost.totalUsd, standardUsd: cost.standardTotalUsd, savedUsd: cost.discountUsd, byModel, unpricedModels: cost.unpricedModels },
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

interface LineAt {
  attempt: number;
  offset: number;
  length: number;
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
    const key = keys.chunkRequests(chunk.chunk, attempt);
    await needed(key, async () => {
      for await (const { customId } of requestEntries(s3, config.bucket, key)) lastAttempt.set(customId, attempt);
    });
  }
  const latest = (customId: string) => lastAttempt.get(customId) ?? 1;

  const dir = await mkdtemp(path.join(deps.tmpDir ?? tmpdir(), 'batchline-finalize-'));
  const files = new Map<number, FileHandle>();
  const lines = new Map<string, LineAt>();
  // Rows an uncollected attempt left: their records, one writer per attempt (Collect never wrote them).
  const failedRows = new Map<number, RowRecordWriter>();
  const failedRowsOf = (attempt: number, batchId: string | undefined) => {
    let writer = failedRows.get(attempt);
    if (!writer) {
      const now = (deps.now ?? Date.now)();
      const page = { jobId: job.jobId, chunk: chunk.chunk, attempt, batchId, buckets: rowBucketsOf(job), writer: 'F' as const };
      writer = new RowRecordWriter(deps.dynamo, config.table, { ...page, updatedAt: isoAt(now), ttl: ttlFrom(new Date(now), config.rowTtlDays) });
      failedRows.set(attempt, writer);
    }
    return writer;
  };
  try {
    for (const [attempt, record] of attempts) {
      if (!record.batchId) continue;
      const file = await open(path.join(dir, `attempt-${attempt}.jsonl`), 'w+');
      files.set(attempt, file);
      const found = await stageResults(s3, config.bucket, keys.chunkResults(chunk.chunk, attempt), file, (customId, offset, length) => {
        if (latest(customId) === attempt && !lines.has(customId)) lines.set(customId, { attempt, offset, length });
      });
      if (!found && record.collectedAt) throw new WorkFileMissing(`${keys.chunkResults(chunk.chunk, attempt)} is missing, yet attempt ${attempt} was collected`);
    }

    const failure = chunkFailureText(chunk);
    let index = 0;
    for await (const { customId } of requestEntries(s3, config.bucket, keys.chunkRequests(chunk.chunk, 1))) {
      const attempt = latest(customId);
      const record = attempts.get(attempt);
      if (!record) throw new WorkFileMissing(`${customId} is in a requests file of chunk ${chunk.chunk} attempt ${attempt}, which the chunk has no record of`);
      const at = lines.get(customId);
      const base = { custom_id: customId, attempts: attempt, batch_id: record.batchId ?? null, usage: null, cost_usd: null };
      let written = false;
      if (at) {
        const raw = await readAt(files.get(at.attempt)!, at.offset, at.length);
        const line = JSON.parse(raw.toString('utf8')) as BatchResultLine;
        const decision = decideRow(line.result, { attempt, maxAttempts: config.maxAttempts, cancelRequested: job.cancelRequested === true });
        // Collect made this line the row's last word; or the attempt died before Collect decided, and
        // the line is final anyway.
        if (record.collectedAt || decision.final) {
          await writeResult(base, line.result, raw, tally, outputs);
          written = true;
        }
      } else if (record.collectedAt) {
        const row: ResultRow = record.batchId
          ? { ...base, status: 'errored', error: { type: MISSING_RESULT, message: MESSAGES.missing } }
          : { ...base, status: 'canceled' };
        await outputs.write(tally.add(row), { message: record.batchId ? MESSAGES.missing : MESSAGES.notSubmitted });
        written = true;
      }
      if (!written) {
        const row: ResultRow = { ...base, status: 'errored', error: { type: CHUNK_FAILED, message: failure.message } };
        await outputs.write(tally.add(row), { cause: failure.cause });
        failedRowsOf(attempt, record.batchId).add({ customId, index, status: 'errored', final: true, errorType: CHUNK_FAILED });
      }
      index += 1;
    }
    for (const writer of failedRows.values()) await writer.flush();
  } finally {
    for (const file of files.values()) await file.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** A result line's row: succeeded → message, usage, cost; errored → error; expired/canceled → neither. */
async function writeResult(
  base: Pick<ResultRow, 'custom_id' | 'attempts' | 'batch_id'>,
  result: BatchResult,
  raw: Buffer,
  tally: Tally,
  outputs: Outputs,
): Promise<void> {
  switch (result.type) {
    case 'succeeded': {
      const { usage, model } = result.message;
      const cost = rowCostUsd(usage, model, tally.prices) ?? null;
      const row: ResultRow = { ...base, status: 'succeeded', message: result.message, usage: tokenTotals(usage), cost_usd: cost };
      await outputs.write(tally.add(row, { usage, model }), {}, rawMessage(raw, result.message));
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
      const type = `unknown_result_${String((result as { type?: unknown }).type)}`;
      await outputs.write(tally.add({ ...base, status: 'errored', error: { type, message: 'The API returned a result type batchline does not know.' }, usage: null, cost_usd: null }));
    }
  }
}

/**
 * The succeeded message's bytes as the API sent them (big integers in tool inputs survive a copy,
 * not a JSON round trip). Only a line whose keys are spelled with escapes misses the scan: its
 * parsed message is written instead.
 */
function rawMessage(raw: Buffer, message: unknown): Buffer {
  return rawMemberAt(raw, ['result', 'message']) ?? Buffer.from(JSON.stringify(message));
}

function chunkFailureText(chunk: ChunkItem): { message: string; cause: string } {
  if (chunk.failure) return { message: `The chunk failed: ${chunk.failure.error}`, cause: chunk.failure.cause };
  return { message: `The chunk did not finish (status ${chunk.status}).`, cause: `chunk ${chunk.chunk} ended in status ${chunk.status}` };
}

/**
 * Copies an object to `file` while reporting each line's custom_id, offset and length. Returns
 * false when the object does not exist.
 */
async function stageResults(
  s3: S3Client,
  bucket: string,
  key: string,
  file: FileHandle,
  onLine: (customId: string, offset: number, length: number) => void,
): Promise<boolean> {
  let body: Readable & AsyncIterable<Uint8Array>;
  try {
    body = await readObject(s3, bucket, key);
  } catch (error) {
    if (isNoSuchKey(error)) return false;
    throw error;
  }
  async function* copied(): AsyncGenerator<Uint8Array> {
    for await (const piece of body) {
      await file.write(piece);
      yield piece;
    }
  }
  try {
    for await (const line of splitLines(copied(), { stripBom: false })) {
      if (isBlank(line.bytes)) continue;
      const customId = resultCustomId(line.bytes);
      if (customId !== undefined) onLine(customId, line.offset, line.bytes.length);
    }
  } finally {
    body.destroy();
  }
  return true;
}

const CUSTOM_ID_HEAD = Buffer.from('{"custom_id":"');

/**
 * A results line's custom_id. The API writes it first (`{"custom_id":"...",`) and custom_ids are
 * `[a-zA-Z0-9_-]`, so that prefix is read without parsing the line (whose message may be large);
 * a line of any other shape is parsed. A line read by the prefix is parsed later, when its row is
 * written.
 */
export function resultCustomId(line: Buffer): string | undefined {
  const head = CUSTOM_ID_HEAD.length;
  if (line.length > head && CUSTOM_ID_HEAD.compare(line, 0, head) === 0) {
    let end = head;
    while (end < line.length && isCustomIdByte(line[end]!)) end += 1;
    if (end > head && line[end] === QUOTE && (line[end + 1] === COMMA || line[end + 1] === CLOSE_BRACE)) return line.toString('latin1', head, end);
  }
  const customId = (JSON.parse(line.toString('utf8')) as { custom_id?: unknown }).custom_id;
  return typeof customId === 'string' ? customId : undefined;
}

/** [a-zA-Z0-9_-]: the bytes a custom_id is made of (DESIGN.md). */
const isCustomIdByte = (b: number) =>
  (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b === 0x2d;

async function readAt(file: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  const { bytesRead } = await file.read(buffer, 0, length, offset);
  if (bytesRead !== length) throw new WorkFileMissing(`a staged results file ended at ${offset + bytesRead}, before ${offset + length}`);
  return buffer;
}

async function needed(key: string, read: () => Promise<void>): Promise<void> {
  try {
    await read();
  } catch (error) {
    if (isNoSuchKey(error)) throw new WorkFileMissing(`${key} is missing`);
    throw error;
  }
}

const isNoSuchKey = (error: unknown) => (error as { name?: string }).name === 'NoSuchKey';

/** Copies a work file to the outputs inside S3 (no bytes through the function); a missing one becomes empty. */
async function copyObject(s3: S3Client, bucket: string, from: string, to: string): Promise<void> {
  try {
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: `${bucket}/${encodeURIComponent(from).replace(/%2F/g, '/')}` }));
  } catch (error) {
    if (!isNoSuchKey(error)) throw error;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: to, Body: '', ContentLength: 0, ContentType: 'application/x-ndjson' }));
  }
}

/**
 * The custom_ids of a rejected job's valid rows, in input order: the input is read again with
 * Prepare's line reader and validator (Prepare stops writing chunk files once a strict job is
 * rejected). The same limits give the same verdicts Prepare reached.
 */
async function* validCustomIds(job: JobItem, deps: FinalizeDeps): AsyncGenerator<string> {
  const body = await openSource(deps.s3, job);
  const maxRequestBytes = deps.config.maxBytesPerChunk - BATCH_BODY_OVERHEAD;
  const customIds = new CustomIdSet();
  try {
    for await (const entry of sourceLines(body, maxRequestBytes + LINE_SLACK_BYTES)) {
      if ('tooLong' in entry || isBlank(entry.bytes)) continue;
      const outcome = validateLine(entry, { maxRequestBytes, customIds });
      if (outcome.ok) yield outcome.customId;
    }
  } finally {
    body.destroy();
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** The raw JSON of member `key` of the object `json` (its top level), or undefined. */
export function rawMember(json: Buffer, key: string): Buffer | undefined {
  return rawMemberAt(json, [key]);
}

/**
 * The raw JSON at `path` (each key a member of the object the previous key led to, starting at
 * `json`'s top level), or undefined. One forward scan: the members before a wanted one are stepped
 * over, strings found with indexOf (text costs a memchr, not a loop in JS), nothing parsed or
 * re-encoded. Keys are compared as written: an escaped spelling of a key does not match.
 */
export function rawMemberAt(json: Buffer, path: readonly string[]): Buffer | undefined {
  let at = skipSpace(json, 0);
  for (const key of path) {
    at = memberValue(json, at, Buffer.from(JSON.stringify(key)));
    if (at < 0) return undefined;
  }
  return json.subarray(at, valueEnd(json, at));
}

/** Where the value of member `wanted` (a JSON-encoded key) of the object at `at` starts, or -1. */
function memberValue(json: Buffer, at: number, wanted: Buffer): number {
  if (json[at] !== OPEN_BRACE) return -1;
  let i = skipSpace(json, at + 1);
  if (json[i] === CLOSE_BRACE) return -1;
  for (;;) {
    if (json[i] !== QUOTE) return -1;
    const keyEnd = stringEnd(json, i);
    const found = keyEnd - i === wanted.length && json.compare(wanted, 0, wanted.length, i, keyEnd) === 0;
    i = skipSpace(json, keyEnd);
    if (json[i] !== COLON) return -1;
    i = skipSpace(json, i + 1);
    if (found) return i;
    i = skipSpace(json, valueEnd(json, i));
    if (json[i] !== COMMA) return -1;
    i = skipSpace(json, i + 1);
  }
}

/** Where the JSON value starting at `start` ends (exclusive). */
function valueEnd(json: Buffer, start: number): number {
  const first = json[start];
  if (first === QUOTE) return stringEnd(json, start);
  let i = start;
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // A number, true, false or null: up to the next delimiter.
    while (i < json.length) {
      const b = json[i]!;
      if (b === COMMA || b === CLOSE_BRACE || b === CLOSE_BRACKET || isSpace(b)) break;
      i += 1;
    }
    return i;
  }
  let depth = 0;
  while (i < json.length) {
    const b = json[i]!;
    if (b === QUOTE) {
      i = stringEnd(json, i);
      continue;
    }
    if (b === OPEN_BRACE || b === OPEN_BRACKET) depth += 1;
    else if ((b === CLOSE_BRACE || b === CLOSE_BRACKET) && --depth === 0) return i + 1;
    i += 1;
  }
  return i;
}

/** The index just past the string whose opening quote is at `start`. */
function stringEnd(json: Buffer, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = json.indexOf(QUOTE, from);
    if (quote < 0) return json.length;
    // A quote is escaped when an odd number of backslashes precede it.
    let k = quote - 1;
    while (k > start && json[k] === BACKSLASH) k -= 1;
    if ((quote - 1 - k) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

function skipSpace(json: Buffer, from: number): number {
  let i = from;
  while (i < json.length && isSpace(json[i]!)) i += 1;
  return i;
}

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
