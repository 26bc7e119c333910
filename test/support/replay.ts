/**
 * A tiny replay server: serves a recorded Message Batches conversation (requests and responses in
 * the API's wire format, every response header kept) over HTTP, so the real client and the real
 * pipeline talk to it as they would to the API. Not a mock of the client: bytes on a socket.
 *
 * - `sequence` mode: each request must be the next one recorded (method, path with its query);
 *   anything else is answered 599 and recorded as a mismatch.
 * - `routes` mode (a pipeline polls as often as it likes): each request gets the next recorded
 *   successful response of its method and path (the query aside); the last one repeats. Recorded
 *   errors are for sequence mode.
 *
 * As recording tools do when they replay, the recorded origin (https://api.anthropic.com) in
 * response bodies becomes this server's, and hop-by-hop headers (content-length,
 * transfer-encoding, connection) are the server's own. The create's request ids are the one thing
 * a replay must carry over: a results line names its request by the custom_id the create sent,
 * so the ids the recording's create sent are replaced, position by position, by those this create
 * sent (the pipeline sends `<nonce>-<line>` ids, fresh per create).
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedExchange {
  request: { method: string; path: string; headers: Record<string, string>; body?: unknown };
  response: { status: number; headers: Record<string, string>; body?: unknown; jsonl?: unknown[] };
}

export interface Recording {
  origin: string;
  exchanges: RecordedExchange[];
}

export interface ServedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export interface ReplayServer {
  url: string;
  /** Every request received, in order. */
  requests: ServedRequest[];
  /** Requests that matched nothing recorded (sequence mode: out of order). */
  mismatches: string[];
  stop(): Promise<void>;
}

const HOP_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive']);

export function loadRecording(file: string): Recording {
  return JSON.parse(readFileSync(file, 'utf8')) as Recording;
}

export async function startReplay(recording: Recording, mode: 'sequence' | 'routes'): Promise<ReplayServer> {
  const requests: ServedRequest[] = [];
  const mismatches: string[] = [];
  let next = 0;
  const served = new Map<string, number>();
  /** Recorded create ids → the ids this conversation's create sent. */
  const idMap = new Map<string, string>();
  let url = '';

  const pick = (method: string, path: string): RecordedExchange | undefined => {
    if (mode === 'sequence') {
      const exchange = recording.exchanges[next];
      if (!exchange || exchange.request.method !== method || exchange.request.path !== path) return undefined;
      next += 1;
      return exchange;
    }
    const route = `${method} ${withoutQuery(path)}`;
    const candidates = recording.exchanges.filter((e) => e.response.status < 400 && `${e.request.method} ${withoutQuery(e.request.path)}` === route);
    if (candidates.length === 0) return undefined;
    const count = served.get(route) ?? 0;
    served.set(route, count + 1);
    return candidates[Math.min(count, candidates.length - 1)];
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const method = req.method ?? '';
      const path = req.url ?? '';
      requests.push({ method, path, headers: req.headers, body });
      const exchange = pick(method, path);
      if (!exchange) {
        mismatches.push(`${method} ${path}`);
        res.writeHead(599, { 'content-type': 'text/plain' }).end(`not in the recording: ${method} ${path}`);
        return;
      }
      if (method === 'POST' && path === '/v1/messages/batches') mapCreateIds(exchange, body, idMap);
      const headers = Object.fromEntries(Object.entries(exchange.response.headers).filter(([name]) => !HOP_HEADERS.has(name)));
      const text =
        exchange.response.jsonl !== undefined
          ? exchange.response.jsonl.map((line) => `${JSON.stringify(line)}\n`).join('')
          : exchange.response.body === undefined
            ? ''
            : JSON.stringify(exchange.response.body);
      const payload = Buffer.from(replaceIds(text.split(recording.origin).join(url), idMap));
      res.writeHead(exchange.response.status, { ...headers, 'content-length': payload.length });
      res.end(payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    mismatches,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** In routes mode a list's query (limit, after_id…) varies with the caller: the path alone is matched. */
function withoutQuery(path: string): string {
  return path.split('?')[0]!;
}

function mapCreateIds(exchange: RecordedExchange, body: Buffer, idMap: Map<string, string>): void {
  const recorded = (exchange.request.body as { requests?: Array<{ custom_id: string }> } | undefined)?.requests ?? [];
  const sent = (JSON.parse(body.toString('utf8')) as { requests: Array<{ custom_id: string }> }).requests;
  recorded.forEach((request, i) => {
    const id = sent[i]?.custom_id;
    if (id !== undefined) idMap.set(request.custom_id, id);
  });
}

function replaceIds(text: string, idMap: Map<string, string>): string {
  let out = text;
  for (const [recorded, sent] of idMap) out = out.split(`"custom_id":"${recorded}"`).join(`"custom_id":"${sent}"`);
  return out;
}
