/** Injected faults: HTTP errors by count or seeded rate, dropped create responses, per-batch faults. */
import { describe, expect, it } from 'vitest';
import type { SimulatorHandle } from '../../simulator/server';
import { createBatch, raw, request, requests, resultsBytes, retrieveBatch, runBatch, useSimulators } from './fixtures';

const sims = useSimulators();
const BATCHES = '/v1/messages/batches';

describe('HTTP faults', () => {
  it('fails the first `times` matching calls with the status, envelope and retry headers, then answers normally', async () => {
    const sim = await sims.start({
      httpFaults: [{ endpoint: 'list', status: 429, times: 2, retryAfterSeconds: 3, retryAfterMs: 2500, shouldRetry: true }],
    });

    const statuses: number[] = [];
    let first: Awaited<ReturnType<typeof raw>> | undefined;
    for (let i = 0; i < 3; i += 1) {
      const response = await raw(sim, 'GET', BATCHES);
      first ??= response;
      statuses.push(response.status);
    }

    expect(statuses).toEqual([429, 429, 200]);
    expect(first!.json).toEqual({
      type: 'error',
      error: { type: 'rate_limit_error', message: expect.any(String) },
      request_id: first!.headers.get('request-id'),
    });
    expect(first!.headers.get('retry-after')).toBe('3');
    expect(first!.headers.get('retry-after-ms')).toBe('2500');
    expect(first!.headers.get('x-should-retry')).toBe('true');
  });

  it('maps each status to its error type and only hits the endpoints it names', async () => {
    const sim = await sims.start({
      httpFaults: [
        { endpoint: ['retrieve', 'results'], status: 500 },
        { endpoint: 'retrieve', status: 529 },
        { endpoint: 'retrieve', status: 504, shouldRetry: false },
      ],
    });
    const created = await createBatch(sim, [request('a')]);

    const types = [];
    for (let i = 0; i < 3; i += 1) types.push((await raw(sim, 'GET', `${BATCHES}/${created.id}`)).json.error?.type);
    const after = await raw(sim, 'GET', `${BATCHES}/${created.id}`);
    const results = await resultsBytes(sim, created.id);

    expect(types).toEqual(['api_error', 'overloaded_error', 'timeout_error']);
    expect(after.status).toBe(200);
    // The first fault was used up by retrieve; results reaches the handler (which says: not ended yet).
    expect(results.status).toBe(400);
  });

  it('fails calls at a seeded rate: the same seed gives the same pattern', async () => {
    const pattern = async (seed: number): Promise<number[]> => {
      const sim = await sims.start({ seed, httpFaults: [{ status: 529, rate: 0.5 }] });
      const statuses: number[] = [];
      for (let i = 0; i < 30; i += 1) statuses.push((await raw(sim, 'GET', BATCHES)).status);
      return statuses;
    };
    const [a, b] = [await pattern(3), await pattern(3)];

    expect(a).toEqual(b);
    expect(a).toContain(529);
    expect(a).toContain(200);
  });

  it('changes HTTP faults at run time', async () => {
    const sim = await sims.start();
    expect((await raw(sim, 'GET', BATCHES)).status).toBe(200);
    sim.setHttpFaults([{ status: 500, times: 1 }]);
    expect((await raw(sim, 'GET', BATCHES)).status).toBe(500);
    expect((await raw(sim, 'GET', BATCHES)).status).toBe(200);
    expect(sim.stats().calls.list).toBe(3);
  });
});

describe('dropped create responses', () => {
  it('creates the batch but destroys the connection before any response byte', async () => {
    const sim = await sims.start({ dropCreateResponses: 1 });

    const outcome = await raw(sim, 'POST', BATCHES, { body: { requests: requests(3) } }).catch((error: unknown) => error);
    const retried = await createBatch(sim, requests(3));
    const listed = await raw(sim, 'GET', BATCHES);

    expect(outcome).toBeInstanceOf(TypeError); // fetch failed: the socket closed with no response
    expect(sim.stats().batchesCreated).toHaveLength(2);
    expect(sim.stats().batchesCreated[1]).toBe(retried.id);
    expect(sim.stats().requestsCreated).toBe(6);
    expect(listed.json.data.map((batch: { id: string }) => batch.id)).toEqual([...sim.stats().batchesCreated].reverse());
  });
});

describe('batch faults', () => {
  async function countsOf(sim: SimulatorHandle, id: string) {
    return (await retrieveBatch(sim, id)).request_counts;
  }

  it('errors requests at the configured rates by type, seeded per batch', async () => {
    const sim = await sims.start({ batchFaults: { errored: { overloaded_error: 0.3, api_error: 0.2 } } });
    const lines = await runBatch(sim, requests(200));
    const types = [...lines.values()].map((line) => (line.result.type === 'errored' ? line.result.error.error.type : line.result.type));
    const count = (type: string) => types.filter((t) => t === type).length;

    expect(count('overloaded_error') + count('api_error') + count('succeeded')).toBe(200);
    expect(count('overloaded_error')).toBeGreaterThan(35);
    expect(count('overloaded_error')).toBeLessThan(85);
    expect(count('api_error')).toBeGreaterThan(20);
    expect(count('api_error')).toBeLessThan(60);
  });

  it('applies server-wide batch faults changed at run time only to batches created afterwards', async () => {
    const sim = await sims.start();
    const before = await createBatch(sim, requests(5));
    sim.setBatchFaults({ errored: { api_error: 1 } });
    const after = await createBatch(sim, requests(5));
    sim.setBatchFaults(undefined);
    const reset = await createBatch(sim, requests(5));
    sim.advance(60);

    expect((await countsOf(sim, before.id)).succeeded).toBe(5);
    expect((await countsOf(sim, after.id)).errored).toBe(5);
    expect((await countsOf(sim, reset.id)).succeeded).toBe(5);
  });

  it('targets one batch by its creation sequence', async () => {
    const sim = await sims.start({ batchFaultsBySequence: { 2: { errored: { timeout_error: 1 } } } });
    const ids = [];
    for (let i = 0; i < 3; i += 1) ids.push((await createBatch(sim, requests(4))).id);
    sim.advance(60);

    const errored = [];
    for (const id of ids) errored.push((await countsOf(sim, id)).errored);
    expect(errored).toEqual([0, 4, 0]);
  });

  it('cuts the results stream cutResultsTimes times, then serves it whole', async () => {
    const sim = await sims.start({ batchFaults: { cutResultsAfterBytes: 200, cutResultsTimes: 2 } });
    const created = await createBatch(sim, requests(10));
    sim.advance(60);

    const attempts = [];
    for (let i = 0; i < 3; i += 1)
      attempts.push(
        await resultsBytes(sim, created.id).then(
          () => 'whole',
          () => 'cut',
        ),
      );

    expect(attempts).toEqual(['cut', 'cut', 'whole']);
  });

  it('serves the results lines it is told to damage, the same bytes on every read and through a Range', async () => {
    const sim = await sims.start({ batchFaults: { damageResultLines: { 0: 'cut', 1: 'headless', 2: 'oversize' }, oversizeResultLineBytes: 5000 } });
    const created = await createBatch(sim, requests(4));
    sim.advance(60);

    const first = (await resultsBytes(sim, created.id)).body;
    const lines = first.toString('utf8').split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[4]).toBe('');
    expect(lines[0]).toMatch(/^\{"custom_id":"row-\d","result":/);
    expect(() => JSON.parse(lines[0]!)).toThrow(SyntaxError);
    expect(lines[1]).not.toContain('custom_id');
    expect(() => JSON.parse(lines[1]!)).toThrow(SyntaxError);
    expect(Buffer.byteLength(lines[2]!)).toBe(5000);
    expect(JSON.parse(lines[2]!)).toMatchObject({ custom_id: expect.stringMatching(/^row-\d$/), result: { type: 'succeeded' } });
    expect(JSON.parse(lines[3]!)).toMatchObject({ custom_id: expect.stringMatching(/^row-\d$/) });
    // Each line is still its own request's.
    expect(new Set([lines[0], lines[2], lines[3]].map((line) => /"custom_id":"([^"]+)"/.exec(line!)![1])).size).toBe(3);

    expect((await resultsBytes(sim, created.id)).body.equals(first)).toBe(true);
    const from = first.indexOf('\n') + 1;
    expect((await resultsBytes(sim, created.id, { range: `bytes=${from}-` })).body.equals(first.subarray(from))).toBe(true);
  });
});
