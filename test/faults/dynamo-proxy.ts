/**
 * A loopback HTTP proxy in front of dynalite that injects DynamoDB's own failure modes into the
 * handlers' real SDK clients: BatchWriteItem answering with UnprocessedItems, throttling
 * (ProvisionedThroughputExceededException), and an outage (500 InternalServerError on every call).
 *
 * The handlers build their DynamoDB clients at import, but the SDK reads AWS_ENDPOINT_URL_DYNAMODB
 * on a client's first request; pointing that variable here after the local stack has started and
 * before any job runs puts this proxy between every handler and dynalite. The test's own client
 * (stack.dynamo) names its endpoint and keeps talking to dynalite directly.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';

type WriteRequests = Record<string, unknown[]>;

export interface DynamoFaults {
  /** The next this-many BatchWriteItem calls are answered with all but `keep` of their items unprocessed. */
  unprocessedCalls?: number;
  /** Items of a faulted BatchWriteItem that are written (default 1: DynamoDB makes some progress). */
  keep?: number;
  /** The next this-many BatchWriteItem calls are throttled (400 ProvisionedThroughputExceededException). */
  throttledCalls?: number;
  /** After this many BatchWriteItem items have been written, every call fails with 500 until `outage` is cleared. */
  outageAfterItems?: number;
  /** Every call fails with 500 InternalServerError while true. */
  outage?: boolean;
}

export interface DynamoProxyStats {
  calls: Record<string, number>;
  /** BatchWriteItem items forwarded to dynalite and written. */
  itemsWritten: number;
  /** Items handed back as UnprocessedItems. */
  itemsUnprocessed: number;
  throttled: number;
  /** Calls answered 500 by an outage. */
  failed: number;
}

export interface DynamoProxy {
  url: string;
  /** Replaces the faults in force (counts start afresh). */
  setFaults(faults: DynamoFaults): void;
  stats(): DynamoProxyStats;
  stop(): Promise<void>;
}

export async function startDynamoProxy(target: string): Promise<DynamoProxy> {
  const upstream = new URL(target);
  let faults: DynamoFaults = {};
  let writtenSinceFaults = 0;
  const stats: DynamoProxyStats = { calls: {}, itemsWritten: 0, itemsUnprocessed: 0, throttled: 0, failed: 0 };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readAll(req);
    const operation =
      String(req.headers['x-amz-target'] ?? '')
        .split('.')
        .pop() ?? '';
    stats.calls[operation] = (stats.calls[operation] ?? 0) + 1;
    if (faults.outage || (faults.outageAfterItems !== undefined && writtenSinceFaults >= faults.outageAfterItems)) {
      faults.outage = true;
      stats.failed += 1;
      return reply(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: 'Internal server error (injected)' });
    }
    if (operation !== 'BatchWriteItem') return forward(req, body, res);

    if ((faults.throttledCalls ?? 0) > 0) {
      faults.throttledCalls! -= 1;
      stats.throttled += 1;
      return reply(res, 400, {
        __type: 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException',
        message: 'The level of configured provisioned throughput for the table was exceeded (injected)',
      });
    }
    const parsed = JSON.parse(body.toString('utf8')) as { RequestItems: WriteRequests };
    let forwarded = parsed.RequestItems;
    let unprocessed: WriteRequests = {};
    if ((faults.unprocessedCalls ?? 0) > 0) {
      faults.unprocessedCalls! -= 1;
      ({ forwarded, unprocessed } = split(parsed.RequestItems, faults.keep ?? 1));
    }
    if (faults.outageAfterItems !== undefined) {
      // Only as many items as the outage leaves room for are written; the rest of the call fails.
      const room = faults.outageAfterItems - writtenSinceFaults;
      if (count(forwarded) > room) {
        ({ forwarded } = split(forwarded, room));
        if (count(forwarded) === 0) {
          faults.outage = true;
          stats.failed += 1;
          return reply(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: 'Internal server error (injected)' });
        }
      }
    }
    const written = count(forwarded);
    // Reserved before the upstream answers: calls in flight together must not share the room left.
    writtenSinceFaults += written;
    const answer =
      written === 0
        ? { status: 200, json: { UnprocessedItems: {} } }
        : await send(upstream, req, Buffer.from(JSON.stringify({ ...parsed, RequestItems: forwarded })));
    if (answer.status !== 200) {
      writtenSinceFaults -= written;
      return reply(res, answer.status, answer.json);
    }
    const upstreamUnprocessed = ((answer.json as { UnprocessedItems?: WriteRequests }).UnprocessedItems ?? {}) as WriteRequests;
    const merged = merge(unprocessed, upstreamUnprocessed);
    const writtenNow = written - count(upstreamUnprocessed);
    stats.itemsWritten += writtenNow;
    writtenSinceFaults -= written - writtenNow;
    stats.itemsUnprocessed += count(unprocessed);
    return reply(res, 200, { ...(answer.json as object), UnprocessedItems: merged });
  }

  function forward(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const out = httpRequest({ hostname: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 500, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => res.destroy());
    out.end(body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setFaults(next) {
      faults = { ...next };
      writtenSinceFaults = 0;
    },
    stats: () => structuredClone(stats),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const count = (items: WriteRequests) => Object.values(items).reduce((sum, list) => sum + list.length, 0);

/** The first `keep` items (across tables) go ahead; the rest come back unprocessed. */
function split(items: WriteRequests, keep: number): { forwarded: WriteRequests; unprocessed: WriteRequests } {
  const forwarded: WriteRequests = {};
  const unprocessed: WriteRequests = {};
  let left = Math.max(0, keep);
  for (const [table, list] of Object.entries(items)) {
    const take = list.slice(0, left);
    left -= take.length;
    if (take.length > 0) forwarded[table] = take;
    if (list.length > take.length) unprocessed[table] = list.slice(take.length);
  }
  return { forwarded, unprocessed };
}

function merge(a: WriteRequests, b: WriteRequests): WriteRequests {
  const out: WriteRequests = { ...a };
  for (const [table, list] of Object.entries(b)) out[table] = [...(out[table] ?? []), ...list];
  return out;
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

function send(upstream: URL, req: IncomingMessage, body: Buffer): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, 'content-length': String(body.length) };
    const out = httpRequest({ hostname: upstream.hostname, port: upstream.port, path: req.url, method: 'POST', headers }, async (answer) => {
      try {
        const text = (await readAll(answer)).toString('utf8');
        resolve({ status: answer.statusCode ?? 500, json: text === '' ? {} : JSON.parse(text) });
      } catch (error) {
        reject(error);
      }
    });
    out.on('error', reject);
    out.end(body);
  });
}

function reply(res: ServerResponse, status: number, json: unknown): void {
  const text = JSON.stringify(json);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.0',
    'content-length': Buffer.byteLength(text),
    // The SDK checks DynamoDB's response checksum when the header is present.
    'x-amz-crc32': String(crc32(text)),
    ...(status === 200
      ? {}
      : {
          'x-amzn-ErrorType': String((json as { __type?: string }).__type ?? '')
            .split('#')
            .pop(),
        }),
  });
  res.end(text);
}
