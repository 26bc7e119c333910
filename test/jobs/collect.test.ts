import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logRecorder } from '../support/observer';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { DamagedResultLine } from '../../shared/anthropic/api';
import { BatchesClient } from '../../shared/anthropic/client';
import type { BatchRequest, BatchResultLine, MessageBatch } from '../../shared/anthropic/types';
import type { PipelineConfig } from '../../shared/config';
import { queryPartition, updateItem } from '../../shared/store/dynamo';
import { chunkSk, JOB_SK, jobPk, rowPagePk, type ChunkAttempt, type RowPageItem } from '../../shared/store/items';
import { requestCustomIds } from '../../shared/jobs/chunk-files';
import { collectResults, type CollectDeps } from '../../shared/jobs/collect-results';
import { pollBatch } from '../../shared/jobs/poll-batch';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { localDynamoClient } from '../../local/emulators';
import { useLocalAws } from '../support/aws';
import {
  createBytes,
  readChunkItem,
  readJobItem,
  readJsonl,
  readRow,
  readText,
  seedJob,
  serialize,
  startApi,
  stopApi,
  TEST_API_KEY,
  type ApiContext,
  type SeededJob,
} from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { request, requests } from '../support/requests';

const DAY = 86_400;
const NOW = Date.parse('2030-01-01T00:00:00Z');

describe('collectResults', () => {
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
    ...overrides,
  });

  /** Submits the chunk's current attempt (with these batch faults) and runs its batch to the end. */
  async function runBatch(job: SeededJob, faults: Parameters<ApiContext['sim']['setBatchFaults']>[0] = undefined, seconds = 120) {
    ctx.sim.setBatchFaults(faults);
    const submitted = await submitChunk({ jobId: job.jobId, chunk: 0 }, deps());
    ctx.sim.setBatchFaults(undefined);
    const ref = { jobId: job.jobId, chunk: 0, attempt: submitted.attempt, batchId: submitted.batchId };
    if (ref.batchId !== null) {
      ctx.sim.advance(seconds);
      expect((await pollBatch({ ...ref, batchId: ref.batchId }, deps())).ended).toBe(true);
    }
    return ref;
  }

  /**
   * Every results line of an attempt's batch, straight from the API, read back with the user's
   * custom_ids: the API sees request n of the attempt as `<nonce>-<n in base 36>`, and `wire` is that id.
   */
  async function apiLines(ref: { jobId: string; chunk: number; attempt: number; batchId: string | null }) {
    const { nonce } = (await readChunkItem(aws, ref.jobId, ref.chunk)).attempts[ref.attempt - 1]!;
    const sent: string[] = [];
    for await (const customId of requestCustomIds(aws.s3, aws.bucket, ref)) sent.push(customId);
    const userIds = new Map(sent.map((customId, n) => [`${nonce}-${n.toString(36)}`, customId]));
    const lines: { wire: string; raw: string; line: BatchResultLine }[] = [];
    for await (const entry of ctx.api.results(ref.batchId!)) {
      const wire = entry.line.custom_id;
      const customId = userIds.get(wire);
      const raw = entry.raw.toString('utf8');
      const prefix = `{"custom_id":"${wire}",`;
      if (customId === undefined || !raw.startsWith(prefix)) throw new Error(`not a results line of attempt ${ref.attempt}'s wire ids: ${raw.slice(0, 60)}`);
      lines.push({ wire, raw: `{"custom_id":"${customId}",${raw.slice(prefix.length)}`, line: { ...entry.line, custom_id: customId } });
    }
    return lines;
  }

  /** Records `batch` on the chunk's first attempt, as Submit would (with `nonce`, as a create since wire ids would). */
  async function recordBatchOn(job: SeededJob, batch: MessageBatch, nonce?: string) {
    const chunk = await readChunkItem(aws, job.jobId, 0);
    const attempt: ChunkAttempt = { ...chunk.attempts[0]!, batchId: batch.id, createdAt: batch.created_at, expiresAt: batch.expires_at, nonce };
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: chunkSk(0) }, { set: { attempts: [attempt] } });
  }

  async function readRange(key: string, offset: number, length: number): Promise<string> {
    const response = await aws.s3.send(new GetObjectCommand({ Bucket: aws.bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }));
    return response.Body!.transformToString('utf8');
  }

  it('stores the results as sent, with the user’s custom_id, and records every row as final, with usage, cost and where its line is', async () => {
    const rows = requests(3, 'ok');
    const job = await seedJob(aws, { chunks: [rows] });
    const ref = await runBatch(job);

    expect(await collectResults(ref, deps())).toEqual({ jobId: job.jobId, chunk: 0, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false });

    const key = job.keys.chunkResults(0, 1);
    const sent = await apiLines(ref);
    const { nonce } = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    expect(sent.map((l) => l.wire).sort()).toEqual([`${nonce}-0`, `${nonce}-1`, `${nonce}-2`]);
    expect(await readText(aws, key)).toBe(sent.map((l) => l.raw + '\n').join(''));
    for (const [index, { custom_id }] of rows.entries()) {
      const row = (await readRow(aws, job.jobId, custom_id))!;
      const line = sent.find((l) => l.line.custom_id === custom_id)!;
      expect(row).toMatchObject({ customId: custom_id, chunk: 0, index, status: 'succeeded', final: true, attempt: 1, batchId: ref.batchId });
      expect(row.errorType).toBeUndefined();
      const usage = line.line.result.type === 'succeeded' ? line.line.result.message.usage : undefined;
      expect(row.usage).toEqual({
        input_tokens: usage!.input_tokens,
        output_tokens: usage!.output_tokens,
        cache_creation_input_tokens: usage!.cache_creation_input_tokens ?? 0,
        cache_read_input_tokens: usage!.cache_read_input_tokens ?? 0,
      });
      // claude-haiku-4-5 at batch rates: $0.50 / $2.50 per million tokens.
      expect(row.costUsd).toBeCloseTo((usage!.input_tokens * 0.5 + usage!.output_tokens * 2.5) / 1e6, 12);
      expect(await readRange(row.result!.key, row.result!.offset, row.result!.length)).toBe(line.raw + '\n');
    }
    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('done');
    expect(chunk.currentAttempt).toBe(1);
    expect(chunk.attempts[0]).toMatchObject({
      counts: { succeeded: 3, errored: 0, expired: 0, canceled: 0 },
      retryRows: 0,
      missingRows: 0,
      collectedAt: new Date(NOW).toISOString(),
    });
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(3);
  });

  it('retries transient errors and expired rows from their original lines, and makes the last attempt final', async () => {
    const rows = [...requests(12, 'mixed'), request('bad-0', { speed: 'fast' }), request('bad-1', { stream: true })];
    const job = await seedJob(aws, { chunks: [rows] });
    // A simulator of its own: its seeded draws then do not depend on the batches other tests made.
    const own = await startApi({ processingSeconds: 60, seed: 7 });
    const outer = ctx;
    ctx = own;
    try {
      await mixedOutcomes(rows, job);
    } finally {
      ctx = outer;
      await stopApi(own);
    }
  });

  async function mixedOutcomes(rows: BatchRequest[], job: SeededJob) {
    const first = await runBatch(job, { errored: { overloaded_error: 0.3 }, expired: 0.3 }, DAY + 60);
    const out = await collectResults(first, deps());

    const sent = await apiLines(first);
    const outcome = (id: string) => sent.find((l) => l.line.custom_id === id)!.line.result;
    const transient = (id: string) => {
      const result = outcome(id);
      return result.type === 'expired' || (result.type === 'errored' && result.error.error.type === 'overloaded_error');
    };
    const retried = rows.filter((r) => transient(r.custom_id));
    // The seeded draw gives each kind at least once; the test is about what happens to each.
    expect(retried.some((r) => outcome(r.custom_id).type === 'expired')).toBe(true);
    expect(retried.some((r) => outcome(r.custom_id).type === 'errored')).toBe(true);
    expect(retried.length).toBeLessThan(12);

    expect(out).toEqual({ jobId: job.jobId, chunk: 0, attempt: 1, retry: true, retryWaitSeconds: 60, stragglers: false });
    expect(await readText(aws, job.keys.chunkRequests(0, 2))).toBe(serialize(retried));
    for (const bad of ['bad-0', 'bad-1']) {
      expect(await readRow(aws, job.jobId, bad)).toMatchObject({ status: 'errored', final: true, errorType: 'invalid_request_error', attempt: 1 });
    }
    for (const r of retried) {
      const result = outcome(r.custom_id);
      expect(await readRow(aws, job.jobId, r.custom_id)).toMatchObject({
        status: result.type,
        final: false,
        attempt: 1,
        ...(result.type === 'errored' ? { errorType: 'overloaded_error' } : {}),
      });
    }
    let chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('retry_wait');
    expect(chunk.currentAttempt).toBe(2);
    expect(chunk.attempts[0]!.retryRows).toBe(retried.length);
    expect(chunk.attempts[1]).toEqual({ attempt: 2, rows: retried.length, bytes: createBytes(retried), intentAt: '' });
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(rows.length - retried.length);

    // The last attempt: every row errors transiently again, and that is now final.
    const second = await runBatch(job, { errored: { overloaded_error: 1 } });
    expect(second.attempt).toBe(2);
    expect(await collectResults(second, deps())).toEqual({ jobId: job.jobId, chunk: 0, attempt: 2, retry: false, retryWaitSeconds: 0, stragglers: false });
    for (const r of retried) {
      expect(await readRow(aws, job.jobId, r.custom_id)).toMatchObject({
        status: 'errored',
        final: true,
        errorType: 'overloaded_error',
        attempt: 2,
        batchId: second.batchId,
        index: rows.indexOf(r),
        result: { key: job.keys.chunkResults(0, 2) },
      });
    }
    chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('done');
    expect(chunk.attempts).toHaveLength(2);
    expect(chunk.attempts[1]!.counts).toEqual({ succeeded: 0, errored: retried.length, expired: 0, canceled: 0 });
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(rows.length);
  }

  it('marks every row canceled, and stores nothing, for an attempt canceled before submission', async () => {
    const rows = requests(3, 'never');
    const job = await seedJob(aws, { chunks: [rows], cancelRequested: true });
    const ref = await runBatch(job);
    expect(ref.batchId).toBeNull();

    expect(await collectResults(ref, deps())).toEqual({ jobId: job.jobId, chunk: 0, attempt: 1, retry: false, retryWaitSeconds: 0, stragglers: false });
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBeUndefined();
    for (const [index, r] of rows.entries()) {
      const row = await readRow(aws, job.jobId, r.custom_id);
      expect(row).toMatchObject({ status: 'canceled', final: true, attempt: 1, index });
      expect(row!.batchId).toBeUndefined();
    }
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.counts).toEqual({ succeeded: 0, errored: 0, expired: 0, canceled: 3 });
  });

  it('retries nothing once the job is asked to stop', async () => {
    const job = await seedJob(aws, { chunks: [requests(6, 'halt')] });
    const ref = await runBatch(job, { errored: { api_error: 0.5 }, expired: 0.5 }, DAY + 60);
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { cancelRequested: true } });

    expect((await collectResults(ref, deps())).retry).toBe(false);
    expect(await readText(aws, job.keys.chunkRequests(0, 2))).toBeUndefined();
    for (const r of job.chunks[0]!) expect((await readRow(aws, job.jobId, r.custom_id))!.final).toBe(true);
  });

  it('for an attempt created before wire ids (results carry the user’s custom_ids), records rows without a line as missing_result and leaves lines for strangers out', async () => {
    const rows = requests(3, 'gap');
    const job = await seedJob(aws, { chunks: [rows] });
    // The batch holds the first two rows and someone else's request, not the third row; the attempt has no nonce.
    const batch = await ctx.api.create([rows[0]!, rows[1]!, request('stranger')]);
    await recordBatchOn(job, batch);
    ctx.sim.advance(120);

    await collectResults({ jobId: job.jobId, chunk: 0, attempt: 1, batchId: batch.id }, deps());
    expect(await readRow(aws, job.jobId, rows[2]!.custom_id)).toMatchObject({ status: 'errored', final: true, errorType: 'missing_result', index: 2 });
    expect((await readRow(aws, job.jobId, rows[2]!.custom_id))!.result).toBeUndefined();
    expect(await readRow(aws, job.jobId, 'stranger')).toBeUndefined();
    const served: string[] = [];
    for await (const entry of ctx.api.results(batch.id)) if (entry.line.custom_id !== 'stranger') served.push(entry.raw.toString('utf8') + '\n');
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBe(served.join(''));
    expect((await readJsonl(aws, job.keys.chunkResults(0, 1))).map((l) => l.custom_id).sort()).toEqual([rows[0]!.custom_id, rows[1]!.custom_id]);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]).toMatchObject({
      missingRows: 1,
      counts: { succeeded: 2, errored: 1, expired: 0, canceled: 0 },
    });
  });

  const OURS = '0123456789abcdef';
  const THEIRS = 'fedcba9876543210';
  /** A request as the API sees it: the wire id in place of the user's. */
  const onWire = (r: BatchRequest, wire: string): BatchRequest => ({ ...r, custom_id: wire });

  it('leaves out every line of another create’s nonce: its rows end missing_result, and nothing is stored for them', async () => {
    const rows = requests(3, 'theirs');
    const job = await seedJob(aws, { chunks: [rows] });
    // The batch of another create of the same requests (an adoption that guessed wrong): same lines, another nonce.
    const batch = await ctx.api.create(rows.map((r, n) => onWire(r, `${THEIRS}-${n}`)));
    await recordBatchOn(job, batch, OURS);
    ctx.sim.advance(120);
    const log = logRecorder();

    await collectResults({ jobId: job.jobId, chunk: 0, attempt: 1, batchId: batch.id }, deps({ observer: log }));
    for (const [index, r] of rows.entries()) {
      const row = await readRow(aws, job.jobId, r.custom_id);
      expect(row).toMatchObject({ status: 'errored', final: true, errorType: 'missing_result', index, batchId: batch.id });
      expect(row!.result).toBeUndefined();
    }
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBe('');
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]).toMatchObject({
      missingRows: 3,
      counts: { succeeded: 0, errored: 3, expired: 0, canceled: 0 },
    });
    expect(log.lines.filter((l) => l.level !== 'info')).toEqual([
      {
        level: 'error',
        message: 'no result line is a request of this attempt: the batch is not its own',
        fields: { batchId: batch.id, foreignLines: 3, ownLines: 0 },
      },
    ]);
  });

  it('leaves out lines of its own nonce that name no request it sent, or a request already seen', async () => {
    const rows = requests(3, 'odd');
    const job = await seedJob(aws, { chunks: [rows] });
    // Rows 0 and 1, a line past the attempt's 3 requests (5), and row 0 again (`-00` is line 0 too); no line for row 2.
    const wires = [`${OURS}-0`, `${OURS}-1`, `${OURS}-5`, `${OURS}-00`];
    const batch = await ctx.api.create(wires.map((wire, i) => onWire(rows[i % 3]!, wire)));
    await recordBatchOn(job, batch, OURS);
    ctx.sim.advance(120);
    const log = logRecorder();

    await collectResults({ jobId: job.jobId, chunk: 0, attempt: 1, batchId: batch.id }, deps({ observer: log }));
    // Stored: the first line served for row 0, and row 1's, each with the user's id in place of the wire id.
    const userIdOf = new Map([
      [`${OURS}-0`, rows[0]!.custom_id],
      [`${OURS}-00`, rows[0]!.custom_id],
      [`${OURS}-1`, rows[1]!.custom_id],
    ]);
    const stored = new Map<string, string>();
    for await (const { raw, line } of ctx.api.results(batch.id)) {
      const customId = userIdOf.get(line.custom_id);
      if (customId !== undefined && !stored.has(customId)) stored.set(customId, raw.toString('utf8').replace(`"${line.custom_id}"`, `"${customId}"`) + '\n');
    }
    expect([...stored.keys()].sort()).toEqual([rows[0]!.custom_id, rows[1]!.custom_id]);
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBe([...stored.values()].join(''));
    expect(await readRow(aws, job.jobId, rows[0]!.custom_id)).toMatchObject({ status: 'succeeded', index: 0 });
    expect(await readRow(aws, job.jobId, rows[1]!.custom_id)).toMatchObject({ status: 'succeeded', index: 1 });
    expect(await readRow(aws, job.jobId, rows[2]!.custom_id)).toMatchObject({ status: 'errored', errorType: 'missing_result', index: 2 });
    expect(log.lines.filter((l) => l.level !== 'info')).toEqual([
      {
        level: 'warn',
        message: 'result lines that are not requests of this attempt were left out',
        fields: { batchId: batch.id, foreignLines: 2, ownLines: 2 },
      },
    ]);
  });

  it('keeps the tokens of a model without a price, leaves its cost out and notes the model', async () => {
    const job = await seedJob(aws, { chunks: [[request('priced'), request('unpriced', { model: 'claude-mythos-preview' })]] });
    const ref = await runBatch(job);
    await collectResults(ref, deps());
    const unpriced = (await readRow(aws, job.jobId, 'unpriced'))!;
    expect(unpriced.status).toBe('succeeded');
    expect(unpriced.usage!.output_tokens).toBeGreaterThan(0);
    expect(unpriced.costUsd).toBeUndefined();
    expect((await readRow(aws, job.jobId, 'priced'))!.costUsd).toBeGreaterThan(0);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.unpricedModels).toEqual(['claude-mythos-preview']);
  });

  it('gives the same output when the results stream is cut part-way', async () => {
    const rows = requests(20, 'cut');
    const job = await seedJob(aws, { chunks: [rows] });
    const ref = await runBatch(job, { cutResultsAfterBytes: 3000, cutResultsTimes: 2 });
    const resultsCalls = ctx.sim.stats().calls.results;

    await collectResults(ref, deps());
    expect(ctx.sim.stats().calls.results).toBe(resultsCalls + 3);
    const whole = await apiLines(ref);
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBe(whole.map((l) => l.raw + '\n').join(''));
    for (const r of rows) expect((await readRow(aws, job.jobId, r.custom_id))!.status).toBe('succeeded');
  });

  it('keeps every readable line when some cannot be read: a cut line’s row ends result_unreadable, a headless line’s row missing_result', async () => {
    const rows = requests(5, 'dmg');
    const job = await seedJob(aws, { chunks: [rows] });
    const ref = await runBatch(job, { damageResultLines: { 1: 'cut', 3: 'headless' } });
    const log = logRecorder();

    await collectResults(ref, deps({ observer: log }));

    // What the API served, in file order: lines read whole, and the two it damaged.
    const { nonce } = (await readChunkItem(aws, job.jobId, 0)).attempts[0]!;
    const userId = (wire: string) => rows[parseInt(wire.slice(17), 36)]!.custom_id;
    const served: Array<{ raw: string; customId: string } | DamagedResultLine> = [];
    const onDamagedLine = (line: DamagedResultLine) => void served.push(line);
    for await (const entry of ctx.api.results(ref.batchId!, { onDamagedLine })) {
      served.push({ raw: entry.raw.toString('utf8').replace(entry.line.custom_id, userId(entry.line.custom_id)), customId: userId(entry.line.custom_id) });
    }
    const [cut, headless] = served.filter((line): line is DamagedResultLine => 'damage' in line);
    expect([cut!.damage, cut!.customId?.startsWith(`${nonce}-`), headless!.damage, headless!.customId]).toEqual(['not_json', true, 'not_json', undefined]);
    const cutRow = userId(cut!.customId!);
    const readRows = served.flatMap((line) => ('customId' in line && !('damage' in line) ? [line.customId] : []));
    const headlessRow = rows.map((r) => r.custom_id).find((id) => id !== cutRow && !readRows.includes(id))!;

    // Stored, in file order: every line read whole, and in the cut line's place a line saying what
    // arrived (with the user's id); nothing for the headless one.
    const marker = {
      custom_id: cutRow,
      unreadable: { damage: 'not_json', offset: cut!.offset, length: cut!.length, received: cut!.raw.toString('utf8').replace(cut!.customId!, cutRow) },
    };
    const expected = served.map((line) => ('damage' in line ? (line === cut ? `${JSON.stringify(marker)}\n` : '') : `${line.raw}\n`));
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBe(expected.join(''));

    // The row of the cut line is final (processed, and likely billed: not sent again); the headless line's row has no line.
    expect(await readRow(aws, job.jobId, cutRow)).toMatchObject({ status: 'errored', final: true, errorType: 'result_unreadable' });
    expect((await readRow(aws, job.jobId, cutRow))!.result).toBeDefined();
    expect(await readRow(aws, job.jobId, headlessRow)).toMatchObject({ status: 'errored', final: true, errorType: 'missing_result' });
    for (const id of readRows) expect(await readRow(aws, job.jobId, id)).toMatchObject({ status: 'succeeded', final: true });
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]).toMatchObject({
      counts: { succeeded: 3, errored: 2, expired: 0, canceled: 0 },
      retryRows: 0,
      missingRows: 1,
      unreadableLines: 1,
    });
    expect(log.lines.filter((l) => l.level !== 'info')).toEqual(
      [
        {
          level: 'warn',
          message: 'a results line could not be read',
          fields: { batchId: ref.batchId, damage: 'not_json', offset: cut!.offset, bytes: cut!.length, named: 'a row of this attempt' },
        },
        {
          level: 'warn',
          message: 'a results line could not be read',
          fields: { batchId: ref.batchId, damage: 'not_json', offset: headless!.offset, bytes: headless!.length, named: 'nothing' },
        },
      ].sort((a, b) => (a.fields.offset as number) - (b.fields.offset as number)),
    );
  });

  it('stores the results it read before it fails, for Finalize to keep, and records nothing as collected', async () => {
    const rows = requests(8, 'gives-up');
    const job = await seedJob(aws, { chunks: [rows] });
    // Each of the two reads a client with one retry makes is cut after 1,500 bytes: the file is longer.
    const ref = await runBatch(job, { cutResultsAfterBytes: 1500, cutResultsTimes: 2 });
    const oneRetry = new BatchesClient({ apiKey: TEST_API_KEY, baseUrl: ctx.sim.url, maxRetries: 1, sleep: async () => undefined });

    await expect(collectResults(ref, deps({ api: oneRetry }))).rejects.toMatchObject({ name: 'ApiRetryable' });
    await oneRetry.close();

    const whole = (await apiLines(ref)).map((l) => l.raw + '\n');
    const stored = (await readText(aws, job.keys.chunkResults(0, 1)))!;
    const kept = whole.findIndex((_, n) => whole.slice(0, n + 1).join('') === stored) + 1;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(rows.length);
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.collectedAt).toBeUndefined();
  });

  it('converges when re-run after dying part-way, without counting twice', async () => {
    const rows = requests(30, 'rerun');
    const job = await seedJob(aws, { chunks: [rows] });
    const ref = await runBatch(job, { errored: { overloaded_error: 0.4 } });

    // The first run dies at its last step: the chunk record's update.
    const dying = failingChunkUpdates(aws.dynamoServer.endpoint);
    await expect(collectResults(ref, deps({ dynamo: dying }))).rejects.toThrow('killed');
    dying.destroy();
    const results = await readText(aws, job.keys.chunkResults(0, 1));
    const retryFile = await readText(aws, job.keys.chunkRequests(0, 2));
    const rowItems = await Promise.all(rows.map((r) => readRow(aws, job.jobId, r.custom_id)));
    expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.collectedAt).toBeUndefined();

    const again = await collectResults(ref, deps());
    expect(again.retry).toBe(true);
    expect(await readText(aws, job.keys.chunkResults(0, 1))).toBe(results);
    expect(await readText(aws, job.keys.chunkRequests(0, 2))).toBe(retryFile);
    expect(await Promise.all(rows.map((r) => readRow(aws, job.jobId, r.custom_id)))).toEqual(rowItems);
    const chunk = await readChunkItem(aws, job.jobId, 0);
    const retried = chunk.attempts[0]!.retryRows!;
    expect(retried).toBeGreaterThan(0);
    expect(chunk.attempts).toHaveLength(2);
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(rows.length - retried);

    // Once collected, a re-run answers from the record and writes nothing.
    let writes = 0;
    const calls = ctx.sim.stats().calls.results;
    expect(await collectResults(ref, deps({ rowWrites: { onRequest: () => (writes += 1) } }))).toEqual(again);
    expect(writes).toBe(0);
    expect(ctx.sim.stats().calls.results).toBe(calls);
    expect(await readChunkItem(aws, job.jobId, 0)).toEqual(chunk);
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(rows.length - retried);
  });

  it('packs row records into a page per bucket: DynamoDB requests grow with pages, not rows (≤ 41 per 1,000 rows)', async () => {
    async function requestsFor(rowCount: number, rowShards: number) {
      const job = await seedJob(aws, { chunks: [requests(rowCount, `bulk${rowCount}x${rowShards}`)], rowShards });
      const ref = await runBatch(job, { errored: { overloaded_error: 0.2 }, expired: 0.1 }, DAY + 60);
      const counting = countingClient(aws.dynamoServer.endpoint);
      await collectResults(ref, deps({ dynamo: counting.client }));
      counting.client.destroy();
      const { BatchWriteItemCommand: puts = 0, ...rest } = counting.byCommand;
      const pages = await Promise.all(
        Array.from({ length: rowShards }, async (_, bucket) => {
          let rows = 0;
          for await (const page of queryPartition<RowPageItem>(aws.dynamo, aws.table, rowPagePk(job.jobId, bucket))) rows += page.rows;
          return rows;
        }),
      );
      return { puts, perChunk: Object.values(rest).reduce((a, b) => a + b, 0), pages };
    }
    const small = await requestsFor(100, 1);
    const large = await requestsFor(400, 1);
    const spread = await requestsFor(400, 40);
    // One page holds all of a chunk's rows of its bucket: one put whatever the row count…
    expect(small).toMatchObject({ puts: 1, pages: [100] });
    expect(large).toMatchObject({ puts: 1, pages: [400] });
    // …and 40 buckets make 40 pages, 25 to a request, every row in exactly one of them.
    expect(spread.puts).toBe(2);
    expect(spread.pages.reduce((a, b) => a + b, 0)).toBe(400);
    expect(spread.pages.every((rows) => rows > 0)).toBe(true);
    // Nothing else grows with the rows.
    expect(large.perChunk).toBe(small.perChunk);
    expect(spread.perChunk).toBe(small.perChunk);
    expect(large.perChunk).toBeLessThanOrEqual(4);
  });
});

/** A DynamoDB client whose UpdateItem on a chunk record fails, as if the Lambda died there. */
function failingChunkUpdates(endpoint: string): DynamoDBClient {
  const client = localDynamoClient(endpoint);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const key = (args.input as { Key?: { sk?: { S?: string } } }).Key;
      if (context.commandName === 'UpdateItemCommand' && key?.sk?.S?.startsWith('CHUNK#')) throw new Error('killed');
      return next(args);
    },
    { step: 'initialize', name: 'dieOnChunkUpdate' },
  );
  return client;
}

function countingClient(endpoint: string) {
  const client = localDynamoClient(endpoint);
  const byCommand: Record<string, number> = {};
  client.middlewareStack.add(
    (next, context) => async (args) => {
      byCommand[context.commandName ?? 'unknown'] = (byCommand[context.commandName ?? 'unknown'] ?? 0) + 1;
      return next(args);
    },
    // `finalizeRequest` runs once per HTTP attempt, so SDK-level retries are counted too.
    { step: 'finalizeRequest', name: 'countRequests' },
  );
  return { client, byCommand, total: () => Object.values(byCommand).reduce((a, b) => a + b, 0) };
}
