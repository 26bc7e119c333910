/** A batch's life on the simulated clock: processing, ending, expiry, cancel, delete, archival. */
import { describe, expect, it } from 'vitest';
import { createBatch, raw, request, requests, resultsBytes, retrieveBatch, useSimulators } from './fixtures';

const sims = useSimulators();
const HOUR = 3600;
const DAY = 24 * HOUR;

describe('processing', () => {
  it('keeps every count but processing at 0 until the batch ends, then sets ended_at and results_url', async () => {
    const sim = await sims.start({ processingSeconds: 60 });
    const created = await createBatch(sim, requests(10));

    sim.advance(59);
    const during = await retrieveBatch(sim, created.id);
    sim.advance(1);
    const ended = await retrieveBatch(sim, created.id);

    expect(during.processing_status).toBe('in_progress');
    expect(during.request_counts).toEqual({ processing: 10, succeeded: 0, errored: 0, canceled: 0, expired: 0 });
    expect(during.ended_at).toBeNull();
    expect(during.results_url).toBeNull();
    expect(ended.processing_status).toBe('ended');
    expect(ended.request_counts).toEqual({ processing: 0, succeeded: 10, errored: 0, canceled: 0, expired: 0 });
    expect(Date.parse(ended.ended_at!) - Date.parse(created.created_at)).toBe(60_000);
    expect(ended.results_url).toBe(`${sim.url}/v1/messages/batches/${created.id}/results`);
  });

  it('runs the clock timeScale times faster than real time', async () => {
    const sim = await sims.start({ timeScale: 1000 });
    // Real readings bracket each simulated one, so the simulated lapse has exact bounds.
    const r1 = performance.now();
    const s1 = sim.now();
    const r2 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const r3 = performance.now();
    const s2 = sim.now();
    const r4 = performance.now();

    expect(s2 - s1).toBeGreaterThanOrEqual((r3 - r2) * 1000 - 1);
    expect(s2 - s1).toBeLessThanOrEqual((r4 - r1) * 1000 + 1);
    expect(r3 - r2).toBeGreaterThan(10);
  });

  it('takes processingSeconds from the batch faults of one batch', async () => {
    const sim = await sims.start({ processingSeconds: 60, batchFaultsBySequence: { 2: { processingSeconds: 600 } } });
    const first = await createBatch(sim, [request('a')]);
    const second = await createBatch(sim, [request('a')]);
    sim.advance(60);
    expect((await retrieveBatch(sim, first.id)).processing_status).toBe('ended');
    expect((await retrieveBatch(sim, second.id)).processing_status).toBe('in_progress');
    sim.advance(540);
    expect((await retrieveBatch(sim, second.id)).processing_status).toBe('ended');
  });
});

describe('expiry', () => {
  it('expires every unfinished request of a stalled batch at 24 h', async () => {
    const sim = await sims.start({ batchFaults: { stall: true } });
    const created = await createBatch(sim, requests(5));

    sim.advance(DAY - 1);
    const before = await retrieveBatch(sim, created.id);
    sim.advance(1);
    const after = await retrieveBatch(sim, created.id);

    expect(before.processing_status).toBe('in_progress');
    expect(after.processing_status).toBe('ended');
    expect(after.ended_at).toBe(created.expires_at);
    expect(after.request_counts).toEqual({ processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 5 });
  });

  it('expires what a batch slower than 24 h has not reached', async () => {
    const sim = await sims.start({ processingSeconds: 2 * DAY });
    const created = await createBatch(sim, requests(60));
    sim.advance(DAY);

    const { request_counts: counts } = await retrieveBatch(sim, created.id);

    expect(counts.succeeded + counts.expired).toBe(60);
    expect(counts.succeeded).toBeGreaterThan(0);
    expect(counts.expired).toBeGreaterThan(0);
  });

  it('expires the `expired` fraction of requests, the batch ending at 24 h', async () => {
    const sim = await sims.start({ batchFaults: { expired: 0.5 } });
    const created = await createBatch(sim, requests(100));
    sim.advance(60);
    expect((await retrieveBatch(sim, created.id)).processing_status).toBe('in_progress');

    sim.advance(DAY);
    const { request_counts: counts } = await retrieveBatch(sim, created.id);

    expect(counts.succeeded + counts.expired).toBe(100);
    expect(counts.expired).toBeGreaterThan(30);
    expect(counts.expired).toBeLessThan(70);
  });
});

describe('cancel and delete', () => {
  it('returns an ended batch unchanged when asked to cancel it', async () => {
    const sim = await sims.start();
    const created = await createBatch(sim, requests(3));
    sim.advance(60);
    const ended = await retrieveBatch(sim, created.id);

    const response = await raw(sim, 'POST', `/v1/messages/batches/${created.id}/cancel`);

    expect(response.status).toBe(200);
    expect(response.json).toEqual(ended);
  });

  it('cancels a batch right after create: most requests come back canceled', async () => {
    const sim = await sims.start();
    const created = await createBatch(sim, requests(50));

    const canceling = (await raw(sim, 'POST', `/v1/messages/batches/${created.id}/cancel`)).json;
    sim.advance(4);
    const still = await retrieveBatch(sim, created.id);
    sim.advance(1);
    const ended = await retrieveBatch(sim, created.id);

    expect(canceling.processing_status).toBe('canceling');
    expect(still.processing_status).toBe('canceling');
    expect(ended.processing_status).toBe('ended');
    expect(ended.cancel_initiated_at).toBe(canceling.cancel_initiated_at);
    expect(ended.request_counts.canceled + ended.request_counts.succeeded).toBe(50);
    expect(ended.request_counts.canceled).toBeGreaterThan(25);
  });

  it('refuses to delete a canceling batch (400), then deletes it once ended; a second delete is 404', async () => {
    const sim = await sims.start();
    const created = await createBatch(sim, requests(2));
    await raw(sim, 'POST', `/v1/messages/batches/${created.id}/cancel`);

    const early = await raw(sim, 'DELETE', `/v1/messages/batches/${created.id}`);
    sim.advance(5);
    const deleted = await raw(sim, 'DELETE', `/v1/messages/batches/${created.id}`);
    const again = await raw(sim, 'DELETE', `/v1/messages/batches/${created.id}`);
    const listed = await raw(sim, 'GET', '/v1/messages/batches');

    expect(early.status).toBe(400);
    expect(early.json.error.type).toBe('invalid_request_error');
    expect(deleted.status).toBe(200);
    expect(again.status).toBe(404);
    expect(listed.json.data).toEqual([]);
    expect(sim.stats().batchesCreated).toEqual([created.id]);
  });
});

describe('results availability', () => {
  it('answers results before the batch ends with 400 invalid_request_error', async () => {
    const sim = await sims.start();
    const created = await createBatch(sim, [request('a')]);
    const response = await resultsBytes(sim, created.id);
    expect(response.status).toBe(400);
    expect(response.json.error.type).toBe('invalid_request_error');
  });

  it('archives 29 days after created_at: archived_at set, results 404, the batch still retrievable', async () => {
    const sim = await sims.start();
    const created = await createBatch(sim, [request('a')]);
    sim.advance(29 * DAY - 1);
    const before = await retrieveBatch(sim, created.id);
    const readable = await resultsBytes(sim, created.id);

    sim.advance(1);
    const after = await retrieveBatch(sim, created.id);
    const archived = await resultsBytes(sim, created.id);

    expect(before.archived_at).toBeNull();
    expect(readable.status).toBe(200);
    expect(Date.parse(after.archived_at!) - Date.parse(created.created_at)).toBe(29 * DAY * 1000);
    expect(after.request_counts.succeeded).toBe(1);
    expect(archived.status).toBe(404);
    expect(archived.json.error.type).toBe('not_found_error');
  });

  it('answers retrieve and results with 404 for notFoundForSeconds after create', async () => {
    const sim = await sims.start({ processingSeconds: 10, batchFaults: { notFoundForSeconds: 30 } });
    const created = await createBatch(sim, [request('a')]);

    const early = await raw(sim, 'GET', `/v1/messages/batches/${created.id}`);
    sim.advance(20);
    const earlyResults = await resultsBytes(sim, created.id);
    const listed = await raw(sim, 'GET', '/v1/messages/batches');
    sim.advance(10);
    const later = await raw(sim, 'GET', `/v1/messages/batches/${created.id}`);
    const laterResults = await resultsBytes(sim, created.id);

    expect(early.status).toBe(404);
    expect(early.json.error.type).toBe('not_found_error');
    expect(earlyResults.status).toBe(404);
    expect(listed.json.data.map((batch: { id: string }) => batch.id)).toEqual([created.id]);
    expect(later.status).toBe(200);
    expect(laterResults.status).toBe(200);
  });
});
