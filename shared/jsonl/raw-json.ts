/**
 * Reading members of a JSON text without parsing it: one forward scan over the bytes, strings found
 * with indexOf, nothing decoded or re-encoded. Finalize copies a result's message into results.jsonl
 * as the API sent it (big integers in tool inputs survive a copy, not a JSON round trip) and parses
 * only the few members it needs. Keys are compared as written: an escaped spelling does not match,
 * and callers fall back to JSON.parse.
 */

export const QUOTE = 0x22;
const BACKSLASH = 0x5c;
export const COLON = 0x3a;
export const COMMA = 0x2c;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** The raw JSON of member `key` of the object `json` (its top level), or undefined. */
export function rawMember(json: Buffer, key: string): Buffer | undefined {
  return rawMemberAt(json, [key]);
}

/**
 * The raw JSON at `path` (each key a member of the object the previous key led to, starting at
 * `json`'s top level), or undefined. One forward scan: the members before a wanted one are stepped
 * over, strings found with indexOf (text costs a memchr, not a loop in JS), nothing parsed or
 * re-encoded. Keys are compared as written: an escaped spelling of a key does not match.
 */
export function rawMemberAt(json: Buffer, path: readonly string[]): Buffer | undefined {
  return rawAt(json, path.map(jsonKey));
}

/** rawMemberAt, its keys JSON-encoded already (once, by the callers run per row). */
export function rawAt(json: Buffer, path: readonly Buffer[]): Buffer | undefined {
  let at = skipSpace(json, 0);
  for (const key of path) {
    at = memberValue(json, at, key);
    if (at < 0) return undefined;
  }
  return json.subarray(at, valueEnd(json, at));
}

export function jsonKey(key: string): Buffer {
  return Buffer.from(JSON.stringify(key));
}

/** Where the value of member `wanted` (a JSON-encoded key) of the object at `at` starts, or -1. */
export function memberValue(json: Buffer, at: number, wanted: Buffer): number {
  if (json[at] !== OPEN_BRACE) return -1;
  let i = skipSpace(json, at + 1);
  if (json[i] === CLOSE_BRACE) return -1;
  for (;;) {
    if (json[i] !== QUOTE) return -1;
    const keyEnd = stringEnd(json, i);
    const found = keyEnd - i === wanted.length && json.compare(wanted, 0, wanted.length, i, keyEnd) === 0;
    i = skipSpace(json, keyEnd);
    if (json[i] !== COLON) return -1;
    i = skipSpace(json, i + 1);
    if (found) return i;
    i = skipSpace(json, valueEnd(json, i));
    if (json[i] !== COMMA) return -1;
    i = skipSpace(json, i + 1);
  }
}

/** From just past a member's value, where its object ends (past the `}`; later members stepped over), or -1. */
export function objectEnd(json: Buffer, from: number): number {
  let i = skipSpace(json, from);
  while (json[i] === COMMA) {
    i = skipSpace(json, i + 1);
    if (json[i] !== QUOTE) return -1;
    i = skipSpace(json, stringEnd(json, i));
    if (json[i] !== COLON) return -1;
    i = skipSpace(json, valueEnd(json, skipSpace(json, i + 1)));
  }
  return json[i] === CLOSE_BRACE ? i + 1 : -1;
}

/** Where the JSON value starting at `start` ends (exclusive). */
export function valueEnd(json: Buffer, start: number): number {
  const first = json[start];
  if (first === QUOTE) return stringEnd(json, start);
  let i = start;
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // A number, true, false or null: up to the next delimiter.
    while (i < json.length) {
      const b = json[i]!;
      if (b === COMMA || b === CLOSE_BRACE || b === CLOSE_BRACKET || isSpace(b)) break;
      i += 1;
    }
    return i;
  }
  let depth = 0;
  while (i < json.length) {
    const b = json[i]!;
    if (b === QUOTE) {
      i = stringEnd(json, i);
      continue;
    }
    if (b === OPEN_BRACE || b === OPEN_BRACKET) depth += 1;
    else if ((b === CLOSE_BRACE || b === CLOSE_BRACKET) && --depth === 0) return i + 1;
    i += 1;
  }
  return i;
}

/** The index just past the string whose opening quote is at `start`. */
function stringEnd(json: Buffer, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = json.indexOf(QUOTE, from);
    if (quote < 0) return json.length;
    // A quote is escaped when an odd number of backslashes precede it.
    let k = quote - 1;
    while (k > start && json[k] === BACKSLASH) k -= 1;
    if ((quote - 1 - k) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

export function skipSpace(json: Buffer, from: number): number {
  let i = from;
  while (i < json.length && isSpace(json[i]!)) i += 1;
  return i;
}

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

const CUSTOM_ID_KEY = Buffer.from('"custom_id"');
const UNICODE_ESCAPE = Buffer.from('\\u');

/**
 * The custom_id of a line that starts with it, read from the bytes without parsing the line (whose
 * params or message may be large): most request lines start `{"custom_id":"…",` (or
 * `{"custom_id": "…", ` as Python writes them), and the API writes every results line that way.
 * Undefined, and the line left to JSON.parse, when it does not start so. With `mayRepeat` (a line
 * from the user's input), also when the key might come again later (another `"custom_id"`, or a
 * `\u` escape that could spell one): JSON.parse takes the last of duplicate keys, and so did Prepare.
 */
export function leadingCustomId(bytes: Buffer, options: { mayRepeat: boolean }): string | undefined {
  const span = leadingCustomIdSpan(bytes, options);
  return span && bytes.toString('latin1', span.start, span.end);
}

/** Where the leading custom_id's characters are (between its quotes), under leadingCustomId's rules. */
export function leadingCustomIdSpan(bytes: Buffer, options: { mayRepeat: boolean }): { start: number; end: number } | undefined {
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== OPEN_BRACE) return undefined;
  i = skipSpace(bytes, i + 1);
  if (i + CUSTOM_ID_KEY.length > bytes.length || CUSTOM_ID_KEY.compare(bytes, i, i + CUSTOM_ID_KEY.length) !== 0) return undefined;
  i = skipSpace(bytes, i + CUSTOM_ID_KEY.length);
  if (bytes[i] !== COLON) return undefined;
  i = skipSpace(bytes, i + 1);
  if (bytes[i] !== QUOTE) return undefined;
  const start = i + 1;
  let end = start;
  while (end < bytes.length && isCustomIdByte(bytes[end]!)) end += 1;
  if (end === start || bytes[end] !== QUOTE) return undefined;
  const after = skipSpace(bytes, end + 1);
  if (bytes[after] !== COMMA && bytes[after] !== CLOSE_BRACE) return undefined;
  if (options.mayRepeat && (bytes.includes(CUSTOM_ID_KEY, after) || bytes.includes(UNICODE_ESCAPE, after))) return undefined;
  return { start, end };
}

/**
 * The raw value of the top-level member `wanted` (a JSON-encoded key) as JSON.parse would take it:
 * the last of duplicate keys. Undefined when absent, or when a key is written with an escape (it
 * might spell `wanted`): the caller then parses.
 */
export function lastMemberValue(json: Buffer, wanted: Buffer): Buffer | undefined {
  let i = skipSpace(json, 0);
  if (json[i] !== OPEN_BRACE) return undefined;
  i = skipSpace(json, i + 1);
  if (json[i] === CLOSE_BRACE) return undefined;
  let found: Buffer | undefined;
  for (;;) {
    if (json[i] !== QUOTE) return undefined;
    const keyEnd = stringEnd(json, i);
    if (json.subarray(i, keyEnd).includes(BACKSLASH)) return undefined;
    const matches = keyEnd - i === wanted.length && json.compare(wanted, 0, wanted.length, i, keyEnd) === 0;
    i = skipSpace(json, keyEnd);
    if (json[i] !== COLON) return undefined;
    const start = skipSpace(json, i + 1);
    const end = valueEnd(json, start);
    if (matches) found = json.subarray(start, end);
    i = skipSpace(json, end);
    if (json[i] === CLOSE_BRACE) return found;
    if (json[i] !== COMMA) return undefined;
    i = skipSpace(json, i + 1);
  }
}

/** [a-zA-Z0-9_-]: the bytes a custom_id is made of (docs/design.md). */
export const isCustomIdByte = (b: number) => (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b === 0x2d;
