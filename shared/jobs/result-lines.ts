/**
 * Reading stored result lines (an attempt's results file, written by Collect): a line's custom_id
 * from its head, and its result, with a succeeded message kept as the API's bytes.
 */
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { asResultLine, type DamageKind } from '../anthropic/api';
import type { BatchResult, Message } from '../anthropic/types';
import { isBlank, splitLines } from '../jsonl/lines';
import { jsonKey, leadingCustomId, memberValue, objectEnd, rawAt, skipSpace, valueEnd } from '../jsonl/raw-json';
import { isS3NotFound, readObject } from '../store/s3';

/**
 * What the stored results file holds in place of a line that could not be read, for the row its
 * start named: valid JSON with the user's custom_id, and no `result` (it is not the API's answer).
 */
export interface UnreadableLine {
  custom_id: string;
  unreadable: {
    damage: DamageKind;
    /** Where the line is in the API's results file, and its bytes (unknown for too_long). */
    offset: number;
    length: number | null;
    /**
     * The bytes received (a too_long line's first bytes only) as UTF-8 text, with the user's
     * custom_id in place of the wire id where it can be found: whatever can be salvaged.
     */
    received: string;
  };
}

const DAMAGE_KINDS: ReadonlySet<string> = new Set<DamageKind>(['not_json', 'not_result', 'too_long']);

/**
 * A result line: its result, and for a succeeded one its message's bytes as the API sent them; or a
 * line that cannot be read, with what Collect stored of the API's line when it stood in for one.
 */
export type ResultLine = { result: BatchResult; message?: Buffer } | { unreadable: UnreadableLine['unreadable'] | undefined };

const SUCCEEDED = Buffer.from('"succeeded"');
const RESULT_KEY = jsonKey('result');
const TYPE_KEY = jsonKey('type');
const MESSAGE_KEY = jsonKey('message');
const MODEL_KEY = jsonKey('model');
const USAGE_KEY = jsonKey('usage');

/**
 * Reads a result line. A succeeded line (nearly all of them) is not parsed whole: its message is
 * the bulk of it and is copied into results.jsonl as bytes (big integers in tool inputs survive a
 * copy, not a JSON round trip), so only the message's model and usage are parsed, found in one
 * scan of the line. Any other line, or one the scan cannot follow (keys spelled with escapes), is
 * parsed whole. The scan trusts the line to be JSON: Collect stores only lines that parsed (the
 * API's) or that it wrote itself. Model and usage are whatever the line holds: they are read for
 * pricing with readMessageUsage, which takes any shape.
 */
export function readResultLine(raw: Buffer): ResultLine {
  try {
    const scanned = scanSucceeded(raw);
    if (scanned) return scanned;
  } catch {
    // A line the scan cannot follow is parsed whole.
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return { unreadable: undefined };
  }
  const line = asResultLine(parsed);
  if (!line) return { unreadable: storedUnreadable(parsed) };
  return { result: line.result, message: line.result.type === 'succeeded' ? rawAt(raw, [RESULT_KEY, MESSAGE_KEY]) : undefined };
}

/** A succeeded line read by the scan (see readResultLine), or undefined when the scan cannot take it. */
function scanSucceeded(raw: Buffer): ResultLine | undefined {
  const result = memberValue(raw, skipSpace(raw, 0), RESULT_KEY);
  const type = result < 0 ? -1 : memberValue(raw, result, TYPE_KEY);
  if (type < 0 || !raw.subarray(type, type + SUCCEEDED.length).equals(SUCCEEDED)) return undefined;
  const message = memberValue(raw, result, MESSAGE_KEY);
  const model = message < 0 ? -1 : memberValue(raw, message, MODEL_KEY);
  // The API writes usage last: the scan for it steps over the content once, and is then near the end.
  const usage = model < 0 ? -1 : memberValue(raw, message, USAGE_KEY);
  const usageEnd = usage < 0 ? -1 : valueEnd(raw, usage);
  const messageEnd = usage < 0 ? -1 : objectEnd(raw, usageEnd);
  if (messageEnd < 0) return undefined;
  const parsed: unknown = {
    model: JSON.parse(raw.toString('utf8', model, valueEnd(raw, model))),
    usage: JSON.parse(raw.toString('utf8', usage, usageEnd)),
  };
  return { result: { type: 'succeeded', message: parsed as Message }, message: raw.subarray(message, messageEnd) };
}

/** What Collect stored in place of an API line it could not read, if `parsed` is that (collect.ts UnreadableLine). */
function storedUnreadable(parsed: unknown): UnreadableLine['unreadable'] | undefined {
  const unreadable = (parsed as { unreadable?: unknown } | null)?.unreadable;
  if (typeof unreadable !== 'object' || unreadable === null) return undefined;
  const { damage, offset } = unreadable as { damage?: unknown; offset?: unknown };
  if (typeof damage !== 'string' || !DAMAGE_KINDS.has(damage) || typeof offset !== 'number') return undefined;
  return unreadable as UnreadableLine['unreadable'];
}

/**
 * Streams a results object's lines to `onLine` with their custom_ids, waiting on the promise it
 * returns, if any. Returns false when the object does not exist.
 */
export async function stageResults(
  s3: S3Client,
  bucket: string,
  key: string,
  onLine: (customId: string, line: Buffer) => Promise<void> | undefined,
): Promise<boolean> {
  let body: Readable & AsyncIterable<Uint8Array>;
  try {
    body = await readObject(s3, bucket, key);
  } catch (error) {
    if (isS3NotFound(error)) return false;
    throw error;
  }
  try {
    for await (const line of splitLines(body, { stripBom: false })) {
      if (isBlank(line.bytes)) continue;
      const customId = resultCustomId(line.bytes);
      if (customId === undefined) continue;
      const pending = onLine(customId, line.bytes);
      if (pending) await pending;
    }
  } finally {
    body.destroy();
  }
  return true;
}

/**
 * A results line's custom_id: read from the line's head (the API writes it first) without parsing
 * the line, whose message may be large; a line of any other shape is parsed. Undefined when the
 * line names none (or is not JSON): such a line is no row's.
 */
export function resultCustomId(line: Buffer): string | undefined {
  const leading = leadingCustomId(line, { mayRepeat: false });
  if (leading !== undefined) return leading;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.toString('utf8'));
  } catch {
    return undefined;
  }
  const customId = (parsed as { custom_id?: unknown } | null)?.custom_id;
  return typeof customId === 'string' ? customId : undefined;
}
