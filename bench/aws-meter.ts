/**
 * Counts what the AWS SDK clients send, with SDK middleware: S3 and DynamoDB requests per
 * operation (each HTTP attempt, as AWS bills them), and DynamoDB capacity units. Capacity is what
 * the server reports: every DynamoDB call is sent with ReturnConsumedCapacity=TOTAL, and dynalite
 * computes it by DynamoDB's rules (1 write unit per started KB of item, 1 read unit per started
 * 4 KB, half for an eventually consistent read).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';

export type Service = 's3' | 'dynamodb';

export interface MeterReading {
  /** `s3:GetObject` → HTTP requests sent. */
  requests: Record<string, number>;
  readUnits: number;
  writeUnits: number;
}

/** S3's request classes (us-east-1 list prices in ./prices.ts). Deletes and aborts are free. */
const S3_TIER1 = new Set([
  'PutObject',
  'CreateMultipartUpload',
  'UploadPart',
  'CompleteMultipartUpload',
  'CopyObject',
  'UploadPartCopy',
  'ListObjectsV2',
  'ListObjects',
  'ListParts',
  'ListMultipartUploads',
  'ListObjectVersions',
]);
const S3_FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);

const DYNAMO_WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);
const DYNAMO_CAPACITY = new Set([...DYNAMO_WRITES, 'GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);

interface Capacity {
  CapacityUnits?: number;
}

type AnyClient = S3Client | DynamoDBClient;

export class AwsMeter {
  private requests: Record<string, number> = {};
  private readUnits = 0;
  private writeUnits = 0;
  private readonly attached = new WeakSet<object>();

  attach(client: AnyClient, service: Service): void {
    if (this.attached.has(client)) return;
    this.attached.add(client);
    const stack = (client as { middlewareStack: { add: (mw: unknown, options: unknown) => void } }).middlewareStack;
    // initialize runs once per call (outside the retry loop): it asks for and adds up capacity.
    stack.add(
      (next: (args: { input: Record<string, unknown> }) => Promise<{ output: Record<string, unknown> }>, context: { commandName?: string }) =>
        async (args: { input: Record<string, unknown> }) => {
          const command = operation(context.commandName);
          const metered = service === 'dynamodb' && DYNAMO_CAPACITY.has(command);
          if (metered && args.input.ReturnConsumedCapacity === undefined) args.input.ReturnConsumedCapacity = 'TOTAL';
          try {
            const result = await next(args);
            if (metered) this.addCapacity(command, result.output.ConsumedCapacity as Capacity | Capacity[] | undefined);
            return result;
          } catch (error) {
            // A failed conditional write still costs its write unit.
            if (metered && DYNAMO_WRITES.has(command) && (error as { name?: string }).name === 'ConditionalCheckFailedException') {
              this.writeUnits += 1;
            }
            throw error;
          }
        },
      { step: 'initialize', name: 'benchCapacityMeter', override: true },
    );
    // deserialize runs once per HTTP attempt (inside the retry loop): AWS bills attempts.
    stack.add(
      (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
        const key = `${service}:${operation(context.commandName)}`;
        this.requests[key] = (this.requests[key] ?? 0) + 1;
        return next(args);
      },
      { step: 'deserialize', name: 'benchRequestMeter', override: true },
    );
  }

  private addCapacity(command: string, consumed: Capacity | Capacity[] | undefined): void {
    const units = (Array.isArray(consumed) ? consumed : consumed ? [consumed] : []).reduce((sum, c) => sum + (c.CapacityUnits ?? 0), 0);
    if (DYNAMO_WRITES.has(command)) this.writeUnits += units;
    else this.readUnits += units;
  }

  reading(): MeterReading {
    return { requests: { ...this.requests }, readUnits: this.readUnits, writeUnits: this.writeUnits };
  }

  reset(): void {
    this.requests = {};
    this.readUnits = 0;
    this.writeUnits = 0;
  }
}

function operation(commandName: string | undefined): string {
  return (commandName ?? 'Unknown').replace(/Command$/, '');
}

export function s3Tier(operationName: string): 'tier1' | 'tier2' | 'free' {
  if (S3_FREE.has(operationName)) return 'free';
  return S3_TIER1.has(operationName) ? 'tier1' : 'tier2';
}

/** Requests of one service, total. */
export function requestsOf(reading: MeterReading, service: Service): number {
  return Object.entries(reading.requests)
    .filter(([key]) => key.startsWith(`${service}:`))
    .reduce((sum, [, n]) => sum + n, 0);
}

/** S3 requests by price class. */
export function s3Classes(reading: MeterReading): { tier1: number; tier2: number; free: number } {
  const out = { tier1: 0, tier2: 0, free: 0 };
  for (const [key, n] of Object.entries(reading.requests)) {
    if (key.startsWith('s3:')) out[s3Tier(key.slice(3))] += n;
  }
  return out;
}

/** `GetObject 1, UploadPart 14, ...` for a table cell. */
export function describeRequests(reading: MeterReading, service: Service): string {
  const parts = Object.entries(reading.requests)
    .filter(([key]) => key.startsWith(`${service}:`))
    .sort(([, a], [, b]) => b - a)
    .map(([key, n]) => `${key.slice(service.length + 1)} ${n.toLocaleString('en-US')}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

export function addReadings(...readings: MeterReading[]): MeterReading {
  const out: MeterReading = { requests: {}, readUnits: 0, writeUnits: 0 };
  for (const r of readings) {
    for (const [key, n] of Object.entries(r.requests)) out.requests[key] = (out.requests[key] ?? 0) + n;
    out.readUnits += r.readUnits;
    out.writeUnits += r.writeUnits;
  }
  return out;
}
