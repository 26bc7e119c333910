import { describe, expect, it } from 'vitest';
import type { Message } from '../../shared/anthropic/types';
import { jsonKey, lastMemberValue, leadingCustomIdSpan, rawMember, rawMemberAt } from '../../shared/jsonl/raw-json';

describe('rawMember', () => {
  const line = Buffer.from(
    '{"custom_id":"x","result":{"type":"succeeded","message":{"id":"m","content":[{"type":"tool_use","input":{"n":12345678901234567890,"s":"a\\"}],{"}}],"usage":{"input_tokens":1}}}}',
  );

  it('returns a member’s JSON exactly as written, big integers and escapes included', () => {
    const message = rawMember(rawMember(line, 'result')!, 'message')!;
    expect(message.toString()).toBe('{"id":"m","content":[{"type":"tool_use","input":{"n":12345678901234567890,"s":"a\\"}],{"}}],"usage":{"input_tokens":1}}');
    expect((JSON.parse(message.toString()) as Message).id).toBe('m');
  });

  it('finds only top-level members, of any JSON type', () => {
    const json = Buffer.from('{"a":{"b":1},"b" : [1,{"c":"]"}] ,"c":"x,y","d":-1.5e3,"e":null}');
    expect(rawMember(json, 'b')?.toString()).toBe('[1,{"c":"]"}]');
    expect(rawMember(json, 'c')?.toString()).toBe('"x,y"');
    expect(rawMember(json, 'd')?.toString()).toBe('-1.5e3');
    expect(rawMember(json, 'e')?.toString()).toBe('null');
    expect(rawMember(Buffer.from('{"a":{"z":1}}'), 'z')).toBeUndefined();
  });
});

describe('rawMemberAt', () => {
  it('follows a path of members in one scan, stepping over earlier members whatever they hold', () => {
    const line = Buffer.from(
      '{"custom_id":"x", "note":"\\\\","result" :{"type":"succeeded","skip":{"message":1},"message":{"content":[{"text":"say \\"}\\" \u00e9 \\\\"}],"n":12345678901234567890}}}',
    );
    expect(rawMemberAt(line, ['result', 'message'])?.toString()).toBe('{"content":[{"text":"say \\"}\\" \u00e9 \\\\"}],"n":12345678901234567890}');
    expect(rawMemberAt(line, ['result', 'type'])?.toString()).toBe('"succeeded"');
    expect(rawMemberAt(line, ['result', 'missing'])).toBeUndefined();
    expect(rawMemberAt(line, ['note', 'message'])).toBeUndefined();
  });
});

describe('leadingCustomIdSpan', () => {
  const spanned = (text: string, mayRepeat = false) => {
    const span = leadingCustomIdSpan(Buffer.from(text), { mayRepeat });
    return span && { ...span, id: text.slice(span.start, span.end) };
  };

  it('says where the characters of a leading custom_id are, spacing included', () => {
    expect(spanned('{"custom_id":"abc","params":{}}')).toEqual({ start: 14, end: 17, id: 'abc' });
    expect(spanned('{ "custom_id" : "abc" , "x":1}')).toEqual({ start: 17, end: 20, id: 'abc' });
    expect(spanned('{"custom_id":"abc"}')).toEqual({ start: 14, end: 17, id: 'abc' });
  });

  it('finds none when the line does not start with it, or its id has other bytes than [a-zA-Z0-9_-]', () => {
    expect(spanned('{"params":{},"custom_id":"abc"}')).toBeUndefined();
    expect(spanned('{"custom_id":"a b","params":{}}')).toBeUndefined();
    expect(spanned('{"custom_id":"a\\u0062","params":{}}')).toBeUndefined();
    expect(spanned('{"custom_id":"","params":{}}')).toBeUndefined();
  });

  it('with mayRepeat, finds none when the key might come again (another "custom_id", or a \\u escape)', () => {
    expect(spanned('{"custom_id":"a","custom_id":"b"}', true)).toBeUndefined();
    expect(spanned('{"custom_id":"a","params":{"s":"\\u0041"}}', true)).toBeUndefined();
    expect(spanned('{"custom_id":"a","custom_id":"b"}', false)).toEqual({ start: 14, end: 15, id: 'a' });
    expect(spanned('{"custom_id":"a","params":{}}', true)).toEqual({ start: 14, end: 15, id: 'a' });
  });
});

describe('lastMemberValue', () => {
  const PARAMS = jsonKey('params');
  const value = (text: string) => lastMemberValue(Buffer.from(text), PARAMS)?.toString();

  it('returns a top-level member’s value as written, never a nested member of that name', () => {
    expect(value('{"custom_id":"a","params":{"x":[1,{"params":2}],"n":12345678901234567890}}')).toBe('{"x":[1,{"params":2}],"n":12345678901234567890}');
    expect(value('{"params" :  "s\\"}" , "custom_id":"a"}')).toBe('"s\\"}"');
    expect(value('{"custom_id":"a","nested":{"params":1}}')).toBeUndefined();
    expect(value('{}')).toBeUndefined();
    expect(value('[{"params":1}]')).toBeUndefined();
  });

  it('takes the last of duplicate keys, as JSON.parse does', () => {
    expect(value('{"params":1,"custom_id":"a","params" : [2, 3] }')).toBe('[2, 3]');
  });

  it('gives up (undefined, for the caller to parse) when any top-level key is written with an escape', () => {
    expect(value('{"params":1,"p\\u0061rams":2}')).toBeUndefined();
    expect(value('{"params":1,"a\\"b":2}')).toBeUndefined();
    // Escapes in values, or in nested keys, are no key of the top level.
    expect(value('{"note":"\\u0070arams","params":{"k\\u0065y":3}}')).toBe('{"k\\u0065y":3}');
  });
});
