/**
 * The wire format over raw HTTP, in the 0.x SDK's header style (`x-api-key`, `anthropic-version:
 * 2023-06-01`): headers, envelopes, auth, versions, list paging, body limits and create validation.
 */
import { request as httpRequest } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { MessageBatch } from '../../shared/anthropic/types';
import type { SimulatorHandle } from '../../simulator/server';
import { API_KEY, createBatch, raw, request, requests, useSimulators } from './fixtures';

const sims = useSimulators();
const BATCHES = '/v1/messages/batches';

function expectEnvelope(response: { status: number; headers: Headers; json: any }, status: number, type: string): void {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toBe('application/json');
  expect(response.json).toEqual({
    type: 'error',
    error: { type, message: expect.any(String) },
    request_id: response.headers.get('request-id'),
  });
}

describe('headers and envelopes', () => {
  it('serves all six endpoints to the 0.x header style, each JSON answer with request-id and Content-Type', async () => {
    const sim = await sims.start();
    const created = await raw(sim, 'POST', BATCHES, { body: { requests: [request('a')] } });
    const id = (created.json as MessageBatch).id;
    const retrieved = await raw(sim, 'GET', `${BATCHES}/${id}`);
    const listed = await raw(sim, 'GET', `${BATCHES}?limit=5`);
    const canceled = await raw(sim, 'POST', `${BATCHES}/${id}/cancel`);
    sim.advance(10);
    const results = await raw(sim, 'GET', `${BATCHES}/${id}/results`);
    const deleted = await raw(sim, 'DELETE', `${BATCHES}/${id}`);

    for (const response of [created, retrieved, listed, canceled, deleted]) {
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(response.headers.get('request-id')).toMatch(/^req_01[0-9A-Za-z]{22}$/);
    }
    expect(results.status).toBe(200);
    expect(results.headers.get('content-type')).toBe('application/x-jsonl');
    expect(results.headers.get('request-id')).toMatch(/^req_/);
    expect(deleted.json).toEqual({ id, type: 'message_batch_deleted' });
    expect(sim.stats().calls).toEqual({ create: 1, retrieve: 1, list: 1, cancel: 1, delete: 1, results: 1, messages: 0 });
  });

  it('dates every response with the simulated clock', async () => {
    const sim = await sims.start();
    sim.advance(10 * 24 * 3600);

    const ok = await raw(sim, 'GET', BATCHES);
    const error = await raw(sim, 'GET', `${BATCHES}/msgbatch_01none`);

    for (const response of [ok, error]) {
      expect(response.headers.get('date')).toBe(new Date(Math.floor(sim.now())).toUTCString());
    }
  });

  it('accepts Authorization: Bearer with anthropic-version 2026-10-21', async () => {
    const sim = await sims.start();
    const response = await raw(sim, 'GET', BATCHES, {
      headers: { 'x-api-key': undefined, authorization: `Bearer ${API_KEY}`, 'anthropic-version': '2026-10-21' },
    });
    expect(response.status).toBe(200);
  });

  it('answers a missing or unknown anthropic-version with 400', async () => {
    const sim = await sims.start();
    expectEnvelope(await raw(sim, 'GET', BATCHES, { headers: { 'anthropic-version': undefined } }), 400, 'invalid_request_error');
    expectEnvelope(await raw(sim, 'GET', BATCHES, { headers: { 'anthropic-version': '2020-01-01' } }), 400, 'invalid_request_error');
  });

  it('answers a missing key, or a key not in apiKeys, with 401 authentication_error', async () => {
    const sim = await sims.start({ apiKeys: ['sk-good'] });
    expectEnvelope(await raw(sim, 'GET', BATCHES, { headers: { 'x-api-key': undefined } }), 401, 'authentication_error');
    expectEnvelope(await raw(sim, 'GET', BATCHES), 401, 'authentication_error');
    expect((await raw(sim, 'GET', BATCHES, { headers: { 'x-api-key': 'sk-good' } })).status).toBe(200);
    expect((await raw(sim, 'GET', BATCHES, { headers: { 'x-api-key': undefined, authorization: 'Bearer sk-good' } })).status).toBe(200);
  });

  it('tolerates ?beta=true, an unknown anthropic-beta, and a cancel with no body or content type', async () => {
    const sim = await sims.start();
    const created = await raw(sim, 'POST', `${BATCHES}?beta=true`, {
      body: { requests: [request('a')] },
      headers: { 'anthropic-beta': 'message-batches-2024-09-24,something-new-2099-01-01' },
    });
    const id = (created.json as MessageBatch).id;
    const canceled = await raw(sim, 'POST', `${BATCHES}/${id}/cancel?beta=true`);

    expect(created.status).toBe(200);
    expect(canceled.status).toBe(200);
    expect((canceled.json as MessageBatch).processing_status).toBe('canceling');
  });

  it('answers an unknown path with 404 not_found_error and a wrong method with 405', async () => {
    const sim = await sims.start();
    expectEnvelope(await raw(sim, 'GET', '/v1/models'), 404, 'not_found_error');
    expectEnvelope(await raw(sim, 'PUT', BATCHES), 405, 'invalid_request_error');
    expectEnvelope(await raw(sim, 'GET', '/v1/messages'), 405, 'invalid_request_error');
  });
});

describe('list', () => {
  async function fiveBatches(sim: SimulatorHandle): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push((await createBatch(sim, [request(`r${i}`)])).id);
    return ids.reverse(); // newest first
  }

  it('pages newest first with after_id, and back towards newer ones with before_id', async () => {
    const sim = await sims.start();
    const [e, d, c, b, a] = await fiveBatches(sim);

    const first = await raw(sim, 'GET', `${BATCHES}?limit=2`);
    const second = await raw(sim, 'GET', `${BATCHES}?limit=2&after_id=${d}`);
    const last = await raw(sim, 'GET', `${BATCHES}?limit=2&after_id=${b}`);
    const back = await raw(sim, 'GET', `${BATCHES}?limit=2&before_id=${b}`);
    const top = await raw(sim, 'GET', `${BATCHES}?limit=2&before_id=${d}`);
    const ids = (page: { json: any }) => (page.json.data as MessageBatch[]).map((batch) => batch.id);

    expect({ ...first.json, data: ids(first) }).toEqual({ data: [e, d], has_more: true, first_id: e, last_id: d });
    expect({ ...second.json, data: ids(second) }).toEqual({ data: [c, b], has_more: true, first_id: c, last_id: b });
    expect({ ...last.json, data: ids(last) }).toEqual({ data: [a], has_more: false, first_id: a, last_id: a });
    expect({ ...back.json, data: ids(back) }).toEqual({ data: [d, c], has_more: true, first_id: d, last_id: c });
    expect({ ...top.json, data: ids(top) }).toEqual({ data: [e], has_more: false, first_id: e, last_id: e });
  });

  it('defaults to 20 and answers an empty list with null ids', async () => {
    const sim = await sims.start();
    expect((await raw(sim, 'GET', BATCHES)).json).toEqual({ data: [], has_more: false, first_id: null, last_id: null });
    for (let i = 0; i < 21; i += 1) await createBatch(sim, [request('a')]);
    const page = await raw(sim, 'GET', BATCHES);
    expect(page.json.data).toHaveLength(20);
    expect(page.json.has_more).toBe(true);
  });

  it('rejects both cursors, an unknown cursor, and a limit outside 1–1000', async () => {
    const sim = await sims.start();
    const [newest, older] = await fiveBatches(sim);
    expectEnvelope(await raw(sim, 'GET', `${BATCHES}?after_id=${older}&before_id=${newest}`), 400, 'invalid_request_error');
    expectEnvelope(await raw(sim, 'GET', `${BATCHES}?after_id=msgbatch_01nothere`), 404, 'not_found_error');
    for (const limit of ['0', '1001', 'ten', '2.5']) {
      expectEnvelope(await raw(sim, 'GET', `${BATCHES}?limit=${limit}`), 400, 'invalid_request_error');
    }
    expect((await raw(sim, 'GET', `${BATCHES}?limit=1000`)).status).toBe(200);
  });
});

describe('body limit', () => {
  it('answers 413 request_too_large above maxBodyBytes and creates nothing', async () => {
    const sim = await sims.start({ maxBodyBytes: 2000 });
    const body = { requests: requests(40) };
    expect(JSON.stringify(body).length).toBeGreaterThan(2000);

    const response = await raw(sim, 'POST', BATCHES, { body });

    expectEnvelope(response, 413, 'request_too_large');
    expect(sim.stats().batchesCreated).toEqual([]);
    expect((await raw(sim, 'POST', BATCHES, { body: { requests: requests(5) } })).status).toBe(200);
  });

  it('stops reading a chunked body once it passes the limit, and the client still gets the 413', async () => {
    const sim = await sims.start({ maxBodyBytes: 64 * 1024 });
    const { port } = new URL(sim.url);
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    // A body far larger than the limit, sent without Content-Length, slowly enough to still be sending.
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ port, method: 'POST', path: BATCHES, headers: { 'x-api-key': API_KEY, 'anthropic-version': '2023-06-01' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{"requests":[');
      let sent = 0;
      const pump = (): void => {
        while (sent < 256 && req.write(chunk)) sent += 1;
        if (sent < 256) req.once('drain', pump);
        else req.end(']}');
      };
      pump();
    });
    expect(status).toBe(413);
  });
});

describe('create validation', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['a body that is not JSON', '{"requests": [', /not valid JSON/],
    ['a body with trailing garbage', '{"requests": [] } x', /not valid JSON/],
    ['a body that is not an object', '[1, 2]', /not valid JSON: the body must be a JSON object/],
    ['no requests', {}, /^requests: Field required$/],
    ['requests that is not a list', { requests: {} }, /^requests: Input should be a valid list$/],
    ['an empty requests list', { requests: [] }, /^requests: List should have at least 1 item/],
    ['an unknown top-level field', { requests: [request('a')], priority: 1 }, /^priority: Extra inputs are not permitted$/],
    ['a custom_id with a colon', { requests: [request('a:b')] }, /^requests\.0\.custom_id: "a:b" should match pattern/],
    ['a custom_id of 65 characters', { requests: [request('x'.repeat(65))] }, /^requests\.0\.custom_id: .* should match pattern/],
    ['a missing custom_id', { requests: [{ params: request('a').params }] }, /^requests\.0\.custom_id: Field required$/],
    ['a request without params', { requests: [{ custom_id: 'a' }] }, /^requests\.0\.params: Field required$/],
    ['a request that is not an object', { requests: ['a'] }, /^requests\.0: Input should be an object$/],
    ['a duplicate custom_id', { requests: [request('a'), request('b'), request('a')] }, /^requests\.2\.custom_id: duplicate custom_id "a"/],
  ];

  it.each(cases)('answers %s with 400 invalid_request_error', async (_name, body, message) => {
    const sim = await sims.start();
    const response = await raw(sim, 'POST', BATCHES, { body });
    expectEnvelope(response, 400, 'invalid_request_error');
    expect(response.json.error.message).toMatch(message);
    expect(sim.stats().batchesCreated).toEqual([]);
  });

  it('answers more than 100,000 requests with 400', async () => {
    const sim = await sims.start();
    const tiny = Array.from({ length: 100_001 }, (_, i) => `{"custom_id":"r${i}","params":{}}`);
    const response = await raw(sim, 'POST', BATCHES, { body: `{"requests":[${tiny.join(',')}]}` });
    expectEnvelope(response, 400, 'invalid_request_error');
    expect(response.json.error.message).toBe('requests: List should have at most 100000 items');
  });

  it('keeps the connection usable after a 400 (the rest of the body is read)', async () => {
    const sim = await sims.start();
    const bad = await raw(sim, 'POST', BATCHES, { body: { requests: [request('a:b'), ...requests(500)] } });
    const good = await raw(sim, 'POST', BATCHES, { body: { requests: requests(2) } });
    expect([bad.status, good.status]).toEqual([400, 200]);
  });
});
