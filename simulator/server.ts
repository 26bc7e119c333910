/**
 * A local stand-in for the Anthropic Message Batches API on plain node:http: the real wire format
 * (docs/api-reference.md), a clock that can run faster than real time, and seeded faults.
 *
 *   const sim = await startSimulator({ timeScale: 3600 });
 *   const client = new Anthropic({ apiKey: 'any', baseURL: sim.url });
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { authenticate, checkVersion } from './access';
import { BatchStore } from './batch-store';
import { SimulatedClock } from './clock';
import { ENDPOINTS, type SimulatorState } from './endpoints';
import { ApiError, sendError, type Exchange } from './envelopes';
import { HttpFaults, batchFaultsFor } from './faults';
import { randomId } from './ids';
import type { BatchFaults, Endpoint, SimulatorHandle, SimulatorOptions } from './options';
import { route } from './routes';
import { KNOWN_MODELS } from '../shared/validation/models';

export type { SimulatorHandle, SimulatorOptions } from './options';

const DEFAULT_MAX_BODY_BYTES = 256_000_000;

function originOf(req: IncomingMessage, fallback: string): string {
  const host = req.headers.host;
  // Only a plain host[:port] is echoed back into results_url.
  return host !== undefined && /^[A-Za-z0-9.\-[\]:]+$/.test(host) ? `http://${host}` : fallback;
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const seed = options.seed ?? 1;
  const processingSeconds = options.processingSeconds ?? 60;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!(processingSeconds >= 0)) throw new RangeError(`processingSeconds must be >= 0, got ${processingSeconds}`);
  if (!(maxBodyBytes > 0)) throw new RangeError(`maxBodyBytes must be > 0, got ${maxBodyBytes}`);

  const clock = new SimulatedClock(options.timeScale ?? 1);
  const httpFaults = new HttpFaults(seed, options.httpFaults);
  let serverBatchFaults: BatchFaults | undefined = options.batchFaults;
  const state: SimulatorState = {
    store: new BatchStore({ seed, processingSeconds }),
    now: () => clock.now(),
    seed,
    maxBodyBytes,
    models: options.models ?? KNOWN_MODELS,
    batchFaults: (sequence) => batchFaultsFor(serverBatchFaults, options.batchFaultsBySequence, sequence),
    dropCreateResponses: options.dropCreateResponses ?? 0,
    batchesCreated: [],
    messagesAnswered: 0,
    requestsCreated: 0,
    calls: { create: 0, retrieve: 0, list: 0, cancel: 0, delete: 0, results: 0, messages: 0 },
  };
  let url = '';

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const exchange: Exchange = { res, requestId: randomId('req_'), now: state.now };
    try {
      const target = new URL(req.url ?? '/', 'http://simulator');
      const { endpoint, batchId } = route(req.method ?? 'GET', target.pathname);
      state.calls[endpoint] += 1;
      authenticate(req.headers, options.apiKeys);
      checkVersion(req.headers);
      const fault = httpFaults.next(endpoint);
      if (fault !== null) throw fault;
      const now = state.now();
      state.store.observe(now);
      await ENDPOINTS[endpoint](state, { req, exchange, batchId, query: target.searchParams, origin: originOf(req, url), now });
    } catch (error) {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      if (error instanceof ApiError) {
        sendError(exchange, error);
        return;
      }
      // A simulator bug: say so without echoing any request content.
      process.stderr.write(`batches simulator: ${error instanceof Error ? error.stack : String(error)}\n`);
      sendError(exchange, new ApiError(500, 'Internal server error'));
    }
  }

  const server = createServer((req, res) => void handle(req, res));
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  return {
    url,
    now: () => clock.now(),
    advance: (seconds) => clock.advance(seconds),
    setHttpFaults: (faults) => httpFaults.set(faults),
    setBatchFaults: (faults) => {
      serverBatchFaults = faults;
    },
    catchUpList: () => state.store.catchUpList(),
    dropCreateResponses: (count) => {
      state.dropCreateResponses = count;
    },
    stats: () => ({
      batchesCreated: [...state.batchesCreated],
      calls: { ...state.calls } as Record<Endpoint, number>,
      requestsCreated: state.requestsCreated,
    }),
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
