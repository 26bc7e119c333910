/**
 * The contract of the one Batches API client (implemented in ./client.ts). The pipeline codes
 * against this interface; tests hand it a real client pointed at the simulator.
 */
import type { BatchRequest, BatchResultLine, DeletedBatch, ListPage, Message, MessageBatch, MessageParams } from './types';

/**
 * Requests for create. Raw items are already-serialized JSON of one `{custom_id, params}` request
 * (a chunk file's line), so a 256 MB chunk streams from S3 to the API without being parsed again.
 */
export type CreateItem = BatchRequest | Buffer;
export type CreateSource = AsyncIterable<CreateItem> | Iterable<CreateItem>;

export interface CallOptions {
  /** Overrides the client's maxRetries for this call (create passes 0 when the caller owns retries). */
  maxRetries?: number;
  signal?: AbortSignal;
}

export interface ResultsOptions extends CallOptions {
  /** Start from this byte offset of the results file (HTTP Range), to resume. */
  startOffset?: number;
  /**
   * Where a line that cannot be read goes (cut JSON, not a `{custom_id, result}` object, longer than
   * the client's maxResultLineBytes): handed over in file order, awaited, and the stream goes on.
   * Without it, such a line ends the stream with ApiResponseInvalid (LineTooLong when too long).
   */
  onDamagedLine?: (line: DamagedResultLine) => void | Promise<void>;
}

/** One parsed results line with where it stands in the results file. */
export interface ResultEntry {
  line: BatchResultLine;
  /** Byte offset of the line in the results file. */
  offset: number;
  /** Bytes of the line, terminator included. */
  length: number;
  /** The raw line bytes (no terminator), so callers can store them without re-serializing. */
  raw: Buffer;
}

/** Why a results line could not be read. */
export type DamageKind = 'not_json' | 'not_result' | 'too_long';

/** A results line that could not be read, with what can still be told of it. */
export interface DamagedResultLine {
  damage: DamageKind;
  /**
   * The custom_id the line starts with, when its first bytes show one whole (the API writes
   * custom_id first; shared/jsonl/raw-json.ts leadingCustomId), or the one a JSON line that is not
   * a result names; undefined when nothing can be told.
   */
  customId: string | undefined;
  /** The bytes received: the whole line (no terminator), or for too_long its first bytes only. */
  raw: Buffer;
  /** Byte offset of the line in the results file. */
  offset: number;
  /** Bytes of the line, terminator included; undefined for too_long (it was not read to its end). */
  length: number | undefined;
}

/**
 * The line a parsed results line stands for, or undefined when it is not one: an object whose
 * custom_id is a string and whose result is an object (of any type and shape). The one rule for
 * whether a line can be read, applied by the client and again by whoever re-reads a stored line.
 */
export function asResultLine(parsed: unknown): BatchResultLine | undefined {
  if (!isObject(parsed)) return undefined;
  const line = parsed as { custom_id?: unknown; result?: unknown };
  return typeof line.custom_id === 'string' && isObject(line.result) ? (parsed as BatchResultLine) : undefined;
}

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null && !Array.isArray(value);

export interface ListOptions {
  limit?: number;
  beforeId?: string;
  afterId?: string;
}

/** A response's metadata the pipeline uses: the server's clock drives adaptive polling. */
export interface WithServerTime<T> {
  value: T;
  /** The server's `Date` header as epoch ms (falls back to the local clock). */
  serverTime: number;
  requestId: string | null;
}

/** The synchronous Messages endpoint (docs/api-reference.md §10), implemented by the same client. */
export interface MessagesApi {
  /** `POST /v1/messages`, non-streaming; throws the errors of ./errors.ts as the batch calls do. */
  createMessage(params: MessageParams, options?: CallOptions): Promise<Message>;
  /** The API's clock as its latest response's `Date` header said (epoch ms), if any had one. */
  lastServerTime(): number | undefined;
}

export interface BatchesApi {
  /** `create` must be given a factory when retries are allowed, since a body stream is read once. */
  create(requests: CreateSource | (() => CreateSource), options?: CallOptions): Promise<MessageBatch>;
  retrieve(batchId: string, options?: CallOptions): Promise<MessageBatch>;
  /** retrieve, with the server's clock (the simulator's clock may run faster than real time). */
  retrieveWithTime(batchId: string, options?: CallOptions): Promise<WithServerTime<MessageBatch>>;
  /** Auto-paginates, newest first (or walking backwards when beforeId is given). */
  list(options?: ListOptions & CallOptions): AsyncIterable<MessageBatch>;
  listPage(options?: ListOptions & CallOptions): Promise<ListPage>;
  cancel(batchId: string, options?: CallOptions): Promise<MessageBatch>;
  delete(batchId: string, options?: CallOptions): Promise<DeletedBatch>;
  /** Streams results; resumes internally with Range when a stream is cut part-way. */
  results(batchId: string, options?: ResultsOptions): AsyncIterable<ResultEntry>;
  /**
   * Tells the client when a batch it did not create itself was created (from our records), so a
   * 404 soon after (the API's transient one) is retried rather than taken for a deleted batch.
   */
  rememberCreated(batchId: string, createdAt: string | number): void;
  /** The API's clock as its latest response's `Date` header said (epoch ms), if any had one. */
  lastServerTime(): number | undefined;
}
