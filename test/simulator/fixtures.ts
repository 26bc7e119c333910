/** The one fixture builder for the simulator's tests: requests, simulators that stop themselves, raw HTTP. */
import { afterEach } from 'vitest';
import type { BatchRequest, BatchResultLine, MessageBatch } from '../../shared/anthropic/types';
import { startSimulator, type SimulatorHandle, type SimulatorOptions } from '../../simulator/server';

export const API_KEY = 'sk-ant-test-key';

/** A timeScale that all but stops the clock: tests move time with advance() only. */
export const FROZEN = 1e-9;

/** Starts simulators (frozen clock unless told otherwise) and stops them after each test. */
export function useSimulators(): { start(options?: SimulatorOptions): Promise<SimulatorHandle> } {
  const running: SimulatorHandle[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((sim) => sim.stop()));
  });
  return {
    async start(options = {}) {
      const sim = await startSimulator({ timeScale: FROZEN, ...options });
      running.push(sim);
      return sim;
    },
  };
}

/** A valid request; `params` fields given override the defaults (undefined removes one). */
export function request(customId: string, params: Record<string, unknown> = {}): BatchRequest {
  const merged: Record<string, unknown> = {
    model: 'claude-sonnet-5',
    max_tokens: 1024,
    messages: [{ role: 'user', content: `Question number ${customId}: what is batching?` }],
    ...params,
  };
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  return { custom_id: customId, params: merged as BatchRequest['params'] };
}

export function requests(count: number, prefix = 'row'): BatchRequest[] {
  return Array.from({ length: count }, (_, i) => request(`${prefix}-${i}`));
}

export interface RawResponse {
  status: number;
  headers: Headers;
  body: Buffer;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: any;
}

export interface RawOptions {
  body?: unknown;
  /** Headers to add; a header set to undefined is not sent (e.g. to drop anthropic-version). */
  headers?: Record<string, string | undefined>;
}

/** A request in the 0.x SDK's style: `x-api-key` and `anthropic-version: 2023-06-01`. */
export async function raw(sim: SimulatorHandle, method: string, path: string, options: RawOptions = {}): Promise<RawResponse> {
  const headers: Record<string, string | undefined> = {
    'x-api-key': API_KEY,
    'anthropic-version': '2023-06-01',
    ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...options.headers,
  };
  const sent = Object.fromEntries(Object.entries(headers).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const body =
    options.body === undefined ? undefined : typeof options.body === 'string' || Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body);
  const response = await fetch(`${sim.url}${path}`, { method, headers: sent, body });
  const bytes = Buffer.from(await response.arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, body: bytes, json };
}

export async function createBatch(sim: SimulatorHandle, batch: BatchRequest[]): Promise<MessageBatch> {
  const response = await raw(sim, 'POST', '/v1/messages/batches', { body: { requests: batch } });
  if (response.status !== 200) throw new Error(`create answered ${response.status}: ${response.body.toString()}`);
  return response.json as MessageBatch;
}

export async function retrieveBatch(sim: SimulatorHandle, id: string): Promise<MessageBatch> {
  const response = await raw(sim, 'GET', `/v1/messages/batches/${id}`);
  if (response.status !== 200) throw new Error(`retrieve answered ${response.status}: ${response.body.toString()}`);
  return response.json as MessageBatch;
}

/** The results file's bytes, read the way the SDK asks for it. */
export async function resultsBytes(sim: SimulatorHandle, id: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return raw(sim, 'GET', `/v1/messages/batches/${id}/results`, { headers: { accept: 'application/binary', ...headers } });
}

export function parseLines(body: Buffer): BatchResultLine[] {
  const text = body.toString('utf8');
  if (!text.endsWith('\n')) throw new Error('results file does not end with a newline');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as BatchResultLine);
}

/** Creates a batch, lets it end, and returns its results lines keyed by custom_id. */
/** Creates a batch, moves the clock `advanceSeconds` on (default: past its expiry) and reads its results. */
export async function runBatch(sim: SimulatorHandle, batch: BatchRequest[], advanceSeconds = 24 * 3600): Promise<Map<string, BatchResultLine>> {
  const created = await createBatch(sim, batch);
  sim.advance(advanceSeconds);
  const response = await resultsBytes(sim, created.id);
  if (response.status !== 200) throw new Error(`results answered ${response.status}: ${response.body.toString()}`);
  return new Map(parseLines(response.body).map((line) => [line.custom_id, line]));
}

export const RFC3339_MICROS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
