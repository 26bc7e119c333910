import { describe, expect, it } from 'vitest';
import type { Message } from '../../shared/anthropic/types';
import { rawMember, rawMemberAt } from '../../shared/jsonl/raw-json';

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
