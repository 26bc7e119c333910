/**
 * Fixtures for the pipeline's core: input files, the events that name them, settings, and a
 * recording stand-in for EventBridge, SNS and Step Functions' StartExecution (no local engine
 * serves those APIs) that the real SDK clients talk to over HTTP.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { readPipelineConfig, type PipelineConfig } from '../../shared/config';
import type { S3ObjectCreatedEvent } from '../../shared/jobs/events';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/emulators';
import type { LocalAws } from './aws';

/** A valid request line's object. */
export function request(customId: string, text = `Say ${customId}`, model = 'claude-sonnet-4-5') {
  return { custom_id: customId, params: { model, max_tokens: 64, messages: [{ role: 'user', content: text }] } };
}

/** JSONL text: objects are serialized, strings are taken as raw lines. */
export function jsonl(lines: Array<object | string>, eol = '\n'): string {
  return lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line)) + eol).join('');
}

/** `count` valid request lines, custom_ids `<prefix>-00001`, ... */
export function requests(count: number, prefix = 'r'): object[] {
  return Array.from({ length: count }, (_, i) => request(`${prefix}-${String(i + 1).padStart(5, '0')}`));
}

export async function putInput(aws: LocalAws, key: string, body: string | Buffer, metadata?: Record<string, string>): Promise<{ etag: string }> {
  const response = await aws.s3.send(new PutObjectCommand({ Bucket: aws.bucket, Key: key, Body: body, Metadata: metadata }));
  return { etag: response.ETag!.replace(/"/g, '') };
}

export async function readText(aws: LocalAws, key: string): Promise<string> {
  const response = await aws.s3.send(new GetObjectCommand({ Bucket: aws.bucket, Key: key }));
  return response.Body!.transformToString('utf8');
}

export async function exists(aws: LocalAws, key: string): Promise<boolean> {
  try {
    await readText(aws, key);
    return true;
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return false;
    throw error;
  }
}

/** An EventBridge S3 `Object Created` event as AWS sends it (the key as stored: EventBridge does not URL-encode it). */
export function objectCreated(object: {
  bucket: string;
  key: string;
  etag: string;
  sequencer?: string;
  versionId?: string;
  size?: number;
  source?: string;
}): S3ObjectCreatedEvent {
  return {
    version: '0',
    id: '17793124-05d4-b198-2fde-7ededc63b103',
    'detail-type': 'Object Created',
    source: object.source ?? 'aws.s3',
    time: '2026-01-02T03:04:05Z',
    resources: [`arn:aws:s3:::${object.bucket}`],
    detail: {
      version: '0',
      bucket: { name: object.bucket },
      object: {
        key: object.key,
        size: object.size ?? 1,
        etag: object.etag,
        ...(object.versionId ? { 'version-id': object.versionId } : {}),
        ...(object.sequencer ? { sequencer: object.sequencer } : {}),
      },
      reason: 'PutObject',
    },
  };
}

/** The pipeline's settings against the local emulators, with overrides (limits below the env minimums allowed). */
export function pipelineConfig(aws: LocalAws, overrides: Partial<PipelineConfig> = {}): PipelineConfig {
  return { ...readPipelineConfig(aws.env), ...overrides };
}

export interface RecordedCall {
  /** `AWSEvents.PutEvents`, `AWSStepFunctions.StartExecution` or the SNS `Action` (e.g. `Publish`). */
  action: string;
  /** The parsed request: JSON for EventBridge and Step Functions, form fields for SNS. */
  body: Record<string, unknown>;
}

export interface RecordingEndpoint {
  endpoint: string;
  calls: RecordedCall[];
  events: EventBridgeClient;
  sns: SNSClient;
  sfn: SFNClient;
  /** Execution names started so far; a repeated name is refused with ExecutionAlreadyExists, as Step Functions does. */
  executions: Set<string>;
  /** Makes the next PutEvents report its entry as failed with this code. */
  failNextPutEvents(code: string): void;
  stop(): Promise<void>;
}

/**
 * A loopback endpoint that answers EventBridge PutEvents (JSON 1.1), Step Functions StartExecution
 * (JSON 1.0) and SNS Publish (query protocol) as AWS does, recording each request, with real SDK
 * clients pointed at it.
 */
export async function startRecordingEndpoint(): Promise<RecordingEndpoint> {
  const calls: RecordedCall[] = [];
  const executions = new Set<string>();
  let failCode: string | undefined;
  const server: Server = createServer(async (req, res) => {
    const text = await readBody(req);
    const target = req.headers['x-amz-target'];
    if (target === 'AWSStepFunctions.StartExecution') {
      const body = JSON.parse(text) as { name: string; stateMachineArn: string };
      calls.push({ action: target, body });
      res.setHeader('content-type', 'application/x-amz-json-1.0');
      if (executions.has(body.name)) {
        res.writeHead(400);
        res.end(JSON.stringify({ __type: 'ExecutionAlreadyExists', message: `Execution Already Exists: '${body.name}'` }));
        return;
      }
      executions.add(body.name);
      res.writeHead(200);
      res.end(JSON.stringify({ executionArn: `${body.stateMachineArn.replace(':stateMachine:', ':execution:')}:${body.name}`, startDate: 1_767_225_600 }));
      return;
    }
    if (typeof target === 'string') {
      calls.push({ action: target, body: JSON.parse(text) as Record<string, unknown> });
      const entries = ((JSON.parse(text) as { Entries?: unknown[] }).Entries ?? []).map((_, i) =>
        failCode ? { ErrorCode: failCode, ErrorMessage: 'refused by the test' } : { EventId: `event-${calls.length}-${i}` },
      );
      const failed = failCode ? entries.length : 0;
      failCode = undefined;
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ FailedEntryCount: failed, Entries: entries }));
      return;
    }
    const form = Object.fromEntries(new URLSearchParams(text));
    calls.push({ action: form.Action ?? 'unknown', body: form });
    res.writeHead(200, { 'content-type': 'text/xml' });
    res.end(
      `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>msg-${calls.length}</MessageId></PublishResult>` +
        `<ResponseMetadata><RequestId>req-${calls.length}</RequestId></ResponseMetadata></PublishResponse>`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientConfig = { endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 1 };
  const events = new EventBridgeClient(clientConfig);
  const sns = new SNSClient(clientConfig);
  const sfn = new SFNClient(clientConfig);
  return {
    endpoint,
    calls,
    events,
    sns,
    sfn,
    executions,
    failNextPutEvents(code) {
      failCode = code;
    },
    async stop() {
      events.destroy();
      sns.destroy();
      sfn.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
