/**
 * The rows the user reads — a results.jsonl line per valid input row, an errors.jsonl line per row
 * that did not succeed — and their writer. What a row says (status, error, message) is decided
 * here from its result line or from why it has none.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { DamageKind } from '../anthropic/api';
import type { BatchResult } from '../anthropic/types';
import { readMessageUsage, tokenTotals } from '../cost/cost';
import type { ChunkItem, TokenTotals } from '../store/items';
import { ObjectWriter } from '../store/s3';
import { CHUNK_FAILED, COLLECT_PENDING, CREATE_UNKNOWN, errorMessageOf, rowCostUsd, type ResultStatus, type RowDecision } from './outcome';
import type { UnreadableLine } from './result-lines';
import type { Tally } from './tally';

/** One line of results.jsonl. */
export interface ResultRow {
  custom_id: string;
  status: ResultStatus;
  /** The attempt that decided the row (0: never submitted, the job was rejected). */
  attempts: number;
  batch_id: string | null;
  /** Answered by a synchronous Messages call after the deadline's cancel (batch_id null, cost at standard rates). */
  synchronous?: true;
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

export const MESSAGES = {
  expired: 'The batch expired before this request was processed.',
  canceled: 'The request was canceled before it was processed.',
  notSubmitted: 'The request was not submitted: the job was canceled first.',
  rejected: 'The request was not submitted: strict validation rejected the file (see invalid.jsonl).',
  missing: 'The batch returned no result for this request.',
  deadline: "The job's deadline passed before this request was answered: its batch was canceled and there was no time left to send it on its own.",
} as const;

/** A row without a line in an attempt whose results had lines that could not be read, nor told whose. */
export const missingAmongUnreadable = (lines: number) =>
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
export function unreadableMessage(line: UnreadableLine['unreadable'] | undefined): string {
  if (line === undefined) return 'The stored result line for this request could not be read.';
  return (
    `The API's result line for this request could not be read (${DAMAGE_TEXT[line.damage]}; at byte ${line.offset} of the batch's ` +
    `results file). The request was processed and may have been billed.`
  );
}

/** results.jsonl and errors.jsonl, written together. */
export class Outputs {
  private readonly results: GatheredWriter;
  private readonly errors: GatheredWriter;

  constructor(s3: S3Client, bucket: string, keys: { results: string; errors: string }) {
    this.results = new GatheredWriter(new ObjectWriter(s3, bucket, keys.results));
    this.errors = new GatheredWriter(new ObjectWriter(s3, bucket, keys.errors));
  }

  /** Bytes written to each file so far. */
  get bytes(): { results: number; errors: number } {
    return { results: this.results.bytes, errors: this.errors.bytes };
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

  /** Bytes handed to the upload, and those still gathered. */
  get bytes(): number {
    return this.writer.bytes + this.used;
  }

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

/**
 * A row with a result line, as its fate (outcome.ts rowFate) says: succeeded → message, usage and
 * cost (whatever of them the line has); errored → error; expired/canceled → neither.
 */
export async function writeResult(
  base: Pick<ResultRow, 'custom_id' | 'attempts' | 'batch_id' | 'usage' | 'cost_usd' | 'synchronous'>,
  decision: RowDecision,
  { result, message }: { result: BatchResult; message?: Buffer },
  tally: Tally,
  outputs: Outputs,
): Promise<void> {
  switch (decision.status) {
    case 'succeeded': {
      const parsedMessage: unknown = (result as { message?: unknown }).message;
      const read = readMessageUsage(parsedMessage);
      const cost = read.unpriced === undefined ? (rowCostUsd(read.usage, read.model, tally.prices, base.synchronous !== true) ?? null) : null;
      const row: ResultRow = { ...base, status: 'succeeded', usage: read.usage ? tokenTotals(read.usage) : null, cost_usd: cost };
      const priced = read.unpriced === undefined ? { usage: read.usage, model: read.model } : undefined;
      const unpriced = read.unpriced ?? (cost === null ? 'unknown_model' : undefined);
      // A message the scan missed (keys spelled with escapes) is written as parsed; a row without one has none.
      const bytes = message ?? (parsedMessage === undefined ? undefined : Buffer.from(JSON.stringify(parsedMessage)));
      await outputs.write(tally.add(row, priced, unpriced), {}, bytes);
      return;
    }
    case 'errored': {
      const text = result.type === 'errored' ? (errorMessageOf(result) ?? '') : 'The API returned a result type batchline does not know.';
      await outputs.write(
        tally.add({ ...base, status: 'errored', error: { type: decision.errorType ?? 'api_error', message: text }, usage: null, cost_usd: null }),
      );
      return;
    }
    case 'expired':
      await outputs.write(tally.add({ ...base, status: 'expired', usage: null, cost_usd: null }), {
        message: base.synchronous ? MESSAGES.deadline : MESSAGES.expired,
      });
      return;
    case 'canceled':
      await outputs.write(tally.add({ ...base, status: 'canceled', usage: null, cost_usd: null }), { message: MESSAGES.canceled });
      return;
  }
}

export function chunkFailureText(chunk: ChunkItem): { type: string; message: string; cause: string } {
  if (chunk.failure?.error === 'CreateOutcomeUnknown') {
    return { type: CREATE_UNKNOWN, message: `The batch create went unanswered and was not repeated: ${chunk.failure.cause}`, cause: chunk.failure.cause };
  }
  if (chunk.failure && chunk.collectLater) {
    return {
      type: COLLECT_PENDING,
      message: `Collecting the results did not finish (${chunk.failure.error}); the result is still at the API, and the daily reconciler collects it and writes these outputs again.`,
      cause: chunk.failure.cause,
    };
  }
  if (chunk.failure) return { type: CHUNK_FAILED, message: `The chunk failed: ${chunk.failure.error}`, cause: chunk.failure.cause };
  return { type: CHUNK_FAILED, message: `The chunk did not finish (status ${chunk.status}).`, cause: `chunk ${chunk.chunk} ended in status ${chunk.status}` };
}
