import { describe, expect, it } from 'vitest';
import { WIRE_GROWTH_BYTES } from '../../shared/jobs/wire-ids';
import { useLocalAws } from '../support/aws';
import { attemptText } from '../support/chunks';
import { exists, jsonl, pipelineConfig, putInput, readText, request, requests } from '../support/pipeline';
import { getItem, putItem, queryPartition, updateItem } from '../../shared/store/dynamo';
import { jobPk, type ChunkItem, type JobItem } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { registerJob, SourceChanged } from '../../shared/jobs/register-job';
import type { PrepareOutput } from '../../shared/jobs/contract';
import { InputTooLarge, JobNotFound, lambdaLimits, MAX_CHUNKS, prepareJob, TooManyChunks, type PrepareLimits } from '../../shared/jobs/prepare-job';
import { sourceLines } from '../../shared/validation/input-lines';
import type { PipelineConfig, ValidationMode } from '../../shared/config';

const NOW = new Date('2026-03-04T05:06:07.000Z');
const TTL = Math.floor(NOW.getTime() / 1000) + 90 * 86_400;
const line = (value: object) => JSON.stringify(value);
const bytesOf = (value: object) => Buffer.byteLength(line(value));
/** The create body of rows: `{"requests":[` + rows joined by `,` + `]}`. */
const bodyBytes = (rows: object[]) => 15 + rows.reduce((sum, row) => sum + bytesOf(row), 0) + rows.length - 1;

describe('prepareJob', () => {
  const aws = useLocalAws();
  let fileNumber = 0;

  async function preparedJob(
    body: string | Buffer,
    options: { mode?: ValidationMode; config?: Partial<PipelineConfig>; maxChunks?: number; limits?: PrepareLimits } = {},
  ) {
    const key = `inbox/prepare-${++fileNumber}.jsonl`;
    await putInput(aws, key, body);
    const config = pipelineConfig(aws, options.config);
    const deps = { s3: aws.s3, dynamo: aws.dynamo, config, now: () => NOW.getTime(), maxChunks: options.maxChunks, limits: options.limits };
    const { jobId } = await registerJob({ bucket: aws.bucket, key, mode: options.mode ?? 'strict' }, deps);
    return { jobId, key, deps, keys: jobKeys(jobId), run: () => prepareJob({ jobId }, deps) };
  }

  const job = (jobId: string) => getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: 'JOB' });
  const chunkItems = async (jobId: string) => {
    const items: ChunkItem[] = [];
    for await (const item of queryPartition<ChunkItem>(aws.dynamo, aws.table, jobPk(jobId), 'CHUNK#')) items.push(item);
    return items;
  };
  const invalidReport = async (jobId: string) =>
    (await readText(aws, jobKeys(jobId).invalidWork))
      .split('\n')
      .filter(Boolean)
      .map((text) => JSON.parse(text) as { line: number; custom_id?: string; code: string; reason: string });

  it('writes a small file as one chunk, its rows as they were, and records the chunk and the counts', async () => {
    const rows = [request('a'), request('b'), request('c')];
    const { jobId, keys, run } = await preparedJob(jsonl(rows));

    const result = await run();

    expect(result).toEqual({ jobId, outcome: 'ready', chunks: [0], validRows: 3, invalidRows: 0 });
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl(rows));
    expect(await readText(aws, keys.invalidWork)).toBe('');
    expect(await chunkItems(jobId)).toEqual([
      {
        pk: `JOB#${jobId}`,
        sk: 'CHUNK#00000',
        type: 'chunk',
        jobId,
        chunk: 0,
        status: 'pending',
        rows: 3,
        bytes: bodyBytes(rows),
        firstLine: 1,
        lastLine: 3,
        currentAttempt: 1,
        attempts: [{ attempt: 1, rows: 3, bytes: bodyBytes(rows), intentAt: '' }],
        updatedAt: NOW.toISOString(),
        ttl: TTL,
      },
    ]);
    expect(await job(jobId)).toMatchObject({
      status: 'running',
      totalRows: 3,
      validRows: 3,
      invalidRows: 0,
      chunkCount: 1,
      updatedAt: NOW.toISOString(),
    });
  });

  it('starts a new chunk before a row would pass the row limit', async () => {
    const rows = requests(7);
    const { jobId, run } = await preparedJob(jsonl(rows), { config: { maxRequestsPerChunk: 3 } });

    const result = await run();

    expect(result.chunks).toEqual([0, 1, 2]);
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl(rows.slice(0, 3)));
    expect(await attemptText(aws, { jobId, chunk: 1, attempt: 1 })).toBe(jsonl(rows.slice(3, 6)));
    expect(await attemptText(aws, { jobId, chunk: 2, attempt: 1 })).toBe(jsonl(rows.slice(6)));
    expect((await chunkItems(jobId)).map(({ chunk, rows, firstLine, lastLine }) => ({ chunk, rows, firstLine, lastLine }))).toEqual([
      { chunk: 0, rows: 3, firstLine: 1, lastLine: 3 },
      { chunk: 1, rows: 3, firstLine: 4, lastLine: 6 },
      { chunk: 2, rows: 1, firstLine: 7, lastLine: 7 },
    ]);
  });

  it('starts a new chunk before a row would take the create body past the byte limit', async () => {
    // Rows of equal size: two fit a body of exactly the limit as sent (each id replaced by a wire id
    // up to WIRE_GROWTH_BYTES longer), a third would not.
    const rows = Array.from({ length: 5 }, (_, i) => request(`b${i}`, 'x'.repeat(600)));
    const limit = bodyBytes(rows.slice(0, 2)) + 2 * WIRE_GROWTH_BYTES;
    expect(bodyBytes(rows.slice(0, 3))).toBeGreaterThan(limit);
    const { jobId, run } = await preparedJob(jsonl(rows), { config: { maxBytesPerChunk: limit } });

    const result = await run();

    expect(result.chunks).toEqual([0, 1, 2]);
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl(rows.slice(0, 2)));
    expect(await attemptText(aws, { jobId, chunk: 1, attempt: 1 })).toBe(jsonl(rows.slice(2, 4)));
    expect(await attemptText(aws, { jobId, chunk: 2, attempt: 1 })).toBe(jsonl(rows.slice(4)));
    // Recorded as written, the requests file's body.
    const written = bodyBytes(rows.slice(0, 2));
    expect((await chunkItems(jobId)).map((c) => c.bytes)).toEqual([written, written, bodyBytes(rows.slice(4))]);
  });

  it('keeps the byte limit as sent: rows that fit only as written go to chunks of their own', async () => {
    const rows = Array.from({ length: 3 }, (_, i) => request(`c${i}`, 'x'.repeat(600)));
    // Two rows fill the limit exactly as written; with their ids as wire ids they would pass it.
    const limit = bodyBytes(rows.slice(0, 2));
    const { run } = await preparedJob(jsonl(rows), { config: { maxBytesPerChunk: limit } });

    expect((await run()).chunks).toEqual([0, 1, 2]);
  });

  const mixed = [
    line(request('ok-1')),
    '{"custom_id": "broken", "params": ',
    line(request('ok-2')),
    line(request('ok-1', 'again')),
    line({ custom_id: 'no-params' }),
    line(request('ok-3')),
  ];

  it('rejects a strict job with invalid lines: nothing to submit, every invalid line reported', async () => {
    const { jobId, run } = await preparedJob(jsonl(mixed), { mode: 'strict' });

    const result = await run();

    expect(result).toEqual({ jobId, outcome: 'rejected', chunks: [], validRows: 3, invalidRows: 3 });
    expect(await chunkItems(jobId)).toEqual([]);
    expect(await job(jobId)).toMatchObject({ status: 'rejected', totalRows: 6, validRows: 3, invalidRows: 3, chunkCount: 0 });
    const report = await invalidReport(jobId);
    expect(report.map(({ line, custom_id, code }) => ({ line, custom_id, code }))).toEqual([
      { line: 2, custom_id: undefined, code: 'invalid_json' },
      { line: 4, custom_id: 'ok-1', code: 'duplicate_custom_id' },
      { line: 5, custom_id: 'no-params', code: 'missing_params' },
    ]);
    expect(report[1]!.reason).toBe('line 4: custom_id "ok-1" is already used on line 1');
  });

  it('lets the valid rows of a lenient job go ahead and reports the invalid ones', async () => {
    const { jobId, run } = await preparedJob(jsonl(mixed), { mode: 'lenient' });

    const result = await run();

    expect(result).toEqual({ jobId, outcome: 'ready', chunks: [0], validRows: 3, invalidRows: 3 });
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl([mixed[0]!, mixed[2]!, mixed[5]!]));
    expect((await chunkItems(jobId))[0]).toMatchObject({ rows: 3, firstLine: 1, lastLine: 6 });
    expect((await invalidReport(jobId)).map((r) => r.line)).toEqual([2, 4, 5]);
    expect(await job(jobId)).toMatchObject({ status: 'running', totalRows: 6, validRows: 3, invalidRows: 3, chunkCount: 1 });
  });

  it('skips blank lines and accepts a BOM and CRLF line ends, writing plain LF lines', async () => {
    const rows = [request('x'), request('y'), request('z')];
    const body = '\uFEFF' + [line(rows[0]!), '', line(rows[1]!), '   ', '\t', line(rows[2]!), ''].join('\r\n');
    const { jobId, run } = await preparedJob(body);

    const result = await run();

    expect(result).toMatchObject({ outcome: 'ready', validRows: 3, invalidRows: 0 });
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl(rows));
    expect((await chunkItems(jobId))[0]).toMatchObject({ rows: 3, firstLine: 1, lastLine: 6, bytes: bodyBytes(rows) });
  });

  it('makes an empty job of an empty file, and of a file of blank lines', async () => {
    for (const body of ['', '\n\n  \r\n']) {
      const { jobId, keys, run } = await preparedJob(body);

      expect(await run()).toEqual({ jobId, outcome: 'empty', chunks: [], validRows: 0, invalidRows: 0 });
      expect(await readText(aws, keys.invalidWork)).toBe('');
      expect(await exists(aws, keys.chunkRowIndex(0))).toBe(false);
      expect(await job(jobId)).toMatchObject({ status: 'running', totalRows: 0, chunkCount: 0 });
    }
  });

  it('reports a line over the batch byte limit as invalid and reads on past it', async () => {
    const limit = 4096;
    const small = [request('s1'), request('s2'), request('s3'), request('s4')];
    const lines = [
      line(small[0]!),
      line(request('big', 'x'.repeat(5000))), // over the limit: judged by the validator
      line(small[1]!),
      line(request('huge', 'y'.repeat(200_000))), // far over it: skipped unread
      line(small[2]!),
      line(small[3]!),
      line(request('last-huge', 'z'.repeat(200_000))),
    ];
    // The last line has no line end.
    const { jobId, run } = await preparedJob(lines.join('\n'), { mode: 'lenient', config: { maxBytesPerChunk: limit } });

    const result = await run();

    expect(result).toMatchObject({ outcome: 'ready', validRows: 4, invalidRows: 3 });
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl(small));
    const report = await invalidReport(jobId);
    expect(report.map(({ line, code }) => ({ line, code }))).toEqual([
      { line: 2, code: 'request_too_large' },
      { line: 4, code: 'request_too_large' },
      { line: 7, code: 'request_too_large' },
    ]);
    // 4,096 less the body's framing (15) and the wire id's growth (20): the most one request may be as written.
    expect(report[1]!.reason).toBe("line 4 is more than 69,597 bytes; a request may be at most 4,061 bytes (one batch's size limit)");
  });

  it('converges when run again: a finished Prepare answers the same, an interrupted one is redone', async () => {
    const rows = requests(5);
    const { jobId, run } = await preparedJob(jsonl(rows), { config: { maxRequestsPerChunk: 2 } });
    const first = await run();
    const itemsAfterFirst = await chunkItems(jobId);
    const filesAfterFirst = await Promise.all([0, 1, 2].map((chunk) => attemptText(aws, { jobId, chunk, attempt: 1 })));

    expect(await run()).toEqual(first);

    // As if a run died after writing its chunks, with a stray record from a different chunking.
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: 'JOB' }, { set: { status: 'preparing' }, remove: ['chunkCount'] });
    await putItem(aws.dynamo, aws.table, { ...itemsAfterFirst[2]!, sk: 'CHUNK#00003', chunk: 3 });

    expect(await run()).toEqual(first);
    expect(await chunkItems(jobId)).toEqual(itemsAfterFirst);
    expect(await Promise.all([0, 1, 2].map((chunk) => attemptText(aws, { jobId, chunk, attempt: 1 })))).toEqual(filesAfterFirst);
    expect(await job(jobId)).toMatchObject({ status: 'running', chunkCount: 3, validRows: 5 });
  });

  it('chunks a larger file of 20,000 rows by the row limit, counting every row', async () => {
    const rows = requests(20_000);
    const broken = new Set([10, 12_345, 19_999]);
    const lines = rows.map((row, i) => (broken.has(i + 1) ? '{not json' : line(row)));
    const { jobId, run } = await preparedJob(jsonl(lines), { mode: 'lenient', config: { maxRequestsPerChunk: 6_000 } });

    const result = await run();

    expect(result).toMatchObject({ outcome: 'ready', validRows: 19_997, invalidRows: 3 });
    expect(result.chunks).toEqual([0, 1, 2, 3]);
    const items = await chunkItems(jobId);
    expect(items.map(({ rows, firstLine, lastLine }) => ({ rows, firstLine, lastLine }))).toEqual([
      { rows: 6_000, firstLine: 1, lastLine: 6_001 },
      { rows: 6_000, firstLine: 6_002, lastLine: 12_001 },
      { rows: 6_000, firstLine: 12_002, lastLine: 18_002 },
      { rows: 1_997, firstLine: 18_003, lastLine: 20_000 },
    ]);
    const last = (await attemptText(aws, { jobId, chunk: 3, attempt: 1 })).split('\n');
    expect(last).toHaveLength(1_998);
    expect(JSON.parse(last[0]!).custom_id).toBe('r-18003');
    expect(JSON.parse(last[1_996]!).custom_id).toBe('r-20000');
    expect((await invalidReport(jobId)).map((r) => r.line)).toEqual([10, 12_345, 19_999]);
  });

  it('refuses with TooManyChunks as soon as a row would start the chunk past the limit, writing nothing of it', async () => {
    const config = { maxRequestsPerChunk: 2, maxBytesPerChunk: 1_000_000 };
    const { jobId, keys, run } = await preparedJob(jsonl(requests(7)), { config, maxChunks: 2 });

    const failure = run();

    await expect(failure).rejects.toBeInstanceOf(TooManyChunks);
    await expect(failure).rejects.toThrow(
      'line 5 would start chunk 3, but a job may have at most 2 chunks (each at most BATCHLINE_MAX_REQUESTS_PER_CHUNK = 2 requests ' +
        'and BATCHLINE_MAX_BYTES_PER_CHUNK = 1,000,000 bytes): raise those settings or split the file',
    );
    expect(await exists(aws, keys.chunkRowIndex(2))).toBe(false);
    expect(await chunkItems(jobId)).toEqual([]);
    const record = await job(jobId);
    expect(record).toMatchObject({ status: 'preparing' });
    expect(record?.chunkCount).toBeUndefined();
  });

  describe('within the limits of one invocation', () => {
    /** What a stopped Prepare leaves: no chunk record, no chunk count, the job still preparing for MarkJobFailed. */
    async function expectNothingPrepared(jobId: string, keys: ReturnType<typeof jobKeys>) {
      expect(await exists(aws, keys.chunkRowIndex(0))).toBe(false);
      expect(await chunkItems(jobId)).toEqual([]);
      const record = await job(jobId);
      expect(record).toMatchObject({ status: 'preparing' });
      expect(record?.chunkCount).toBeUndefined();
    }

    it("stops with InputTooLarge when its memory passes 85% of the function's, naming the settings to change", async () => {
      // This process uses far more than 85% of 64 MiB: the real resident size, measured.
      const body = jsonl(requests(3));
      const { jobId, keys, run } = await preparedJob(body, { limits: { memoryMiB: 64 } });

      const failure = run();

      await expect(failure).rejects.toBeInstanceOf(InputTooLarge);
      const message = (await failure.catch((error: Error) => error)) as Error;
      const firstLine = Buffer.byteLength(body.split('\n')[0]!) + 1;
      expect(message.message).toMatch(
        new RegExp(
          `^Prepare ran short of memory: at line 1 \\(0 rows so far, ${firstLine} bytes of ${Buffer.byteLength(body)} bytes read\\) ` +
            "it was using [\\d,]+ MiB of the function's 64 MiB: lower the stack setting prepareLinesPerInvocation \\(now 2,000,000\\)( to about [\\d,]+)?, " +
            'or raise the stack setting prepareMemoryMiB$',
        ),
      );
      await expectNothingPrepared(jobId, keys);
    });

    it('stops with InputTooLarge when less than a minute is left with input unread, checking again every 4,096 lines', async () => {
      const rows = requests(5_000);
      const body = jsonl(rows);
      // The invocation's clock: 900 s at the start and at the first line's check, 30 s at the next.
      const left = [900_000, 890_000, 30_000];
      const limits = { remainingMs: () => left.shift() ?? 30_000 };
      const { jobId, keys, run } = await preparedJob(body, { limits });

      const failure = run();

      await expect(failure).rejects.toBeInstanceOf(InputTooLarge);
      // Read: up to the end of line 4,097, the line the check is made at.
      const read = Buffer.byteLength(jsonl(rows.slice(0, 4_097)));
      const size = Buffer.byteLength(body);
      const kb = (bytes: number) => `${(bytes / 1e3).toLocaleString('en-US', { maximumFractionDigits: 1 })} KB`;
      // 870 s to read 4,097 lines; one invocation has 840 s (900 less the minute kept to fail cleanly): 3,955 lines, in thousands.
      await expect(failure).rejects.toThrow(
        `Prepare ran short of time: at line 4,097 (4,096 rows so far, ${kb(read)} of ${kb(size)} read) it had 30 s of its time left: ` +
          'lower the stack setting prepareLinesPerInvocation (now 2,000,000) to about 3,000',
      );
      expect(left).toEqual([]);
      await expectNothingPrepared(jobId, keys);
    });

    it('prepares a file that fits, and reads its last line even with less than a minute left', async () => {
      const body = jsonl(requests(3));
      // Short of time only once nothing is left to read: Prepare finishes rather than fail the job.
      const left = [900_000, 890_000];
      const { jobId, run } = await preparedJob(body, { limits: { memoryMiB: 10_240, remainingMs: () => left.shift() ?? 1_000 } });

      expect(await run()).toEqual({ jobId, outcome: 'ready', chunks: [0], validRows: 3, invalidRows: 0 });
    });
  });

  it("takes its limits from Lambda: the function's memory from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, the time from the context", () => {
    const context = {
      left: 12_345,
      getRemainingTimeInMillis() {
        return this.left;
      },
    };

    const limits = lambdaLimits(context, { AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '4096' });

    expect(limits.memoryMiB).toBe(4_096);
    expect(limits.remainingMs?.()).toBe(12_345);
    expect(lambdaLimits(undefined, {})).toEqual({ memoryMiB: undefined, remainingMs: undefined });
    expect(() => lambdaLimits(undefined, { AWS_LAMBDA_FUNCTION_MEMORY_SIZE: 'lots' })).toThrow('AWS_LAMBDA_FUNCTION_MEMORY_SIZE');
  });

  it('accepts a file of exactly the most chunks a job may have', async () => {
    const { jobId, run } = await preparedJob(jsonl(requests(4)), { config: { maxRequestsPerChunk: 2 }, maxChunks: 2 });

    expect(await run()).toEqual({ jobId, outcome: 'ready', chunks: [0, 1], validRows: 4, invalidRows: 0 });
  });

  it('keeps what Finalize needs of a rejected strict job: the rows before the first invalid line in chunk files, the ids of the later valid rows', async () => {
    const rows = requests(5);
    const lines = [line(rows[0]!), line(rows[1]!), line(rows[2]!), '{"custom_id": "broken"', line(rows[3]!), line({ custom_id: 'no-params' }), line(rows[4]!)];
    const { jobId, keys, run } = await preparedJob(jsonl(lines), { mode: 'strict', config: { maxRequestsPerChunk: 2 } });

    expect(await run()).toEqual({ jobId, outcome: 'rejected', chunks: [], validRows: 5, invalidRows: 2 });

    // The chunk in progress at the first invalid line is stored, not dropped.
    expect(await attemptText(aws, { jobId, chunk: 0, attempt: 1 })).toBe(jsonl(rows.slice(0, 2)));
    expect(await attemptText(aws, { jobId, chunk: 1, attempt: 1 })).toBe(jsonl(rows.slice(2, 3)));
    expect(await exists(aws, keys.chunkRowIndex(2))).toBe(false);
    const ids = (rows.slice(3) as Array<{ custom_id: string }>).map((row) => JSON.stringify(row.custom_id));
    expect(await readText(aws, keys.rejectedValidIds)).toBe([JSON.stringify({ chunkFiles: 2 }), ...ids].join('\n') + '\n');
    expect(await chunkItems(jobId)).toEqual([]);
  });

  it('records nothing for a rejected job when no file is rejected (strict and valid, lenient with invalid lines)', async () => {
    const strict = await preparedJob(jsonl(requests(3)), { mode: 'strict' });
    const lenient = await preparedJob(jsonl(mixed), { mode: 'lenient' });

    expect((await strict.run()).outcome).toBe('ready');
    expect((await lenient.run()).outcome).toBe('ready');
    expect(await exists(aws, strict.keys.rejectedValidIds)).toBe(false);
    expect(await exists(aws, lenient.keys.rejectedValidIds)).toBe(false);
  });

  it('keeps the output of a job at the chunk limit, with a 32 KB caught error added, under the 256 KB state limit', () => {
    // The longest job id (40-character slug) and 10-digit counts; Step Functions caps an error's Cause at 32,768 characters.
    const atLimit: PrepareOutput = {
      jobId: `${'s'.repeat(40)}-0123456789abcdef`,
      outcome: 'ready',
      chunks: Array.from({ length: MAX_CHUNKS }, (_, chunk) => chunk),
      validRows: 4_000_000_000,
      invalidRows: 4_000_000_000,
    };
    // A cause of quotes doubles when serialized: the worst a 32,768-character Cause can be.
    const markJobFailedInput = { ...atLimit, error: { Error: 'States.TaskFailed', Cause: '"'.repeat(32_768) } };

    expect(MAX_CHUNKS).toBe(30_000);
    expect(Buffer.byteLength(JSON.stringify(markJobFailedInput))).toBeLessThanOrEqual(256 * 1024);
  });

  it('fails with SourceChanged when the file was overwritten after it was registered', async () => {
    const { key, run } = await preparedJob(jsonl([request('a')]));
    await putInput(aws, key, jsonl([request('b')]));

    await expect(run()).rejects.toBeInstanceOf(SourceChanged);
  });

  it('fails with JobNotFound for an unknown job', async () => {
    const config = pipelineConfig(aws);
    await expect(prepareJob({ jobId: 'nope-0000000000000000' }, { s3: aws.s3, dynamo: aws.dynamo, config })).rejects.toBeInstanceOf(JobNotFound);
  });
});

describe('sourceLines', () => {
  const collect = async (pieces: string[], maxLineBytes: number) => {
    const out: Array<string | number> = [];
    for await (const entry of sourceLines(
      pieces.map((p) => Buffer.from(p)),
      maxLineBytes,
    )) {
      out.push('tooLong' in entry ? -entry.lineNumber : `${entry.lineNumber}:${entry.bytes.toString()}@${entry.offset}`);
    }
    return out;
  };

  it('yields lines as splitLines does when none is too long', async () => {
    expect(await collect(['ab\ncd', '\r\nef'], 10)).toEqual(['1:ab@0', '2:cd@3', '3:ef@7']);
  });

  it('reports a too-long line by its number and resumes after its line end, mid-piece or pieces later', async () => {
    expect(await collect(['ok\n0123456789ABC\nnext\n'], 5)).toEqual(['1:ok@0', -2, '3:next@17']);
    expect(await collect(['ok\n0123', '456789', 'ABC', 'DEF\nne', 'xt\n'], 5)).toEqual(['1:ok@0', -2, '3:next@20']);
  });

  it('handles too-long lines first, in a row, and last without a line end', async () => {
    expect(await collect(['0123456789\n', 'abcdefghij\nok\nxxxxxxxxxxxxx'], 5)).toEqual([-1, -2, '3:ok@22', -4]);
  });
});
