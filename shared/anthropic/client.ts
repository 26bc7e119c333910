/**
 * The one Message Batches API client (docs/api-reference.md), on undici.
 *
 * - Retries as the official SDK does (./retry.ts); errors are the named classes of ./errors.ts.
 * - create streams its body with backpressure. A body stream is read once, so create retries only
 *   when given a factory; with a plain iterable its maxRetries is effectively 0. A connection lost
 *   after the whole body was sent is OutcomeUnknown: the batch may exist, so the caller looks for
 *   it instead of creating a second one (a retry through a factory could create two).
 * - results streams the JSONL file, splits it with the one line splitter, and resumes a cut stream
 *   with a Range request from the first line not yet yielded. A line that cannot be read (cut JSON,
 *   not a result, too long) goes to the caller's onDamagedLine, and the lines after it still come.
 * - The API key goes only to baseUrl's origin (results_url on another host gets no key), and is
 *   scrubbed from every error.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import packageJson from '../../package.json' with { type: 'json' };
import { isBlank, LineSplitter, LineTooLong, splitWith, type PieceSplitter, type RawLine, type SplitLinesOptions } from '../jsonl/lines';
import { leadingCustomId } from '../jsonl/raw-json';
import {
  asResultLine,
  type BatchesApi,
  type CallOptions,
  type CreateSource,
  type ListOptions,
  type MessagesApi,
  type ResultEntry,
  type ResultsOptions,
  type WithServerTime,
} from './api';
import { encodeCreateBody, newProgress, type CreateBodyProgress } from './create-body';
import {
  AnthropicError,
  ApiKeyMissing,
  ApiRequestInvalid,
  ApiResponseInvalid,
  ApiRetryable,
  OutcomeUnknown,
  ResultsNotReady,
  errorClassFor,
  errorFromResponse,
  scrubbedCause,
} from './errors';
import { type HeaderBag, RetryBudget, headerValue, isTransientNotFound, retryDelayMs, shouldRetryResponse } from './retry';
import type { BatchResultLine, DeletedBatch, ListPage, Message, MessageBatch, MessageParams } from './types';

export const DEFAULT_BASE_URL = 'https://api.anthropic.com';
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
export const USER_AGENT = `batchline/${packageJson.version}`;

export interface BatchesClientOptions {
  /** The key, or a function that returns it (called per request, e.g. a cached Secrets Manager read). */
  apiKey: string | (() => string | Promise<string>);
  /** Default https://api.anthropic.com; a trailing slash is fine; may carry a path prefix (a proxy). */
  baseUrl?: string;
  /** Default 2023-06-01. */
  anthropicVersion?: string;
  /** Retries per call after the first attempt (default 2, as the SDK). CallOptions.maxRetries overrides. */
  maxRetries?: number;
  /**
   * Default 600,000 ms. Bounds the wait for response headers and each silence between body chunks,
   * not a whole transfer: a long results stream is not cut while bytes keep flowing.
   */
  timeoutMs?: number;
  /** A 404 on retrieve/results this soon after the batch's created_at is retried (default 30,000 ms). */
  notFoundGraceMs?: number;
  /**
   * Longest results line accepted, in bytes (default 64 MiB); a longer one is a damaged line
   * (ResultsOptions.onDamagedLine), or throws LineTooLong when the caller takes none.
   */
  maxResultLineBytes?: number;
  /** Idle keep-alive sockets are closed after this long (default 30,000 ms). */
  keepAliveTimeoutMs?: number;
  /** Injected in tests: waits between retries. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Injected in tests: the jitter source, in [0, 1). */
  random?: () => number;
  /** Injected in tests: the local clock (epoch ms). */
  now?: () => number;
}

type Endpoint = 'create' | 'retrieve' | 'list' | 'cancel' | 'delete' | 'results' | 'messages';

interface RequestSpec {
  endpoint: Endpoint;
  method: 'GET' | 'POST' | 'DELETE';
  url: URL;
  accept?: string;
  /** `Range: bytes=N-` when N > 0. */
  rangeFrom?: number;
  /** A fresh create body per attempt. */
  body?: () => { stream: AsyncIterable<Buffer>; progress: CreateBodyProgress };
  /** The batch's created_at (epoch ms on the server's clock), for the transient-404 window. */
  createdAt?: () => number | undefined;
  /** Non-2xx statuses the caller handles itself (416 for results). */
  passStatus?: number;
}

interface Sent<T> {
  value: T;
  status: number;
  headers: HeaderBag;
}

const ERROR_BODY_LIMIT = 64 * 1024;
const CREATED_MEMORY = 1000;

export class BatchesClient implements BatchesApi, MessagesApi {
  readonly baseUrl: string;
  readonly anthropicVersion: string;
  readonly maxRetries: number;
  readonly timeoutMs: number;
  readonly notFoundGraceMs: number;
  readonly maxResultLineBytes: number;

  readonly #apiKey: () => string | Promise<string>;
  /** Every key used so far, to scrub from errors (a rotated key included). */
  readonly #keys = new Set<string>();
  readonly #origin: string;
  readonly #agent: Agent;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #now: () => number;
  /** created_at of batches this client created, for the transient 404 right after create. */
  readonly #created = new Map<string, number>();
  /** The latest `Date` header of any response (epoch ms): the API's clock. */
  #serverNow: number | undefined;

  constructor(options: BatchesClientOptions) {
    const key = options.apiKey;
    if (typeof key === 'string') {
      if (key.trim() === '') throw new ApiKeyMissing('The Anthropic API key is empty');
      this.#keys.add(key);
      this.#apiKey = () => key;
    } else {
      this.#apiKey = key;
    }
    this.baseUrl = (options.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.#origin = new URL(this.baseUrl).origin;
    this.anthropicVersion = options.anthropicVersion ?? DEFAULT_ANTHROPIC_VERSION;
    this.maxRetries = options.maxRetries ?? 2;
    this.timeoutMs = options.timeoutMs ?? 600_000;
    this.notFoundGraceMs = options.notFoundGraceMs ?? 30_000;
    this.maxResultLineBytes = options.maxResultLineBytes ?? 64 * 1024 * 1024;
    this.#sleep = options.sleep ?? ((ms, signal) => delay(ms, undefined, signal ? { signal } : undefined));
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#agent = new Agent({
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  /** Closes the keep-alive connections. */
  async close(): Promise<void> {
    await this.#agent.close();
  }

  /**
   * Marks a batch as created at `createdAt`, so a 404 within notFoundGraceMs of it is retried. create
   * does this itself; a caller in another process (a poll after a submit) can do it from its records.
   */
  rememberCreated(batchId: string, createdAt: string | number): void {
    const at = typeof createdAt === 'number' ? createdAt : Date.parse(createdAt);
    if (!Number.isFinite(at)) return;
    this.#created.delete(batchId);
    this.#created.set(batchId, at);
    if (this.#created.size > CREATED_MEMORY) {
      const oldest = this.#created.keys().next().value;
      if (oldest !== undefined) this.#created.delete(oldest);
    }
  }

  /**
   * Streams `{"requests":[...]}`: Buffers are raw request JSON sent as is, objects are serialized
   * one at a time. Retries (maxRetries) need a factory that yields a fresh source per attempt; a
   * plain iterable is sent once. Throws OutcomeUnknown when the body went out but no answer came.
   */
  async create(requests: CreateSource | (() => CreateSource), options: CallOptions = {}): Promise<MessageBatch> {
    let source: () => CreateSource;
    let maxRetries: number;
    if (typeof requests === 'function') {
      source = requests;
      maxRetries = options.maxRetries ?? this.maxRetries;
    } else {
      // A plain iterable can be read once: no retry is possible.
      let taken = false;
      source = () => {
        if (taken) throw new Error('create: a plain iterable cannot be sent twice');
        taken = true;
        return requests;
      };
      maxRetries = 0;
    }
    const sent = await this.#send<MessageBatch>(
      {
        endpoint: 'create',
        method: 'POST',
        url: this.#url('/v1/messages/batches'),
        body: () => {
          const progress = newProgress();
          return { stream: encodeCreateBody(source(), progress, this.#now), progress };
        },
      },
      new RetryBudget(maxRetries),
      options.signal,
      readJson,
    );
    this.rememberCreated(sent.value.id, sent.value.created_at);
    return sent.value;
  }

  /**
   * One synchronous Messages call (`POST /v1/messages`, non-streaming), at standard rates: for cache
   * priming before a batch (max_tokens 0 writes the cache without generating) and for rows finished
   * outside a batch. Retries as the SDK does; a call retried after a lost connection may be billed
   * twice, as with the SDK.
   */
  async createMessage(params: MessageParams, options: CallOptions = {}): Promise<Message> {
    const body = Buffer.from(JSON.stringify(params));
    const sent = await this.#send<Message>(
      {
        endpoint: 'messages',
        method: 'POST',
        url: this.#url('/v1/messages'),
        // Progress stays incomplete: a lost connection is retried, never taken for a lost batch create.
        body: () => ({ stream: oneChunk(body), progress: newProgress() }),
      },
      this.#budget(options),
      options.signal,
      readJson,
    );
    return sent.value;
  }

  /** The API's clock as its latest response's `Date` header said (epoch ms; 1 s resolution), if any response had one. */
  lastServerTime(): number | undefined {
    return this.#serverNow;
  }

  #noteServerTime(headers: HeaderBag): void {
    const at = serverTime(headers);
    if (at !== undefined && (this.#serverNow === undefined || at > this.#serverNow)) this.#serverNow = at;
  }

  async retrieve(batchId: string, options: CallOptions = {}): Promise<MessageBatch> {
    return (await this.retrieveWithTime(batchId, options)).value;
  }

  async retrieveWithTime(batchId: string, options: CallOptions = {}): Promise<WithServerTime<MessageBatch>> {
    const sent = await this.#send<MessageBatch>(
      {
        endpoint: 'retrieve',
        method: 'GET',
        url: this.#batchUrl(batchId),
        createdAt: () => this.#created.get(batchId),
      },
      this.#budget(options),
      options.signal,
      readJson,
    );
    return {
      value: sent.value,
      serverTime: serverTime(sent.headers) ?? this.#now(),
      requestId: headerValue(sent.headers, 'request-id') ?? null,
    };
  }

  async listPage(options: ListOptions & CallOptions = {}): Promise<ListPage> {
    const url = this.#url('/v1/messages/batches');
    if (options.limit !== undefined) url.searchParams.set('limit', String(options.limit));
    if (options.beforeId !== undefined) url.searchParams.set('before_id', options.beforeId);
    if (options.afterId !== undefined) url.searchParams.set('after_id', options.afterId);
    const sent = await this.#send<Partial<ListPage>>({ endpoint: 'list', method: 'GET', url }, this.#budget(options), options.signal, readJson);
    const page = sent.value;
    return {
      data: page.data ?? [],
      has_more: page.has_more ?? false,
      first_id: page.first_id ?? null,
      last_id: page.last_id ?? null,
    };
  }

  /** As the SDK's Page: after_id = last_id, or before_id = first_id when beforeId was given. */
  async *list(options: ListOptions & CallOptions = {}): AsyncGenerator<MessageBatch> {
    const backwards = options.beforeId !== undefined;
    let query: ListOptions & CallOptions = { ...options };
    for (;;) {
      const page = await this.listPage(query);
      yield* page.data;
      if (!page.has_more || page.data.length === 0) return;
      const cursor = backwards ? page.first_id : page.last_id;
      if (cursor === null) return;
      query = backwards ? { ...query, beforeId: cursor } : { ...query, afterId: cursor };
    }
  }

  async cancel(batchId: string, options: CallOptions = {}): Promise<MessageBatch> {
    const sent = await this.#send<MessageBatch>(
      { endpoint: 'cancel', method: 'POST', url: this.#batchUrl(batchId, '/cancel') },
      this.#budget(options),
      options.signal,
      readJson,
    );
    return sent.value;
  }

  async delete(batchId: string, options: CallOptions = {}): Promise<DeletedBatch> {
    // A deleted batch's 404 is final, however recently it was created.
    this.#created.delete(batchId);
    const sent = await this.#send<DeletedBatch>(
      { endpoint: 'delete', method: 'DELETE', url: this.#batchUrl(batchId) },
      this.#budget(options),
      options.signal,
      readJson,
    );
    return sent.value;
  }

  async *results(batchId: string, options: ResultsOptions = {}): AsyncGenerator<ResultEntry> {
    let offset = options.startOffset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`startOffset must be a whole number of bytes >= 0, got ${offset}`);
    }
    const batch = await this.retrieve(batchId, options);
    if (batch.results_url === null) {
      throw new ResultsNotReady(`No batch \`results_url\`; Has it finished processing? ${batch.processing_status} - ${batch.id}`);
    }
    const url = new URL(batch.results_url);
    const createdAt = Date.parse(batch.created_at);
    const budget = this.#budget(options);
    const signal = options.signal;
    const onDamaged = options.onDamagedLine;
    // A too-long line is reported when found, before its end is: a read resumed from its start meets it again.
    let reportedTooLong: number | undefined;
    // An unreadable last line without its \n may be a transfer cut short: it is read a second time first.
    let rereadOpenLine: number | undefined;

    for (;;) {
      const sent = await this.#send<Dispatcher.ResponseData>(
        {
          endpoint: 'results',
          method: 'GET',
          url,
          accept: 'application/binary',
          rangeFrom: offset,
          createdAt: () => createdAt,
          passStatus: 416,
        },
        budget,
        signal,
        async (response) => response,
      );
      const body = sent.value.body;
      const requestId = headerValue(sent.headers, 'request-id') ?? null;
      try {
        const bytes = await this.#resultsBody(sent.value, offset);
        if (bytes === undefined) return;
        for await (const line of splitWith(bytes, new ResultLineReader({ startOffset: offset, maxLineBytes: this.maxResultLineBytes }))) {
          if (line instanceof LineTooLong) {
            if (!onDamaged) throw line;
            if (reportedTooLong !== line.offset) {
              reportedTooLong = line.offset;
              const customId = leadingCustomId(line.head, { mayRepeat: false });
              await onDamaged({ damage: 'too_long', customId, raw: line.head, offset: line.offset, length: undefined });
            }
            // `offset` stays at the line's start: the next line says where it ended.
            continue;
          }
          const next = line.offset + line.length;
          if (isBlank(line.bytes)) {
            offset = next;
            continue;
          }
          const read = readResultLine(line.bytes);
          if ('line' in read) {
            offset = next;
            yield { line: read.line, offset: line.offset, length: line.length, raw: line.bytes };
            continue;
          }
          if (!line.terminated && rereadOpenLine !== line.offset && budget.retriesMade < budget.max) {
            rereadOpenLine = line.offset;
            throw new OpenLastLine(line.offset);
          }
          if (!onDamaged) throw damagedLineError(read.damage, line.offset, line.bytes.length, requestId);
          await onDamaged({ damage: read.damage, customId: read.customId, raw: line.bytes, offset: line.offset, length: line.length });
          offset = next;
        }
        return;
      } catch (err) {
        if (signal?.aborted || !isConnectionError(err)) throw err;
        // Cut part-way: resume from the first line not yet yielded.
        if (!(await this.#backoff(budget, undefined, signal))) {
          throw new ApiRetryable(`results stream of ${batchId} was cut at byte ${offset} and retries are exhausted`, {
            cause: scrubbedCause(err, [...this.#keys]),
          });
        }
      } finally {
        if (!body.destroyed) body.destroy();
      }
    }
  }

  /** The bytes of the results file from `offset` on, or undefined when nothing is left. */
  async #resultsBody(response: Dispatcher.ResponseData, offset: number): Promise<AsyncIterable<Buffer> | undefined> {
    const headers = response.headers as HeaderBag;
    const contentRange = headerValue(headers, 'content-range');
    if (response.statusCode === 416) {
      // Range not satisfiable: fine when the offset is exactly the end of the file.
      const size = /^bytes \*\/(\d+)$/.exec(contentRange ?? '')?.[1];
      await response.body.dump({ limit: ERROR_BODY_LIMIT });
      if (size !== undefined && Number(size) === offset) return undefined;
      throw new ApiRequestInvalid(`416 results: startOffset ${offset} is past the end of the results file`, {
        status: 416,
        requestId: headerValue(headers, 'request-id') ?? null,
      });
    }
    if (response.statusCode === 206) {
      const start = /^bytes (\d+)-/.exec(contentRange ?? '')?.[1];
      if (start === undefined || Number(start) !== offset) {
        throw new ApiResponseInvalid(`206 results: Content-Range "${contentRange ?? ''}" does not start at ${offset}`, {
          status: 206,
          requestId: headerValue(headers, 'request-id') ?? null,
        });
      }
      return response.body;
    }
    // A server that ignores Range sends the whole file: drop what was already read.
    return offset > 0 ? skipBytes(response.body, offset) : response.body;
  }

  #budget(options: CallOptions): RetryBudget {
    return new RetryBudget(options.maxRetries ?? this.maxRetries);
  }

  #url(path: string): URL {
    return new URL(this.baseUrl + path);
  }

  #batchUrl(batchId: string, suffix = ''): URL {
    return this.#url(`/v1/messages/batches/${encodeURIComponent(batchId)}${suffix}`);
  }

  async #key(): Promise<string> {
    const key = await this.#apiKey();
    if (typeof key !== 'string' || key.trim() === '') throw new ApiKeyMissing('The Anthropic API key is empty');
    this.#keys.add(key);
    return key;
  }

  /** Sleeps before the next attempt if the budget allows one. */
  async #backoff(budget: RetryBudget, headers: HeaderBag | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    const retriesMade = budget.retriesMade;
    if (!budget.take()) return false;
    await this.#sleep(retryDelayMs({ retriesMade, headers, random: this.#random, now: this.#now() }), signal);
    return true;
  }

  /** One call with its retries. `read` turns a successful response into the value (inside the retry loop). */
  async #send<T>(
    spec: RequestSpec,
    budget: RetryBudget,
    signal: AbortSignal | undefined,
    read: (response: Dispatcher.ResponseData) => Promise<T>,
  ): Promise<Sent<T>> {
    // Set once any attempt lost its connection after sending a whole create body.
    let unknown: { progress: CreateBodyProgress } | undefined;
    for (;;) {
      const key = await this.#key();
      const body = spec.body?.();
      let response: Dispatcher.ResponseData;
      try {
        response = await request(spec.url, {
          dispatcher: this.#agent,
          method: spec.method,
          headers: this.#headers(spec, key, body !== undefined),
          // undici takes an async iterable body (documented; its .d.ts lags) and pulls with backpressure.
          body: body?.stream as unknown as Dispatcher.RequestOptions['body'],
          signal,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
        });
        const status = response.statusCode;
        this.#noteServerTime(response.headers as HeaderBag);
        if ((status >= 200 && status < 300) || status === spec.passStatus) {
          const value = await read(response);
          return { value, status, headers: response.headers as HeaderBag };
        }
      } catch (err) {
        // A 2xx to create that cannot be read still means the batch was probably made.
        if (err instanceof ApiResponseInvalid && body?.progress.complete) throw this.#outcomeUnknown(body.progress, err);
        if (err instanceof AnthropicError) throw err;
        if (body?.progress.sourceError) throw body.progress.sourceError.error;
        if (signal?.aborted) throw err;
        if (body?.progress.complete) unknown = { progress: body.progress };
        if (await this.#backoff(budget, undefined, signal)) continue;
        const cause = scrubbedCause(err, [...this.#keys]);
        if (unknown) throw this.#outcomeUnknown(unknown.progress, cause);
        throw new ApiRetryable(`${spec.endpoint}: connection error: ${cause.message}`, { cause });
      }

      const headers = response.headers as HeaderBag;
      const text = await readLimited(response.body);
      const status = response.statusCode;
      const transient404 =
        status === 404 &&
        headerValue(headers, 'x-should-retry') !== 'false' &&
        isTransientNotFound(spec.createdAt?.(), serverTime(headers) ?? this.#now(), this.notFoundGraceMs);
      const retry = shouldRetryResponse(status, headers) || transient404;
      if (retry && (await this.#backoff(budget, headers, signal))) continue;
      const error = errorFromResponse({ status, headers, body: text }, [...this.#keys], retry ? ApiRetryable : errorClassFor(status, headers));
      if (unknown) throw this.#outcomeUnknown(unknown.progress, error);
      throw error;
    }
  }

  #outcomeUnknown(progress: CreateBodyProgress, cause: Error): OutcomeUnknown {
    return new OutcomeUnknown(
      `create: the request body (${progress.requests} requests, ${progress.bytes} bytes) was sent but no response ` +
        `arrived; a batch may have been created (${cause.message})`,
      { cause, requests: progress.requests, bytes: progress.bytes, sentAt: progress.completedAt },
    );
  }

  #headers(spec: RequestSpec, key: string, hasBody: boolean): Record<string, string> {
    const headers: Record<string, string> = {
      accept: spec.accept ?? 'application/json',
      'user-agent': USER_AGENT,
    };
    // The key (and the API's own headers) go to the API's origin only, never to a foreign results_url.
    if (spec.url.origin === this.#origin) {
      headers['x-api-key'] = key;
      headers['anthropic-version'] = this.anthropicVersion;
    }
    if (hasBody) headers['content-type'] = 'application/json';
    if (spec.rangeFrom !== undefined && spec.rangeFrom > 0) headers.range = `bytes=${spec.rangeFrom}-`;
    return headers;
  }
}

async function* oneChunk(body: Buffer): AsyncGenerator<Buffer> {
  yield body;
}

async function readJson<T>(response: Dispatcher.ResponseData): Promise<T> {
  const text = await response.body.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiResponseInvalid(`${response.statusCode} response is not JSON (${text.length} characters)`, {
      status: response.statusCode,
      requestId: headerValue(response.headers as HeaderBag, 'request-id') ?? null,
    });
  }
}

/** An error body, cut at ERROR_BODY_LIMIT (the rest is dropped so the connection can be reused). */
async function readLimited(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (size < ERROR_BODY_LIMIT) {
        chunks.push(chunk);
        size += chunk.length;
      }
    }
  } catch {
    // A broken error body still leaves the status to act on.
  }
  return Buffer.concat(chunks, size).subarray(0, ERROR_BODY_LIMIT).toString('utf8');
}

function serverTime(headers: HeaderBag): number | undefined {
  const date = headerValue(headers, 'date');
  if (date === undefined) return undefined;
  const at = Date.parse(date);
  return Number.isFinite(at) ? at : undefined;
}

/** A results line parsed, or why it cannot be read (with the custom_id it names, when it shows one). */
function readResultLine(bytes: Buffer): { line: BatchResultLine } | { damage: 'not_json' | 'not_result'; customId: string | undefined } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { damage: 'not_json', customId: leadingCustomId(bytes, { mayRepeat: false }) };
  }
  const line = asResultLine(parsed);
  if (line) return { line };
  const named = typeof parsed === 'object' && parsed !== null ? (parsed as { custom_id?: unknown }).custom_id : undefined;
  return { damage: 'not_result', customId: typeof named === 'string' ? named : undefined };
}

function damagedLineError(damage: 'not_json' | 'not_result', offset: number, bytes: number, requestId: string | null): ApiResponseInvalid {
  const what = damage === 'not_json' ? `is not valid JSON (${bytes} bytes)` : 'is not a {custom_id, result} object';
  return new ApiResponseInvalid(`results line at byte ${offset} ${what}`, { requestId });
}

/** A results read that ended inside an unreadable line: read again from that line before taking it as damaged. */
class OpenLastLine extends Error {
  override readonly name = 'OpenLastLine';
  constructor(offset: number) {
    super(`the results stream ended inside an unreadable line at byte ${offset}`);
  }
}

/** Lines of a results file, a line over the limit handed over as its LineTooLong instead of ending the stream. */
class ResultLineReader implements PieceSplitter<RawLine | LineTooLong> {
  private readonly splitter: LineSplitter;

  constructor(options: SplitLinesOptions) {
    this.splitter = new LineSplitter(options);
  }

  push(piece: Uint8Array): void {
    this.splitter.push(piece);
  }

  next(): RawLine | LineTooLong | undefined {
    try {
      return this.splitter.next();
    } catch (error) {
      if (error instanceof LineTooLong) return error;
      throw error;
    }
  }

  end(): RawLine | undefined {
    return this.splitter.end();
  }
}

/** Errors a cut stream raises (socket closed, reset, body timeout), as opposed to our own checks. */
function isConnectionError(err: unknown): boolean {
  if (err instanceof AnthropicError) return false;
  if (err instanceof Error && (err.name === 'LineTooLong' || err.name === 'AbortError')) return false;
  return true;
}

async function* skipBytes(source: AsyncIterable<Buffer>, count: number): AsyncGenerator<Buffer> {
  let left = count;
  for await (const chunk of source) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
  if (left > 0) throw new ApiRequestInvalid(`startOffset ${count} is past the end of the results file`);
}
