/**
 * The contract of the one Batches API client (implemented in ./client.ts). The pipeline codes
 * against this interface; tests hand it a real client pointed at the simulator.
 */
import type { BatchRequest, BatchResultLine, DeletedBatch, ListPage, MessageBatch } from './types';

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
}
