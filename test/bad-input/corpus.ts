/**
 * The bad-input corpus: each case is a line (from cases/, or bytes made here when they cannot live
 * in a text file) with the exact verdict shared/validation gives it — code, custom_id when the line
 * had a well-formed one, and the reason with its line number. `combinedFile` strings the cases
 * together between valid rows, so one upload exercises them all and every line number is known.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CASES_DIR = fileURLToPath(new URL('./cases/', import.meta.url));

/** The stack's BATCHLINE_MAX_BYTES_PER_CHUNK for the corpus: small, so one request can exceed a batch. */
export const MAX_BYTES_PER_CHUNK = 4096;

export interface Verdict {
  code: string;
  custom_id?: string;
  /** The reason, with `{line}` for the line's number (and `{first}` for a duplicate's first line). */
  reason: string;
}

export type Entry =
  | { kind: 'valid'; customId: string; bytes: Buffer; eol: string }
  | { kind: 'blank'; bytes: Buffer; eol: string }
  | { kind: 'invalid'; name: string; bytes: Buffer; eol: string; verdict: Verdict };

/** One line of a file in cases/ (its trailing newline dropped). */
const caseLine = (file: string) => readFileSync(CASES_DIR + file).subarray(0, -1);

const validRow = (customId: string, content = `Classify ticket ${customId}.`) =>
  Buffer.from(JSON.stringify({ custom_id: customId, params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content }] } }));

const valid = (customId: string, eol = '\n'): Entry => ({ kind: 'valid', customId, bytes: validRow(customId), eol });
const blank = (text: string): Entry => ({ kind: 'blank', bytes: Buffer.from(text), eol: '\n' });
const invalid = (name: string, bytes: Buffer, verdict: Verdict, eol = '\n'): Entry => ({ kind: 'invalid', name, bytes, eol, verdict });
const fromFile = (file: string, verdict: Verdict): Entry => invalid(file.replace(/\.jsonl$/, ''), caseLine(file), verdict);

const SHAPE = 'each line must be an object {"custom_id": ..., "params": {...}}';
const ALLOWED = '(allowed: letters, digits, "_" and "-")';

/** The corpus in file order; a UTF-8 BOM opens the file and a truncated line ends it. */
export function corpus(): Entry[] {
  return [
    // A BOM before the first line and CRLF endings are accepted.
    { kind: 'valid', customId: 'v-01', bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), validRow('v-01')]), eol: '\r\n' },
    valid('v-02', '\r\n'),
    blank(''),
    fromFile('invalid-json.jsonl', { code: 'invalid_json', reason: "line {line} is not valid JSON: expected a quoted property name, found ',' at column 66" }),
    valid('v-03', '\r\n'),
    fromFile('json-array.jsonl', { code: 'not_an_object', reason: `line {line} is a JSON array; ${SHAPE}` }),
    fromFile('string-line.jsonl', { code: 'not_an_object', reason: `line {line} is a JSON string; ${SHAPE}` }),
    fromFile('number-line.jsonl', { code: 'not_an_object', reason: `line {line} is a JSON number; ${SHAPE}` }),
    fromFile('missing-custom-id.jsonl', { code: 'missing_custom_id', reason: 'line {line} has no custom_id' }),
    fromFile('custom-id-number.jsonl', { code: 'custom_id_not_string', reason: 'line {line}: custom_id must be a string, got a number' }),
    valid('dup-me'),
    fromFile('custom-id-too-long.jsonl', { code: 'custom_id_too_long', reason: 'line {line}: custom_id is 65 characters long; at most 64 are allowed' }),
    fromFile('custom-id-dot.jsonl', {
      code: 'custom_id_bad_character',
      reason: `line {line}: custom_id has a character that is not allowed, "." at position 7 ${ALLOWED}`,
    }),
    fromFile('custom-id-space.jsonl', {
      code: 'custom_id_bad_character',
      reason: `line {line}: custom_id has a character that is not allowed, " " at position 7 ${ALLOWED}`,
    }),
    blank('   \t'),
    fromFile('missing-params.jsonl', { code: 'missing_params', custom_id: 'no-params', reason: 'line {line} has no params' }),
    fromFile('params-not-object.jsonl', {
      code: 'params_not_object',
      custom_id: 'params-string',
      reason: 'line {line}: params must be an object, got a string',
    }),
    fromFile('missing-model.jsonl', { code: 'missing_model', custom_id: 'no-model', reason: 'line {line}: params.model is missing' }),
    fromFile('missing-messages.jsonl', { code: 'missing_messages', custom_id: 'no-messages', reason: 'line {line}: params.messages is missing' }),
    fromFile('missing-max-tokens.jsonl', { code: 'missing_max_tokens', custom_id: 'no-max-tokens', reason: 'line {line}: params.max_tokens is missing' }),
    fromFile('max-tokens-zero.jsonl', {
      code: 'invalid_max_tokens',
      custom_id: 'zero-max-tokens',
      reason: 'line {line}: params.max_tokens must be a whole number ≥ 1, got 0',
    }),
    fromFile('stream-true.jsonl', {
      code: 'stream_not_allowed',
      custom_id: 'streaming',
      reason: 'line {line}: params.stream must be false or absent in a batch, got true',
    }),
    fromFile('unknown-field.jsonl', {
      code: 'unknown_field',
      custom_id: 'extra-field',
      reason: 'line {line} has an unknown field "method"; a line holds only "custom_id" and "params"',
    }),
    // Latin-1 "café": 0xE9 is byte 117 of the line.
    invalid('invalid-utf8', Buffer.concat([validRow('latin1', 'caf').subarray(0, -5), Buffer.from([0xe9]), Buffer.from('"}]}}')]), {
      code: 'invalid_utf8',
      reason: 'line {line} is not valid UTF-8 (byte 117 of the line, 0xE9, cannot start or continue a character)',
    }),
    invalid('request-too-large', validRow('huge', 'x'.repeat(5000)), {
      code: 'request_too_large',
      reason: "line {line} is 5,116 bytes; a request may be at most 4,061 bytes (one batch's size limit)",
    }),
    ...['v-04', 'v-05', 'v-06', 'v-07', 'v-08', 'v-09', 'v-10', 'v-11', 'v-12'].map((id) => valid(id)),
    // Far from its first use (line 11).
    invalid('duplicate-custom-id', validRow('dup-me', 'again'), {
      code: 'duplicate_custom_id',
      custom_id: 'dup-me',
      reason: 'line {line}: custom_id "dup-me" is already used on line {first}',
    }),
    valid('v-13'),
    // The file ends mid-line.
    invalid(
      'truncated-last-line',
      validRow('cut-off').subarray(0, 60),
      { code: 'truncated_line', reason: 'line {line} is truncated: the file ends mid-line' },
      '',
    ),
  ];
}

export function combinedFile(entries: Entry[]): Buffer {
  return Buffer.concat(entries.flatMap((entry) => [entry.bytes, Buffer.from(entry.eol)]));
}

/** invalid.jsonl as it must read: one report per invalid line, in file order. */
export function expectedReport(entries: Entry[]): Array<{ line: number; custom_id?: string; code: string; reason: string }> {
  const firstLine = new Map<string, number>();
  entries.forEach((entry, i) => {
    if (entry.kind === 'valid' && !firstLine.has(entry.customId)) firstLine.set(entry.customId, i + 1);
  });
  return entries.flatMap((entry, i) => {
    if (entry.kind !== 'invalid') return [];
    const { code, custom_id, reason } = entry.verdict;
    const text = reason.replace('{line}', String(i + 1)).replace('{first}', String(firstLine.get(custom_id ?? '') ?? '?'));
    return [custom_id === undefined ? { line: i + 1, code, reason: text } : { line: i + 1, custom_id, code, reason: text }];
  });
}

export const validIds = (entries: Entry[]): string[] => entries.flatMap((entry) => (entry.kind === 'valid' ? [entry.customId] : []));
export const invalidCount = (entries: Entry[]): number => entries.filter((entry) => entry.kind === 'invalid').length;
