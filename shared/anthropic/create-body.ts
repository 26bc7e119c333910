/**
 * The create request body, `{"requests":[ ... ]}`, produced piece by piece so a 256 MB batch never
 * exists as one string or buffer: the consumer (undici) pulls the next piece only once the socket
 * has taken the last one.
 */
import type { CreateItem, CreateSource } from './api';
import { isBlank } from '../jsonl/lines';

const OPEN = Buffer.from('{"requests":[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']}');
const LF = 0x0a;
const CR = 0x0d;

/** Small requests are gathered into pieces of about this size: one socket write per request is slow. */
export const CREATE_PIECE_BYTES = 64 * 1024;

/** What an encoder has produced so far, read after a failure to tell "not sent" from "sent". */
export interface CreateBodyProgress {
  requests: number;
  bytes: number;
  /** True once the consumer has taken the last piece: the whole body is on its way. */
  complete: boolean;
  /** Local epoch ms when `complete` became true. */
  completedAt: number;
  /** Set when the source itself failed (not the connection): rethrown as is, never retried. */
  sourceError: { error: unknown } | undefined;
}

export function newProgress(): CreateBodyProgress {
  return { requests: 0, bytes: 0, complete: false, completedAt: 0, sourceError: undefined };
}

/** A raw request line without its line terminator; undefined for a blank line. */
function rawItem(item: Buffer): Buffer | undefined {
  let end = item.length;
  while (end > 0 && (item[end - 1] === LF || item[end - 1] === CR)) end -= 1;
  const trimmed = item.subarray(0, end);
  return isBlank(trimmed) ? undefined : trimmed;
}

function serialize(item: CreateItem): Buffer | undefined {
  return Buffer.isBuffer(item) ? rawItem(item) : Buffer.from(JSON.stringify(item));
}

export async function* encodeCreateBody(source: CreateSource, progress: CreateBodyProgress, now: () => number = Date.now): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [OPEN];
  let pendingBytes = OPEN.length;
  const take = (): Buffer => {
    const piece = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    progress.bytes += piece.length;
    return piece;
  };

  try {
    for await (const item of source) {
      const json = serialize(item);
      if (json === undefined) continue;
      if (progress.requests > 0) {
        pending.push(COMMA);
        pendingBytes += 1;
      }
      progress.requests += 1;
      if (json.length >= CREATE_PIECE_BYTES) {
        // A big request goes out as its own piece, uncopied.
        if (pendingBytes > 0) yield take();
        progress.bytes += json.length;
        yield json;
        continue;
      }
      pending.push(json);
      pendingBytes += json.length;
      if (pendingBytes >= CREATE_PIECE_BYTES) yield take();
    }
  } catch (error) {
    progress.sourceError = { error };
    throw error;
  }
  pending.push(CLOSE);
  pendingBytes += CLOSE.length;
  yield take();
  // Reached only when the consumer asks for more after the last piece, i.e. it has written it.
  progress.complete = true;
  progress.completedAt = now();
}
