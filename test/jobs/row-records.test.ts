import { describe, expect, it } from 'vitest';
import { queryPartition } from '../../shared/store/dynamo';
import { rowPagePk, type RowPageItem } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { MAX_PAGE_BYTES, readRowRecord, rowShard, rowShardCount, RowRecordWriter, type RowPage } from '../../shared/jobs/row-records';
import { useLocalAws } from '../support/aws';
import { uniqueJobId } from '../support/chunks';

describe('row shards', () => {
  it('gives a job about rowsPerShard rows a shard, and at least one shard', () => {
    expect(rowShardCount(0, 1000)).toBe(1);
    expect(rowShardCount(1000, 1000)).toBe(1);
    expect(rowShardCount(1001, 1000)).toBe(2);
    expect(rowShardCount(1_000_000, 1000)).toBe(1000);
    expect(rowShardCount(40, 1)).toBe(40);
  });

  it('puts a custom_id in the same shard every time, and spreads sequential ids evenly', () => {
    expect(rowShard('row-00042', 97)).toBe(rowShard('row-00042', 97));
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) counts[rowShard(`row-${String(i).padStart(6, '0')}`, 10)]! += 1;
    for (const count of counts) expect(Math.abs(count - 10_000)).toBeLessThan(1_000);
  });
});

describe('row records in DynamoDB', () => {
  const aws = useLocalAws();
  const page = (jobId: string, overrides: Partial<RowPage> = {}): RowPage => ({
    jobId,
    chunk: 3,
    attempt: 1,
    batchId: 'msgbatch_one',
    shards: 4,
    writer: 'C',
    updatedAt: '2030-01-01T00:00:00.000Z',
    ...overrides,
  });

  it('reads back every field of a record, with the result line in its attempt’s results file', async () => {
    const jobId = uniqueJobId('rows');
    const writer = new RowRecordWriter(aws.dynamo, aws.table, page(jobId));
    writer.add({
      customId: 'done-1',
      index: 7,
      status: 'succeeded',
      final: true,
      usage: { input_tokens: 10, output_tokens: 20, cache_creation_input_tokens: 3, cache_read_input_tokens: 4 },
      costUsd: 0.000125,
      line: { offset: 512, length: 300 },
    });
    writer.add({ customId: 'gone-2', index: 8, status: 'errored', final: false, errorType: 'overloaded_error', line: { offset: 812, length: 90 } });
    writer.add({ customId: 'lost-3', index: 9, status: 'errored', final: true, errorType: 'missing_result' });
    await writer.flush();

    const job = { jobId, rowShards: 4 };
    expect(await readRowRecord(aws.dynamo, aws.table, job, 'done-1')).toEqual({
      jobId,
      customId: 'done-1',
      chunk: 3,
      index: 7,
      status: 'succeeded',
      final: true,
      attempt: 1,
      batchId: 'msgbatch_one',
      usage: { input_tokens: 10, output_tokens: 20, cache_creation_input_tokens: 3, cache_read_input_tokens: 4 },
      costUsd: 0.000125,
      result: { key: jobKeys(jobId).chunkResults(3, 1), offset: 512, length: 300 },
      updatedAt: '2030-01-01T00:00:00.000Z',
    });
    expect(await readRowRecord(aws.dynamo, aws.table, job, 'gone-2')).toMatchObject({ status: 'errored', final: false, errorType: 'overloaded_error' });
    const lost = await readRowRecord(aws.dynamo, aws.table, job, 'lost-3');
    expect(lost).toMatchObject({ status: 'errored', final: true, errorType: 'missing_result' });
    expect(lost?.result).toBeUndefined();
    expect(await readRowRecord(aws.dynamo, aws.table, job, 'never')).toBeUndefined();
  });

  it("answers with a row's highest attempt, and within one attempt with the last written", async () => {
    const jobId = uniqueJobId('rows');
    const job = { jobId, rowShards: 1 };
    const first = new RowRecordWriter(aws.dynamo, aws.table, page(jobId, { shards: 1 }));
    first.add({ customId: 'a', index: 0, status: 'errored', final: false, errorType: 'overloaded_error' });
    first.add({ customId: 'b', index: 1, status: 'succeeded', final: true });
    await first.flush();
    const second = new RowRecordWriter(aws.dynamo, aws.table, page(jobId, { shards: 1, attempt: 2, batchId: 'msgbatch_two' }));
    second.add({ customId: 'a', index: 0, status: 'errored', final: false, errorType: 'overloaded_error' });
    await second.flush();
    // Finalize records what an attempt that was never collected left, after Collect's half-written page.
    const finalize = new RowRecordWriter(
      aws.dynamo,
      aws.table,
      page(jobId, { shards: 1, attempt: 2, writer: 'F', batchId: 'msgbatch_two', updatedAt: '2030-01-02T00:00:00.000Z' }),
    );
    finalize.add({ customId: 'a', index: 0, status: 'errored', final: true, errorType: 'chunk_failed' });
    await finalize.flush();

    expect(await readRowRecord(aws.dynamo, aws.table, job, 'a')).toMatchObject({ attempt: 2, batchId: 'msgbatch_two', final: true, errorType: 'chunk_failed' });
    expect(await readRowRecord(aws.dynamo, aws.table, job, 'b')).toMatchObject({ attempt: 1, status: 'succeeded' });
  });

  it('splits a shard whose records would pass the page limit into parts, each found by its rows', async () => {
    const jobId = uniqueJobId('rows');
    const writer = new RowRecordWriter(aws.dynamo, aws.table, page(jobId, { shards: 1 }));
    const id = (i: number) => `${'x'.repeat(56)}-${String(i).padStart(7, '0')}`;
    const rows = 4000;
    for (let i = 0; i < rows; i++)
      writer.add({ customId: id(i), index: i, status: 'succeeded', final: true, costUsd: 0.001234567, line: { offset: i * 1000, length: 999 } });
    const items = await writer.flush();

    const pages: RowPageItem[] = [];
    for await (const item of queryPartition<RowPageItem>(aws.dynamo, aws.table, rowPagePk(jobId, 0))) pages.push(item);
    expect(items).toBeGreaterThan(1);
    expect(pages.map((p) => p.part)).toEqual(Array.from({ length: items }, (_, part) => part));
    expect(pages.reduce((sum, p) => sum + p.rows, 0)).toBe(rows);
    for (const p of pages) expect(Buffer.byteLength(p.records)).toBeLessThanOrEqual(MAX_PAGE_BYTES);
    const job = { jobId, rowShards: 1 };
    for (const i of [0, rows / 2, rows - 1])
      expect(await readRowRecord(aws.dynamo, aws.table, job, id(i))).toMatchObject({ index: i, result: { offset: i * 1000 } });
  });
});
