/**
 * FinalizeChunk: one chunk's rows in input order with their final state, written as the chunk's
 * share of results.jsonl and errors.jsonl, and a record of what they hold (ChunkFinal: the files'
 * sizes, the chunk's tally). It runs as the last state of the chunk's Map iteration, so the work
 * that grows with the job is spread over the chunks; FinalizeJob then only joins the files inside
 * S3 and sums the tallies (./finalize.ts). A chunk whose FinalizeChunk did not run, or ran before
 * the chunk or the job changed, is finalized by FinalizeJob itself, with this same code.
 *
 * Input order in bounded memory: attempt 1's requests give the rows in input order (custom_id →
 * position); each attempt's results file is streamed, and every row's line (from its latest
 * attempt) staged on disk by position (./staging.ts), since the API returns results in any order.
 * Memory is bounded by the chunk's row count and two windows of lines, never by result text.
 *
 * A row's final state is its fate in its latest attempt (the last requests file it is in), by the
 * rule Collect applied (outcome.ts rowFate): Finalize builds on Collect's decision — a collected
 * attempt's line is the row's last word — and decides only the rows of an attempt that was never
 * collected (its chunk failed), whose records it writes.
 *
 * Nothing in a result's shape fails the job: a succeeded row without a message, usage or model, or
 * with token counts that are not counts, keeps what it has, with cost null.
 *
 * Re-runnable: the files and the record are rewritten whole.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { PipelineConfig } from '../config';
import { priceTableFromConfig } from '../cost/prices';
import { quietObserver, type Observer } from '../observability';
import { ttlAfter, type ChunkAttempt, type ChunkItem, type JobItem } from '../store/items';
import { jobKeys } from '../store/keys';
import { getJson, putJson } from '../store/s3';
import { requestCustomIds, requestsKey } from './chunk-files';
import { isoAt, readChunk, readJob } from './chunk-state';
import type { ChunkRef, FinalizeChunkOutput } from './contract';
import { chunkFailureText, MESSAGES, missingAmongUnreadable, Outputs, unreadableMessage, writeResult, type ResultRow } from './final-rows';
import { BUDGET_EXCEEDED, rowFate, type RowEvidence } from './outcome';
import { readResultLine, stageResults } from './result-lines';
import { finishStragglers } from './stragglers';
import { rowShardsOf, RowRecordWriter } from './row-records';
import { StagedLines, WINDOW_BYTES, WINDOW_ROWS } from './staging';
import { Tally, type TallyJson } from './tally';
import { needed, WorkFileMissing } from './work-files';
import { clockOf } from '../clock';

export interface FinalizeChunkDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'maxAttempts' | 'pricesJson' | 'rowTtlDays'>;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where results files are staged (default os.tmpdir()). */
  tmpDir?: string;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
}

/**
 * What FinalizeChunk made of a chunk: its two files and their sizes, its tally, and the state of
 * the chunk and job it was made from (`basis`), so a later change is noticed.
 */
export interface ChunkFinal {
  basis: ChunkFinalBasis;
  results: { key: string; bytes: number };
  errors: { key: string; bytes: number };
  tally: TallyJson;
}

/** What a chunk's final rows depend on besides its files: a ChunkFinal of another basis is stale. */
export interface ChunkFinalBasis {
  chunkUpdatedAt: string;
  chunkStatus: ChunkItem['status'];
  attempts: number;
  cancelRequested: boolean;
  maxAttempts: number;
}

function basisOf(chunk: ChunkItem, job: JobItem, maxAttempts: number): ChunkFinalBasis {
  return {
    chunkUpdatedAt: chunk.updatedAt,
    chunkStatus: chunk.status,
    attempts: chunk.attempts.length,
    cancelRequested: job.cancelRequested === true,
    maxAttempts,
  };
}

/** The FinalizeChunk state. */
export async function finalizeChunk(input: ChunkRef, deps: FinalizeChunkDeps): Promise<FinalizeChunkOutput> {
  const observer = deps.observer ?? quietObserver;
  const [job, read] = await Promise.all([
    readJob(deps.dynamo, deps.config.table, input.jobId),
    readChunk(deps.dynamo, deps.config.table, input.jobId, input.chunk),
  ]);
  const chunk = await settleFailedSync(read, deps);
  const final = await writeChunkFinal(chunk, job, deps);
  observer.info('chunk finalized', { rows: final.tally.lines, counts: final.tally.counts, resultsBytes: final.results.bytes, errorsBytes: final.errors.bytes });
  return { jobId: input.jobId, chunk: input.chunk, rows: final.tally.lines, failed: chunk.status === 'failed' };
}

/**
 * A chunk whose RunStragglers failed past its retries: its synchronous attempt is settled as the
 * step would have (./stragglers.ts): stored answers kept and paid for, an unstored slice's rows
 * unknown, the rows never claimed errored with the chunk's failure. FinalizeJob calls it too, for
 * a chunk it orders itself (its FinalizeChunk did not run or failed).
 */
export async function settleFailedSync(chunk: ChunkItem, deps: FinalizeChunkDeps): Promise<ChunkItem> {
  const current = chunk.attempts.find((a) => a.attempt === chunk.currentAttempt);
  if (chunk.status !== 'failed' || !current?.sync || current.collectedAt) return chunk;
  const { type, message } = chunkFailureText(chunk);
  await finishStragglers({ jobId: chunk.jobId, chunk: chunk.chunk, attempt: current.attempt }, deps, { type, message });
  return readChunk(deps.dynamo, deps.config.table, chunk.jobId, chunk.chunk);
}

/** The chunk's final record, if there is one made from the chunk and job as they are now. */
export async function currentChunkFinal(chunk: ChunkItem, job: JobItem, deps: FinalizeChunkDeps): Promise<ChunkFinal | undefined> {
  const final = await getJson<ChunkFinal>(deps.s3, deps.config.bucket, jobKeys(job.jobId).chunkFinal(chunk.chunk).record);
  if (final === undefined) return undefined;
  const basis = basisOf(chunk, job, deps.config.maxAttempts);
  const same = (Object.keys(basis) as Array<keyof ChunkFinalBasis>).every((field) => final.basis?.[field] === basis[field]);
  return same ? final : undefined;
}

/** Orders the chunk's rows into its final files and writes the record of them (last, so a record means the files are whole). */
export async function writeChunkFinal(chunk: ChunkItem, job: JobItem, deps: FinalizeChunkDeps): Promise<ChunkFinal> {
  const keys = jobKeys(job.jobId).chunkFinal(chunk.chunk);
  const tally = new Tally(priceTableFromConfig(deps.config));
  const outputs = new Outputs(deps.s3, deps.config.bucket, keys);
  try {
    await orderRows(chunk, job, tally, outputs, deps);
    await outputs.finish();
  } catch (error) {
    await outputs.abort();
    throw error;
  }
  tally.chunk(chunk);
  const { results, errors } = outputs.bytes;
  const final: ChunkFinal = {
    basis: basisOf(chunk, job, deps.config.maxAttempts),
    results: { key: keys.results, bytes: results },
    errors: { key: keys.errors, bytes: errors },
    tally: tally.toJSON(),
  };
  await putJson(deps.s3, deps.config.bucket, keys.record, final);
  return final;
}

/** One chunk's rows, in input order, into `outputs`. */
async function orderRows(chunk: ChunkItem, job: JobItem, tally: Tally, outputs: Outputs, deps: FinalizeChunkDeps): Promise<void> {
  const { s3, config } = deps;
  const keys = jobKeys(job.jobId);
  const attempts = new Map(chunk.attempts.map((a) => [a.attempt, a]));
  const ref = (attempt: number) => ({ jobId: job.jobId, chunk: chunk.chunk, attempt });

  // The last attempt each retried row is in (rows in no retry file: attempt 1).
  const lastAttempt = new Map<string, number>();
  for (const attempt of [...attempts.keys()].sort((a, b) => a - b)) {
    if (attempt < 2) continue;
    await needed(requestsKey(ref(attempt)), async () => {
      for await (const customId of requestCustomIds(s3, config.bucket, ref(attempt))) lastAttempt.set(customId, attempt);
    });
  }
  const latest = (customId: string) => lastAttempt.get(customId) ?? 1;

  // The chunk's rows in input order (attempt 1's requests), and where each custom_id is first.
  const customIds: string[] = [];
  const firstPosition = new Map<string, number>();
  for await (const customId of requestCustomIds(s3, config.bucket, ref(1))) {
    if (!firstPosition.has(customId)) firstPosition.set(customId, customIds.length);
    customIds.push(customId);
  }
  const positionOf = (index: number) => firstPosition.get(customIds[index]!)!;

  const failedRows = new FailedRows(chunk, job, deps);
  const staged = new StagedLines(await mkdtemp(path.join(deps.tmpDir ?? tmpdir(), 'batchline-finalize-')), customIds.length);
  let reading: Promise<unknown> | undefined;
  try {
    for (const [attempt, record] of attempts) {
      if (!record.batchId && !record.sync) continue;
      const found = await stageResults(s3, config.bucket, keys.chunkResults(chunk.chunk, attempt), (customId, line) => {
        const position = firstPosition.get(customId);
        return position !== undefined && latest(customId) === attempt ? staged.add(position, line) : undefined;
      });
      if (!found && record.collectedAt)
        throw new WorkFileMissing(`${keys.chunkResults(chunk.chunk, attempt)} is missing, yet attempt ${attempt} was collected`);
    }
    await staged.flush();

    // A window: up to WINDOW_ROWS rows from `start`, fewer once their lines reach WINDOW_BYTES.
    const windowAt = (start: number) => {
      const positions: number[] = [];
      let bytes = 0;
      while (start + positions.length < customIds.length && positions.length < WINDOW_ROWS && bytes < WINDOW_BYTES) {
        const position = positionOf(start + positions.length);
        positions.push(position);
        bytes += staged.lengthOf(position);
      }
      const lines = staged.read(positions);
      // Awaited when its turn comes (or in `finally`): meanwhile a failure must not count as unhandled.
      lines.catch(() => undefined);
      reading = lines;
      return { start, positions, lines };
    };

    const failure = chunkFailureText(chunk);
    const facts = (record: ChunkAttempt) => ({
      attempt: record.attempt,
      maxAttempts: config.maxAttempts,
      cancelRequested: job.cancelRequested === true,
      submitted: Boolean(record.batchId || record.sync),
      collected: Boolean(record.collectedAt),
      failedAs: failure.type,
      budgetStopped: record.budgetStopped !== undefined,
    });
    for (let next = windowAt(0); next.positions.length > 0; ) {
      const { start, positions } = next;
      const raws = await next.lines;
      // The next window's lines are read while this one's rows are written.
      next = windowAt(start + positions.length);
      for (let i = 0; i < positions.length; i++) {
        const index = start + i;
        const customId = customIds[index]!;
        const raw = raws[i];
        const attempt = latest(customId);
        const record = attempts.get(attempt);
        if (!record)
          throw new WorkFileMissing(`${customId} is in a requests file of chunk ${chunk.chunk} attempt ${attempt}, which the chunk has no record of`);
        const base = {
          custom_id: customId,
          attempts: attempt,
          batch_id: record.batchId ?? null,
          ...(record.sync ? { synchronous: true as const } : {}),
          usage: null,
          cost_usd: null,
        };
        const line = raw && readResultLine(raw);
        const evidence: RowEvidence = !line ? { kind: 'none' } : 'unreadable' in line ? { kind: 'unreadable' } : { kind: 'result', result: line.result };
        const decision = rowFate(evidence, facts(record));

        if (decision.chunkFailed) {
          // The chunk failed before the row was decided: its fate is the failure, recorded here (Collect never did).
          const row: ResultRow = { ...base, status: 'errored', error: { type: failure.type, message: failure.message } };
          await outputs.write(tally.add(row), { cause: failure.cause });
          failedRows.add(attempt, record.batchId, { customId, index, status: 'errored', final: true, errorType: failure.type });
        } else if (decision.errorType === BUDGET_EXCEEDED && record.budgetStopped) {
          // A retry the budget stopped (a synchronous attempt's budget_exceeded rows carry their own message in their line).
          const stop = record.budgetStopped!;
          const message =
            `Not sent again: the retry of ${stop.rows} rows, estimated at $${stop.estimateUsd.toFixed(4)}, would have taken the job's cost ` +
            `($${stop.paidUsd.toFixed(4)} paid) past its budget of $${stop.budgetUsd}.`;
          await outputs.write(tally.add({ ...base, status: 'errored', error: { type: BUDGET_EXCEEDED, message } }));
          // Collect recorded the row as retried; this later record is its final word (readRowRecord takes the latest).
          failedRows.add(attempt, record.batchId, { customId, index, status: 'errored', final: true, errorType: BUDGET_EXCEEDED });
        } else if (line && 'unreadable' in line) {
          await outputs.write(tally.add({ ...base, status: 'errored', error: { type: decision.errorType!, message: unreadableMessage(line.unreadable) } }));
        } else if (line) {
          await writeResult(base, decision, line, tally, outputs);
        } else {
          const missing = record.unreadableLines ? missingAmongUnreadable(record.unreadableLines) : MESSAGES.missing;
          const submitted = Boolean(record.batchId || record.sync);
          const row: ResultRow = submitted
            ? { ...base, status: 'errored', error: { type: decision.errorType!, message: missing } }
            : { ...base, status: 'canceled' };
          await outputs.write(tally.add(row), { message: submitted ? missing : MESSAGES.notSubmitted });
        }
      }
    }
    await failedRows.flush();
  } finally {
    await reading?.catch(() => undefined);
    await staged.remove();
  }
}

/**
 * Records of the rows an uncollected attempt left, one writer per attempt (Collect never wrote
 * them), and of rows whose retry the budget stopped (Collect recorded them as retried).
 */
class FailedRows {
  private readonly writers = new Map<number, RowRecordWriter>();

  constructor(
    private readonly chunk: ChunkItem,
    private readonly job: JobItem,
    private readonly deps: FinalizeChunkDeps,
  ) {}

  add(attempt: number, batchId: string | undefined, row: Parameters<RowRecordWriter['add']>[0]): void {
    let writer = this.writers.get(attempt);
    if (!writer) {
      const now = clockOf(this.deps)();
      writer = new RowRecordWriter(this.deps.dynamo, this.deps.config.table, {
        jobId: this.job.jobId,
        chunk: this.chunk.chunk,
        attempt,
        batchId,
        shards: rowShardsOf(this.job),
        writer: 'F',
        updatedAt: isoAt(now),
        ttl: ttlAfter(now, this.deps.config.rowTtlDays),
      });
      this.writers.set(attempt, writer);
    }
    writer.add(row);
  }

  async flush(): Promise<void> {
    for (const writer of this.writers.values()) await writer.flush();
  }
}
