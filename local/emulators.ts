/**
 * S3 (s3rver) and DynamoDB (dynalite) on loopback, for the local runtime and the tests alike.
 * Carries the fixes measured on these engines (docs/deploy-fidelity.md): SDK checksums off (they corrupt streamed
 * bodies on s3rver), a stand-in for the DES cipher s3rver's continuation tokens need (OpenSSL 3
 * refuses DES), path-style S3, S3RVER credentials, and S3's UploadPartCopy with its 5 MiB part rule
 * (./s3-part-copy.ts).
 *
 * BATCHLINE_TEST_BACKEND=moto puts both on one moto_server process instead (./moto.ts), with
 * versioned buckets: a second, independent backend that behaves as S3 does where s3rver does not.
 */
import crypto from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { CreateBucketCommand, S3Client, PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Server } from 'node:http';
import { TABLE_GSIS, TABLE_KEY } from '../shared/store/table';
import { acquireMoto, relayObjectCreated } from './moto';
import { addPartCopy } from './s3-part-copy';

const require = createRequire(import.meta.url);

export const LOCAL_REGION = 'us-east-1';
export const LOCAL_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** What serves local S3 and DynamoDB: s3rver and dynalite in this process (the default), or moto_server. */
export type LocalBackend = 'in-process' | 'moto';
export const BACKEND_VARIABLE = 'BATCHLINE_TEST_BACKEND';

/** The backend BATCHLINE_TEST_BACKEND names; child processes (the CLI in e2e tests) inherit it. */
export function localBackend(env: NodeJS.ProcessEnv = process.env): LocalBackend {
  const value = env[BACKEND_VARIABLE];
  if (value === undefined || value === '' || value === 'in-process') return 'in-process';
  if (value === 'moto') return 'moto';
  throw new Error(`${BACKEND_VARIABLE} must be "moto" or "in-process" (s3rver and dynalite), not "${value}"`);
}

let desShimInstalled = false;
/** s3rver encrypts ListObjectsV2 continuation tokens with DES; map it onto AES so tokens round-trip. */
function installDesShim(): void {
  if (desShimInstalled) return;
  desShimInstalled = true;
  const mod = crypto as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const fn of ['createCipheriv', 'createDecipheriv'] as const) {
    const original = mod[fn]!.bind(crypto);
    mod[fn] = (algorithm: unknown, key: unknown, iv: unknown, ...rest: unknown[]) => {
      if (algorithm === 'des' && Buffer.isBuffer(key) && Buffer.isBuffer(iv) && key.length === 8 && iv.length === 8) {
        return original('aes-128-cbc', Buffer.concat([key, key]), Buffer.concat([iv, iv]), ...rest);
      }
      return original(algorithm, key, iv, ...rest);
    };
  }
}

/**
 * Node's servers close an idle keep-alive socket after 5 s; a client that picks that socket at the
 * same moment gets ECONNRESET (the SDK's TimeoutError). On a loaded machine the race is common.
 * The server keeps idle sockets longer than any client here holds them, so the client closes first.
 */
function outlastClientKeepAlive(server: Server): void {
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
}

/** Environment every AWS SDK client in this process (handlers included) needs to reach the emulators. */
export function localAwsEnv(endpoints: { s3: string; dynamodb: string }): Record<string, string> {
  return {
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_S3: endpoints.s3,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    AWS_S3_FORCE_PATH_STYLE: 'true',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };
}

export interface LocalS3 {
  endpoint: string;
  client: S3Client;
  /** s3rver's storage folder (moto keeps objects in memory). */
  directory?: string;
  /** Fired for every object created (s3rver's notification records; on moto, its EventBridge events). */
  onObjectCreated(listener: (record: S3EventRecord) => void): void;
  stop(): Promise<void>;
}

export interface S3EventRecord {
  eventName: string;
  s3: { bucket: { name: string }; object: { key: string; size: number; eTag: string; sequencer: string; versionId?: string } };
}

export function localS3Client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: LOCAL_REGION,
    forcePathStyle: true,
    credentials: LOCAL_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export function localDynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
}

export async function startS3(options: { buckets?: string[]; directory?: string; port?: number; backend?: LocalBackend } = {}): Promise<LocalS3> {
  if ((options.backend ?? localBackend()) === 'moto') return startMotoS3(options);
  installDesShim();
  const S3rver = require('s3rver');
  const ownDirectory = options.directory === undefined;
  const directory = options.directory ?? (await mkdtemp(path.join(tmpdir(), 'batchline-s3-')));
  const server = new S3rver({ address: '127.0.0.1', port: options.port ?? 0, silent: true, directory });
  addPartCopy(server);
  const address: AddressInfo = await server.run();
  outlastClientKeepAlive((server as { httpServer: Server }).httpServer);
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = localS3Client(endpoint);
  for (const bucket of options.buckets ?? []) {
    await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((error: Error) => {
      // A durable directory (local/state.ts) keeps its bucket from the last start.
      if (!ownDirectory && /^BucketAlready(OwnedByYou|Exists)$/.test(error.name)) return;
      throw error;
    });
    await client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } })).catch(() => {
      /* s3rver does not version; object ETags and sequencers still tell uploads apart */
    });
  }
  return {
    endpoint,
    client,
    directory,
    onObjectCreated(listener) {
      server.on('event', (event: { Records: S3EventRecord[] }) => {
        for (const record of event.Records) if (record.eventName.startsWith('ObjectCreated')) listener(record);
      });
    },
    async stop() {
      client.destroy();
      await server.close();
      if (ownDirectory) await rm(directory, { recursive: true, force: true });
    },
  };
}

export interface LocalDynamo {
  endpoint: string;
  client: DynamoDBClient;
  stop(): Promise<void>;
}

/** `directory`: keep the tables on disk there (LevelDB), across processes; default in memory. */
export async function startDynamo(options: { port?: number; backend?: LocalBackend; directory?: string } = {}): Promise<LocalDynamo> {
  if ((options.backend ?? localBackend()) === 'moto') {
    if (options.directory) throw new Error('moto keeps DynamoDB in memory: no durable directory (docs/local-state.md)');
    return startMotoDynamo(options);
  }
  const dynalite = require('dynalite');
  const server: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(options.directory ? { path: options.directory } : {}) });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  outlastClientKeepAlive(server);
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);
  return {
    endpoint,
    client,
    async stop() {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** S3 on moto: every bucket versioned, object-created events relayed from moto's EventBridge notification. */
async function startMotoS3(options: { buckets?: string[]; port?: number }): Promise<LocalS3> {
  const moto = await acquireMoto({ port: options.port });
  const client = localS3Client(moto.endpoint);
  try {
    const buckets = options.buckets ?? [];
    for (const bucket of buckets) {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      await client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    }
    const relay = buckets.length > 0 ? await relayObjectCreated(moto.endpoint, LOCAL_REGION, client, buckets) : undefined;
    return {
      endpoint: moto.endpoint,
      client,
      onObjectCreated(listener) {
        if (!relay) throw new Error('startS3 created no bucket to watch');
        relay.onRecord(listener);
      },
      async stop() {
        await relay?.stop();
        client.destroy();
        await moto.release();
      },
    };
  } catch (error) {
    client.destroy();
    await moto.release();
    throw error;
  }
}

/** DynamoDB on the same moto process as S3. */
async function startMotoDynamo(options: { port?: number }): Promise<LocalDynamo> {
  const moto = await acquireMoto({ port: options.port });
  const client = localDynamoClient(moto.endpoint);
  return {
    endpoint: moto.endpoint,
    client,
    async stop() {
      client.destroy();
      await moto.release();
    },
  };
}

/**
 * Creates the pipeline's table with the key schema the stack defines (shared/store/table.ts), and
 * returns once it is ACTIVE. CreateTable answers while the table is still CREATING, on dynalite as on
 * AWS (dynalite flips it to ACTIVE on a timer, even with createTableMs 0), and every item call on a
 * CREATING table fails with ResourceNotFoundException: under load the first putItem lost that race.
 */
export async function createPipelineTable(client: DynamoDBClient, tableName: string, options: { existing?: 'keep' } = {}): Promise<void> {
  const attributes = new Set<string>([TABLE_KEY.partitionKey, TABLE_KEY.sortKey]);
  for (const gsi of TABLE_GSIS) {
    attributes.add(gsi.partitionKey);
    attributes.add(gsi.sortKey);
  }
  await client
    .send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [...attributes].map((name) => ({ AttributeName: name, AttributeType: 'S' })),
        KeySchema: [
          { AttributeName: TABLE_KEY.partitionKey, KeyType: 'HASH' },
          { AttributeName: TABLE_KEY.sortKey, KeyType: 'RANGE' },
        ],
        GlobalSecondaryIndexes: TABLE_GSIS.map((gsi) => ({
          IndexName: gsi.indexName,
          KeySchema: [
            { AttributeName: gsi.partitionKey, KeyType: 'HASH' },
            { AttributeName: gsi.sortKey, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        })),
      }),
    )
    .catch((error: Error) => {
      // A durable table (local/state.ts) is there from the last start, with its items.
      if (options.existing !== 'keep' || error.name !== 'ResourceInUseException') throw error;
    });
  await waitUntilActive(client, tableName);
}

async function waitUntilActive(client: DynamoDBClient, tableName: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const indexesActive = (Table?.GlobalSecondaryIndexes ?? []).every((index) => index.IndexStatus === 'ACTIVE');
    if (Table?.TableStatus === 'ACTIVE' && indexesActive) return;
    if (Date.now() > deadline) throw new Error(`table ${tableName} not ACTIVE after ${timeoutMs} ms (${Table?.TableStatus})`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
