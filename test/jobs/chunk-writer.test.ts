import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { exists } from '../support/pipeline';
import { localS3Client } from '../../local/emulators';
import { ChunkSpools, ChunkWriter, MIN_PART_BYTES, type ChunkWriterOptions } from '../../shared/jobs/chunk-writer';

const MiB = 1024 * 1024;
/** A spool of two smallest parts: a file past 10 MiB goes multipart. */
const SMALL: ChunkWriterOptions = { spoolBytes: 2 * MIN_PART_BYTES, partBytes: MIN_PART_BYTES, queueSize: 1 };

/** Lines of the given lengths, each of one repeated letter, so a misplaced byte shows. */
const linesOf = (lengths: number[]) => lengths.map((length, i) => Buffer.alloc(length, 0x61 + (i % 26)));
const fileOf = (lines: Buffer[]) => Buffer.concat(lines.flatMap((line) => [line, Buffer.from('\n')]));

describe('ChunkWriter', () => {
  const aws = useLocalAws();
  let fileNumber = 0;
  const clients: Array<{ destroy(): void }> = [];
  afterAll(() => clients.forEach((client) => client.destroy()));

  /** A client of its own that records each S3 call (and a part's length), in order. */
  function recordingS3() {
    const s3 = localS3Client(aws.s3Server.endpoint);
    clients.push(s3);
    const calls: string[] = [];
    s3.middlewareStack.add(
      (next, context) => (args) => {
        const input = args.input as { ContentLength?: number };
        calls.push(context.commandName === 'UploadPartCommand' ? `UploadPart ${input.ContentLength! / MiB} MiB` : context.commandName!.replace(/Command$/, ''));
        return next(args);
      },
      { step: 'initialize' },
    );
    return { s3, calls };
  }

  async function write(lines: Buffer[], options: ChunkWriterOptions) {
    const { s3, calls } = recordingS3();
    const key = `work/chunk-${++fileNumber}.jsonl`;
    const writer = new ChunkWriter(s3, aws.bucket, key, new ChunkSpools(options));
    for (const line of lines) await writer.appendLine(line);
    return { s3, calls, key, writer };
  }

  const stored = async (key: string) => {
    const response = await aws.s3.send(new GetObjectCommand({ Bucket: aws.bucket, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  };

  it('stores a file that fits its spool with one PutObject, each line followed by \\n', async () => {
    const lines = [Buffer.from('{"custom_id":"a","params":{}}'), Buffer.from('{"custom_id":"b","params":{"x":"é"}}')];
    const { calls, key, writer } = await write(lines, SMALL);
    await writer.finish();
    expect(calls).toEqual(['PutObject']);
    expect((await stored(key)).toString()).toBe('{"custom_id":"a","params":{}}\n{"custom_id":"b","params":{"x":"é"}}\n');
    expect(writer.bytes).toBe(68);
  });

  it('takes a line without waiting while it fits the part being filled', async () => {
    const writer = new ChunkWriter(aws.s3, aws.bucket, `work/chunk-${++fileNumber}.jsonl`, new ChunkSpools(SMALL));
    expect(writer.appendLine(Buffer.alloc(MIN_PART_BYTES - 1, 0x61))).toBeUndefined();
    const next = writer.appendLine(Buffer.from('b'));
    expect(next).toBeInstanceOf(Promise);
    await next;
    await writer.abort();
  });

  it('goes multipart once the spool is full, in parts of the part size but the last, byte for byte', async () => {
    // 23 MiB: lines straddle part boundaries, one (6 MiB) is longer than a part, one ends exactly on one.
    const lengths = [3 * MiB, 2 * MiB - 1, 6 * MiB, 100, MiB - 101, 4 * MiB, 7 * MiB - 5];
    const lines = linesOf(lengths);
    const { calls, key, writer } = await write(lines, SMALL);
    await writer.finish();
    expect(calls).toEqual([
      'CreateMultipartUpload',
      'UploadPart 5 MiB',
      'UploadPart 5 MiB',
      'UploadPart 5 MiB',
      'UploadPart 5 MiB',
      'UploadPart 3 MiB',
      'CompleteMultipartUpload',
    ]);
    const expected = fileOf(lines);
    expect(expected.length).toBe(23 * MiB);
    expect((await stored(key)).equals(expected)).toBe(true);
    expect(writer.bytes).toBe(expected.length);
  });

  it('hands its spool back for the next file once the file is stored', async () => {
    const spools = new ChunkSpools(SMALL);
    const spool = spools.take();
    spools.give(spool);
    const writer = new ChunkWriter(aws.s3, aws.bucket, `work/chunk-${++fileNumber}.jsonl`, spools);
    // Identity compared as a boolean: a failed toBe on two 10 MiB buffers would format them for minutes.
    expect(spools.take() === spool).toBe(false);
    await writer.appendLine(Buffer.from('one'));
    await writer.finish();
    expect(spools.take() === spool).toBe(true);
  });

  it('stores nothing when aborted, before or after going multipart', async () => {
    const small = await write(linesOf([1000]), SMALL);
    await small.writer.abort();
    expect(small.calls).toEqual([]);
    expect(await exists(aws, small.key)).toBe(false);

    const large = await write(linesOf([12 * MiB]), SMALL);
    await large.writer.abort();
    expect(large.calls).toEqual(['CreateMultipartUpload', 'UploadPart 5 MiB', 'UploadPart 5 MiB', 'AbortMultipartUpload']);
    expect(await exists(aws, large.key)).toBe(false);
    await expect(large.writer.appendLine(Buffer.from('more'))).rejects.toThrow('abandoned');
  });

  it('fails finish when S3 refuses the object, and stores nothing', async () => {
    const { s3 } = recordingS3();
    const writer = new ChunkWriter(s3, 'no-such-bucket', 'work/chunk.jsonl', new ChunkSpools(SMALL));
    await writer.appendLine(Buffer.from('x'));
    await expect(writer.finish()).rejects.toThrow(/bucket/i);
  });

  it('refuses options S3 or its part queue cannot work with', () => {
    expect(() => new ChunkSpools({ ...SMALL, partBytes: MIN_PART_BYTES - 1, spoolBytes: 2 * (MIN_PART_BYTES - 1) })).toThrow(RangeError);
    expect(() => new ChunkSpools({ ...SMALL, spoolBytes: 2 * MIN_PART_BYTES + 1 })).toThrow(RangeError);
    expect(() => new ChunkSpools({ ...SMALL, queueSize: 2 })).toThrow(RangeError);
  });
});
