/**
 * Reuse: a job that takes over rows of a finished job instead of sending them again — a rerun of
 * the same input (`batchline rerun`), or a corrected file whose rows partly match (`--reuse JOBID`,
 * object metadata `batchline-reuse`). docs/architecture.md, "Re-running without paying twice".
 *
 * - Prepare asks `reusableRows` which of the old job's rows may be taken over: every succeeded row,
 *   and with `only` every other row whose status or error type is not listed. It reads the old job's
 *   input (the registered version) beside its results.jsonl, which has a line per valid row in input
 *   order, so each reusable custom_id is known with a hash of its params' exact bytes and its place
 *   in the old results. A new row with the same custom_id and byte-identical params is reused: it
 *   goes to no chunk, so it can never be submitted; the plan (`PlanWriter`) says so, row by row.
 * - FinalizeJob writes the job's own rows (its chunks' files, joined) to `sentRows`, then
 *   `mergeReused` writes results.jsonl and errors.jsonl in input order: a sent row from the job's own
 *   files, a reused one copied from the old results.jsonl in one pass (staged on disk by its new
 *   position first only when a corrected file orders rows differently), marked `"reused_from"`.
 *   Reused rows are counted (status, error type) but their cost is not this job's: the summary
 *   reports it as `reused`.
 */
import { createHash } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { PipelineConfig } from '../config';
import { roundUsd } from '../cost/cost';
import { isBlank, type RawLine } from '../jsonl/lines';
import { leadingCustomId, rawMember } from '../jsonl/raw-json';
import { getItem } from '../store/dynamo';
import { JOB_SK, jobPk, type JobItem } from '../store/items';
import { jobKeys } from '../store/keys';
import { isS3NotFound, ObjectWriter, readObject } from '../store/s3';
import { modelCatalogFromConfig } from '../validation/models';
import { maxLineBytesFor, SourceLineReader } from '../validation/input-lines';
import { BATCH_BODY_OVERHEAD, CustomIdSet, validateLine } from '../validation/request';
import { objectLines } from './chunk-files';
import { MESSAGES, type ErrorRow, type ResultRow } from './final-rows';
import type { ResultStatus } from './outcome';
import { StagedLines, WINDOW_ROWS } from './staging';
import type { Tally } from './tally';
import { WIRE_GROWTH_BYTES } from './wire-ids';

/** Object metadata that names the finished job whose rows a file may reuse. */
export const REUSE_METADATA = 'batchline-reuse';
/** Object metadata: the statuses or error types to send again (the other rows that did not succeed are reused too). */
export const REUSE_ONLY_METADATA = 'batchline-reuse-only';

/** The job to reuse from cannot be used: it does not exist, has not ended, or its outputs do not match its input. */
export class ReuseNotPossible extends Error {
  override readonly name = 'ReuseNotPossible';
}

/** Statuses a row can end in, as `--only` may name them (anything else is taken for an error type). */
const STATUSES: readonly ResultStatus[] = ['succeeded', 'errored', 'expired', 'canceled'];

/** `expired,api_error` → ['expired', 'api_error']; refuses `succeeded` (a success is never sent again). */
export function parseOnly(value: string, what: string): string[] {
  const only = [
    ...new Set(
      value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part !== ''),
    ),
  ];
  if (only.length === 0) throw new ReuseNotPossible(`${what} names no status or error type`);
  for (const part of only) {
    if (part === 'succeeded') throw new ReuseNotPossible(`${what} names succeeded: a row that succeeded is never sent again`);
    if (!/^[a-z0-9_]{1,100}$/.test(part)) throw new ReuseNotPossible(`${what}: "${part}" is not a status (${STATUSES.join(', ')}) or an error type`);
  }
  return only;
}

/** The job a file reuses, read and checked: it must have ended with its outputs. */
export async function jobToReuse(dynamo: DynamoDBClient, table: string, jobId: string): Promise<JobItem> {
  const job = await getItem<JobItem>(dynamo, table, { pk: jobPk(jobId), sk: JOB_SK });
  if (!job) throw new ReuseNotPossible(`there is no job ${jobId} to reuse rows from`);
  if (!job.endedAt || job.validRows === undefined)
    throw new ReuseNotPossible(`job ${jobId} has not ended (status ${job.status}): its rows cannot be reused yet`);
  return job;
}

/** A reusable row of the old job: where its line is in the old results.jsonl, and its params' hash. */
export interface ReusableRow {
  index: number;
  paramsHash: string;
}

/** The hash two requests' params are compared by: byte-identical params, identical hash. */
export function paramsHash(body: Buffer): string {
  const params = rawMember(body, 'params') ?? body;
  // 128 bits of SHA-256: a collision is out of reach, and a million of them fit in less memory.
  return createHash('sha256').update(params).digest().toString('base64', 0, 16);
}

/** What a results.jsonl line says of its row, read without parsing a succeeded row's message. */
export interface OldRowState {
  customId: string;
  status: ResultStatus;
  errorType?: string;
  /** Only for rows that did not succeed (their lines are small). */
  row?: ResultRow;
}

const STATUS_KEY = ',"status":"';

export function oldRowState(line: Buffer, where: string): OldRowState {
  const customId = leadingCustomId(line, { mayRepeat: false });
  if (customId === undefined) throw new ReuseNotPossible(`${where} does not start with a custom_id`);
  const at = line.indexOf(STATUS_KEY, 0, 'latin1');
  const end = at < 0 ? -1 : line.indexOf(0x22, at + STATUS_KEY.length);
  const status = end < 0 ? '' : line.toString('latin1', at + STATUS_KEY.length, end);
  if (!STATUSES.includes(status as ResultStatus)) throw new ReuseNotPossible(`${where} has no status batchline wrote`);
  if (status === 'succeeded') return { customId, status: 'succeeded' };
  const row = JSON.parse(line.toString('utf8')) as ResultRow;
  return { customId, status: status as ResultStatus, errorType: row.error?.type, row };
}

/**
 * The old job's rows this job may take over, by custom_id. Memory holds the reusable rows' ids and
 * hashes (as Prepare's custom_id set holds every id), never result text.
 */
export async function reusableRows(
  old: JobItem,
  only: readonly string[] | undefined,
  deps: {
    s3: S3Client;
    config: Pick<PipelineConfig, 'bucket' | 'maxBytesPerChunk' | 'pricesJson' | 'allowUnknownModels'>;
    openSource: (job: JobItem) => Promise<AsyncIterable<Uint8Array> & { destroy(): void }>;
  },
): Promise<Map<string, ReusableRow>> {
  const { s3, config } = deps;
  const resultsKey = jobKeys(old.jobId).results;
  const reusable = new Map<string, ReusableRow>();
  const maxRequestBytes = config.maxBytesPerChunk - BATCH_BODY_OVERHEAD - WIRE_GROWTH_BYTES;
  const validation = { maxRequestBytes, customIds: new CustomIdSet(), models: modelCatalogFromConfig({ ...config, allowUnknownModels: true }) };
  let results: AsyncGenerator<RawLine>;
  try {
    results = objectLines(s3, config.bucket, resultsKey);
    // The first read opens the object: a missing one is found here rather than mid-input.
    await results.next().then((first) => {
      results = prepend(first, results);
    });
  } catch (error) {
    if (isS3NotFound(error)) throw new ReuseNotPossible(`job ${old.jobId} has no results.jsonl to reuse rows from`);
    throw error;
  }
  const body = await deps.openSource(old);
  let index = 0;
  try {
    const lines = new SourceLineReader(maxLineBytesFor(maxRequestBytes));
    const take = async (entry: RawLine): Promise<void> => {
      if (isBlank(entry.bytes)) return;
      const outcome = validateLine(entry, validation);
      if (!outcome.ok) return;
      const next = await results.next();
      const where = `line ${index + 1} of job ${old.jobId}'s results.jsonl`;
      if (next.done) throw new ReuseNotPossible(`job ${old.jobId}'s results.jsonl ends before its input's row ${outcome.customId} (line ${outcome.line})`);
      const state = oldRowState(next.value.bytes, where);
      if (state.customId !== outcome.customId) {
        throw new ReuseNotPossible(
          `${where} is ${state.customId}, but the input's row there is ${outcome.customId} (line ${outcome.line}): they do not line up`,
        );
      }
      if (reusableState(state, only)) reusable.set(state.customId, { index, paramsHash: paramsHash(outcome.body) });
      index += 1;
    };
    for await (const piece of body) {
      lines.push(piece);
      for (let entry = lines.next(); entry !== undefined; entry = lines.next()) if (!('tooLong' in entry)) await take(entry);
    }
    const last = lines.end();
    if (last !== undefined && !('tooLong' in last)) await take(last);
  } finally {
    body.destroy();
    await results.return(undefined);
  }
  if (index !== old.validRows) {
    throw new ReuseNotPossible(`job ${old.jobId} had ${old.validRows} valid rows, but ${index} of its input line up with its results.jsonl`);
  }
  return reusable;
}

/** A row of the old job is taken over when it succeeded, or when `only` is given and names neither its status nor its error type. */
export function reusableState(state: Pick<OldRowState, 'status' | 'errorType'>, only: readonly string[] | undefined): boolean {
  if (state.status === 'succeeded') return true;
  if (only === undefined) return false;
  return !only.includes(state.status) && !(state.errorType !== undefined && only.includes(state.errorType));
}

async function* prepend<T>(first: IteratorResult<T>, rest: AsyncGenerator<T>): AsyncGenerator<T> {
  if (first.done) return;
  yield first.value;
  yield* rest;
}

/** The plan, written as Prepare goes: an int32 per valid row (SENT, or the old results line it reuses). */
export class PlanWriter {
  static readonly SENT = -1;
  private readonly writer: ObjectWriter;
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  rows = 0;
  reused = 0;

  /** `key`: the plan, or one Prepare invocation's piece of it (joined at the file's end). */
  constructor(s3: S3Client, bucket: string, key: string) {
    this.writer = new ObjectWriter(s3, bucket, key, { contentType: 'application/octet-stream' });
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.writer.bytes;
  }

  add(oldIndex: number): Promise<void> | undefined {
    this.buffer.writeInt32LE(oldIndex, this.used);
    this.used += 4;
    this.rows += 1;
    if (oldIndex !== PlanWriter.SENT) this.reused += 1;
    return this.used === this.buffer.length ? this.flush() : undefined;
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const bytes = this.buffer.subarray(0, this.used);
    this.buffer = Buffer.allocUnsafe(this.buffer.length);
    this.used = 0;
    await this.writer.write(bytes);
  }

  async finish(): Promise<void> {
    await this.flush();
    await this.writer.finish();
  }

  async abort(): Promise<void> {
    await this.writer.abort();
  }
}

async function readPlan(s3: S3Client, bucket: string, jobId: string): Promise<Int32Array> {
  const pieces: Buffer[] = [];
  for await (const piece of await readObject(s3, bucket, jobKeys(jobId).reusePlan)) pieces.push(Buffer.from(piece));
  const bytes = Buffer.concat(pieces);
  const plan = new Int32Array(bytes.length / 4);
  for (let i = 0; i < plan.length; i++) plan[i] = bytes.readInt32LE(i * 4);
  return plan;
}

/** What the summary says of the rows taken over. */
export interface ReusedSummary {
  fromJob: string;
  rows: number;
  /** What the reused succeeded rows cost when they were paid for, in the jobs that paid. */
  costUsd: number;
}

const COST_KEY = Buffer.from('"cost_usd":');
const REUSED_FROM = /,"reused_from":"[^"]*"\}$/;

/** A reused row's cost_usd, read from its line's head (written before the message). */
function lineCostUsd(line: Buffer): number {
  const at = line.indexOf(COST_KEY);
  if (at < 0) return 0;
  const start = at + COST_KEY.length;
  let end = start;
  while (end < line.length && line[end] !== 0x2c && line[end] !== 0x7d) end += 1;
  const value = Number(line.toString('latin1', start, end));
  return Number.isFinite(value) ? value : 0;
}

/** The old line, marked with the job that paid for it (kept when the old row was itself reused). */
function reusedLine(line: Buffer, fromJob: string): Buffer {
  const tail = line.toString('latin1', Math.max(0, line.length - 200));
  if (REUSED_FROM.test(tail)) return line;
  return Buffer.concat([line.subarray(0, line.length - 1), Buffer.from(`,"reused_from":"${fromJob}"}`)]);
}

/**
 * results.jsonl and errors.jsonl of a reusing job, in input order: its own rows from `sentRows`,
 * the reused ones from the old job's results.jsonl. Adds the reused rows to `tally` (counts and
 * error types only: their cost was paid by the old job).
 */
export async function mergeReused(
  job: JobItem,
  tally: Tally,
  deps: { s3: S3Client; config: Pick<PipelineConfig, 'bucket'>; tmpDir?: string },
): Promise<ReusedSummary> {
  const { s3, config } = deps;
  const fromJob = job.reuse!.fromJob;
  const keys = jobKeys(job.jobId);
  const plan = await readPlan(s3, config.bucket, job.jobId);
  const reused = await reusedLines(plan, fromJob, deps);
  const results = new ObjectWriter(s3, config.bucket, keys.results);
  const errors = new ObjectWriter(s3, config.bucket, keys.errors);
  const sent = objectLines(s3, config.bucket, keys.sentRows.results);
  const sentErrors = objectLines(s3, config.bucket, keys.sentRows.errors);
  let costE10 = 0;
  try {
    for (const old of plan) {
      if (old === PlanWriter.SENT) {
        const next = await sent.next();
        if (next.done) throw new ReuseNotPossible(`job ${job.jobId}'s own rows end before its plan does`);
        await results.writeLine(next.value.bytes);
        if (oldRowState(next.value.bytes, `a row of job ${job.jobId}`).status !== 'succeeded') {
          const error = await sentErrors.next();
          if (error.done) throw new ReuseNotPossible(`job ${job.jobId}'s errors end before its rows do`);
          await errors.writeLine(error.value.bytes);
        }
        continue;
      }
      const line = await reused.next(old);
      const state = oldRowState(line, `line ${old + 1} of job ${fromJob}'s results.jsonl`);
      await results.writeLine(reusedLine(line, fromJob));
      const row: ResultRow = state.row ?? { custom_id: state.customId, status: 'succeeded', attempts: 0, batch_id: null, usage: null, cost_usd: null };
      // Counted as this job's row, but not as one it sent synchronously: the old job did (summary.synchronous counts its own).
      const { synchronous: _sentByOldJob, ...own } = row;
      tally.add({ ...own, message: undefined });
      if (state.status === 'succeeded') costE10 += Math.round(lineCostUsd(line) * 1e10);
      else await errors.writeLine(reusedErrorRow(state.row!, fromJob));
    }
    if (!(await sent.next()).done) throw new ReuseNotPossible(`job ${job.jobId} has more rows of its own than its plan says`);
    await Promise.all([results.finish(), errors.finish()]);
  } catch (error) {
    await Promise.all([results.abort(), errors.abort()]);
    throw error;
  } finally {
    await Promise.all([sent.return(undefined), sentErrors.return(undefined), reused.close()]);
  }
  return { fromJob, rows: reused.rows, costUsd: roundUsd(costE10 / 1e10) };
}

/** The old results' lines the plan reuses, handed out in the plan's order. */
interface ReusedLines {
  rows: number;
  /** The line at `old` (the plan's next reused row). */
  next(old: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * When the plan takes the old lines in their own order (always so for a rerun: the same input), one
 * pass over the old results.jsonl hands them out as it goes, nothing held. Otherwise (a corrected
 * file that reorders rows) the reused lines are staged on local disk by their new position first
 * (./staging.ts), then read back a window at a time.
 */
async function reusedLines(
  plan: Int32Array,
  fromJob: string,
  deps: { s3: S3Client; config: Pick<PipelineConfig, 'bucket'>; tmpDir?: string },
): Promise<ReusedLines> {
  const { s3, config } = deps;
  let rows = 0;
  let last = -1;
  let inOrder = true;
  for (const old of plan) {
    if (old === PlanWriter.SENT) continue;
    if (old <= last) inOrder = false;
    last = Math.max(last, old);
    rows += 1;
  }
  const shorter = () => new ReuseNotPossible(`job ${fromJob}'s results.jsonl is shorter than when this job was prepared`);
  const lines = objectLines(s3, config.bucket, jobKeys(fromJob).results);
  if (inOrder) {
    let index = -1;
    return {
      rows,
      async next(old) {
        for (;;) {
          const line = await lines.next();
          if (line.done) throw shorter();
          index += 1;
          if (index === old) return Buffer.from(line.value.bytes);
        }
      },
      close: async () => void (await lines.return(undefined)),
    };
  }
  // Each reused row's rank among the reused rows (its staging slot), by its line in the old results.
  const slotOfOld = new Int32Array(last + 1).fill(-1);
  let slots = 0;
  for (const old of plan) if (old !== PlanWriter.SENT) slotOfOld[old] = slots++;
  const staged = new StagedLines(await mkdtemp(path.join(deps.tmpDir ?? tmpdir(), 'batchline-reuse-')), rows);
  try {
    let index = 0;
    for await (const line of lines) {
      if (index > last) break;
      const slot = slotOfOld[index]!;
      if (slot >= 0) {
        const pending = staged.add(slot, Buffer.from(line.bytes));
        if (pending) await pending;
      }
      index += 1;
    }
    await staged.flush();
    if (index <= last) throw shorter();
  } catch (error) {
    await staged.remove();
    throw error;
  }
  let slot = 0;
  let window: Array<Buffer | undefined> = [];
  let windowStart = 0;
  return {
    rows,
    async next() {
      if (slot >= windowStart + window.length) {
        windowStart = slot;
        window = await staged.read(Array.from({ length: Math.min(WINDOW_ROWS, rows - slot) }, (_, i) => slot + i));
      }
      const line = window[slot - windowStart];
      slot += 1;
      if (line === undefined) throw shorter();
      return line;
    },
    close: () => staged.remove(),
  };
}

function reusedErrorRow(row: ResultRow, fromJob: string): ErrorRow & { reused_from: string } {
  const status = row.status as ErrorRow['status'];
  const fallback = status === 'expired' ? MESSAGES.expired : status === 'canceled' ? MESSAGES.canceled : '';
  return {
    custom_id: row.custom_id,
    status,
    error_type: row.error?.type ?? null,
    message: row.error?.message ?? fallback,
    attempts: row.attempts,
    batch_id: row.batch_id,
    reused_from: fromJob,
  };
}
