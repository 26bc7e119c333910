/**
 * A schedule's sweep: every object under a prefix becomes one job execution. Execution names are
 * derived from bucket, key and ETag, so sweeping an unchanged object again starts nothing
 * (`ExecutionAlreadyExists`); Register's conditional write is the second guard.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import { requireString } from '../config';
import { quietObserver, type Observer } from '../observability';
import { processPrefixes } from '../store/keys';
import { parseSweepEvent, scheduledObjectEvent } from './events';
import { bareEtag, sha256Hex } from './job-id';
import { clockOf } from '../clock';

/** Starts one execution; 'exists' when an execution of that name was already started. */
export type StartExecution = (name: string, input: string) => Promise<'started' | 'exists'>;

export interface SweepDeps {
  s3: S3Client;
  /** The bucket to sweep (the pipeline's one bucket). */
  bucket: string;
  startExecution: StartExecution;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** StartExecution calls in flight at once. */
  concurrency?: number;
  /** Keys per listing page (S3's default and maximum is 1,000). */
  pageSize?: number;
  /** Where the step's log lines go (the handler's invocation). */
  observer?: Observer;
}

export interface SweepResult {
  schedule: string;
  prefix: string;
  started: number;
  alreadyStarted: number;
}

export interface SweepConfig {
  /** BATCHLINE_BUCKET */
  bucket: string;
  /** BATCHLINE_STATE_MACHINE_ARN: the job state machine the sweep starts. */
  stateMachineArn: string;
}

export function readSweepConfig(env: Record<string, string | undefined> = process.env): SweepConfig {
  return { bucket: requireString(env, 'BATCHLINE_BUCKET'), stateMachineArn: requireString(env, 'BATCHLINE_STATE_MACHINE_ARN') };
}

/** `sched-` + sha256(bucket, key, ETag) in hex: 70 characters, within Step Functions' 80. */
export function sweepExecutionName(bucket: string, key: string, etag: string): string {
  return `sched-${sha256Hex([bucket, key, bareEtag(etag)])}`;
}

export async function sweepPrefix(event: unknown, deps: SweepDeps): Promise<SweepResult> {
  const { schedule, prefix } = parseSweepEvent(event);
  const time = new Date(clockOf(deps)()).toISOString();
  const result: SweepResult = { schedule, prefix, started: 0, alreadyStarted: 0 };
  let token: string | undefined;
  do {
    const page = await deps.s3.send(new ListObjectsV2Command({ Bucket: deps.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: deps.pageSize }));
    const starts = (page.Contents ?? [])
      .filter((object) => object.Key !== undefined && isJobInput(object.Key))
      .map((object) => {
        const etag = bareEtag(object.ETag ?? '');
        const input = scheduledObjectEvent({ bucket: deps.bucket, key: object.Key!, etag, size: object.Size, schedule, time });
        return { name: sweepExecutionName(deps.bucket, object.Key!, etag), input: JSON.stringify(input) };
      });
    await forEachLimited(starts, deps.concurrency ?? 4, async ({ name, input }) => {
      if ((await deps.startExecution(name, input)) === 'started') result.started += 1;
      else result.alreadyStarted += 1;
    });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  (deps.observer ?? quietObserver).info('swept', { ...result });
  return result;
}

/** Folder markers and the pipeline's own work and results files are never inputs. */
function isJobInput(key: string): boolean {
  const { work, results } = processPrefixes();
  return !key.endsWith('/') && !key.startsWith(work) && !key.startsWith(results);
}

async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** StartExecution on the job state machine, with `ExecutionAlreadyExists` meaning "already handled". */
export function sfnStarter(sfn: SFNClient, stateMachineArn: string): StartExecution {
  return async (name, input) => {
    try {
      await sfn.send(new StartExecutionCommand({ stateMachineArn, name, input }));
      return 'started';
    } catch (error) {
      if ((error as { name?: string }).name === 'ExecutionAlreadyExists') return 'exists';
      throw error;
    }
  };
}
