/**
 * Joining objects inside S3 (shared/store/concat.ts) on both local engines: s3rver, through the
 * part-copy shim (local/s3-part-copy.ts), and moto_server, which has UploadPartCopy and S3's 5 MiB
 * part rule of its own (skipped where moto_server is not installed; CI has it).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { startS3, type LocalBackend, type LocalS3 } from '../../local/emulators';
import { MOTO_COMMAND } from '../../local/moto';
import { concatObjects, MIN_PART_BYTES, TooManyParts } from '../../shared/store/concat';

const MiB = 1024 * 1024;
const motoInstalled = (() => {
  try {
    execFileSync('sh', ['-c', `command -v ${MOTO_COMMAND}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.each<LocalBackend>(['in-process', 'moto'])('concatObjects on %s S3', (backend) => {
  const skip = backend === 'moto' && !motoInstalled;
  let s3: LocalS3;
  const bucket = 'concat-test';
  beforeAll(async () => {
    if (skip) return;
    s3 = await startS3({ buckets: [bucket], backend });
  }, 120_000);
  afterAll(async () => {
    await s3?.stop();
  });

  const put = async (key: string, body: Buffer) => {
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    return { key, bytes: body.length };
  };
  const read = async (key: string) =>
    Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());

  it.skipIf(skip)(
    'joins sources of every size — empty, short, over a part, short tails — byte for byte, copying the large ones inside S3',
    async () => {
      // 3 MiB + 7 MiB: the first is gathered and topped up from the second; 12 MiB is copied whole
      // (none gathered before it); the short ones after it end as the last, short part.
      const bodies = [3 * MiB, 7 * MiB, 0, 1000, 12 * MiB + 17, 2 * MiB, 5].map((size) => randomBytes(size));
      const sources = await Promise.all(bodies.map((body, i) => put(`parts/${i} with space+plus.jsonl`, body)));
      const stats = await concatObjects(s3.client, bucket, sources, 'joined/all.jsonl');
      expect(stats.bytes).toBe(bodies.reduce((sum, body) => sum + body.length, 0));
      expect(stats.copiedParts).toBeGreaterThan(0);
      expect((await read('joined/all.jsonl')).equals(Buffer.concat(bodies))).toBe(true);
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'joined/all.jsonl' }));
      expect(head.ContentType).toBe('application/x-ndjson');
    },
    120_000,
  );

  it.skipIf(skip)('writes a join under 5 MiB as one object, and no sources as an empty one', async () => {
    const bodies = [Buffer.from('{"a":1}\n'), Buffer.alloc(0), Buffer.from('{"b":2}\n')];
    const sources = await Promise.all(bodies.map((body, i) => put(`small/${i}.jsonl`, body)));
    await concatObjects(s3.client, bucket, sources, 'joined/small.jsonl');
    expect((await read('joined/small.jsonl')).toString()).toBe('{"a":1}\n{"b":2}\n');
    await concatObjects(s3.client, bucket, [], 'joined/none.jsonl');
    expect((await read('joined/none.jsonl')).length).toBe(0);
  });

  it.skipIf(skip)('refuses up front a join that could need more than 10,000 parts', async () => {
    const sources = Array.from({ length: 5_001 }, (_, i) => ({ key: `many/${i}`, bytes: 1 }));
    await expect(concatObjects(s3.client, bucket, sources, 'joined/many.jsonl')).rejects.toBeInstanceOf(TooManyParts);
  });

  it.skipIf(skip)(
    'refuses, as S3 does, to complete an upload with a part under 5 MiB before the last',
    async () => {
      const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'bad.jsonl' }));
      const parts = [];
      for (const [i, size] of [MIN_PART_BYTES - 1, 10].entries()) {
        const { ETag } = await s3.client.send(
          new UploadPartCommand({ Bucket: bucket, Key: 'bad.jsonl', UploadId, PartNumber: i + 1, Body: randomBytes(size) }),
        );
        parts.push({ PartNumber: i + 1, ETag });
      }
      await expect(
        s3.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'bad.jsonl', UploadId, MultipartUpload: { Parts: parts } })),
      ).rejects.toMatchObject({ name: 'EntityTooSmall' });
    },
    60_000,
  );
});
