import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { localS3Client } from '../../local/emulators';
import { ObjectWriter } from '../../shared/store/s3';
import { useLocalAws } from '../support/aws';

const MiB = 1024 * 1024;

/** A client of its own that records the name of every command it sends. */
function countingClient(endpoint: string): { s3: S3Client; commands: string[] } {
  const s3 = localS3Client(endpoint);
  const commands: string[] = [];
  s3.middlewareStack.add(
    (next, context) => (args) => {
      commands.push(context.commandName ?? '');
      return next(args);
    },
    { step: 'initialize' },
  );
  return { s3, commands };
}

/** Bytes whose every 5 MiB differs, so a part sent twice or out of order changes the object. */
function pattern(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i + 4 <= length; i += 4) bytes.writeUInt32LE(i >>> 2, i);
  return bytes;
}

describe('ObjectWriter', () => {
  const aws = useLocalAws();
  let keyNumber = 0;

  async function read(key: string): Promise<Buffer> {
    const response = await aws.s3.send(new GetObjectCommand({ Bucket: aws.bucket, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  it('writes an object of many parts byte for byte from writes of every size, in multipart', async () => {
    const { s3, commands } = countingClient(aws.s3Server.endpoint);
    const key = `writer/many-${++keyNumber}`;
    const expected = pattern(12 * MiB + 12_345);
    const writer = new ObjectWriter(s3, aws.bucket, key, { partSize: 5 * MiB });
    // 1-byte, 1 KB and 3 MiB writes, and one write bigger than a part.
    let at = 0;
    for (const size of [1, 1000, 3 * MiB, 6 * MiB, 1000]) {
      await writer.write(expected.subarray(at, at + size));
      at += size;
    }
    // The rest as appends of a row's size, most of which do not wait.
    for (let pending; at < expected.length; at += 1100) {
      pending = writer.append(expected.subarray(at, at + 1100));
      if (pending) await pending;
    }
    expect(await writer.finish()).toEqual({ bytes: expected.length });
    s3.destroy();

    expect((await read(key)).equals(expected)).toBe(true);
    expect(commands.filter((name) => name === 'UploadPartCommand')).toHaveLength(3);
    expect(commands.filter((name) => name !== 'UploadPartCommand')).toEqual(['CreateMultipartUploadCommand', 'CompleteMultipartUploadCommand']);
  });

  it('sends an object of exactly one part, or less, or nothing, as a single PutObject', async () => {
    const { s3, commands } = countingClient(aws.s3Server.endpoint);
    const full = pattern(5 * MiB);
    const keys = [`writer/full-${++keyNumber}`, `writer/small-${keyNumber}`, `writer/empty-${keyNumber}`];
    for (const [key, body] of [
      [keys[0]!, full],
      [keys[1]!, Buffer.from('{"a":1}\n')],
      [keys[2]!, Buffer.alloc(0)],
    ] as const) {
      const writer = new ObjectWriter(s3, aws.bucket, key, { partSize: 5 * MiB });
      await writer.write(body);
      await writer.finish();
    }
    s3.destroy();

    expect((await read(keys[0]!)).equals(full)).toBe(true);
    expect((await read(keys[1]!)).toString()).toBe('{"a":1}\n');
    expect((await read(keys[2]!)).length).toBe(0);
    expect(commands).toEqual(['PutObjectCommand', 'PutObjectCommand', 'PutObjectCommand']);
  });

  it('writes strings and JSONL lines as UTF-8', async () => {
    const key = `writer/lines-${++keyNumber}`;
    const writer = new ObjectWriter(aws.s3, aws.bucket, key);
    await writer.write('é');
    await writer.writeLine({ text: 'ü' });
    await writer.writeLine(Buffer.from('{"raw":true}'));
    expect(await writer.finish()).toEqual({ bytes: 2 + 14 + 13 });
    expect((await read(key)).toString('utf8')).toBe('é{"text":"ü"}\n{"raw":true}\n');
  });

  it('abort discards the parts already uploaded and leaves no object', async () => {
    const { s3, commands } = countingClient(aws.s3Server.endpoint);
    const key = `writer/aborted-${++keyNumber}`;
    const writer = new ObjectWriter(s3, aws.bucket, key, { partSize: 5 * MiB });
    await writer.write(pattern(11 * MiB));
    await writer.abort();
    s3.destroy();

    // Nothing is completed, whatever the upload had started; and no object appears.
    expect(commands).not.toContain('CompleteMultipartUploadCommand');
    expect(commands).not.toContain('PutObjectCommand');
    await expect(read(key)).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('reports a failed upload from finish', async () => {
    const writer = new ObjectWriter(aws.s3, 'no-such-bucket-for-writer', `writer/failed-${++keyNumber}`, { partSize: 5 * MiB });
    await writer.write(Buffer.from('{"a":1}\n'));
    await expect(writer.finish()).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });
});
