/**
 * The inputs that start a job, typed and checked: an EventBridge S3 `Object Created` event, a
 * schedule sweep's event of the same shape (`source: "batchline.schedule"`), or a direct
 * `{bucket, key, ...}` from the CLI. Also the sweep's own `{schedule, prefix}`.
 */
import type { ValidationMode } from '../config';

export const S3_SOURCE = 'aws.s3';
export const SCHEDULE_SOURCE = 'batchline.schedule';
export const OBJECT_CREATED = 'Object Created';

/** The event's name for a thrown error: a Step Functions Catch matches on it. */
export class InvalidEvent extends Error {
  override readonly name = 'InvalidEvent';
}

export interface S3ObjectCreatedEvent {
  version?: string;
  id?: string;
  'detail-type': string;
  source: string;
  time?: string;
  resources?: string[];
  detail: {
    version?: string;
    bucket: { name: string };
    /**
     * `key` is the key as stored, not URL-encoded: S3 form-encodes keys only in the notifications it
     * sends to SQS, SNS and Lambda (`my file.jsonl` as `my+file.jsonl`), not in its EventBridge events.
     */
    object: { key: string; size?: number; etag?: string; 'version-id'?: string; sequencer?: string };
    reason?: string;
    [field: string]: unknown;
  };
}

export interface DirectJobInput {
  bucket: string;
  /** The object key as stored (not URL-encoded). */
  key: string;
  etag?: string;
  versionId?: string;
  mode?: ValidationMode;
}

export type RegisterEvent = (S3ObjectCreatedEvent | DirectJobInput) & {
  /** Optional: the execution that runs Register, so a retried Register knows its own earlier write. */
  executionArn?: string;
};

export type ObjectSource = typeof S3_SOURCE | typeof SCHEDULE_SOURCE | 'direct';

/** What Register needs to know about the object, whatever the input's shape. */
export interface ObjectRef {
  source: ObjectSource;
  bucket: string;
  /** The key as stored. */
  key: string;
  etag?: string;
  versionId?: string;
  sequencer?: string;
  /** The direct input's mode, unchecked (Register checks it with the object's metadata). */
  mode?: string;
  executionArn?: string;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new InvalidEvent(`${what} must be a string`);
  return value === '' ? undefined : value;
}

function requiredString(value: unknown, what: string): string {
  const text = optionalString(value, what);
  if (text === undefined) throw new InvalidEvent(`${what} is missing`);
  return text;
}

/** Reads any of Register's input shapes; throws InvalidEvent for anything else. */
export function parseRegisterEvent(input: unknown): ObjectRef {
  if (!isRecord(input)) throw new InvalidEvent('the input is not an object');
  const executionArn = optionalString(input.executionArn, 'executionArn');
  // The state machine wraps what started it as {event, executionArn}, so a retried Register
  // recognises its own earlier write; direct callers may pass the event bare.
  const event = isRecord(input.event) ? input.event : input;
  if ('detail' in event || 'detail-type' in event) {
    const source = event.source;
    if (source !== S3_SOURCE && source !== SCHEDULE_SOURCE) {
      throw new InvalidEvent(`events from source "${String(source)}" are not jobs`);
    }
    if (event['detail-type'] !== OBJECT_CREATED) {
      throw new InvalidEvent(`"${String(event['detail-type'])}" events are not jobs (only "${OBJECT_CREATED}")`);
    }
    const detail = isRecord(event.detail) ? event.detail : undefined;
    const bucket = isRecord(detail?.bucket) ? detail.bucket : undefined;
    const object = isRecord(detail?.object) ? detail.object : undefined;
    if (!bucket || !object) throw new InvalidEvent('the event has no detail.bucket or detail.object');
    return {
      source,
      bucket: requiredString(bucket.name, 'detail.bucket.name'),
      key: requiredString(object.key, 'detail.object.key'),
      etag: optionalString(object.etag, 'detail.object.etag'),
      versionId: optionalString(object['version-id'], 'detail.object.version-id'),
      sequencer: optionalString(object.sequencer, 'detail.object.sequencer'),
      executionArn,
    };
  }
  return {
    source: 'direct',
    bucket: requiredString(event.bucket, 'bucket'),
    key: requiredString(event.key, 'key'),
    etag: optionalString(event.etag, 'etag'),
    versionId: optionalString(event.versionId, 'versionId'),
    mode: optionalString(event.mode, 'mode'),
    executionArn,
  };
}

/** What a schedule sweep starts for one listed object: the S3 event shape, `source: batchline.schedule`. */
export function scheduledObjectEvent(object: {
  bucket: string;
  key: string;
  etag: string;
  size?: number;
  schedule: string;
  time: string;
}): S3ObjectCreatedEvent {
  return {
    version: '0',
    'detail-type': OBJECT_CREATED,
    source: SCHEDULE_SOURCE,
    time: object.time,
    resources: [`arn:aws:s3:::${object.bucket}`],
    detail: {
      version: '0',
      bucket: { name: object.bucket },
      object: { key: object.key, size: object.size, etag: object.etag },
      reason: 'Schedule',
      schedule: object.schedule,
    },
  };
}

export interface SweepEvent {
  /** The schedule's name (for the logs and the report). */
  schedule: string;
  /** The key prefix to sweep; '' sweeps the whole bucket. */
  prefix: string;
}

export function parseSweepEvent(event: unknown): SweepEvent {
  if (!isRecord(event)) throw new InvalidEvent('the sweep input is not an object');
  const prefix = event.prefix ?? '';
  if (typeof prefix !== 'string') throw new InvalidEvent('prefix must be a string');
  return { schedule: requiredString(event.schedule, 'schedule'), prefix };
}

/** Step Functions' execution status events: the execution-ended rule (infra) and handler read them alike. */
export const STATES_SOURCE = 'aws.states';
export const EXECUTION_STATUS_CHANGE = 'Step Functions Execution Status Change';

/** Statuses that end a job's workflow abnormally; the others (RUNNING, SUCCEEDED, PENDING_REDRIVE) leave nothing behind. */
export const ABNORMAL_STATUSES = ['FAILED', 'TIMED_OUT', 'ABORTED'] as const;
export type AbnormalStatus = (typeof ABNORMAL_STATUSES)[number];
