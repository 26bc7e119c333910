/** The six batch endpoints (docs/api-reference.md §1) and Messages (§10), each answering one exchange against the store. */
import type { IncomingMessage } from 'node:http';
import type { DeletedBatch } from '../shared/anthropic/types';
import { type BatchStore, toWire } from './batch-store';
import { rfc3339 } from './clock';
import { readCreateBody, tooLargeError } from './create-intake';
import { ApiError, sendError, sendJson, stampHeaders, type Exchange } from './envelopes';
import type { BatchFaults, Endpoint } from './options';
import type { ModelCatalog } from '../shared/validation/models';
import { derivedId } from './ids';
import { replyMessage } from './reply';
import { digestRequest } from './request-digest';
import { parseRange, resultLines, resultsSize, writeResults } from './results';

/** What the endpoints share: the store, the clock, and the server-wide settings a test can change. */
export interface SimulatorState {
  store: BatchStore;
  now: () => number;
  seed: number;
  maxBodyBytes: number;
  /** The models it serves (SimulatorOptions.models). */
  models: ModelCatalog;
  /** Faults for batch `sequence`, resolved when it is created. */
  batchFaults: (sequence: number) => BatchFaults;
  /** Creates whose response is still to be dropped. */
  dropCreateResponses: number;
  batchesCreated: string[];
  /** Messages calls answered 200 (their message ids are derived from this count). */
  messagesAnswered: number;
  requestsCreated: number;
  calls: Record<Endpoint, number>;
}

export interface Call {
  req: IncomingMessage;
  exchange: Exchange;
  batchId: string | null;
  query: URLSearchParams;
  /** `http://host:port` as the client addressed this server: results_url is built on it. */
  origin: string;
  /** Simulated time the store was brought up to for this call. */
  now: number;
}

async function create(state: SimulatorState, call: Call): Promise<void> {
  const intake = await readCreateBody(call.req, state.maxBodyBytes, state.models);
  if (intake.kind === 'gone') return;
  if (intake.kind === 'too-large') {
    // Answer at once and close: the rest of the body is not read, let alone kept.
    sendError(call.exchange, tooLargeError(state.maxBodyBytes), { Connection: 'close' });
    return;
  }
  // Reading the body took time on the simulated clock.
  const now = state.now();
  state.store.observe(now);
  const batch = state.store.create(intake.requests, now, state.batchFaults);
  state.batchesCreated.push(batch.id);
  state.requestsCreated += batch.requestCount;
  state.store.observe(now); // a batch with no processing time has already ended
  if (state.dropCreateResponses > 0) {
    state.dropCreateResponses -= 1;
    call.req.socket.destroy();
    return;
  }
  sendJson(call.exchange, 200, toWire(batch, now, call.origin));
}

function retrieve(state: SimulatorState, call: Call): void {
  const { now } = call;
  const batch = state.store.get(call.batchId!, now, { hidden: true });
  sendJson(call.exchange, 200, toWire(batch, now, call.origin));
}

function readLimit(query: URLSearchParams): number {
  const raw = query.get('limit');
  if (raw === null || raw === '') return 20;
  const limit = Number(raw);
  if (!/^\d+$/.test(raw) || limit < 1 || limit > 1000) {
    throw new ApiError(400, `limit: Input should be a whole number from 1 to 1000, got ${JSON.stringify(raw)}`);
  }
  return limit;
}

function list(state: SimulatorState, call: Call): void {
  const { now } = call;
  const cursor = (name: string): string | null => {
    const value = call.query.get(name);
    return value === null || value === '' ? null : value;
  };
  const page = state.store.list({ limit: readLimit(call.query), afterId: cursor('after_id'), beforeId: cursor('before_id') }, now, call.origin);
  sendJson(call.exchange, 200, page);
}

function cancel(state: SimulatorState, call: Call): void {
  const { now } = call;
  const batch = state.store.get(call.batchId!, now);
  state.store.cancel(batch, now);
  sendJson(call.exchange, 200, toWire(batch, now, call.origin));
}

function remove(state: SimulatorState, call: Call): void {
  const batch = state.store.get(call.batchId!, call.now);
  state.store.delete(batch);
  const deleted: DeletedBatch = { id: batch.id, type: 'message_batch_deleted' };
  sendJson(call.exchange, 200, deleted);
}

async function results(state: SimulatorState, call: Call): Promise<void> {
  const { now } = call;
  const batch = state.store.get(call.batchId!, now, { hidden: true });
  if (batch.settlement === null) {
    throw new ApiError(400, `Message batch ${batch.id} has not finished processing; its results are not available yet`);
  }
  if (batch.requests === null) {
    throw new ApiError(404, `The results of message batch ${batch.id} were archived at ${rfc3339(batch.archivesAt)} and are no longer available`);
  }
  const rangeHeader = call.req.headers.range;
  const range = batch.faults.ignoreResultsRange ? null : parseRange(rangeHeader, () => resultsSize(batch, state.seed));
  const { res } = call.exchange;
  if (range === 'unsatisfiable') {
    throw new ApiError(416, `Range ${rangeHeader} is outside the results file`, {
      'Content-Range': `bytes */${resultsSize(batch, state.seed)}`,
    });
  }
  let cutAfterBytes: number | undefined;
  if (batch.resultsCutsLeft > 0) {
    batch.resultsCutsLeft -= 1;
    cutAfterBytes = batch.faults.cutResultsAfterBytes;
  }
  stampHeaders(call.exchange);
  res.setHeader('Content-Type', 'application/x-jsonl');
  res.setHeader('Accept-Ranges', 'bytes');
  if (range === null) {
    res.statusCode = 200;
  } else {
    res.statusCode = 206;
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end - 1}/${resultsSize(batch, state.seed)}`);
    res.setHeader('Content-Length', range.end - range.start);
  }
  await writeResults(res, resultLines(batch, state.seed), range, cutAfterBytes);
}

/**
 * `POST /v1/messages`, synchronous: the same checks, token counts and reply as a batch request,
 * answered at once (400 or 404 where a batch request would be errored), billed at standard rates
 * (`service_tier: standard`), and sharing the batches' prompt cache — so a call made before a
 * batch primes it (prompt-cache.ts).
 */
async function messages(state: SimulatorState, call: Call): Promise<void> {
  const body = await readMessagesBody(call.req);
  if (body === 'too-large') {
    sendError(call.exchange, new ApiError(413, `Request exceeds the maximum size of ${MESSAGES_MAX_BODY_BYTES} bytes`), { Connection: 'close' });
    return;
  }
  let params: unknown;
  try {
    params = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ApiError(400, `The request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const request = digestRequest('', params, undefined, state.models, 'messages');
  if (request.invalid !== null) throw new ApiError(request.invalid.type === 'not_found_error' ? 404 : 400, request.invalid.message);
  const now = state.now();
  state.store.observe(now);
  const cache = state.store.useCache(request, now);
  state.messagesAnswered += 1;
  sendJson(
    call.exchange,
    200,
    replyMessage(request, cache, { id: derivedId('msg_', state.seed, 'messages', state.messagesAnswered), serviceTier: 'standard' }),
  );
}

/** The Messages API's request limit (32 MB for standard endpoints). */
export const MESSAGES_MAX_BODY_BYTES = 32_000_000;

async function readMessagesBody(req: IncomingMessage): Promise<Buffer | 'too-large'> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MESSAGES_MAX_BODY_BYTES) return 'too-large';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MESSAGES_MAX_BODY_BYTES) return 'too-large';
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export const ENDPOINTS: Record<Endpoint, (state: SimulatorState, call: Call) => void | Promise<void>> = {
  messages,
  create,
  retrieve,
  list,
  cancel,
  delete: remove,
  results,
};
