import { describe, expect, it } from 'vitest';
import {
  BATCH_BODY_OVERHEAD,
  CustomIdSet,
  invalidReportRow,
  validateLine,
  validateStream,
  type InvalidCode,
  type LineOutcome,
} from '../../shared/validation/request';
import { jsonl, lines, request } from '../support/requests';
import { modelCatalog, modelCatalogFromConfig, type ModelCatalog } from '../../shared/validation/models';
import { BUILT_IN_PRICES, DATED_MODEL_IDS, MODELS_WITHOUT_LIST_PRICE } from '../../shared/cost/prices';

async function validateFile(file: Buffer, options: Parameters<typeof validateStream>[1] = {}, pieceSize?: number) {
  const stream = validateStream(lines(file, { pieceSize }), options);
  const outcomes: LineOutcome[] = [];
  for await (const outcome of stream) outcomes.push(outcome);
  return { outcomes, counts: stream.counts };
}

/** What a rejected line reports, without the ok flag. */
function rejection(outcome: LineOutcome | undefined) {
  if (!outcome || outcome.ok) throw new Error(`expected a rejected line, got ${JSON.stringify(outcome && { ok: outcome.ok, line: outcome.line })}`);
  const { ok: _ok, ...invalid } = outcome;
  return invalid;
}

const LONG_ID = 'a'.repeat(65);
const withParams = (fields: Record<string, unknown>) => ({ custom_id: 'bad', ...fields });

/**
 * Each case is line 2 of a three-line file whose other lines are valid, so every case also shows
 * that one bad line neither stops nor disturbs the lines around it.
 */
const BAD_LINES: ReadonlyArray<{ name: string; row: unknown; code: InvalidCode; reason: string; customId?: string }> = [
  { name: 'an empty object', row: {}, code: 'missing_custom_id', reason: 'line 2 has no custom_id' },
  {
    name: 'a JSON array',
    row: '[{"custom_id":"a"}]',
    code: 'not_an_object',
    reason: 'line 2 is a JSON array; each line must be an object {"custom_id": ..., "params": {...}}',
  },
  {
    name: 'a JSON string',
    row: '"custom_id"',
    code: 'not_an_object',
    reason: 'line 2 is a JSON string; each line must be an object {"custom_id": ..., "params": {...}}',
  },
  {
    name: 'a JSON number',
    row: '42',
    code: 'not_an_object',
    reason: 'line 2 is a JSON number; each line must be an object {"custom_id": ..., "params": {...}}',
  },
  {
    name: 'JSON null',
    row: 'null',
    code: 'not_an_object',
    reason: 'line 2 is JSON null; each line must be an object {"custom_id": ..., "params": {...}}',
  },
  {
    name: 'a JSON boolean',
    row: 'true',
    code: 'not_an_object',
    reason: 'line 2 is a JSON boolean; each line must be an object {"custom_id": ..., "params": {...}}',
  },
  {
    name: 'a missing value',
    row: '{"custom_id": "bad", "params": }',
    code: 'invalid_json',
    reason: "line 2 is not valid JSON: unexpected '}' where a value was expected at column 32",
  },
  {
    name: 'a trailing comma',
    row: '{"custom_id":"bad",}',
    code: 'invalid_json',
    reason: "line 2 is not valid JSON: expected a quoted property name, found '}' at column 20",
  },
  {
    name: 'an unquoted key',
    row: '{custom_id: "bad"}',
    code: 'invalid_json',
    reason: "line 2 is not valid JSON: expected a quoted property name, found 'c' at column 2",
  },
  {
    name: 'two values on one line',
    row: '{"custom_id":"a"} {"custom_id":"b"}',
    code: 'invalid_json',
    reason: "line 2 is not valid JSON: unexpected '{' after the end of the JSON value at column 19",
  },
  {
    name: 'a raw tab inside a string (column counts the leading spaces)',
    row: '  {"custom_id":"a\tb"}',
    code: 'invalid_json',
    reason: 'line 2 is not valid JSON: unescaped control character U+0009 inside a string at column 18',
  },
  {
    name: 'a byte that is not UTF-8',
    row: Buffer.concat([Buffer.from('{"custom_id":"bad","params":{"model":"'), Buffer.from([0xff]), Buffer.from('"}}')]),
    code: 'invalid_utf8',
    reason: 'line 2 is not valid UTF-8 (byte 39 of the line, 0xFF, cannot start or continue a character)',
  },
  {
    name: 'an encoded surrogate (not UTF-8 even though well-formed bytes)',
    row: Buffer.concat([Buffer.from('{"custom_id":"x'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]),
    code: 'invalid_utf8',
    reason: 'line 2 is not valid UTF-8 (byte 16 of the line, 0xED, cannot start or continue a character)',
  },
  { name: 'params but no custom_id', row: { params: request('x').params }, code: 'missing_custom_id', reason: 'line 2 has no custom_id' },
  {
    name: 'a numeric custom_id',
    row: { ...request('x'), custom_id: 123 },
    code: 'custom_id_not_string',
    reason: 'line 2: custom_id must be a string, got a number',
  },
  {
    name: 'a null custom_id',
    row: { ...request('x'), custom_id: null },
    code: 'custom_id_not_string',
    reason: 'line 2: custom_id must be a string, got null',
  },
  {
    name: 'a custom_id of 65 characters',
    row: request(LONG_ID),
    code: 'custom_id_too_long',
    reason: 'line 2: custom_id is 65 characters long; at most 64 are allowed',
  },
  {
    name: 'a custom_id with a dot',
    row: request('row.1'),
    code: 'custom_id_bad_character',
    reason: 'line 2: custom_id has a character that is not allowed, "." at position 4 (allowed: letters, digits, "_" and "-")',
  },
  {
    name: 'a custom_id with a space',
    row: request('row 1'),
    code: 'custom_id_bad_character',
    reason: 'line 2: custom_id has a character that is not allowed, " " at position 4 (allowed: letters, digits, "_" and "-")',
  },
  {
    name: 'a custom_id with a non-ASCII letter',
    row: request('café'),
    code: 'custom_id_bad_character',
    reason: 'line 2: custom_id has a character that is not allowed, "é" at position 4 (allowed: letters, digits, "_" and "-")',
  },
  { name: 'an empty custom_id', row: request(''), code: 'custom_id_empty', reason: 'line 2: custom_id is empty' },
  {
    name: 'an unknown top-level field',
    row: { ...request('bad'), metadata: { user_id: 'u1' } },
    code: 'unknown_field',
    reason: 'line 2 has an unknown field "metadata"; a line holds only "custom_id" and "params"',
    customId: 'bad',
  },
  { name: 'no params', row: { custom_id: 'bad' }, code: 'missing_params', reason: 'line 2 has no params', customId: 'bad' },
  {
    name: 'params as an array',
    row: withParams({ params: [] }),
    code: 'params_not_object',
    reason: 'line 2: params must be an object, got an array',
    customId: 'bad',
  },
  {
    name: 'params as a string',
    row: withParams({ params: 'Say hello.' }),
    code: 'params_not_object',
    reason: 'line 2: params must be an object, got a string',
    customId: 'bad',
  },
  { name: 'no model', row: request('bad', { model: undefined }), code: 'missing_model', reason: 'line 2: params.model is missing', customId: 'bad' },
  { name: 'an empty model', row: request('bad', { model: '' }), code: 'invalid_model', reason: 'line 2: params.model is empty', customId: 'bad' },
  {
    name: 'a numeric model',
    row: request('bad', { model: 4 }),
    code: 'invalid_model',
    reason: 'line 2: params.model must be a string, got a number',
    customId: 'bad',
  },
  {
    name: 'a misspelt model',
    row: request('bad', { model: 'claude-sonet-4-5' }),
    code: 'unknown_model',
    reason: 'line 2: unknown model claude-sonet-4-5: did you mean claude-sonnet-4-5?',
    customId: 'bad',
  },
  {
    name: 'a model batchline does not know',
    row: request('bad', { model: 'gpt-4o' }),
    code: 'unknown_model',
    reason:
      'line 2: unknown model gpt-4o: not one batchline knows (add it to the price table with the pricesJson setting, or allow any model with allowUnknownModels)',
    customId: 'bad',
  },
  {
    name: 'no max_tokens',
    row: request('bad', { max_tokens: undefined }),
    code: 'missing_max_tokens',
    reason: 'line 2: params.max_tokens is missing',
    customId: 'bad',
  },
  {
    name: 'max_tokens 0 (cache pre-warming is not supported in batches)',
    row: request('bad', { max_tokens: 0 }),
    code: 'invalid_max_tokens',
    reason: 'line 2: params.max_tokens must be a whole number ≥ 1, got 0',
    customId: 'bad',
  },
  {
    name: 'max_tokens 1.5',
    row: request('bad', { max_tokens: 1.5 }),
    code: 'invalid_max_tokens',
    reason: 'line 2: params.max_tokens must be a whole number ≥ 1, got 1.5',
    customId: 'bad',
  },
  {
    name: 'max_tokens as a string',
    row: request('bad', { max_tokens: '1024' }),
    code: 'invalid_max_tokens',
    reason: 'line 2: params.max_tokens must be a whole number ≥ 1, got a string',
    customId: 'bad',
  },
  {
    name: 'no messages',
    row: request('bad', { messages: undefined }),
    code: 'missing_messages',
    reason: 'line 2: params.messages is missing',
    customId: 'bad',
  },
  {
    name: 'empty messages',
    row: request('bad', { messages: [] }),
    code: 'invalid_messages',
    reason: 'line 2: params.messages is empty; at least one message is required',
    customId: 'bad',
  },
  {
    name: 'messages as a string',
    row: request('bad', { messages: 'Say hello.' }),
    code: 'invalid_messages',
    reason: 'line 2: params.messages must be an array, got a string',
    customId: 'bad',
  },
  {
    name: 'a message that is not an object',
    row: request('bad', { messages: [{ role: 'user', content: 'Hi' }, 'Say hello.'] }),
    code: 'invalid_messages',
    reason: 'line 2: params.messages[1] must be an object, got a string',
    customId: 'bad',
  },
  {
    name: 'stream true',
    row: request('bad', { stream: true }),
    code: 'stream_not_allowed',
    reason: 'line 2: params.stream must be false or absent in a batch, got true',
    customId: 'bad',
  },
  {
    name: 'stream as a string',
    row: request('bad', { stream: 'false' }),
    code: 'stream_not_allowed',
    reason: 'line 2: params.stream must be false or absent in a batch, got a string',
    customId: 'bad',
  },
  {
    name: 'speed (fast mode)',
    row: request('bad', { speed: 'fast' }),
    code: 'unsupported_param',
    reason: 'line 2: params.speed is not supported in a batch (fast mode is synchronous-only)',
    customId: 'bad',
  },
  {
    name: 'store (Threads)',
    row: request('bad', { store: true }),
    code: 'unsupported_param',
    reason: 'line 2: params.store is not supported in a batch (Threads are stateful)',
    customId: 'bad',
  },
  {
    name: 'previous_thread_event_id (Threads)',
    row: request('bad', { previous_thread_event_id: 'evt_1' }),
    code: 'unsupported_param',
    reason: 'line 2: params.previous_thread_event_id is not supported in a batch (Threads are stateful)',
    customId: 'bad',
  },
  {
    name: 'cache_hint',
    row: request('bad', { cache_hint: 'warm' }),
    code: 'unsupported_param',
    reason: 'line 2: params.cache_hint is not supported in a batch (scheduling hints apply to synchronous requests only)',
    customId: 'bad',
  },
  {
    name: 'context_hint',
    row: request('bad', { context_hint: {} }),
    code: 'unsupported_param',
    reason: 'line 2: params.context_hint is not supported in a batch (scheduling hints apply to synchronous requests only)',
    customId: 'bad',
  },
  {
    name: 'research_preview_2026_02 "active"',
    row: request('bad', { research_preview_2026_02: 'active' }),
    code: 'unsupported_param',
    reason: 'line 2: params.research_preview_2026_02 "active" is not supported in a batch (the research preview is not on the batch path)',
    customId: 'bad',
  },
];

describe('validateStream: a bad line is reported with its line, code and reason', () => {
  it('covers at least 25 kinds of bad input', () => {
    expect(BAD_LINES.length).toBeGreaterThanOrEqual(25);
  });

  it.each(BAD_LINES)('$name → $code', async ({ row, code, reason, customId }) => {
    const file = jsonl([request('before'), row, request('after')]);
    const { outcomes, counts } = await validateFile(file);
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true]);
    expect(rejection(outcomes[1])).toEqual(customId === undefined ? { line: 2, code, reason } : { line: 2, customId, code, reason });
    expect(counts).toEqual({ lines: 3, blank: 0, valid: 2, invalid: 1 });
  });

  it('names both lines of a duplicate custom_id, however far apart', async () => {
    const rows = [request('dup'), ...Array.from({ length: 5000 }, (_, i) => request(`filler-${i}`)), request('dup')];
    const { outcomes, counts } = await validateFile(jsonl(rows));
    const rejected = outcomes.filter((o) => !o.ok).map(rejection);
    expect(rejected).toEqual([{ line: 5002, customId: 'dup', code: 'duplicate_custom_id', reason: 'line 5002: custom_id "dup" is already used on line 1' }]);
    expect(counts).toEqual({ lines: 5002, blank: 0, valid: 5001, invalid: 1 });
  });

  it('still counts an id as used when its first line was invalid for another reason', async () => {
    const { outcomes } = await validateFile(jsonl([request('a', { max_tokens: 0 }), request('a')]));
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.code))).toEqual(['invalid_max_tokens', 'duplicate_custom_id']);
    expect(rejection(outcomes[1]).reason).toBe('line 2: custom_id "a" is already used on line 1');
  });

  it('rejects a request over the size limit, naming both sizes', async () => {
    const small = request('small');
    const big = request('big', { messages: [{ role: 'user', content: 'x'.repeat(500) }] });
    const bigBytes = Buffer.byteLength(JSON.stringify(big));
    const { outcomes } = await validateFile(jsonl([small, big]), { maxRequestBytes: 300 });
    expect(outcomes[0]!.ok).toBe(true);
    expect(rejection(outcomes[1])).toEqual({
      line: 2,
      code: 'request_too_large',
      reason: `line 2 is ${bigBytes} bytes; a request may be at most 300 bytes (one batch's size limit)`,
    });
    expect(bigBytes).toBe(615);
  });

  it('measures a request without the whitespace around it', () => {
    const padded = Buffer.from(`   {}${' '.repeat(1000)}`);
    const outcome = validateLine({ bytes: padded, lineNumber: 9, terminated: true }, { maxRequestBytes: 1 });
    expect(rejection(outcome).reason).toBe("line 9 is 2 bytes; a request may be at most 1 bytes (one batch's size limit)");
  });

  it('writes large sizes with thousands separators', () => {
    const line = Buffer.from(`{"custom_id":"x","pad":"${'y'.repeat(1_234_567)}"}`);
    const outcome = validateLine({ bytes: line, lineNumber: 3, terminated: true }, { maxRequestBytes: 1_000_000 });
    expect(rejection(outcome).reason).toBe("line 3 is 1,234,593 bytes; a request may be at most 1,000,000 bytes (one batch's size limit)");
  });

  it('defaults the size limit to the API batch limit minus the body envelope', () => {
    expect(BATCH_BODY_OVERHEAD).toBe(15);
    const file = jsonl([request('a')]);
    const outcome = validateLine({ bytes: file.subarray(0, file.length - 1), lineNumber: 1, terminated: true });
    expect(outcome.ok).toBe(true);
  });

  it('reports a last line cut off mid-JSON as truncated', async () => {
    const whole = JSON.stringify(request('last'));
    const file = jsonl([request('first'), whole.slice(0, 30)], { trailingNewline: false });
    const { outcomes, counts } = await validateFile(file);
    expect(rejection(outcomes[1])).toEqual({ line: 2, code: 'truncated_line', reason: 'line 2 is truncated: the file ends mid-line' });
    expect(counts).toEqual({ lines: 2, blank: 0, valid: 1, invalid: 1 });
  });

  it('reports a last line cut inside a multi-byte character as truncated, not as bad UTF-8', async () => {
    const euro = Buffer.from('€'); // e2 82 ac
    const cut = Buffer.concat([Buffer.from('{"custom_id":"a","params":{"x":"'), euro.subarray(0, 2)]);
    const { outcomes } = await validateFile(jsonl([cut], { trailingNewline: false }));
    expect(rejection(outcomes[0])).toEqual({ line: 1, code: 'truncated_line', reason: 'line 1 is truncated: the file ends mid-line' });
  });

  it('reports the same broken JSON on a terminated line as invalid JSON, not truncated', async () => {
    const { outcomes } = await validateFile(jsonl(['{"custom_id":"a"']));
    expect(rejection(outcomes[0])).toEqual({
      line: 1,
      code: 'invalid_json',
      reason: 'line 1 is not valid JSON: the line ends inside an object at column 17',
    });
  });

  it('never quotes prompt text in a reason', async () => {
    const secret = 'TOP-SECRET-PROMPT';
    const rows = [
      `{"custom_id":"a","params":{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"${secret}"}],}}`,
      request('b', { messages: secret }),
      request('c', { max_tokens: secret }),
      request('d', { stream: secret }),
      { custom_id: 'e', params: secret },
      `"${secret}"`,
    ];
    const { outcomes } = await validateFile(jsonl(rows));
    expect(outcomes.every((o) => !o.ok)).toBe(true);
    for (const outcome of outcomes) expect(rejection(outcome).reason).not.toContain(secret);
  });
});

describe('validateStream: valid input', () => {
  it('yields each request with its line, id, params and the exact bytes that go into the batch body', async () => {
    const rows = [request('a'), request('b', { max_tokens: 10 })];
    const { outcomes, counts } = await validateFile(jsonl(rows));
    expect(outcomes).toEqual([
      { ok: true, line: 1, customId: 'a', params: rows[0]!.params, body: Buffer.from(JSON.stringify(rows[0])), bytes: JSON.stringify(rows[0]).length },
      { ok: true, line: 2, customId: 'b', params: rows[1]!.params, body: Buffer.from(JSON.stringify(rows[1])), bytes: JSON.stringify(rows[1]).length },
    ]);
    expect(counts).toEqual({ lines: 2, blank: 0, valid: 2, invalid: 0 });
  });

  it('accepts a UTF-8 BOM at the start of the file and keeps it out of the body', async () => {
    const { outcomes } = await validateFile(jsonl([request('a'), request('b')], { bom: true }));
    expect(outcomes.map((o) => o.ok && o.body.toString())).toEqual([JSON.stringify(request('a')), JSON.stringify(request('b'))]);
  });

  it('accepts a BOM at the start of a later line (files joined with cat)', async () => {
    const second = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(request('b')))]);
    const { outcomes } = await validateFile(jsonl([request('a'), second]));
    expect(outcomes[1]).toMatchObject({ ok: true, customId: 'b', body: Buffer.from(JSON.stringify(request('b'))) });
  });

  it('accepts CRLF line ends, with no CR in the body', async () => {
    const { outcomes, counts } = await validateFile(jsonl([request('a'), '', request('b')], { eol: '\r\n' }));
    expect(outcomes.map((o) => o.ok && o.body.toString())).toEqual([JSON.stringify(request('a')), JSON.stringify(request('b'))]);
    expect(counts).toEqual({ lines: 3, blank: 1, valid: 2, invalid: 0 });
  });

  it('skips and counts blank and whitespace-only lines, keeping line numbers true to the file', async () => {
    const { outcomes, counts } = await validateFile(jsonl(['', request('a'), '   \t', '', request('b', { max_tokens: 0 })]));
    expect(outcomes.map((o) => o.line)).toEqual([2, 5]);
    expect(counts).toEqual({ lines: 5, blank: 3, valid: 1, invalid: 1 });
  });

  it('trims whitespace around a request out of its body', async () => {
    const { outcomes } = await validateFile(jsonl([`  \t${JSON.stringify(request('a'))}   `]));
    expect(outcomes[0]).toMatchObject({ ok: true, body: Buffer.from(JSON.stringify(request('a'))) });
  });

  it('accepts stream: false', async () => {
    const { outcomes } = await validateFile(jsonl([request('a', { stream: false })]));
    expect(outcomes[0]).toMatchObject({ ok: true, params: { stream: false } });
  });

  it('accepts research_preview_2026_02 with a value other than "active"', async () => {
    const { outcomes } = await validateFile(jsonl([request('a', { research_preview_2026_02: 'inactive' })]));
    expect(outcomes[0]!.ok).toBe(true);
  });

  it('passes other params through untouched, byte for byte (integers past 2^53 included)', async () => {
    const line =
      '{"params": {"model": "claude-opus-5", "max_tokens": 1024, "system": "Be brief.", "temperature": 0.25, ' +
      '"metadata": {"user_id": "u-1", "trace": 12345678901234567890}, "tools": [{"name": "lookup", "input_schema": {"type": "object"}}], ' +
      '"messages": [{"role": "user", "content": [{"type": "text", "text": "caf\\u00e9 ☕"}]}], "inference_geo": "us"}, "custom_id": "keep-1"}';
    const { outcomes } = await validateFile(jsonl([line]));
    const outcome = outcomes[0]!;
    if (!outcome.ok) throw new Error(outcome.reason);
    expect(outcome.body.toString()).toBe(line);
    expect(outcome.bytes).toBe(Buffer.byteLength(line));
    expect(outcome.params).toEqual(JSON.parse(line).params);
  });

  it('gives the same outcomes whether the file arrives in one piece or a byte at a time', async () => {
    const file = jsonl(
      [request('ünïcode-is-not-an-id'), request('a', { messages: [{ role: 'user', content: 'naïve €uro 😀' }] }), '{"custom_id":', request('a')],
      { bom: true, eol: '\r\n' },
    );
    const whole = await validateFile(file, {}, file.length);
    const bytewise = await validateFile(file, {}, 1);
    expect(bytewise).toEqual(whole);
    expect(whole.outcomes.map((o) => (o.ok ? 'ok' : o.code))).toEqual(['custom_id_bad_character', 'ok', 'invalid_json', 'duplicate_custom_id']);
  });

  it('accepts a valid last line without a newline', async () => {
    const { outcomes } = await validateFile(jsonl([request('a'), request('b')], { trailingNewline: false }));
    expect(outcomes.map((o) => o.ok)).toEqual([true, true]);
  });

  it('reuses a given CustomIdSet, so the parts of one file share their ids', async () => {
    const customIds = new CustomIdSet();
    await validateFile(jsonl([request('a')]), { customIds });
    const { outcomes } = await validateFile(jsonl([request('a')]), { customIds });
    expect(rejection(outcomes[0]).reason).toBe('line 1: custom_id "a" is already used on line 1');
  });

  it('can be read only once', async () => {
    const stream = validateStream(lines(jsonl([request('a')])));
    for await (const _ of stream) void _;
    await expect(async () => {
      for await (const _ of stream) void _;
    }).rejects.toThrow('a ValidationStream can be read only once');
  });
});

describe('invalidReportRow', () => {
  it('writes the report row in snake_case, with custom_id only when known', () => {
    expect(invalidReportRow({ line: 4, customId: 'a', code: 'missing_params', reason: 'line 4 has no params' })).toEqual({
      line: 4,
      custom_id: 'a',
      code: 'missing_params',
      reason: 'line 4 has no params',
    });
    expect(invalidReportRow({ line: 5, code: 'invalid_json', reason: 'line 5 is not valid JSON' })).toEqual({
      line: 5,
      code: 'invalid_json',
      reason: 'line 5 is not valid JSON',
    });
  });
});

describe('validateLine: the model must be one batchline knows', () => {
  const line = (model: string, models?: ModelCatalog) =>
    validateLine({ bytes: Buffer.from(JSON.stringify(request('r', { model }))), lineNumber: 7, terminated: true }, { models });

  it('accepts every model of the price table, the known ones without a price, and their dated ids', () => {
    for (const model of [...BUILT_IN_PRICES.keys(), ...MODELS_WITHOUT_LIST_PRICE, ...DATED_MODEL_IDS, 'claude-haiku-4-5-20990101']) {
      expect({ model, ok: line(model).ok }).toEqual({ model, ok: true });
    }
  });

  it('names the line and the nearest known id, dated ones included', () => {
    expect(rejection(line('claude-sonnet-4-5-20250928x'))).toMatchObject({ line: 7, code: 'unknown_model' });
    expect(rejection(line('claude-sonet-4-5-20250929')).reason).toBe(
      'line 7: unknown model claude-sonet-4-5-20250929: did you mean claude-sonnet-4-5-20250929?',
    );
    expect(rejection(line('Claude-Haiku-4-5')).reason).toBe('line 7: unknown model Claude-Haiku-4-5: did you mean claude-haiku-4-5?');
    // A base that is not known gives its dated ids no pass.
    expect(rejection(line('claude-nonesuch-9-20250101')).code).toBe('unknown_model');
  });

  it('quotes a model id with odd characters, shortened, as JSON', () => {
    expect(rejection(line(`claude ${'x'.repeat(80)}`)).reason).toBe(
      `line 7: unknown model "claude ${'x'.repeat(57)}…": not one batchline knows (add it to the price table with the pricesJson setting, or allow any model with allowUnknownModels)`,
    );
  });

  it('accepts a model added with pricesJson, and any model with allowUnknownModels', () => {
    const extended = modelCatalogFromConfig({
      pricesJson: JSON.stringify({ 'claude-next-9': { input: 1, output: 5, cacheWrite5m: 1.25, cacheWrite1h: 2, cacheRead: 0.1 } }),
    });
    expect(line('claude-next-9', extended).ok).toBe(true);
    expect(line('claude-next-9').ok).toBe(false);
    expect(line('claude-sonet-4-5', modelCatalogFromConfig({ allowUnknownModels: true })).ok).toBe(true);
    expect(line('claude-sonet-4-5', modelCatalogFromConfig({ allowUnknownModels: false })).ok).toBe(false);
  });

  it('checks the model last: a line with another problem is reported for that one', () => {
    expect(rejection(line('claude-sonet-4-5', undefined)).code).toBe('unknown_model');
    const both = validateLine({ bytes: Buffer.from(JSON.stringify(request('r', { model: 'gpt-4o', max_tokens: 0 }))), lineNumber: 1, terminated: true });
    expect(rejection(both).code).toBe('invalid_max_tokens');
  });

  it('applies the catalog given to a whole file', async () => {
    const file = jsonl([request('a', { model: 'claude-sonet-4-5' }), request('b')]);
    expect((await validateFile(file)).counts).toMatchObject({ valid: 1, invalid: 1 });
    expect((await validateFile(file, { models: modelCatalog(BUILT_IN_PRICES, { allowUnknown: true }) })).counts).toMatchObject({ valid: 2, invalid: 0 });
  });
});
