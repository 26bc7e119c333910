import { describe, expect, it } from 'vitest';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { useLocalAws } from '../support/aws';
import type { S3EventRecord } from '../../local/emulators';

describe('local emulators', () => {
  const aws = useLocalAws();

  it('stores a streamed multipart upload byte for byte (checksums off)', async () => {
    const part = Buffer.alloc(5 * 1024 * 1024 + 7, 'é');
    const body = Readable.from([part, part]);
    await new Upload({ client: aws.s3, params: { Bucket: aws.bucket, Key: 'big.bin', Body: body }, partSize: 5 * 1024 * 1024 }).done();
    const got = await aws.s3.send(new GetObjectCommand({ Bucket: aws.bucket, Key: 'big.bin' }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    expect(bytes.equals(Buffer.concat([part, part]))).toBe(true);
  });

  it('pages through ListObjectsV2 (continuation tokens work on OpenSSL 3)', async () => {
    for (let i = 0; i < 5; i++) {
      await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: `list/${i}`, Body: String(i) }));
    }
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await aws.s3.send(new ListObjectsV2Command({ Bucket: aws.bucket, Prefix: 'list/', MaxKeys: 2, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(keys).toEqual(['list/0', 'list/1', 'list/2', 'list/3', 'list/4']);
  });

  it('reports each created object under its key as stored, whatever characters the key has', async () => {
    const keys = ['names/my data.jsonl', 'names/plus+1.jsonl', 'names/ü.jsonl', 'names/100%.jsonl', 'names/a#b?&=.jsonl', 'names/my+data%20v2.jsonl'];
    const reported: string[] = [];
    const all = new Promise<void>((resolve) => {
      aws.s3Server.onObjectCreated((record: S3EventRecord) => {
        if (record.s3.object.key.startsWith('names/')) reported.push(record.s3.object.key);
        if (reported.length === keys.length) resolve();
      });
    });
    for (const key of keys) await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: key, Body: key }));
    await all;
    expect(reported.sort()).toEqual([...keys].sort());
  });

  it('writes and reads the pipeline table', async () => {
    await aws.dynamo.send(new PutItemCommand({ TableName: aws.table, Item: { pk: { S: 'a' }, sk: { S: 'b' } } }));
    const got = await aws.dynamo.send(new GetItemCommand({ TableName: aws.table, Key: { pk: { S: 'a' }, sk: { S: 'b' } } }));
    expect(got.Item?.pk?.S).toBe('a');
  });
});
