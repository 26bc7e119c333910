import { describe, expect, it } from 'vitest';
import { findInvalidUtf8, locateJsonError } from '../../shared/validation/syntax';

describe('findInvalidUtf8', () => {
  it.each([
    { name: 'ASCII', bytes: [0x7b, 0x7d] },
    { name: 'two-, three- and four-byte characters', bytes: [...Buffer.from('é€😀')] },
    { name: 'the highest code point U+10FFFF', bytes: [0xf4, 0x8f, 0xbf, 0xbf] },
  ])('finds nothing wrong in $name', ({ bytes }) => {
    expect(findInvalidUtf8(Uint8Array.from(bytes))).toBeNull();
  });

  it.each([
    { name: 'a lone continuation byte', bytes: [0x61, 0x80], expected: { offset: 1, byte: 0x80, truncated: false } },
    { name: 'an overlong two-byte form', bytes: [0xc0, 0xaf], expected: { offset: 0, byte: 0xc0, truncated: false } },
    { name: 'an overlong three-byte form', bytes: [0xe0, 0x80, 0xaf], expected: { offset: 0, byte: 0xe0, truncated: false } },
    { name: 'an encoded surrogate', bytes: [0x61, 0xed, 0xa0, 0x80], expected: { offset: 1, byte: 0xed, truncated: false } },
    { name: 'a code point past U+10FFFF', bytes: [0xf4, 0x90, 0x80, 0x80], expected: { offset: 0, byte: 0xf4, truncated: false } },
    { name: 'a byte that never occurs', bytes: [0xff], expected: { offset: 0, byte: 0xff, truncated: false } },
    { name: 'a character interrupted by ASCII', bytes: [0xe2, 0x82, 0x41], expected: { offset: 0, byte: 0xe2, truncated: false } },
    { name: 'a character cut at the end', bytes: [0x61, 0xe2, 0x82], expected: { offset: 1, byte: 0xe2, truncated: true } },
  ])('finds $name', ({ bytes, expected }) => {
    expect(findInvalidUtf8(Uint8Array.from(bytes))).toEqual(expected);
  });

  it('agrees with a fatal TextDecoder on every two-byte sequence', () => {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const disagreements: string[] = [];
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) {
        const bytes = Uint8Array.of(a, b, 0x20, 0x20, 0x20);
        let valid = true;
        try {
          decoder.decode(bytes);
        } catch {
          valid = false;
        }
        if ((findInvalidUtf8(bytes) === null) !== valid) disagreements.push(`${a.toString(16)} ${b.toString(16)}`);
      }
    }
    expect(disagreements).toEqual([]);
  });
});

describe('locateJsonError', () => {
  it.each([
    { text: '', expected: { index: 0, problem: 'the line holds no JSON value' } },
    { text: '{"a":1,}', expected: { index: 7, problem: "expected a quoted property name, found '}'" } },
    { text: '[1,]', expected: { index: 3, problem: "unexpected ']' where a value was expected" } },
    { text: '{"a" 1}', expected: { index: 5, problem: "expected ':' after a property name, found '1'" } },
    { text: '{"a":1 "b":2}', expected: { index: 7, problem: "expected ',' or '}', found '\"'" } },
    { text: '[1 2]', expected: { index: 3, problem: "expected ',' or ']', found '2'" } },
    { text: '{"a":tru}', expected: { index: 5, problem: "unexpected 't' where a value was expected" } },
    { text: '{"a":01}', expected: { index: 6, problem: 'malformed number (leading zero)' } },
    { text: '{"a":1.}', expected: { index: 6, problem: 'malformed number' } },
    { text: '{"a":-}', expected: { index: 5, problem: 'malformed number' } },
    { text: '{"a":"\\x"}', expected: { index: 6, problem: 'bad escape \\x' } },
    { text: '{"a":"\\u12G4"}', expected: { index: 6, problem: 'bad \\u escape (needs four hex digits)' } },
    { text: '{"a":"b', expected: { index: 7, problem: 'the line ends inside a string' } },
    { text: '{"a":[1', expected: { index: 7, problem: 'the line ends inside an array' } },
    { text: '{} x', expected: { index: 3, problem: "unexpected 'x' after the end of the JSON value" } },
    { text: '{"a":\u00a0}', expected: { index: 5, problem: 'unexpected U+00A0 where a value was expected' } },
    { text: '{"a": }', expected: { index: 6, problem: "unexpected '}' where a value was expected" } },
  ])('locates the problem in $text', ({ text, expected }) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(locateJsonError(text)).toEqual(expected);
  });

  it('finds nothing wrong in valid JSON of every kind', () => {
    const valid = [
      '{"custom_id":"a","params":{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}}',
      ' [ -0.5e+10 , 1E-2, 0, true, false, null, "\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9", {}, [] ] ',
      '"😀 naïve"',
      '12345678901234567890',
    ];
    for (const text of valid) expect(locateJsonError(text)).toBeNull();
  });

  it('agrees with JSON.parse on every prefix of a real request', () => {
    const text = JSON.stringify({
      custom_id: 'row-1',
      params: { model: 'm', max_tokens: 10, temperature: -0.5e-3, stop: null, stream: false, messages: [{ role: 'user', content: 'a "quoted" \\ é\n' }] },
    });
    for (let end = 0; end <= text.length; end++) {
      const prefix = text.slice(0, end);
      let parses = true;
      try {
        JSON.parse(prefix);
      } catch {
        parses = false;
      }
      expect(locateJsonError(prefix) === null, prefix).toBe(parses);
    }
  });

  it('handles deep nesting without overflowing the stack', () => {
    expect(locateJsonError('['.repeat(200_000))).toEqual({ index: 200_000, problem: 'the line ends inside an array' });
  });
});
