/** The streaming create-body parser: whatever the chunking, it yields exactly what JSON.parse would. */
import { describe, expect, it } from 'vitest';
import { CreateBodyParser, InvalidBody } from '../../simulator/create-body';

function parse(chunks: Buffer[]): unknown[] {
  const items: unknown[] = [];
  const parser = new CreateBodyParser((item, index) => {
    expect(index).toBe(items.length);
    items.push(item);
  });
  for (const chunk of chunks) parser.write(chunk);
  parser.end();
  return items;
}

/** Every way of cutting the body in two, plus one byte at a time. */
function chunkings(body: Buffer): Buffer[][] {
  const cuts = Array.from({ length: body.length + 1 }, (_, at) => [body.subarray(0, at), body.subarray(at)]);
  return [...cuts, Array.from(body, (byte) => Buffer.from([byte]))];
}

const TRICKY = Buffer.from(
  ' \r\n\t{ "requests" : [ {"custom_id":"a","params":{"text":"brackets ] } [ { and \\"quotes\\" and \\\\"}}' +
    ', {"custom_id":"b","params":{"emoji":"héllo 🌍 — ok","nested":[[1,{"x":[]}],-2.5e3,true,null]}}' +
    ' , "just a string with \\u00e9" ,42,null,[] ] } \n',
);

describe('CreateBodyParser', () => {
  it('yields the elements of requests, the same for every chunking', () => {
    const expected = (JSON.parse(TRICKY.toString('utf8')) as { requests: unknown[] }).requests;
    for (const chunks of chunkings(TRICKY)) expect(parse(chunks)).toEqual(expected);
  });

  it('accepts an empty requests list (the emptiness is judged by the caller)', () => {
    expect(parse([Buffer.from('{"requests":[]}')])).toEqual([]);
  });

  const invalid: Array<[string, string, RegExp]> = [
    ['an empty body', '', /unexpected end of input/],
    ['a cut-off body', '{"requests":[{"custom_id":"a"', /unexpected end of input/],
    ['a missing colon', '{"requests" [1]}', /expected ':'/],
    ['a trailing comma in requests', '{"requests":[1,]}', /not valid JSON/],
    ['a bad element', '{"requests":[{"a":}]}', /not valid JSON/],
    ['mismatched brackets', '{"requests":[{"a":[1}]]}', /not valid JSON/],
    ['a bad scalar', '{"requests":[tru]}', /not valid JSON/],
    ['two objects', '{"requests":[]}{}', /unexpected data after the end/],
    ['requests twice', '{"requests":[],"requests":[]}', /requests: given more than once/],
    ['no requests at all', '{}', /^requests: Field required$/],
  ];

  it.each(invalid)('rejects %s', (_name, body, message) => {
    const attempt = (): unknown => parse([Buffer.from(body)]);
    expect(attempt).toThrow(InvalidBody);
    expect(attempt).toThrow(message);
  });

  it('hands each element over as soon as it is complete, before the body ends', () => {
    const seen: unknown[] = [];
    const parser = new CreateBodyParser((item) => seen.push(item));
    parser.write(Buffer.from('{"requests":[{"custom_id":"a"},'));
    expect(seen).toEqual([{ custom_id: 'a' }]);
  });
});
