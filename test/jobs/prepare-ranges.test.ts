/**
 * Attempt 1 of a chunk as a byte range of the input (shared/jobs/chunk-files.ts): Prepare writes
 * only a row index; readers get exactly the requests validateLine accepted, from exactly the upload
 * Prepare read, or a named error.
 */
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import {
  ChunkFileCorrupt,
  cutRows,
  RowIndex,
  storeRowIndex,
  requestCustomIds,
  requestEntries,
  requestIds,
  requestLines,
  requestPositions,
  type IndexRow,
} from '../../shared/jobs/chunk-files';
import { prepareJob } from '../../shared/jobs/prepare-job';
import { registerJob, SourceChanged, SourceNotFound } from '../../shared/jobs/register-job';
import { splitLines } from '../../shared/jsonl/lines';
import { jobKeys } from '../../shared/store/keys';
import { CustomIdSet, validateLine } from '../../shared/validation/request';
import type { ValidationMode } from '../../shared/config';
import { useLocalAws } from '../support/aws';
import { pipelineConfig, putInput, readText, request } from '../support/pipeline';

const line = (value: object) => JSON.stringify(value);

describe('attempt 1 as a byte range of the input', () => {
  const aws = useLocalAws();
  let fileNumber = 0;

  async function prepared(body: string | Buffer, mode: ValidationMode = 'lenient', maxRequestsPerChunk = 100_000) {
    const key = `inbox/ranges-${++fileNumber}.jsonl`;
    await putInput(aws, key, body);
    const config = pipelineConfig(aws, { maxRequestsPerChunk, maxBytesPerChunk: 1_000_000 });
    const deps = { s3: aws.s3, dynamo: aws.dynamo, config };
    const { jobId } = await registerJob({ bucket: aws.bucket, key, mode }, deps);
    const result = await prepareJob({ jobId }, deps);
    return { jobId, key, result };
  }

  const collect = async <T>(items: AsyncIterable<T>) => {
    const all: T[] = [];
    for await (const item of items) all.push(item);
    return all;
  };
  const ref = (jobId: string, chunk = 0) => ({ jobId, chunk, attempt: 1 });
  const text = async (jobId: string, chunk = 0) => (await collect(requestLines(aws.s3, aws.bucket, ref(jobId, chunk)))).map((b) => b.toString('utf8'));

  /** What validateLine accepts of `body`, as today's chunk files held it: each request's own bytes. */
  async function accepted(body: Buffer) {
    const customIds = new CustomIdSet();
    const bodies: string[] = [];
    for await (const raw of splitLines([body])) {
      if (raw.bytes.toString().trim() === '') continue;
      const outcome = validateLine(raw, { customIds });
      if (outcome.ok) bodies.push(outcome.body.toString('utf8'));
    }
    return bodies;
  }

  it("reads a lenient file's requests byte for byte as validated, skipping what lies between them, without copying them", async () => {
    const tooLong = `{"custom_id":"huge","params":"${'x'.repeat(1_100_000)}"}`;
    const body = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(
        [
          `  ${line(request('a'))}\t`,
          '',
          '{"custom_id": "broken", "params": {',
          `${line(request('b', 'café 😀'))}\r`,
          line({ custom_id: 'no-params' }),
          tooLong,
          '   ',
          `{"custom_id": "c", "params": {"model": "claude-sonnet-4-5", "max_tokens": 64, "top_k": 9007199254740993, "messages": [{"role": "user", "content": "big"}]}}`,
          line(request('a')),
          `\uFEFF${line(request('d'))}`,
        ].join('\n'),
      ),
    ]);
    const { jobId, result } = await prepared(body);

    expect(result).toMatchObject({ outcome: 'ready', chunks: [0], validRows: 4, invalidRows: 4 });
    const bodies = await text(jobId);
    expect(bodies).toEqual(await accepted(body));
    expect(bodies.map((b) => (JSON.parse(b) as { custom_id: string }).custom_id)).toEqual(['a', 'b', 'c', 'd']);
    expect(bodies[2]).toContain('9007199254740993');
    expect(await collect(requestCustomIds(aws.s3, aws.bucket, ref(jobId)))).toEqual(['a', 'b', 'c', 'd']);
    expect(await requestPositions(aws.s3, aws.bucket, ref(jobId))).toEqual(
      new Map([
        ['a', 0],
        ['b', 1],
        ['c', 2],
        ['d', 3],
      ]),
    );
    const entries = await collect(requestEntries(aws.s3, aws.bucket, ref(jobId)));
    expect(entries.map((e) => [e.customId, e.line.lineNumber])).toEqual([
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['d', 4],
    ]);
    // The index names the requests' places; it holds no prompt text.
    const index = (await readText(aws, jobKeys(jobId).chunkRowIndex(0)))!;
    expect(index).not.toContain('Say');
    expect(index.split('\n').filter(Boolean)).toHaveLength(5);
  });

  it('cuts requests that straddle the network pieces of a multi-megabyte range, chunk by chunk', async () => {
    const lines = Array.from({ length: 3_000 }, (_, i) =>
      i % 7 === 3 ? `{"custom_id":"bad-${i}"` : `${' '.repeat(i % 5)}${line(request(`r${i}`, 'é'.repeat(i % 1_500)))}`,
    );
    const body = Buffer.from(lines.join('\r\n') + '\r\n');
    const { jobId, result } = await prepared(body, 'lenient', 1_000);

    expect(result.chunks.length).toBeGreaterThan(3);
    const all: string[] = [];
    for (const chunk of result.chunks) all.push(...(await text(jobId, chunk)));
    expect(all).toEqual(await accepted(body));
  });

  it('fails with SourceChanged rather than send other bytes when an unversioned input is overwritten after Prepare; custom_ids still read', async () => {
    const rows = [request('a'), request('b')];
    const { jobId, key } = await prepared(rows.map(line).join('\n') + '\n', 'strict');
    // Same length, other bytes: only the ETag tells.
    await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: key, Body: [request('x'), request('y')].map(line).join('\n') + '\n' }));

    await expect(collect(requestLines(aws.s3, aws.bucket, ref(jobId)))).rejects.toBeInstanceOf(SourceChanged);
    await expect(collect(requestEntries(aws.s3, aws.bucket, ref(jobId)))).rejects.toThrow(/overwritten after the job was prepared/);
    expect(await requestIds(aws.s3, aws.bucket, ref(jobId))).toEqual(new Set(['a', 'b']));
  });

  it('refuses a row index whose custom_id is not the one its bytes name', async () => {
    const body = line(request('a')) + '\n';
    const put = await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: 'inbox/mismatched.jsonl', Body: body }));
    const index = new RowIndex();
    index.add(0, body.length - 1, 'b');
    await storeRowIndex(
      aws.s3,
      aws.bucket,
      'job-mismatched',
      0,
      { bucket: aws.bucket, key: 'inbox/mismatched.jsonl', etag: put.ETag!.replace(/"/g, '') },
      index,
    );

    await expect(collect(requestLines(aws.s3, aws.bucket, ref('job-mismatched')))).rejects.toBeInstanceOf(ChunkFileCorrupt);
  });

  it('fails with SourceNotFound when the input is deleted after Prepare', async () => {
    const { jobId, key } = await prepared(line(request('a')) + '\n', 'strict');
    await aws.s3.send(new DeleteObjectCommand({ Bucket: aws.bucket, Key: key }));

    await expect(collect(requestLines(aws.s3, aws.bucket, ref(jobId)))).rejects.toBeInstanceOf(SourceNotFound);
    expect(await requestIds(aws.s3, aws.bucket, ref(jobId))).toEqual(new Set(['a']));
  });
});

describe('cutRows', () => {
  async function* rowsOf(rows: IndexRow[]) {
    yield* rows;
  }
  const cut = async (pieces: string[], rows: IndexRow[]) => {
    const out: string[] = [];
    for await (const { bytes } of cutRows(
      pieces.map((p) => Buffer.from(p)),
      rowsOf(rows),
    ))
      out.push(bytes.toString());
    return out;
  };

  it('skips gaps and takes lengths across piece boundaries', async () => {
    const rows = [
      { gap: 0, length: 3, customId: 'a' },
      { gap: 2, length: 4, customId: 'b' },
      { gap: 5, length: 1, customId: 'c' },
    ];
    expect(await cut(['aaa', '..bb', 'bb.', '...', '.c'], rows)).toEqual(['aaa', 'bbbb', 'c']);
    expect(await cut(['aaa..bbbb.....c'], rows)).toEqual(['aaa', 'bbbb', 'c']);
  });

  it('fails with SourceChanged when the range ends before its requests do', async () => {
    await expect(cut(['aa'], [{ gap: 0, length: 3, customId: 'a' }])).rejects.toBeInstanceOf(SourceChanged);
  });
});

describe('RowIndex', () => {
  it('writes its source and range, then each request as "<gap> <length> <custom_id>", whatever the numbers', () => {
    const index = new RowIndex();
    index.add(9_876_543_210, 1_100, 'a');
    index.add(9_876_544_311, 7, 'B_2-x');
    index.add(9_876_544_318 + 1_234_567, 10, 'c');
    for (let i = 0; i < 5_000; i++) index.add(9_877_778_895 + 1 + i * 12, 11, `row-${i}`);

    const lines = index.text({ bucket: 'b', key: 'inbox/k.jsonl', etag: 'e-1' }).toString('latin1').split('\n');
    expect(JSON.parse(lines[0]!)).toEqual({
      source: { bucket: 'b', key: 'inbox/k.jsonl', etag: 'e-1' },
      start: 9_876_543_210,
      end: 9_877_778_895 + 1 + 4_999 * 12 + 11,
      rows: 5_003,
    });
    expect(lines.slice(1, 5)).toEqual(['0 1100 a', '1 7 B_2-x', '1234567 10 c', '1 11 row-0']);
    expect(lines[5_003]).toBe('1 11 row-4999');
    expect(lines[5_004]).toBe('');
    expect(() => index.add(0, 1, 'z')).toThrow(RangeError);
  });
});
