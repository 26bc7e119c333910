import { describe, expect, it } from 'vitest';
import { newNonce, parseWireId, userResultLine, wireId, wireRequestLine } from '../../shared/jobs/wire-ids';

const NONCE = '0123456789abcdef';
const WIRE = `${NONCE}-a`;

describe('wire ids', () => {
  it('are `<nonce>-<line in base 36>`, and parse back to the nonce and line', () => {
    expect(wireId(NONCE, 0)).toBe('0123456789abcdef-0');
    expect(wireId(NONCE, 35)).toBe('0123456789abcdef-z');
    expect(wireId(NONCE, 36)).toBe('0123456789abcdef-10');
    expect(wireId(NONCE, 99_999)).toBe('0123456789abcdef-255r');
    for (const index of [0, 35, 36, 99_999]) expect(parseWireId(wireId(NONCE, index))).toEqual({ nonce: NONCE, index });
  });

  it('draws a nonce of 16 lowercase hex digits, a new one each time', () => {
    const nonces = Array.from({ length: 1000 }, newNonce);
    for (const nonce of nonces) expect(nonce).toMatch(/^[0-9a-f]{16}$/);
    expect(new Set(nonces).size).toBe(1000);
  });

  it('parses no id a user would write, nor anything else not exactly `<16 hex>-<1 to 8 of [0-9a-z]>`', () => {
    for (const id of [
      'row-00001',
      'ok-00002',
      'a-1',
      'request_1',
      '0123456789ABCDEF-1', // upper-case hex
      '0123456789abcde-1', // 15 digits
      '0123456789abcdef0-1', // 17 digits
      'x123456789abcdef-1', // not hex
      '0123456789abcdef_1',
      '0123456789abcdef-',
      '0123456789abcdef-A',
      '0123456789abcdef-1-2',
      '0123456789abcdef-123456789', // 9 digits
    ]) {
      expect(parseWireId(id), id).toBeUndefined();
    }
  });
});

describe('wireRequestLine', () => {
  it('sends `{"custom_id":"<wire>","params":…}`, the params copied byte for byte', () => {
    const line = Buffer.from('{"custom_id":"row-1","params":{"model":"claude-haiku-4-5","max_tokens":64}}');
    expect(wireRequestLine(line, WIRE).toString()).toBe(`{"custom_id":"${WIRE}","params":{"model":"claude-haiku-4-5","max_tokens":64}}`);
  });

  it('keeps what a JSON round trip would change: big integers, \\u escapes, spacing, key order', () => {
    const params =
      '{ "max_tokens" : 12345678901234567890, "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\"}], "k\\u0065y": 1.50 }';
    const line = Buffer.from(`{ "params": ${params} , "custom_id": "row-2" }`);
    expect(wireRequestLine(line, WIRE).toString()).toBe(`{"custom_id":"${WIRE}","params":${params}}`);
  });

  it('takes the last of duplicate params keys, as JSON.parse (and so Prepare) does', () => {
    const line = Buffer.from('{"custom_id":"row-3","params":{"max_tokens":1},"params":{"max_tokens":2}}');
    expect(wireRequestLine(line, WIRE).toString()).toBe(`{"custom_id":"${WIRE}","params":{"max_tokens":2}}`);
  });

  it('parses and re-encodes the params when a top-level key is written with an escape (it might spell params)', () => {
    const escapedLast = Buffer.from('{"custom_id":"row-4","params":{"max_tokens":1},"p\\u0061rams":{"max_tokens":2.50}}');
    expect(wireRequestLine(escapedLast, WIRE).toString()).toBe(`{"custom_id":"${WIRE}","params":{"max_tokens":2.5}}`);
    const escapedOther = Buffer.from('{"custom\\u005fid":"row-5","params":{"max_tokens": 3}}');
    expect(wireRequestLine(escapedOther, WIRE).toString()).toBe(`{"custom_id":"${WIRE}","params":{"max_tokens":3}}`);
  });
});

describe('userResultLine', () => {
  it('puts the user’s custom_id in place of the wire id, every other byte as the API sent it', () => {
    const rest = '"result":{"type":"succeeded","message":{"content":[{"type":"tool_use","input":{"n":12345678901234567890,"s":"caf\\u00e9"}}]}}}';
    expect(userResultLine(Buffer.from(`{"custom_id":"${WIRE}",${rest}`), 'row-7').toString()).toBe(`{"custom_id":"row-7",${rest}`);
    expect(userResultLine(Buffer.from(`{ "custom_id" : "${WIRE}" , "result":{"type":"expired"}}`), 'row-7').toString()).toBe(
      '{ "custom_id" : "row-7" , "result":{"type":"expired"}}',
    );
  });

  it('re-encodes a line that does not start with its custom_id, rather than drop it', () => {
    expect(userResultLine(Buffer.from(`{"result":{"type":"expired"},"custom_id":"${WIRE}"}`), 'row-7').toString()).toBe(
      '{"result":{"type":"expired"},"custom_id":"row-7"}',
    );
  });
});
