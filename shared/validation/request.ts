/**
 * Validation of input lines (docs/design.md "Input"; docs/api-reference.md §3): one line in, either a
 * request ready for a batch body or an invalid-line report with a stable code and a reason that
 * names the line and the problem. Reasons never quote prompt text: only the custom_id, a field
 * name, a number, or a single offending character.
 */
import { isUtf8 } from 'node:buffer';
import { API_MAX_BATCH_BYTES } from '../config';
import type { MessageParams } from '../anthropic/types';
import { isBlank, type RawLine } from '../jsonl/lines';
import { CUSTOM_ID_MAX_LENGTH, CUSTOM_ID_PATTERN, CustomIdSet } from './custom-ids';
import { KNOWN_MODELS, type ModelCatalog } from './models';
import { findInvalidUtf8, locateJsonError } from './syntax';

export { CustomIdSet, CUSTOM_ID_PATTERN } from './custom-ids';

export type InvalidCode =
  | 'request_too_large'
  | 'invalid_utf8'
  | 'truncated_line'
  | 'invalid_json'
  | 'not_an_object'
  | 'missing_custom_id'
  | 'custom_id_not_string'
  | 'custom_id_empty'
  | 'custom_id_too_long'
  | 'custom_id_bad_character'
  | 'duplicate_custom_id'
  | 'unknown_field'
  | 'missing_params'
  | 'params_not_object'
  | 'missing_model'
  | 'invalid_model'
  | 'unknown_model'
  | 'missing_max_tokens'
  | 'invalid_max_tokens'
  | 'missing_messages'
  | 'invalid_messages'
  | 'stream_not_allowed'
  | 'unsupported_param';

/** One invalid input line, as the report (invalid.jsonl) records it. */
export interface InvalidLine {
  /** 1-based line number in the input file. */
  line: number;
  /** Present when the line had a well-formed custom_id. */
  customId?: string;
  code: InvalidCode;
  /** A sentence naming the line and the problem. */
  reason: string;
}

export interface ValidRequest {
  ok: true;
  line: number;
  customId: string;
  params: MessageParams;
  /**
   * The request exactly as it goes into a batch body: the line's own bytes, minus surrounding
   * whitespace and any BOM, so params pass through untouched (no re-serialization, which would
   * round integers past 2^53). A view of the line's buffer: copy it if kept beyond the next line.
   */
  body: Buffer;
  /** body.length. A batch body is `{"requests":[` + bodies joined by `,` + `]}`. */
  bytes: number;
}

export type RejectedLine = { ok: false } & InvalidLine;
export type LineOutcome = ValidRequest | RejectedLine;

/** Bytes a batch body adds around its requests: `{"requests":[` and `]}`. */
export const BATCH_BODY_OVERHEAD = '{"requests":[]}'.length;

export interface ValidateLineOptions {
  /**
   * The largest request accepted, in bytes: one request must fit in a chunk on its own, so pass
   * the chunk byte limit minus BATCH_BODY_OVERHEAD. Default: the API's batch limit minus it.
   */
  maxRequestBytes?: number;
  /** Seen ids of the file so far: a repeated id is reported, a new one is recorded. */
  customIds?: CustomIdSet;
  /**
   * The models a request may name (./models.ts; modelCatalogFromConfig for the pipeline's
   * settings). Default: the models batchline knows out of the box.
   */
  models?: ModelCatalog;
}

/** Params the batch path rejects (docs/api-reference.md §3), with why, for the reason. */
const UNSUPPORTED_PARAMS: ReadonlyArray<{ name: string; rejects: (value: unknown) => boolean; why: string }> = [
  { name: 'speed', rejects: () => true, why: 'fast mode is synchronous-only' },
  { name: 'store', rejects: () => true, why: 'Threads are stateful' },
  { name: 'previous_thread_event_id', rejects: () => true, why: 'Threads are stateful' },
  { name: 'cache_hint', rejects: () => true, why: 'scheduling hints apply to synchronous requests only' },
  { name: 'context_hint', rejects: () => true, why: 'scheduling hints apply to synchronous requests only' },
  { name: 'research_preview_2026_02', rejects: (value) => value === 'active', why: 'the research preview is not on the batch path' },
];

const TOP_LEVEL_FIELDS = new Set(['custom_id', 'params']);

/**
 * Validates one non-blank input line. Checks run cheapest and most fundamental first: size, UTF-8,
 * JSON, shape, custom_id (then its uniqueness, when `customIds` is given), top-level fields, params,
 * and last whether the model is one batchline knows. The first problem found is the one reported.
 *
 * Decisions: `stream: false` is accepted (it is the API's non-streaming default); `stream` with any
 * other value is rejected. `speed`, `store`, `previous_thread_event_id`, `cache_hint` and
 * `context_hint` are rejected whatever their value, `research_preview_2026_02` only when "active".
 * An id is recorded as seen even when its line fails a later check, so a later line reusing it is
 * still a duplicate (one custom_id, one terminal state). A line over the size limit is rejected
 * before it is parsed, so its id is not recorded.
 */
export function validateLine(raw: Pick<RawLine, 'bytes' | 'lineNumber' | 'terminated'>, options: ValidateLineOptions = {}): LineOutcome {
  const line = raw.lineNumber;
  const maxRequestBytes = options.maxRequestBytes ?? API_MAX_BATCH_BYTES - BATCH_BODY_OVERHEAD;

  // A BOM can start any line of files joined with cat; it is not JSON, so it stays out of the body.
  const bytes = raw.bytes;
  const bomBytes = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const leading = leadingWhitespace(bytes, bomBytes) - bomBytes;
  const body = trimWhitespace(bomBytes === 0 ? bytes : bytes.subarray(bomBytes));
  if (body.length > maxRequestBytes) {
    return reject(
      line,
      'request_too_large',
      `line ${line} is ${thousands(body.length)} bytes; a request may be at most ${thousands(maxRequestBytes)} bytes (one batch's size limit)`,
    );
  }

  // isUtf8 is the fatal decoder's check (no overlongs, surrogates or code points past U+10FFFF), run
  // natively; decoding a buffer known to be valid then takes the fast path.
  if (!isUtf8(body)) {
    const problem = findInvalidUtf8(body);
    // Cut inside a character at the very end of an unterminated last line: a truncated file.
    if (problem?.truncated && !raw.terminated) return reject(line, 'truncated_line', `line ${line} is truncated: the file ends mid-line`);
    const byte = problem && bomBytes + leading + problem.offset + 1;
    const at = problem ? ` (byte ${byte} of the line, 0x${hex(problem.byte)}, cannot start or continue a character)` : '';
    return reject(line, 'invalid_utf8', `line ${line} is not valid UTF-8${at}`);
  }
  const text = body.toString('utf8');

  let request: unknown;
  try {
    request = JSON.parse(text);
  } catch {
    if (!raw.terminated) return reject(line, 'truncated_line', `line ${line} is truncated: the file ends mid-line`);
    const problem = locateJsonError(text);
    const where = problem ? `: ${problem.problem} at column ${leading + problem.index + 1}` : '';
    return reject(line, 'invalid_json', `line ${line} is not valid JSON${where}`);
  }

  if (!isObject(request)) {
    return reject(line, 'not_an_object', `line ${line} is ${jsonKind(request)}; each line must be an object {"custom_id": ..., "params": {...}}`);
  }

  if (!Object.hasOwn(request, 'custom_id')) return reject(line, 'missing_custom_id', `line ${line} has no custom_id`);
  const customId = request.custom_id;
  if (typeof customId !== 'string') {
    return reject(line, 'custom_id_not_string', `line ${line}: custom_id must be a string, got ${kind(customId)}`);
  }
  // The set checks the id's form as it packs it: the pattern runs only for an id it refuses.
  const firstLine = options.customIds?.tryAdd(customId, line);
  if (firstLine === undefined) {
    const idProblem = customIdProblem(customId);
    if (idProblem) return reject(line, idProblem.code, `line ${line}: ${idProblem.reason}`);
  } else if (firstLine !== null) {
    return duplicateRejection(line, customId, firstLine);
  }

  for (const field of Object.keys(request)) {
    if (!TOP_LEVEL_FIELDS.has(field)) {
      return reject(line, 'unknown_field', `line ${line} has an unknown field ${quoteName(field)}; a line holds only "custom_id" and "params"`, customId);
    }
  }

  if (!Object.hasOwn(request, 'params')) return reject(line, 'missing_params', `line ${line} has no params`, customId);
  const params = request.params;
  if (!isObject(params)) return reject(line, 'params_not_object', `line ${line}: params must be an object, got ${kind(params)}`, customId);

  const paramsProblem = checkParams(params) ?? checkModel(params.model as string, options.models ?? KNOWN_MODELS);
  if (paramsProblem) return reject(line, paramsProblem.code, `line ${line}: ${paramsProblem.reason}`, customId);

  return { ok: true, line, customId, params: params as MessageParams, body, bytes: body.length };
}

/** A line whose custom_id was already used on `firstLine`. */
export function duplicateRejection(line: number, customId: string, firstLine: number): RejectedLine {
  return reject(line, 'duplicate_custom_id', `line ${line}: custom_id "${customId}" is already used on line ${firstLine}`, customId);
}

function reject(line: number, code: InvalidCode, reason: string, customId?: string): RejectedLine {
  return customId === undefined ? { ok: false, line, code, reason } : { ok: false, line, customId, code, reason };
}

/** Why a string is not a valid custom_id (`^[a-zA-Z0-9_-]{1,64}$`), or null when it is. */
export function customIdProblem(customId: string): { code: InvalidCode; reason: string } | null {
  if (CUSTOM_ID_PATTERN.test(customId)) return null;
  if (customId.length === 0) return { code: 'custom_id_empty', reason: 'custom_id is empty' };
  const characters = [...customId];
  if (characters.length > CUSTOM_ID_MAX_LENGTH) {
    return {
      code: 'custom_id_too_long',
      reason: `custom_id is ${characters.length} characters long; at most ${CUSTOM_ID_MAX_LENGTH} are allowed`,
    };
  }
  const bad = characters.findIndex((c) => !/^[a-zA-Z0-9_-]$/.test(c));
  return {
    code: 'custom_id_bad_character',
    reason: `custom_id has a character that is not allowed, ${JSON.stringify(characters[bad])} at position ${bad + 1} (allowed: letters, digits, "_" and "-")`,
  };
}

/** The params keys the checks below look at, each with its bit in checkParams' `present`. */
const MODEL = 1;
const MAX_TOKENS = 2;
const MESSAGES = 4;
const STREAM = 8;
/** The first of the unsupported params' bits. */
const UNSUPPORTED = 16;
const CHECKED_PARAMS = new Map<string, number>([
  ['model', MODEL],
  ['max_tokens', MAX_TOKENS],
  ['messages', MESSAGES],
  ['stream', STREAM],
  ...UNSUPPORTED_PARAMS.map(({ name }, i): [string, number] => [name, UNSUPPORTED << i]),
]);

function checkParams(params: Record<string, unknown>): { code: InvalidCode; reason: string } | null {
  // One pass over the own keys instead of a lookup per name: params objects come in many shapes,
  // so each named lookup would be a slow, megamorphic one.
  let present = 0;
  for (const key of Object.keys(params)) present |= CHECKED_PARAMS.get(key) ?? 0;

  if (!(present & MODEL)) return { code: 'missing_model', reason: 'params.model is missing' };
  const model = params.model;
  if (typeof model !== 'string') return { code: 'invalid_model', reason: `params.model must be a string, got ${kind(model)}` };
  if (model.trim() === '') return { code: 'invalid_model', reason: 'params.model is empty' };

  if (!(present & MAX_TOKENS)) return { code: 'missing_max_tokens', reason: 'params.max_tokens is missing' };
  const maxTokens = params.max_tokens;
  if (typeof maxTokens !== 'number' || !Number.isSafeInteger(maxTokens) || maxTokens < 1) {
    return { code: 'invalid_max_tokens', reason: `params.max_tokens must be a whole number ≥ 1, got ${shown(maxTokens)}` };
  }

  if (!(present & MESSAGES)) return { code: 'missing_messages', reason: 'params.messages is missing' };
  const messages = params.messages;
  if (!Array.isArray(messages)) return { code: 'invalid_messages', reason: `params.messages must be an array, got ${kind(messages)}` };
  if (messages.length === 0) return { code: 'invalid_messages', reason: 'params.messages is empty; at least one message is required' };
  for (let i = 0; i < messages.length; i++) {
    if (!isObject(messages[i])) return { code: 'invalid_messages', reason: `params.messages[${i}] must be an object, got ${kind(messages[i])}` };
  }

  if ((present & STREAM) !== 0 && params.stream !== false) {
    return { code: 'stream_not_allowed', reason: `params.stream must be false or absent in a batch, got ${shown(params.stream)}` };
  }
  if (present < UNSUPPORTED) return null;
  for (const { name, rejects, why } of UNSUPPORTED_PARAMS) {
    if (Object.hasOwn(params, name) && rejects(params[name])) {
      const value = name === 'research_preview_2026_02' ? ' "active"' : '';
      return { code: 'unsupported_param', reason: `params.${name}${value} is not supported in a batch (${why})` };
    }
  }
  return null;
}

/** Whether a well-formed request names a model the catalog allows; the nearest known id when not. */
function checkModel(model: string, models: ModelCatalog): { code: InvalidCode; reason: string } | null {
  if (models.allows(model)) return null;
  const suggestion = models.suggest(model);
  const shown = /^[\w.:@/-]{1,100}$/.test(model) ? model : JSON.stringify(model.length > 64 ? `${model.slice(0, 64)}…` : model);
  return {
    code: 'unknown_model',
    reason: suggestion
      ? `unknown model ${shown}: did you mean ${suggestion}?`
      : `unknown model ${shown}: not one batchline knows (add it to the price table with the pricesJson setting, or allow any model with allowUnknownModels)`,
  };
}

// ---------------------------------------------------------------------------------------------
// A whole file

export interface ValidationCounts {
  /** Every line read, blank ones included. */
  lines: number;
  blank: number;
  valid: number;
  invalid: number;
}

/** As for one line; `customIds` may be shared (the parts of one file), else a fresh set is used. */
export type ValidateStreamOptions = ValidateLineOptions;

/**
 * Validates a file's lines (from splitLines: BOM already stripped, CRLF already split) in order:
 * yields each request or rejection, skips blank lines, and counts as it goes. Read it once.
 */
export class ValidationStream implements AsyncIterable<LineOutcome> {
  readonly counts: ValidationCounts = { lines: 0, blank: 0, valid: 0, invalid: 0 };
  readonly customIds: CustomIdSet;
  private started = false;

  constructor(
    private readonly lines: AsyncIterable<RawLine> | Iterable<RawLine>,
    private readonly options: ValidateStreamOptions = {},
  ) {
    this.customIds = options.customIds ?? new CustomIdSet();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<LineOutcome> {
    if (this.started) throw new Error('a ValidationStream can be read only once');
    this.started = true;
    const options: ValidateLineOptions = { maxRequestBytes: this.options.maxRequestBytes, customIds: this.customIds, models: this.options.models };
    for await (const raw of this.lines) {
      this.counts.lines += 1;
      if (isBlank(raw.bytes)) {
        this.counts.blank += 1;
        continue;
      }
      const outcome = validateLine(raw, options);
      if (outcome.ok) this.counts.valid += 1;
      else this.counts.invalid += 1;
      yield outcome;
    }
  }
}

export function validateStream(lines: AsyncIterable<RawLine> | Iterable<RawLine>, options: ValidateStreamOptions = {}): ValidationStream {
  return new ValidationStream(lines, options);
}

/** The report row for invalid.jsonl, in the snake_case of the other output files. */
export function invalidReportRow(invalid: InvalidLine): { line: number; custom_id?: string; code: InvalidCode; reason: string } {
  const { line, customId, code, reason } = invalid;
  return customId === undefined ? { line, code, reason } : { line, custom_id: customId, code, reason };
}

// ---------------------------------------------------------------------------------------------

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value's JSON type, for reasons; never the value itself (it may be prompt text). */
function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return typeof value === 'string' ? 'a string' : typeof value === 'number' ? 'a number' : 'a boolean';
}

/** Numbers, booleans and null as themselves (they carry no prompt text); other values by kind. */
function shown(value: unknown): string {
  return typeof value === 'number' || typeof value === 'boolean' || value === null ? String(value) : kind(value);
}

function jsonKind(value: unknown): string {
  if (value === null) return 'JSON null';
  if (Array.isArray(value)) return 'a JSON array';
  return `a JSON ${typeof value === 'string' ? 'string' : typeof value === 'number' ? 'number' : 'boolean'}`;
}

function quoteName(name: string): string {
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
}

function isWhitespace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0d || byte === 0x0a;
}

/** Index of the first non-whitespace byte at or after `from`. */
function leadingWhitespace(bytes: Buffer, from = 0): number {
  let start = from;
  while (isWhitespace(bytes[start])) start += 1;
  return start;
}

function trimWhitespace(bytes: Buffer): Buffer {
  let end = bytes.length;
  while (end > 0 && isWhitespace(bytes[end - 1])) end -= 1;
  const start = Math.min(leadingWhitespace(bytes), end);
  // Most lines have nothing to trim: a new view per line is garbage the collector must chase.
  return start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
}

function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

function hex(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, '0');
}
