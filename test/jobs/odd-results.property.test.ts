/**
 * Nothing in a result's shape fails a job (issue #19): generated results files — API lines of any
 * JSON shape (odd messages, usages, models, error envelopes, unknown result types, results that
 * are not objects), lines cut short, lines past the client's limit, binary garbage, repeats,
 * strangers' lines, missing lines — go over HTTP through the real client into Collect, then
 * Finalize, against local S3 and DynamoDB. Every row ends once, as the line it got says, and the
 * job ends with its outputs. Generated shapes find what hand-written cases miss.
 *
 * Deterministic (a fixed seed) and bounded (RUNS jobs of ≤ 6 rows).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import type { BatchRequest, MessageBatch } from '../../shared/anthropic/types';
import { updateItem } from '../../shared/store/dynamo';
import { chunkSk, jobPk, type ChunkAttempt } from '../../shared/store/items';
import { collectResults } from '../../shared/jobs/collect-results';
import { finalizeJob, type ErrorRow, type JobSummary, type ResultRow } from '../../shared/jobs/finalize-job';
import { wireId } from '../../shared/jobs/wire-ids';
import { useLocalAws } from '../support/aws';
import { readChunkItem, readJsonl, readRow, readText, seedJob } from '../support/chunks';
import { pipelineConfig, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { request } from '../support/requests';

const SEED = 19;
const RUNS = 40;
/** The client's longest line in these runs: an `oversize` line is padded past it. */
const MAX_LINE_BYTES = 4096;
const NONCE = '0123456789abcdef';
const STRANGER = 'fedcba9876543210';

// ------------------------------------------------------------------------------------------------
// What a results file may hold

/** A token count as the API sends it, or anything else a field could hold. */
const tokenValue = fc.oneof(
  { weight: 4, arbitrary: fc.nat({ max: 100_000 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, -1, 1.5, '12', 1e300, Number.MAX_SAFE_INTEGER + 2, true, [], {}) },
  { weight: 1, arbitrary: fc.jsonValue() },
);

/** A usage: the API's, one with odd fields, or any JSON value. */
const usage = fc.oneof(
  { weight: 3, arbitrary: fc.record({ input_tokens: fc.nat({ max: 100_000 }), output_tokens: fc.nat({ max: 100_000 }) }) },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        input_tokens: tokenValue,
        output_tokens: tokenValue,
        cache_creation_input_tokens: tokenValue,
        cache_read_input_tokens: tokenValue,
        cache_creation: fc.oneof(
          fc.constant(null),
          fc.record({ ephemeral_5m_input_tokens: tokenValue, ephemeral_1h_input_tokens: tokenValue }, { requiredKeys: [] }),
          fc.jsonValue(),
        ),
        inference_geo: fc.oneof(fc.constantFrom<unknown>('us', 'global', null), fc.jsonValue()),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue() },
);

const model = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('claude-haiku-4-5', 'claude-sonnet-4-5-20250929', 'claude-opus-4-1') },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('claude-nonesuch-9', '__proto__', 'constructor', 'toString', '', null, 7) },
  { weight: 1, arbitrary: fc.jsonValue() },
);

/** A succeeded result's message: the API's shape (some members missing), null, or any JSON value. */
const message = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record(
      {
        id: fc.string(),
        type: fc.constant('message'),
        role: fc.constant('assistant'),
        model,
        content: fc.oneof(fc.constant([{ type: 'text', text: 'ok' }]), fc.jsonValue()),
        stop_reason: fc.constantFrom('end_turn', 'max_tokens', null),
        stop_sequence: fc.constant(null),
        usage,
      },
      { requiredKeys: ['id', 'type', 'role', 'content'] },
    ),
  },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.jsonValue() },
);

const errorEnvelope = fc.oneof(
  fc.record({
    type: fc.constant('error'),
    error: fc.record({ type: fc.constantFrom('invalid_request_error', 'overloaded_error', 'api_error', 'billing_error'), message: fc.string() }),
    request_id: fc.constant(null),
  }),
  fc.jsonValue(),
);

/** A line's `result`: each type the API has, one it does not, an object of any shape, or not an object at all. */
const result = fc.oneof(
  { weight: 6, arbitrary: fc.record({ type: fc.constant('succeeded'), message }, { requiredKeys: ['type'] }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('errored'), error: errorEnvelope }, { requiredKeys: ['type'] }) },
  { weight: 1, arbitrary: fc.constantFrom<Record<string, unknown>>({ type: 'expired' }, { type: 'canceled' }) },
  { weight: 1, arbitrary: fc.record({ type: fc.jsonValue() }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 3 }) },
  { weight: 1, arbitrary: fc.jsonValue().filter((value) => typeof value !== 'object' || value === null || Array.isArray(value)) },
);

/** What the batch sends for one row. */
const rowLine = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('intact' as const), result, idFirst: fc.boolean(), extra: fc.option(fc.jsonValue()) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('twice' as const), result }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), result, at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('oversize' as const), result }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ maxLength: 120 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('missing' as const) }) },
);
type RowLine = typeof rowLine extends fc.Arbitrary<infer T> ? T : never;

/** Lines that are no row's: another create's, past the attempt's requests, any JSON, garbage, blank. */
const strangerLine = fc.oneof(
  fc.record({ custom_id: fc.constant(`${STRANGER}-0`), result: fc.constant({ type: 'expired' }) }).map((line) => Buffer.from(JSON.stringify(line))),
  fc.constant(Buffer.from(JSON.stringify({ custom_id: `${NONCE}-zz`, result: { type: 'canceled' } }))),
  fc.jsonValue().map((value) => Buffer.from(JSON.stringify(value) ?? 'null')),
  fc.uint8Array({ maxLength: 60 }).map(oneLine),
  fc.constant(Buffer.from('   ')),
);

const job = fc.record({
  rows: fc.array(rowLine, { minLength: 1, maxLength: 6 }),
  strangers: fc.array(strangerLine, { maxLength: 2 }),
  order: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
  lastTerminated: fc.boolean(),
});

/** Bytes without a newline (a line's own bytes). */
function oneLine(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.map((b) => (b === 0x0a ? 0x20 : b)));
}

function lineText(wire: string, value: unknown, idFirst = true, extra?: unknown): string {
  const text = idFirst ? JSON.stringify({ custom_id: wire, result: value }) : JSON.stringify({ result: value, custom_id: wire });
  return extra === undefined || extra === null ? text : `${text.slice(0, -1)},"extra":${JSON.stringify(extra)}}`;
}

/** The lines the batch serves for each row (none for a missing one). */
function linesOf(row: RowLine, wire: string): Buffer[] {
  switch (row.kind) {
    case 'intact':
      return [Buffer.from(lineText(wire, row.result, row.idFirst, row.extra))];
    case 'twice':
      return [Buffer.from(lineText(wire, row.result)), Buffer.from(lineText(wire, row.result))];
    case 'cut': {
      const text = Buffer.from(lineText(wire, row.result));
      return [text.subarray(0, Math.floor(row.at * text.length))];
    }
    case 'oversize':
      return [Buffer.from(lineText(wire, row.result) + ' '.repeat(MAX_LINE_BYTES))];
    case 'garbage':
      return [oneLine(row.bytes)];
    case 'missing':
      return [];
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** How a row must end, from the line it got: its status and, for errored, the error types allowed. */
function expectedEnd(row: RowLine): { status: ResultRow['status']; errorTypes?: string[] } {
  switch (row.kind) {
    case 'intact':
    case 'twice': {
      const value = row.result as unknown;
      if (!isObject(value)) return { status: 'errored', errorTypes: ['result_unreadable'] };
      if (value.type === 'succeeded' || value.type === 'expired' || value.type === 'canceled') return { status: value.type };
      if (value.type === 'errored') return { status: 'errored' };
      return {
        status: 'errored',
        errorTypes: [`unknown_result_${typeof value.type === 'string' ? value.type : (JSON.stringify(value.type) ?? 'undefined')}`.slice(0, 115)],
      };
    }
    case 'oversize':
      return { status: 'errored', errorTypes: ['result_unreadable'] };
    case 'cut':
      // Readable only when the cut leaves the custom_id whole.
      return { status: 'errored', errorTypes: ['result_unreadable', 'missing_result'] };
    case 'garbage':
    case 'missing':
      return { status: 'errored', errorTypes: ['missing_result'] };
  }
}

// ------------------------------------------------------------------------------------------------

describe('any results file, through Collect and Finalize', () => {
  const aws = useLocalAws();
  const files = new Map<string, Buffer>();
  let server: Server;
  let api: BatchesClient;
  let recorder: RecordingEndpoint;

  beforeAll(async () => {
    // The Batches API's retrieve and results for the batches of `files`.
    server = createServer((req, res) => {
      const match = /^\/v1\/messages\/batches\/([^/]+)(\/results)?$/.exec(req.url ?? '');
      const file = match && files.get(match[1]!);
      if (!match || !file) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: 'no such batch' }, request_id: null }));
        return;
      }
      if (match[2]) {
        res.writeHead(200, { 'content-type': 'application/binary' });
        res.end(file);
        return;
      }
      const origin = `http://${req.headers.host}`;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(endedBatch(match[1]!, `${origin}/v1/messages/batches/${match[1]}/results`)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    api = new BatchesClient({ apiKey: 'sk-property', baseUrl, maxRetries: 0, maxResultLineBytes: MAX_LINE_BYTES, sleep: async () => undefined });
    recorder = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await api?.close();
    await recorder?.stop();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  });

  let runs = 0;

  it('ends every row once, as its line says, and the job with its outputs', async () => {
    const config = pipelineConfig(aws, { maxAttempts: 1 });
    await fc.assert(
      fc.asyncProperty(job, async ({ rows, strangers, order, lastTerminated }) => {
        runs += 1;
        const requests: BatchRequest[] = rows.map((_, i) => request(`row-${i}`));
        const seeded = await seedJob(aws, { chunks: [requests] });
        const batchId = `msgbatch_property_${runs}`;

        // The batch's results file: each row's lines and the strangers', in a generated order.
        const lines = [...rows.flatMap((row, i) => linesOf(row, wireId(NONCE, i))), ...strangers];
        const shuffled = lines.map((line, i) => ({ line, key: order[i % order.length]! * 64 + i })).sort((a, b) => a.key - b.key);
        const body = Buffer.concat(shuffled.flatMap(({ line }, i) => (i < shuffled.length - 1 || lastTerminated ? [line, Buffer.from('\n')] : [line])));
        files.set(batchId, body);

        const chunk = await readChunkItem(aws, seeded.jobId, 0);
        const attempt: ChunkAttempt = {
          ...chunk.attempts[0]!,
          batchId,
          nonce: NONCE,
          createdAt: '2030-01-01T00:00:00.000Z',
          intentAt: '2030-01-01T00:00:00.000Z',
        };
        await updateItem(aws.dynamo, aws.table, { pk: jobPk(seeded.jobId), sk: chunkSk(0) }, { set: { attempts: [attempt], status: 'collecting' } });

        const collected = await collectResults({ jobId: seeded.jobId, chunk: 0, attempt: 1, batchId }, { s3: aws.s3, dynamo: aws.dynamo, api, config });
        expect(collected.retry).toBe(false);
        const finalized = await finalizeJob(
          { jobId: seeded.jobId },
          {
            s3: aws.s3,
            dynamo: aws.dynamo,
            config,
            notify: { clients: { events: recorder.events, sns: recorder.sns }, config: { topicArn: undefined, eventBus: 'default' } },
          },
        );

        // The outputs: one row per input row, in order, each as its line says.
        expect(finalized.status).toBe('succeeded');
        const results = await readJsonl<ResultRow>(aws, seeded.keys.results);
        expect(results.map((row) => row.custom_id)).toEqual(requests.map((r) => r.custom_id));
        for (const [i, row] of results.entries()) {
          const expected = expectedEnd(rows[i]!);
          expect({ row: i, status: row.status }).toEqual({ row: i, status: expected.status });
          if (expected.errorTypes) expect(expected.errorTypes).toContain(row.error?.type);
          if (row.status === 'succeeded') {
            const line = rows[i] as Extract<RowLine, { kind: 'intact' | 'twice' }>;
            // It keeps what it has: its message as sent (or none), and a cost only with usage it could price.
            expect(row.message).toEqual((line.result as { message?: unknown }).message);
            if (row.cost_usd !== null) expect(Number.isFinite(row.cost_usd) && row.cost_usd >= 0 && row.usage !== null).toBe(true);
          } else {
            expect([row.usage, row.cost_usd]).toEqual([null, null]);
          }
        }
        const errors = await readJsonl<ErrorRow>(aws, seeded.keys.errors);
        expect(errors.map((error) => error.custom_id)).toEqual(results.filter((row) => row.status !== 'succeeded').map((row) => row.custom_id));

        // The summary adds up, its money and tokens are numbers, and every succeeded row without a cost has its reason there.
        const summary = JSON.parse((await readText(aws, seeded.keys.summary))!) as JobSummary;
        const { succeeded, errored, expired, canceled } = summary.counts;
        const count = (status: string) => results.filter((row) => row.status === status).length;
        expect({ succeeded, errored, expired, canceled }).toEqual({
          succeeded: count('succeeded'),
          errored: count('errored'),
          expired: count('expired'),
          canceled: count('canceled'),
        });
        for (const value of [summary.cost.batchUsd, summary.cost.standardUsd, summary.cost.savedUsd, ...Object.values(summary.tokens)]) {
          expect(Number.isFinite(value) && value >= 0).toBe(true);
        }
        const unpriced = Object.values(summary.cost.unpricedRows ?? {}).reduce((sum, n) => sum + n, 0);
        expect(unpriced).toBe(results.filter((row) => row.status === 'succeeded' && row.cost_usd === null).length);

        // Collect decided every row as Finalize did.
        expect((await readChunkItem(aws, seeded.jobId, 0)).attempts[0]!.counts).toEqual({ succeeded, errored, expired, canceled });
        for (const row of results) {
          const record = await readRow(aws, seeded.jobId, row.custom_id);
          expect({ id: row.custom_id, status: record?.status, errorType: record?.errorType }).toEqual({
            id: row.custom_id,
            status: row.status,
            errorType: row.error?.type,
          });
        }
        files.delete(batchId);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  }, 60_000);
});

function endedBatch(id: string, resultsUrl: string): MessageBatch {
  return {
    id,
    type: 'message_batch',
    processing_status: 'ended',
    request_counts: { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
    ended_at: '2030-01-01T00:05:00.000Z',
    created_at: '2030-01-01T00:00:00.000Z',
    expires_at: '2030-01-02T00:00:00.000Z',
    archived_at: null,
    cancel_initiated_at: null,
    results_url: resultsUrl,
  };
}
