/**
 * What the client puts on the wire and how it reads bytes the simulator never sends: a 200 answer to
 * a Range request, lines split across TCP writes at exact bytes, a results_url on another host, a
 * server that echoes the key, a stalled response. These need byte-level control, so each test
 * starts a tiny node:http server; everything the simulator can express is in client.test.ts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { DamagedResultLine, ResultEntry } from '../../shared/anthropic/api';
import { BatchesClient, USER_AGENT } from '../../shared/anthropic/client';
import { ApiAuthError, ApiRetryable, OutcomeUnknown } from '../../shared/anthropic/errors';
import type { MessageBatch } from '../../shared/anthropic/types';

const KEY = 'sk-ant-api03-wire-test-key';

interface Tiny {
  url: string;
  requests: { method: string; url: string; headers: IncomingMessage['headers']; body: Buffer }[];
}

const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function tinyServer(handle: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): Promise<Tiny> {
  const tiny: Tiny = { url: '', requests: [] };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      tiny.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handle(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  tiny.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return tiny;
}

function client(baseUrl: string, overrides: Partial<ConstructorParameters<typeof BatchesClient>[0]> = {}): BatchesClient {
  const c = new BatchesClient({ apiKey: KEY, baseUrl, sleep: async () => {}, random: () => 0, ...overrides });
  closers.unshift(() => c.close());
  return c;
}

function endedBatch(id: string, resultsUrl: string | null): MessageBatch {
  return {
    id,
    type: 'message_batch',
    processing_status: 'ended',
    request_counts: { processing: 0, succeeded: 3, errored: 0, canceled: 0, expired: 0 },
    ended_at: '2026-11-24T12:01:00Z',
    created_at: '2026-11-24T12:00:00Z',
    expires_at: '2026-11-25T12:00:00Z',
    archived_at: null,
    cancel_initiated_at: null,
    results_url: resultsUrl,
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_tiny' });
  res.end(JSON.stringify(body));
}

function resultLine(id: string, text = 'ok'): string {
  return JSON.stringify({
    custom_id: id,
    result: {
      type: 'succeeded',
      message: {
        id: `msg_${id}`,
        type: 'message',
        role: 'assistant',
        model: 'm',
        content: [{ type: 'text', text }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 1, output_tokens: 1 },
      },
    },
  });
}

async function all(entries: AsyncIterable<ResultEntry>): Promise<ResultEntry[]> {
  const out: ResultEntry[] = [];
  for await (const entry of entries) out.push(entry);
  return out;
}

/** Serves `pieces` as separate writes, a few ms apart, so they reach the client as separate reads. */
async function writeApart(res: ServerResponse, pieces: Buffer[]): Promise<void> {
  res.socket?.setNoDelay(true);
  for (const piece of pieces) {
    res.write(piece);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  res.end();
}

describe('request headers', () => {
  it('sends the key, version, accept, user-agent, and content-type only with a body', async () => {
    const tiny = await tinyServer((req, res) => {
      if (req.method === 'POST' && req.url === '/v1/messages/batches') json(res, 200, endedBatch('msgbatch_1', null));
      else json(res, 200, endedBatch('msgbatch_1', null));
    });
    const c = client(`${tiny.url}/`, { anthropicVersion: '2026-10-21' });
    await c.create([{ custom_id: 'a', params: { model: 'm', max_tokens: 1, messages: [] } }]);
    await c.cancel('msgbatch_1');
    const [create, cancel] = tiny.requests;
    expect(create?.headers).toMatchObject({
      'x-api-key': KEY,
      'anthropic-version': '2026-10-21',
      accept: 'application/json',
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'transfer-encoding': 'chunked',
    });
    expect(JSON.parse(create?.body.toString() ?? '')).toEqual({
      requests: [{ custom_id: 'a', params: { model: 'm', max_tokens: 1, messages: [] } }],
    });
    expect(cancel?.url).toBe('/v1/messages/batches/msgbatch_1/cancel');
    expect(cancel?.headers['content-type']).toBeUndefined();
    expect(cancel?.body.length).toBe(0);
    expect(USER_AGENT).toMatch(/^batchline\/\d+\.\d+\.\d+/);
  });
});

describe('results bytes', () => {
  const lines = [resultLine('a'), resultLine('b', 'héllo wörld ✓'), resultLine('c', 'x'.repeat(3_000_000))];
  const file = Buffer.from(`${lines[0]}\r\n\n${lines[1]}\n${lines[2]}`);

  it('splits lines across writes at exact bytes (inside a UTF-8 character, between \\r and \\n), skips blank lines, accepts a final unterminated line at a clean end', async () => {
    const inUtf8 = file.indexOf('é') + 1;
    const cr = file.indexOf('\r') + 1;
    const tiny = await tinyServer((req, res) => {
      if (!req.url?.endsWith('/results')) return json(res, 200, endedBatch('msgbatch_1', `${tiny.url}/v1/messages/batches/msgbatch_1/results`));
      res.writeHead(200, { 'content-type': 'application/x-jsonl' });
      void writeApart(res, [
        file.subarray(0, 7),
        file.subarray(7, cr),
        file.subarray(cr, inUtf8),
        file.subarray(inUtf8, file.length - 10),
        file.subarray(file.length - 10),
      ]);
    });
    const entries = await all(client(tiny.url).results('msgbatch_1'));
    expect(entries.map((e) => e.line.custom_id)).toEqual(['a', 'b', 'c']);
    expect(entries.map((e) => [e.offset, e.length])).toEqual([
      [0, Buffer.byteLength(lines[0] ?? '') + 2],
      [Buffer.byteLength(lines[0] ?? '') + 3, Buffer.byteLength(lines[1] ?? '') + 1],
      [file.length - Buffer.byteLength(lines[2] ?? ''), Buffer.byteLength(lines[2] ?? '')],
    ]);
    expect(entries.map((e) => e.raw.toString())).toEqual(lines);
    const [, second] = entries;
    expect(second?.line.result.type === 'succeeded' && second.line.result.message.content).toEqual([{ type: 'text', text: 'héllo wörld ✓' }]);
    const resultsRequest = tiny.requests.find((r) => r.url.endsWith('/results'));
    expect(resultsRequest?.headers.accept).toBe('application/binary');
    expect(resultsRequest?.headers.range).toBeUndefined();
  });

  it('skips startOffset bytes itself when the server answers a Range request with the whole file (200)', async () => {
    const tiny = await tinyServer((req, res) => {
      if (!req.url?.endsWith('/results')) return json(res, 200, endedBatch('msgbatch_1', `${tiny.url}/v1/messages/batches/msgbatch_1/results`));
      res.writeHead(200, { 'content-type': 'application/x-jsonl' });
      res.end(file);
    });
    const startOffset = file.indexOf(lines[1] ?? '');
    const entries = await all(client(tiny.url).results('msgbatch_1', { startOffset }));
    expect(tiny.requests.at(-1)?.headers.range).toBe(`bytes=${startOffset}-`);
    expect(entries.map((e) => [e.line.custom_id, e.offset])).toEqual([
      ['b', startOffset],
      ['c', file.length - Buffer.byteLength(lines[2] ?? '')],
    ]);
  });

  it('treats 416 at exactly the end of the file as nothing left to read', async () => {
    const tiny = await tinyServer((req, res) => {
      if (!req.url?.endsWith('/results')) return json(res, 200, endedBatch('msgbatch_1', `${tiny.url}/v1/messages/batches/msgbatch_1/results`));
      res.writeHead(416, { 'content-range': `bytes */${file.length}` });
      res.end();
    });
    expect(await all(client(tiny.url).results('msgbatch_1', { startOffset: file.length }))).toEqual([]);
  });

  it('does not accept an unterminated last line when the stream was cut: it resumes and reads the line whole', async () => {
    let served = 0;
    const tiny = await tinyServer((req, res) => {
      if (!req.url?.endsWith('/results')) return json(res, 200, endedBatch('msgbatch_1', `${tiny.url}/v1/messages/batches/msgbatch_1/results`));
      served += 1;
      const from = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const rest = file.subarray(from);
      res.writeHead(from > 0 ? 206 : 200, {
        'content-length': String(rest.length),
        ...(from > 0 ? { 'content-range': `bytes ${from}-${file.length - 1}/${file.length}` } : {}),
      });
      if (served === 1) {
        // Promise the whole file, send all but the last 100 bytes, then drop the connection.
        res.write(rest.subarray(0, rest.length - 100), () => res.destroy());
      } else {
        res.end(rest);
      }
    });
    const entries = await all(client(tiny.url).results('msgbatch_1'));
    expect(entries.map((e) => e.raw.toString())).toEqual(lines);
    expect(tiny.requests.filter((r) => r.url.endsWith('/results')).map((r) => r.headers.range)).toEqual([undefined, `bytes=${file.indexOf(lines[2] ?? '')}-`]);
  });

  it('never sends the key to a results_url on another origin', async () => {
    const files = await tinyServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-jsonl' });
      res.end(`${lines[0]}\n`);
    });
    const api = await tinyServer((_req, res) => json(res, 200, endedBatch('msgbatch_1', `${files.url}/signed/results.jsonl?sig=1`)));
    const entries = await all(client(api.url).results('msgbatch_1'));
    expect(entries.map((e) => e.line.custom_id)).toEqual(['a']);
    expect(api.requests[0]?.headers['x-api-key']).toBe(KEY);
    expect(files.requests[0]?.url).toBe('/signed/results.jsonl?sig=1');
    expect(files.requests[0]?.headers['x-api-key']).toBeUndefined();
    expect(files.requests[0]?.headers['anthropic-version']).toBeUndefined();
  });
});

describe('damaged results lines', () => {
  /** Serves `file` for msgbatch_1, honouring `Range: bytes=N-`; `serve` may cut or change a read. */
  async function resultsServer(file: Buffer, serve?: (res: ServerResponse, rest: Buffer, read: number) => boolean) {
    let reads = 0;
    const tiny = await tinyServer((req, res) => {
      if (!req.url?.endsWith('/results')) return json(res, 200, endedBatch('msgbatch_1', `${tiny.url}/v1/messages/batches/msgbatch_1/results`));
      reads += 1;
      const from = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const rest = file.subarray(from);
      res.writeHead(from > 0 ? 206 : 200, from > 0 ? { 'content-range': `bytes ${from}-${file.length - 1}/${file.length}` } : {});
      if (serve?.(res, rest, reads)) return;
      void writeApart(res, [rest.subarray(0, 100), rest.subarray(100)]);
    });
    return tiny;
  }

  /** Everything `results` gave, in order: `ok <id>@offset` for a line, `damaged <kind> <id>@offset+length` for a damaged one. */
  async function readAll(c: BatchesClient): Promise<string[]> {
    const seen: string[] = [];
    const onDamagedLine = (line: DamagedResultLine) => void seen.push(`damaged ${line.damage} ${line.customId ?? '?'}@${line.offset}+${line.length ?? '?'}`);
    for await (const entry of c.results('msgbatch_1', { onDamagedLine })) seen.push(`ok ${entry.line.custom_id}@${entry.offset}`);
    return seen;
  }

  const long = resultLine('d', 'x'.repeat(1000));
  const lines = [
    resultLine('a'),
    '{"custom_id":"b","result":{"type":"succeeded","message":{"id":"msg_b","content":[{"type":"te',
    '{"custom_id":"c","result":null}',
    long,
    '\u0000\u00ff garbage',
    '{"result":{"type":"expired"},"custom_id":"f"',
    resultLine('e'),
  ];
  const file = Buffer.from(lines.map((line) => `${line}\n`).join(''), 'latin1');
  const at = (i: number) => lines.slice(0, i).reduce((sum, line) => sum + Buffer.byteLength(line, 'latin1') + 1, 0);
  const size = (i: number) => Buffer.byteLength(lines[i]!, 'latin1') + 1;

  it('hands each unreadable line to onDamagedLine, in file order, with the custom_id its start shows, and goes on', async () => {
    const tiny = await resultsServer(file);
    expect(await readAll(client(tiny.url, { maxResultLineBytes: 500 }))).toEqual([
      `ok a@0`,
      `damaged not_json b@${at(1)}+${size(1)}`,
      `damaged not_result c@${at(2)}+${size(2)}`,
      `damaged too_long d@${at(3)}+?`,
      `damaged not_json ?@${at(4)}+${size(4)}`,
      // custom_id last: nothing at its start tells whose it is.
      `damaged not_json ?@${at(5)}+${size(5)}`,
      `ok e@${at(6)}`,
    ]);
    expect(tiny.requests.filter((r) => r.url.endsWith('/results'))).toHaveLength(1);
  });

  it('hands over the bytes received: a whole line, or a too-long line’s first bytes', async () => {
    const tiny = await resultsServer(file);
    const damaged: DamagedResultLine[] = [];
    for await (const _ of client(tiny.url, { maxResultLineBytes: 500 }).results('msgbatch_1', { onDamagedLine: (line) => void damaged.push(line) }));
    expect(damaged[0]!.raw.toString('latin1')).toBe(lines[1]);
    expect(damaged[2]!.raw.toString('latin1')).toBe(long.slice(0, 1024));
  });

  it('without onDamagedLine, ends the stream at the first unreadable line, as before', async () => {
    const tiny = await resultsServer(file);
    const seen: string[] = [];
    const error = await (async () => {
      for await (const entry of client(tiny.url).results('msgbatch_1')) seen.push(entry.line.custom_id);
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['a']);
    expect(error).toMatchObject({ name: 'ApiResponseInvalid', message: `results line at byte ${at(1)} is not valid JSON (${size(1) - 1} bytes)` });
  });

  it('reports a too-long line once when the stream is cut inside it, and resumes from its start', async () => {
    const cutAt = at(3) + 700;
    const tiny = await resultsServer(file, (res, rest, read) => {
      if (read > 1) return false;
      res.write(rest.subarray(0, cutAt), () => res.destroy());
      return true;
    });
    expect(await readAll(client(tiny.url, { maxResultLineBytes: 500 }))).toEqual([
      `ok a@0`,
      `damaged not_json b@${at(1)}+${size(1)}`,
      `damaged not_result c@${at(2)}+${size(2)}`,
      `damaged too_long d@${at(3)}+?`,
      `damaged not_json ?@${at(4)}+${size(4)}`,
      `damaged not_json ?@${at(5)}+${size(5)}`,
      `ok e@${at(6)}`,
    ]);
    expect(tiny.requests.filter((r) => r.url.endsWith('/results')).map((r) => r.headers.range)).toEqual([undefined, `bytes=${at(3)}-`]);
  });

  it('reads an unreadable last line without its \\n once more before taking it as damaged: a proxy may have ended the file early', async () => {
    const whole = Buffer.from(`${resultLine('a')}\n${resultLine('z')}\n`);
    const end = whole.length - 20;
    // The first read ends cleanly (chunked), 20 bytes short; the second is whole.
    const recovering = await resultsServer(whole, (res, rest, read) => {
      if (read > 1) return false;
      res.end(rest.subarray(0, end));
      return true;
    });
    expect(await readAll(client(recovering.url))).toEqual(['ok a@0', `ok z@${whole.indexOf('{"custom_id":"z"')}`]);
    expect(recovering.requests.filter((r) => r.url.endsWith('/results')).map((r) => r.headers.range)).toEqual([
      undefined,
      `bytes=${whole.indexOf('{"custom_id":"z"')}-`,
    ]);

    // A file that really ends so: read twice, then handed over as damaged.
    const short = whole.subarray(0, end);
    const ending = await resultsServer(short, (res, rest) => {
      res.end(rest);
      return true;
    });
    const z = whole.indexOf('{"custom_id":"z"');
    expect(await readAll(client(ending.url))).toEqual(['ok a@0', `damaged not_json z@${z}+${end - z}`]);
    expect(ending.requests.filter((r) => r.url.endsWith('/results'))).toHaveLength(2);
  });
});

describe('key scrubbing', () => {
  it('keeps the key out of an error whose server message echoes it', async () => {
    const tiny = await tinyServer((req, res) =>
      json(res, 401, {
        type: 'error',
        error: { type: 'authentication_error', message: `invalid x-api-key ${String(req.headers['x-api-key'])}` },
        request_id: 'req_1',
      }),
    );
    const error = (await client(tiny.url)
      .retrieve('msgbatch_1')
      .catch((e: unknown) => e)) as ApiAuthError;
    expect(error).toBeInstanceOf(ApiAuthError);
    expect(error.message).toBe('401 authentication_error: invalid x-api-key [redacted]');
    expect(error.type).toBe('authentication_error');
    for (const text of [error.message, error.stack ?? '', JSON.stringify(error), JSON.stringify(error.cause ?? null)]) {
      expect(text).not.toContain(KEY);
    }
  });
});

describe('unreadable answers', () => {
  it('reports a create answered 200 with a body that is not JSON as OutcomeUnknown (the batch was probably made)', async () => {
    const tiny = await tinyServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>gateway</html>');
    });
    const error = (await client(tiny.url)
      .create([{ custom_id: 'a', params: { model: 'm', max_tokens: 1, messages: [] } }])
      .catch((e: unknown) => e)) as OutcomeUnknown;
    expect(error).toBeInstanceOf(OutcomeUnknown);
    expect(error.cause).toMatchObject({ name: 'ApiResponseInvalid', status: 200 });
  });

  it('reports a retrieve answered 200 with a body that is not JSON as ApiResponseInvalid, not retried', async () => {
    const tiny = await tinyServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>gateway</html>');
    });
    await expect(client(tiny.url).retrieve('msgbatch_1')).rejects.toMatchObject({ name: 'ApiResponseInvalid' });
    expect(tiny.requests).toHaveLength(1);
  });
});

describe('timeouts', () => {
  it('retries a response that does not come within timeoutMs, then succeeds', async () => {
    let calls = 0;
    const tiny = await tinyServer((_req, res) => {
      calls += 1;
      if (calls === 1) return; // never answer the first request
      json(res, 200, endedBatch('msgbatch_1', null));
    });
    const delays: number[] = [];
    const c = client(tiny.url, { timeoutMs: 200, sleep: async (ms) => void delays.push(ms) });
    expect((await c.retrieve('msgbatch_1')).id).toBe('msgbatch_1');
    expect(calls).toBe(2);
    expect(delays).toEqual([500]);
  });

  it('turns a create that timed out after sending its body into OutcomeUnknown', async () => {
    const tiny = await tinyServer(() => {});
    const c = client(tiny.url, { timeoutMs: 200 });
    const error = (await c.create([{ custom_id: 'a', params: { model: 'm', max_tokens: 1, messages: [] } }]).catch((e: unknown) => e)) as OutcomeUnknown;
    expect(error).toBeInstanceOf(OutcomeUnknown);
    expect(error.requests).toBe(1);
    expect((error.cause as Error).name).toBe('HeadersTimeoutError');
    expect(tiny.requests).toHaveLength(1);
  });

  it('reports a refused connection as ApiRetryable after its retries', async () => {
    const tiny = await tinyServer(() => {});
    await closers.pop()?.();
    const delays: number[] = [];
    const error = await client(tiny.url, { maxRetries: 2, sleep: async (ms) => void delays.push(ms) })
      .retrieve('msgbatch_1')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiRetryable);
    expect((error as ApiRetryable).message).toMatch(/^retrieve: connection error: /);
    expect(delays).toEqual([500, 1000]);
  });
});
