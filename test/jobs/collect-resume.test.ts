/**
 * Collect resumed from its checkpoint (shared/jobs/collect-checkpoint.ts, issue #19 §5): a Collect
 * killed part-way (it never reaches its catch), or failed because the results stream was cut more
 * often than the client retries, or served by a server that ignores Range, is taken up by the next
 * one from the lines already stored — the API is read on from the checkpoint's offset, and no line
 * is downloaded or counted twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchesApi, ResultEntry, ResultsOptions } from '../../shared/anthropic/api';
import { BatchesClient } from '../../shared/anthropic/client';
import type { BatchRequest, BatchResultLine } from '../../shared/anthropic/types';
import type { PipelineConfig } from '../../shared/config';
import { readCheckpoint } from '../../shared/jobs/collect-checkpoint';
import { collectResults, type CollectDeps } from '../../shared/jobs/collect-results';
import { pollBatch } from '../../shared/jobs/poll-batch';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { jobKeys } from '../../shared/store/keys';
import { useLocalAws } from '../support/aws';
import {
  attemptText,
  readChunkItem,
  readJobItem,
  readJsonl,
  readRow,
  readText,
  seedJob,
  startApi,
  stopApi,
  TEST_API_KEY,
  type ApiContext,
  type SeededJob,
} from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

const NOW = Date.parse('2030-01-01T00:00:00Z');
/** Small segments: a checkpoint every few lines. */
const SEGMENT_BYTES = 2_000;

type Ref = { jobId: string; chunk: number; attempt: number; batchId: string };

/** The calls Collect made to results(), and the lines each handed over. */
interface ResultsCall {
  startOffset: number;
  lines: number;
}

/**
 * The real client, with its results() watched; after `killAfter` lines in all, the stream is closed
 * and the next line never comes: the Collect hangs, as one whose Lambda was killed — it never
 * reaches its catch, so only what its checkpoints stored survives it.
 */
function watched(api: BatchesApi, options: { killAfter?: number } = {}): { api: BatchesApi; calls: ResultsCall[]; killed: () => boolean } {
  const calls: ResultsCall[] = [];
  let given = 0;
  let killed = false;
  const results = async function* (batchId: string, resultsOptions: ResultsOptions = {}): AsyncGenerator<ResultEntry> {
    const call = { startOffset: resultsOptions.startOffset ?? 0, lines: 0 };
    calls.push(call);
    for await (const entry of api.results(batchId, resultsOptions)) {
      if (options.killAfter !== undefined && given >= options.killAfter) {
        killed = true;
        break;
      }
      given += 1;
      call.lines += 1;
      yield entry;
    }
    if (killed) await new Promise<never>(() => undefined);
  };
  const wrapped = new Proxy(api, {
    get: (target, property, receiver) => {
      if (property === 'results') return results;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { api: wrapped, calls, killed: () => killed };
}

describe('collectResults resumed from its checkpoint', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;
  let config: PipelineConfig;
  beforeAll(async () => {
    ctx = await startApi({ processingSeconds: 60 });
    config = pipelineConfig(aws, { maxAttempts: 2, retryBackoffSeconds: 60 });
  });
  afterAll(() => stopApi(ctx));

  const deps = (overrides: Partial<Omit<CollectDeps, 'config'>> = {}) => ({
    s3: aws.s3,
    dynamo: aws.dynamo,
    api: ctx.api,
    config,
    now: () => NOW,
    segmentBytes: SEGMENT_BYTES,
    ...overrides,
  });

  async function runBatch(job: SeededJob, faults: Parameters<ApiContext['sim']['setBatchFaults']>[0]): Promise<Ref> {
    ctx.sim.setBatchFaults(faults);
    const submitted = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps());
    ctx.sim.setBatchFaults(undefined);
    const ref = { jobId: job.jobId, chunk: 0, attempt: submitted.attempt, batchId: submitted.batchId! };
    ctx.sim.advance(120);
    expect((await pollBatch(ref, deps())).ended).toBe(true);
    return ref;
  }

  /** The batch's results file as the API holds it, each custom_id the user's again (read through any cuts). */
  async function apiText(ref: Ref): Promise<{ text: string; lines: BatchResultLine[]; ends: number[] }> {
    const { nonce } = (await readChunkItem(aws, ref.jobId, ref.chunk)).attempts[ref.attempt - 1]!;
    const sent = (await attemptText(aws, ref))
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as BatchRequest);
    const userIds = new Map(sent.map((r, n) => [`${nonce}-${n.toString(36)}`, r.custom_id]));
    const patient = new BatchesClient({ apiKey: TEST_API_KEY, baseUrl: ctx.sim.url, maxRetries: 1_000, sleep: async () => undefined });
    let text = '';
    const lines: BatchResultLine[] = [];
    const ends: number[] = [];
    for await (const entry of patient.results(ref.batchId)) {
      const wire = entry.line.custom_id;
      const user = userIds.get(wire)!;
      text += entry.raw.toString('utf8').replace(JSON.stringify(wire), JSON.stringify(user)) + '\n';
      lines.push({ ...entry.line, custom_id: user });
      ends.push(entry.offset + entry.length);
    }
    await patient.close();
    return { text, lines, ends };
  }

  /** What every row's record must say, from its line in the API's file (transient errors retried: maxAttempts 2). */
  async function expectRecordsFromTheApi(ref: Ref, rows: BatchRequest[], lines: BatchResultLine[]): Promise<void> {
    const stored = Buffer.from((await readText(aws, jobKeys(ref.jobId).chunkResults(0, 1)))!);
    const byId = new Map(lines.map((line) => [line.custom_id, line]));
    for (const row of rows) {
      const record = await readRow(aws, ref.jobId, row.custom_id);
      const line = byId.get(row.custom_id)!;
      expect(record).toMatchObject({ attempt: 1, status: line.result.type });
      expect(record!.final).toBe(line.result.type === 'succeeded');
      // The pointer resolves to the row's own line in the joined object.
      const pointed = stored.subarray(record!.result!.offset, record!.result!.offset + record!.result!.length).toString('utf8');
      expect(JSON.parse(pointed)).toMatchObject({ custom_id: row.custom_id });
    }
    const chunk = await readChunkItem(aws, ref.jobId, 0);
    const counted = chunk.attempts[0]!.counts!;
    expect(counted.succeeded + counted.errored + counted.expired + counted.canceled).toBe(rows.length);
    expect(counted.succeeded).toBe(lines.filter((line) => line.result.type === 'succeeded').length);
    const retried = lines.filter((line) => line.result.type !== 'succeeded').map((line) => line.custom_id);
    expect(chunk.attempts[0]!.retryRows).toBe(retried.length);
    if (retried.length > 0) {
      expect((await readJsonl<BatchRequest>(aws, jobKeys(ref.jobId).chunkRequests(0, 2))).map((r) => r.custom_id).sort()).toEqual(retried.sort());
    }
    // Progress counted once.
    expect((await readJobItem(aws, ref.jobId)).rowsFinal).toBe(rows.length - retried.length);
  }

  it('goes on from the lines a killed Collect stored: the API is read from the checkpoint on, and no row is counted twice', async () => {
    const rows = requests(24, 'killed');
    const job = await seedJob(aws, { chunks: [rows] });
    const ref = await runBatch(job, { errored: { overloaded_error: 0.3 } });

    // Killed after 15 lines: Collect never settles, and never runs its catch.
    const first = watched(ctx.api, { killAfter: 15 });
    void collectResults(ref, deps({ api: first.api }));
    await until(async () => first.killed() && (await readCheckpoint(aws.s3, aws.bucket, ref, ref.batchId)) !== undefined);
    const checkpoint = (await readCheckpoint(aws.s3, aws.bucket, ref, ref.batchId))!;
    expect(checkpoint.complete).toBe(false);
    expect(checkpoint.apiOffset).toBeGreaterThan(0);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.collectedAt).toBeUndefined();

    const second = watched(ctx.api);
    const out = await collectResults(ref, deps({ api: second.api }));

    const { text, lines, ends } = await apiText(ref);
    // Read on from the checkpoint: only the lines after it came from the API a second time.
    expect(second.calls).toHaveLength(1);
    expect(second.calls[0]!.startOffset).toBe(checkpoint.apiOffset);
    // Lines of the API's file (its wire ids, not the stored user ids) before the checkpoint's offset.
    const before = ends.filter((end) => end <= checkpoint.apiOffset).length;
    expect(before).toBeGreaterThan(0);
    expect(second.calls[0]!.lines).toBe(rows.length - before);
    // The joined object is the API's file (user ids), every line once.
    expect(await readText(aws, jobKeys(ref.jobId).chunkResults(0, 1))).toBe(text);
    expect(out.retry).toBe(lines.some((line) => line.result.type !== 'succeeded'));
    await expectRecordsFromTheApi(ref, rows, lines);
    // The checkpoint is gone once the attempt is collected.
    expect(await readCheckpoint(aws.s3, aws.bucket, ref, ref.batchId)).toBeUndefined();
  });

  it('keeps what each Collect read when the stream is cut more often than the client retries, and the next goes on from it', async () => {
    const rows = requests(20, 'cut');
    const job = await seedJob(aws, { chunks: [rows] });
    // Every read of the results ends after 1,500 bytes: a client with one retry reads two of them per Collect.
    const ref = await runBatch(job, { errored: { overloaded_error: 0.3 }, cutResultsAfterBytes: 1_500, cutResultsTimes: 1_000 });
    const oneRetry = new BatchesClient({ apiKey: TEST_API_KEY, baseUrl: ctx.sim.url, maxRetries: 1, sleep: async () => undefined });

    const offsets: number[] = [];
    let collected = false;
    for (let run = 0; run < 40 && !collected; run++) {
      try {
        await collectResults(ref, deps({ api: oneRetry }));
        collected = true;
      } catch (error) {
        expect(error).toMatchObject({ name: 'ApiRetryable' });
        offsets.push((await readCheckpoint(aws.s3, aws.bucket, ref, ref.batchId))!.apiOffset);
      }
    }
    await oneRetry.close();

    expect(collected).toBe(true);
    // Several Collects gave up, each further on than the last.
    expect(offsets.length).toBeGreaterThan(2);
    for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThan(offsets[i - 1]!);
    const { text, lines } = await apiText(ref);
    expect(await readText(aws, jobKeys(ref.jobId).chunkResults(0, 1))).toBe(text);
    await expectRecordsFromTheApi(ref, rows, lines);
  });

  it('keeps the lines read when the server ignores Range: the next Collect skips them in the whole file', async () => {
    const rows = requests(12, 'norange');
    const job = await seedJob(aws, { chunks: [rows] });
    // Three reads cut after 1,500 bytes, then whole files; Range is never honoured.
    const ref = await runBatch(job, { cutResultsAfterBytes: 1_500, cutResultsTimes: 3, ignoreResultsRange: true });
    const oneRetry = new BatchesClient({ apiKey: TEST_API_KEY, baseUrl: ctx.sim.url, maxRetries: 1, sleep: async () => undefined });

    await expect(collectResults(ref, deps({ api: oneRetry }))).rejects.toMatchObject({ name: 'ApiRetryable' });
    const checkpoint = (await readCheckpoint(aws.s3, aws.bucket, ref, ref.batchId))!;
    expect(checkpoint.apiOffset).toBeGreaterThan(0);
    const second = watched(oneRetry);
    await collectResults(ref, deps({ api: second.api }));
    await oneRetry.close();

    const { text, lines, ends } = await apiText(ref);
    expect(second.calls[0]!.startOffset).toBe(checkpoint.apiOffset);
    const before = ends.filter((end) => end <= checkpoint.apiOffset).length;
    expect(before).toBeGreaterThan(0);
    expect(second.calls[0]!.lines).toBe(rows.length - before);
    expect(await readText(aws, jobKeys(ref.jobId).chunkResults(0, 1))).toBe(text);
    await expectRecordsFromTheApi(ref, rows, lines);
  });
});

/** Resolves once `condition` holds (the test's timeout bounds the wait). */
async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}
