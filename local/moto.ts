/**
 * moto_server (Python's moto) as a second local S3 and DynamoDB: one process, both services on one
 * loopback port, path-style, any credentials. It behaves as S3 does where s3rver does not: buckets
 * version objects, GetObject honours If-Match, and CompleteMultipartUpload refuses a part under
 * 5 MiB that is not the last.
 *
 * One moto process per Node process, shared by startS3 and startDynamo (local/emulators.ts) and
 * stopped when the last of them stops. It runs under a small sh watchdog that stops it once our end
 * of its stdin closes, so a test worker that dies leaves no server behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { PutBucketNotificationConfigurationCommand, type S3Client } from '@aws-sdk/client-s3';
import type { S3EventRecord } from './emulators';

export const MOTO_COMMAND = 'moto_server';

/** S3's smallest part but the last: moto's default S3_UPLOAD_PART_MIN_SIZE, pinned so an inherited setting cannot lower it. */
const S3_MIN_PART_BYTES = 5 * 1024 * 1024;
const START_TIMEOUT_MS = 30_000;

export class MotoNotInstalled extends Error {
  override readonly name = 'MotoNotInstalled';
}

export interface MotoLease {
  endpoint: string;
  /** Stops the server once every lease is released. */
  release(): Promise<void>;
}

let shared: { server: Promise<MotoServer>; leases: number } | undefined;

/** The process's moto server, started on first use (on `port`, else any free one). */
export async function acquireMoto(options: { port?: number } = {}): Promise<MotoLease> {
  if (!shared) {
    const server = startMoto(options.port ?? 0);
    const entry = { server, leases: 0 };
    shared = entry;
    server.catch(() => {
      if (shared === entry) shared = undefined;
    });
  }
  const entry = shared;
  entry.leases += 1;
  let released = false;
  const release = async (server?: MotoServer) => {
    if (released) return;
    released = true;
    entry.leases -= 1;
    if (entry.leases > 0) return;
    if (shared === entry) shared = undefined;
    await server?.stop();
  };
  let server: MotoServer;
  try {
    server = await entry.server;
  } catch (error) {
    await release();
    throw error;
  }
  if (options.port && server.port !== options.port) {
    await release(server);
    throw new Error(`${MOTO_COMMAND} already runs on port ${server.port}, not ${options.port}`);
  }
  return { endpoint: server.endpoint, release: () => release(server) };
}

interface MotoServer {
  port: number;
  endpoint: string;
  stop(): Promise<void>;
}

/** sh keeps stdin for the watchdog (background jobs get /dev/null) and exits with moto's status. */
const WATCHDOG = `exec 3<&0
"$0" -H 127.0.0.1 -p "$1" </dev/null &
moto=$!
(read -r _ <&3; kill "$moto" 2>/dev/null) &
wait "$moto"`;

async function startMoto(port: number): Promise<MotoServer> {
  const command = findOnPath(MOTO_COMMAND);
  if (!command) {
    throw new MotoNotInstalled(
      `${MOTO_COMMAND} is not installed (not on PATH): BATCHLINE_TEST_BACKEND=moto runs S3 and DynamoDB on it. Install it with pip install 'moto[server]'.`,
    );
  }
  const child = spawn('sh', ['-c', WATCHDOG, command, String(port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, S3_UPLOAD_PART_MIN_SIZE: String(S3_MIN_PART_BYTES) },
  });
  // Werkzeug logs every request: keep reading, keep the last lines for an error message.
  let output = '';
  const onOutput = (text: string) => {
    output = (output + text).slice(-4000);
  };
  child.stdout!.setEncoding('utf8').on('data', onOutput);
  child.stderr!.setEncoding('utf8').on('data', onOutput);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const bound = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(`did not start within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    const check = () => {
      const match = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match) done(() => resolve(Number(match[1])));
    };
    const gone = (code: number | null) => fail(`exited with status ${code}`);
    const fail = (why: string) => done(() => reject(new Error(`${MOTO_COMMAND} ${why}:\n${output.trim()}`)));
    const done = (settle: () => void) => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      child.off('exit', gone);
      settle();
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', gone);
    check();
  }).catch(async (error: unknown) => {
    await stopChild(child, exited);
    throw error;
  });
  return {
    port: bound,
    endpoint: `http://127.0.0.1:${bound}`,
    stop: () => stopChild(child, exited),
  };
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.stdin!.end();
  await exited;
}

function findOnPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * The bucket's object-created events as S3 sends them to EventBridge (moto's own notification,
 * with `version-id`), routed by a rule to a queue on moto that a long poll reads.
 */
export interface ObjectCreatedRelay {
  onRecord(listener: (record: S3EventRecord) => void): void;
  stop(): Promise<void>;
}

let relays = 0;

export async function relayObjectCreated(endpoint: string, region: string, s3: S3Client, buckets: string[]): Promise<ObjectCreatedRelay> {
  const name = `batchline-object-created-${++relays}`;
  const call = (service: 'sqs' | 'events', target: string, body: unknown, signal?: AbortSignal) =>
    motoJson(`${endpoint}/`, { service, region, target }, body, signal);
  const { QueueUrl: queueUrl } = (await call('sqs', 'AmazonSQS.CreateQueue', { QueueName: name })) as { QueueUrl: string };
  const { Attributes } = (await call('sqs', 'AmazonSQS.GetQueueAttributes', { QueueUrl: queueUrl, AttributeNames: ['QueueArn'] })) as {
    Attributes: { QueueArn: string };
  };
  const pattern = { source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: buckets } } };
  await call('events', 'AWSEvents.PutRule', { Name: name, EventPattern: JSON.stringify(pattern) });
  await call('events', 'AWSEvents.PutTargets', { Rule: name, Targets: [{ Id: 'queue', Arn: Attributes.QueueArn }] });
  for (const bucket of buckets) {
    await s3.send(new PutBucketNotificationConfigurationCommand({ Bucket: bucket, NotificationConfiguration: { EventBridgeConfiguration: {} } }));
  }

  const listeners: Array<(record: S3EventRecord) => void> = [];
  const seen = new Set<string>();
  const abort = new AbortController();
  let polling: Promise<void> | undefined;

  async function poll(): Promise<void> {
    while (!abort.signal.aborted) {
      let messages: Array<{ Body: string; ReceiptHandle: string }>;
      try {
        const received = (await call(
          'sqs',
          'AmazonSQS.ReceiveMessage',
          { QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 20 },
          abort.signal,
        )) as { Messages?: Array<{ Body: string; ReceiptHandle: string }> };
        messages = received.Messages ?? [];
        if (messages.length > 0) {
          await call('sqs', 'AmazonSQS.DeleteMessageBatch', {
            QueueUrl: queueUrl,
            Entries: messages.map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle })),
          });
        }
      } catch {
        if (abort.signal.aborted) return;
        // The server is busy or going away; a stopped relay has returned above.
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      for (const message of messages) {
        const record = recordOf(JSON.parse(message.Body) as MotoObjectCreated);
        // moto sends a completed multipart upload twice (as a put, then as a completion): S3 sends once.
        const { versionId } = record.s3.object;
        if (versionId) {
          const version = `${record.s3.bucket.name}/${record.s3.object.key}#${versionId}`;
          if (seen.has(version)) continue;
          seen.add(version);
        }
        for (const listener of listeners) listener(record);
      }
    }
  }

  return {
    onRecord(listener) {
      listeners.push(listener);
      polling ??= poll();
    },
    async stop() {
      abort.abort();
      await polling;
    },
  };
}

/** The EventBridge event moto sends: its detail says `eTag`, not S3's `etag`; its key is as stored, as in S3's EventBridge events. */
interface MotoObjectCreated {
  detail: {
    bucket: { name: string };
    object: { key: string; size: number; eTag: string; 'version-id'?: string | null };
  };
}

let sequence = 0;

function recordOf(event: MotoObjectCreated): S3EventRecord {
  const { bucket, object } = event.detail;
  // moto's `reason` is always "ObjectCreated": a multipart ETag is the one sign of a completed upload.
  const multipart = /-\d+$/.test(object.eTag);
  // moto sends one fixed sequencer with every event; S3's grow with each write (job ids of unversioned objects use them).
  const sequencer = (++sequence).toString(16).toUpperCase().padStart(18, '0');
  return {
    eventName: multipart ? 'ObjectCreated:CompleteMultipartUpload' : 'ObjectCreated:Put',
    s3: {
      bucket: { name: bucket.name },
      object: { key: object.key, size: object.size, eTag: object.eTag, sequencer, versionId: object['version-id'] ?? undefined },
    },
  };
}

/**
 * A JSON-protocol call to moto. moto checks no signatures: the Authorization header only names the
 * service, which is how moto routes a request on its single port.
 */
async function motoJson(
  url: string,
  { service, region, target }: { service: 'sqs' | 'events'; region: string; target: string },
  body: unknown,
  signal?: AbortSignal,
): Promise<unknown> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': service === 'sqs' ? 'application/x-amz-json-1.0' : 'application/x-amz-json-1.1',
      'x-amz-target': target,
      authorization: `AWS4-HMAC-SHA256 Credential=local/20200101/${region}/${service}/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`moto ${target}: HTTP ${response.status} ${text}`);
  return text ? JSON.parse(text) : {};
}
