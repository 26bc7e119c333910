/**
 * The results file of an ended batch (docs/api-reference.md §4): one JSON line per request,
 * `\n`-terminated, in a seeded shuffled order. Lines are generated as they are written, so a
 * 100,000-request batch never sits in memory as text; the same batch always yields the same bytes,
 * which is what lets a client resume with a Range.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { BatchResult, BatchResultLine } from '../shared/anthropic/types';
import type { BatchRecord } from './batch-store';
import type { ResultLineDamage } from './options';
import type { Settlement } from './outcomes';
import type { RequestDigest } from './request-digest';
import { errorEnvelope } from './envelopes';
import { derivedId } from './ids';
import { seededRandom, shuffle } from './prng';
import { replyMessage } from './reply';

const ERROR_MESSAGES: Record<string, string> = {
  api_error: 'Internal server error',
  overloaded_error: 'Overloaded',
  rate_limit_error: 'Number of request tokens has exceeded your rate limit',
  timeout_error: 'Request timed out',
  authentication_error: 'Invalid authentication credentials',
  billing_error: 'Your credit balance is too low to access the Anthropic API',
  permission_error: 'Your API key does not have permission to use the specified resource',
  not_found_error: 'Not found',
  invalid_request_error: 'Invalid request',
};

function resultOf(request: RequestDigest, index: number, settlement: Settlement, seed: number, sequence: number): BatchResult {
  const outcome = settlement.outcomes[index]!;
  if (outcome === 'succeeded') {
    return {
      type: 'succeeded',
      message: replyMessage(request, settlement.cacheUsage[index]!, { id: derivedId('msg_', seed, sequence, request.customId), serviceTier: 'batch' }),
    };
  }
  if (outcome === 'errored') {
    const type = settlement.errorTypes[index]!;
    const message = request.invalid?.message ?? ERROR_MESSAGES[type] ?? `Simulated ${type}`;
    return { type: 'errored', error: errorEnvelope(type, message, null) };
  }
  return { type: outcome };
}

/**
 * Every line of the results file, terminator included, in file order (a damaged oversize line comes
 * in several pieces). Strings, not buffers: they are encoded a write-sized chunk at a time. The
 * batch must be settled and not archived.
 */
export function* resultLines(batch: BatchRecord, seed: number): Generator<string> {
  // Held for the whole stream: archival may drop them from the batch while a download is running.
  const requests = batch.requests!;
  const settlement = batch.settlement!;
  const order = shuffle(
    Uint32Array.from({ length: batch.requestCount }, (_, i) => i),
    seededRandom(seed, 'batch', batch.sequence, 'results-order'),
  );
  const damage = batch.faults.damageResultLines ?? {};
  let position = 0;
  for (const index of order) {
    const request = requests[index]!;
    const line: BatchResultLine = { custom_id: request.customId, result: resultOf(request, index, settlement, seed, batch.sequence) };
    const text = JSON.stringify(line);
    const kind = Object.hasOwn(damage, position) ? damage[position] : undefined;
    position += 1;
    if (kind === undefined) yield `${text}\n`;
    else yield* damaged(text, kind, batch.faults.oversizeResultLineBytes ?? DEFAULT_OVERSIZE_BYTES);
  }
}

const DEFAULT_OVERSIZE_BYTES = 64 * 1024 * 1024 + 1024;
const PADDING = ' '.repeat(1024 * 1024);

/**
 * A line damaged as `kind` says (options.ts ResultLineDamage), in pieces: an oversize line is
 * padded a MiB at a time, never held whole.
 */
function* damaged(text: string, kind: ResultLineDamage, oversizeBytes: number): Generator<string> {
  const half = Math.floor(text.length / 2);
  if (kind === 'cut') {
    yield `${text.slice(0, half)}\n`;
  } else if (kind === 'headless') {
    yield `${text.slice(half)}\n`;
  } else {
    yield text;
    for (let left = oversizeBytes - Buffer.byteLength(text); left > 0; left -= PADDING.length) {
      yield left >= PADDING.length ? PADDING : PADDING.slice(0, left);
    }
    yield '\n';
  }
}

/** Bytes in the results file; computed once (a full generation pass) and kept on the batch. */
export function resultsSize(batch: BatchRecord, seed: number): number {
  if (batch.resultsBytes === null) {
    let total = 0;
    for (const line of resultLines(batch, seed)) total += Buffer.byteLength(line);
    batch.resultsBytes = total;
  }
  return batch.resultsBytes;
}

/** Half-open byte range [start, end) of the file. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * A single `bytes=` range (`N-`, `N-M`, `-S`). Null when there is none or it cannot be read (then the
 * whole file is served, as RFC 9110 allows); 'unsatisfiable' when it starts past the end.
 */
export function parseRange(header: string | undefined, total: () => number): ByteRange | null | 'unsatisfiable' {
  if (header === undefined) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  const size = total();
  if (match[1] === '') {
    const suffix = Number(match[2]);
    return suffix === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(match[1]);
  if (start >= size) return 'unsatisfiable';
  const last = match[2] === '' ? size - 1 : Number(match[2]);
  if (last < start) return null;
  return { start, end: Math.min(last + 1, size) };
}

const WRITE_CHUNK_BYTES = 64 * 1024;

/** Resolves when the response can take more, or has closed (the client went away). */
async function drained(res: ServerResponse): Promise<void> {
  const controller = new AbortController();
  await Promise.race([once(res, 'drain', { signal: controller.signal }), once(res, 'close', { signal: controller.signal })]).catch(() => undefined);
  controller.abort();
}

/**
 * Writes `range` of the file with backpressure. With `cutAfterBytes`, writes exactly that many
 * body bytes and then destroys the connection, as a dropped download would.
 */
export async function writeResults(res: ServerResponse, lines: Iterable<string>, range: ByteRange | null, cutAfterBytes: number | undefined): Promise<void> {
  const start = range?.start ?? 0;
  const end = range?.end ?? Number.POSITIVE_INFINITY;
  let offset = 0;
  let sent = 0;
  let pending = '';
  let pendingBytes = 0;

  /** False once the response is over (cut, or the client left). */
  const flush = async (tail?: Buffer): Promise<boolean> => {
    let chunk = Buffer.from(pending);
    if (tail !== undefined) chunk = Buffer.concat([chunk, tail]);
    pending = '';
    pendingBytes = 0;
    if (cutAfterBytes !== undefined && sent + chunk.length > cutAfterBytes) {
      chunk = chunk.subarray(0, cutAfterBytes - sent);
      // Destroy only once the bytes are with the kernel, so the client receives exactly them.
      res.write(chunk, () => res.socket?.destroy());
      return false;
    }
    sent += chunk.length;
    if (!res.write(chunk)) await drained(res);
    return !res.destroyed;
  };

  for (const line of lines) {
    const lineStart = offset;
    const lineBytes = Buffer.byteLength(line);
    offset += lineBytes;
    if (offset <= start) continue;
    if (lineStart >= end) break;
    if (lineStart < start || offset > end) {
      // A line the range starts or ends inside: only this one is cut as bytes.
      const piece = Buffer.from(line).subarray(Math.max(0, start - lineStart), Math.min(lineBytes, end - lineStart));
      if (!(await flush(piece))) return;
      continue;
    }
    pending += line;
    pendingBytes += lineBytes;
    if (pendingBytes >= WRITE_CHUNK_BYTES && !(await flush())) return;
  }
  if (pendingBytes > 0 && !(await flush())) return;
  res.end();
}
