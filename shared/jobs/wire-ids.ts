/**
 * The custom_ids the API sees. A batch carries no metadata, so the only proof of where a results
 * line came from is its custom_id: each create sends `<nonce>-<n>` instead of the user's id, where
 * the nonce is drawn fresh for that create (recorded on the chunk attempt before the call) and n is
 * the request's line in the attempt's requests file (base 36). A results line then names exactly
 * one request of exactly one create: a batch adopted by mistake, or another file with the same
 * custom_ids, shows up as lines whose nonce is not the attempt's, and is never taken for its rows.
 * Requests files, results files, row records and outputs keep the user's ids; only the wire differs
 * (docs/architecture.md, "Which batch is whose").
 */
import { randomBytes } from 'node:crypto';
import { jsonKey, lastMemberValue, leadingCustomIdSpan } from '../jsonl/raw-json';

/** 16 lowercase hex digits (64 bits): no two creates share one. */
export const newNonce = (): string => randomBytes(8).toString('hex');

const NONCE = /^[0-9a-f]{16}$/;

export const wireId = (nonce: string, index: number): string => `${nonce}-${index.toString(36)}`;

/**
 * How many bytes a request can grow by on the wire: a wire id is at most 21 characters (16 + 1 + 4:
 * a chunk has at most 100,000 requests, `255r` in base 36) where the user's is at least 1, and the
 * framing around it, `{"custom_id":"…","params":…}`, is the least any valid line has. Prepare
 * counts it per request, so a chunk stays within the batch size limit as sent.
 */
export const WIRE_GROWTH_BYTES = 20;

/** The nonce and line of a wire custom_id; undefined for any other id. */
export function parseWireId(customId: string): { nonce: string; index: number } | undefined {
  const dash = customId.indexOf('-');
  if (dash !== 16 || !NONCE.test(customId.slice(0, 16))) return undefined;
  const digits = customId.slice(17);
  if (!/^[0-9a-z]{1,8}$/.test(digits)) return undefined;
  return { nonce: customId.slice(0, 16), index: parseInt(digits, 36) };
}

const PARAMS_KEY = jsonKey('params');
const OPEN = Buffer.from('{"custom_id":"');
const BETWEEN = Buffer.from('","params":');
const CLOSE = Buffer.from('}');

/**
 * A validated request line (`{custom_id, params}`) as sent: `{"custom_id":"<wire>","params":…}`,
 * its params copied byte for byte (parsed and re-encoded only when a key is written with escapes).
 */
export function wireRequestLine(line: Buffer, wire: string): Buffer {
  let params = lastMemberValue(line, PARAMS_KEY);
  if (params === undefined) {
    const parsed = (JSON.parse(line.toString('utf8')) as { params?: unknown }).params;
    params = Buffer.from(JSON.stringify(parsed));
  }
  return Buffer.concat([OPEN, Buffer.from(wire, 'latin1'), BETWEEN, params, CLOSE]);
}

/** A results line with its custom_id replaced by the user's, every other byte as the API sent it. */
export function userResultLine(raw: Buffer, customId: string): Buffer {
  const span = leadingCustomIdSpan(raw, { mayRepeat: false });
  if (span) return Buffer.concat([raw.subarray(0, span.start), Buffer.from(customId, 'latin1'), raw.subarray(span.end)]);
  // The API writes custom_id first; a line that does not start so is re-encoded rather than dropped.
  const parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  return Buffer.from(JSON.stringify({ ...parsed, custom_id: customId }));
}

/** What one attempt sent: its requests' custom_ids in line order, and the nonce of their wire ids. */
export class SentRequests {
  private readonly members: ReadonlySet<string>;

  constructor(
    /** Undefined for an attempt created before wire ids: its results carry the user's custom_ids. */
    readonly nonce: string | undefined,
    private readonly customIds: readonly string[],
  ) {
    this.members = new Set(customIds);
  }

  /** The user's custom_id a results line's custom_id stands for, or undefined when it is not one of ours. */
  customIdOf(onWire: string): string | undefined {
    if (this.nonce === undefined) return this.members.has(onWire) ? onWire : undefined;
    const wire = parseWireId(onWire);
    return wire?.nonce === this.nonce ? this.customIds[wire.index] : undefined;
  }
}
