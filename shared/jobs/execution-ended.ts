/**
 * ExecutionEnded: a job execution that failed, timed out or was aborted must not leave its batches
 * running (and billing) unseen. The workflow's Catch → MarkJobFailed covers failures inside the
 * execution; this covers what no Catch sees — StopExecution, the execution's own timeout, a
 * MarkJobFailed that died before it marked the job — from the EventBridge `Step Functions
 * Execution Status Change` event, by calling the same markJobFailed. A job that had already failed
 * is looked at too: its MarkJobFailed may have died, or thrown CancelFailed, with batches still
 * un-canceled (or the failure unannounced); markJobFailed, re-run, finishes that and keeps the failure.
 *
 * The job is found the way Register named it: the execution's input is Register's input (the S3
 * event, bare or wrapped), so the deterministic job id follows from it; the job counts as this
 * execution's only if its record names this execution (a duplicate event's execution owns no job).
 * Register takes a version id from HeadObject when the event has none; rather than repeat that
 * call (the object may have changed since), a miss falls back to the `byCreated` index around the
 * execution's start, where the job Register wrote records this execution's ARN.
 */
import { quietObserver } from '../observability';
import { getItem, queryJobsIndex } from '../store/dynamo';
import { JOB_SK, jobPk, type JobItem } from '../store/items';
import { readJobChunks } from './chunk-state';
import { ABNORMAL_STATUSES, EXECUTION_STATUS_CHANGE, InvalidEvent, parseRegisterEvent, STATES_SOURCE, type AbnormalStatus } from './events';
import type { CaughtError } from './contract';
import { describeFailure, failureLeftovers, markJobFailed, type FailDeps } from './mark-job-failed';
import { bareEtag, jobIdFor } from './job-id';
import { ENDED_JOB_STATUSES } from './queries';

export { ABNORMAL_STATUSES, EXECUTION_STATUS_CHANGE, STATES_SOURCE, type AbnormalStatus };

/** The job's failure names how its execution ended. */
export const EXECUTION_ERRORS: Record<AbnormalStatus, string> = {
  FAILED: 'ExecutionFailed',
  TIMED_OUT: 'ExecutionTimedOut',
  ABORTED: 'ExecutionAborted',
};

/**
 * Register is the execution's first state, so its job is created within minutes of the start
 * (Lambda retries included); the index is searched from a little before (clock skew) to an hour after.
 */
export const JOB_SEARCH_BEFORE_START_MS = 5 * 60_000;
export const JOB_SEARCH_AFTER_START_MS = 60 * 60_000;

/** The event's `detail` (fields AWS sends that nothing here reads are left out). */
export interface ExecutionDetail {
  executionArn: string;
  stateMachineArn?: string;
  name: string;
  status: string;
  /** Epoch ms. */
  startDate?: number;
  stopDate?: number | null;
  /** The execution input as JSON text; null when it is too large to include. */
  input?: string | null;
  error?: string | null;
  cause?: string | null;
}

export interface ExecutionStatusChangeEvent {
  source: string;
  'detail-type': string;
  detail: ExecutionDetail;
  [field: string]: unknown;
}

export type ExecutionEndedResult =
  /** The job was this execution's and still open: now failed, its batches in flight canceled. */
  | { outcome: 'marked-failed'; executionArn: string; jobId: string; message: string }
  /** The job had already failed, but batches of it were left un-canceled (or the failure unannounced): now done. */
  | { outcome: 'cleaned-up'; executionArn: string; jobId: string; message: string }
  /** The job had already ended (the workflow's own MarkJobFailed, Finalize, a rejection) with nothing left undone: untouched. */
  | { outcome: 'already-ended'; executionArn: string; jobId: string; message: string }
  /** No job is this execution's: a no-op, logged with the reason. */
  | { outcome: 'no-job'; executionArn: string; message: string }
  /** The execution did not end abnormally: nothing to do. */
  | { outcome: 'ignored'; executionArn: string; message: string };

export type ExecutionEndedDeps = FailDeps;

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const optionalText = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

/** The event's detail, checked; InvalidEvent for anything that is not an execution status change. */
export function parseExecutionEvent(event: unknown): ExecutionDetail {
  if (!isRecord(event)) throw new InvalidEvent('the event is not an object');
  if (event.source !== STATES_SOURCE || event['detail-type'] !== EXECUTION_STATUS_CHANGE) {
    throw new InvalidEvent(`expected "${EXECUTION_STATUS_CHANGE}" from ${STATES_SOURCE}, got "${String(event['detail-type'])}" from ${String(event.source)}`);
  }
  const detail = event.detail;
  if (!isRecord(detail)) throw new InvalidEvent('the event has no detail');
  const executionArn = optionalText(detail.executionArn);
  const status = optionalText(detail.status);
  if (!executionArn || !status) throw new InvalidEvent('detail.executionArn and detail.status are required');
  return {
    executionArn,
    stateMachineArn: optionalText(detail.stateMachineArn),
    name: optionalText(detail.name) ?? executionArn.slice(executionArn.lastIndexOf(':') + 1),
    status,
    startDate: typeof detail.startDate === 'number' ? detail.startDate : undefined,
    stopDate: typeof detail.stopDate === 'number' ? detail.stopDate : undefined,
    input: typeof detail.input === 'string' ? detail.input : null,
    error: optionalText(detail.error) ?? null,
    cause: optionalText(detail.cause) ?? null,
  };
}

const isAbnormal = (status: string): status is AbnormalStatus => (ABNORMAL_STATUSES as readonly string[]).includes(status);

export async function handleExecutionEnded(event: unknown, deps: ExecutionEndedDeps): Promise<ExecutionEndedResult> {
  const detail = parseExecutionEvent(event);
  const { executionArn, status } = detail;
  const observer = deps.observer ?? quietObserver;
  if (!isAbnormal(status)) {
    const message = `execution ${executionArn} is ${status}: nothing to clean up`;
    observer.info(message, { executionArn, status });
    return { outcome: 'ignored', executionArn, message };
  }
  const found = await findJob(detail, deps);
  if (!found.job) {
    const message = `execution ${executionArn} ended ${status}, but no job is its own: ${found.reason}`;
    observer.warn(message, { executionArn, status });
    return { outcome: 'no-job', executionArn, message };
  }
  const { jobId } = found.job;
  observer.keys({ jobId });
  if (found.job.status === 'failed') {
    // Read once: what is left undone, and what the re-run cancels.
    const chunks = await readJobChunks(deps.dynamo, deps.config.table, jobId);
    const leftovers = await failureLeftovers(deps.dynamo, deps.config.table, found.job, chunks);
    if (leftovers) {
      observer.warn(`execution ${executionArn} ended ${status}; job ${jobId} had failed with work left undone: finishing it`, {
        executionArn,
        status,
        batchesNotCanceled: leftovers.batches.length,
        announced: leftovers.announced,
      });
      // The job keeps its own failure; this error is only recorded on a job not failed yet.
      const done = await markJobFailed({ jobId, error: executionFailure(detail, status) }, { ...deps, observer }, chunks);
      const announced = done.announced ? ' and its failure announced' : '';
      const message = `execution ${executionArn} ended ${status}; job ${jobId} had already failed: ${done.batchesCanceled} batch(es) it left un-canceled now canceled${announced}`;
      return { outcome: 'cleaned-up', executionArn, jobId, message };
    }
  }
  if (ENDED_JOB_STATUSES.has(found.job.status)) {
    const message = `execution ${executionArn} ended ${status}; job ${jobId} had already ended ${found.job.status}`;
    observer.info(message, { executionArn, status, jobStatus: found.job.status });
    return { outcome: 'already-ended', executionArn, jobId, message };
  }
  observer.warn(`execution ${executionArn} ended ${status} with job ${jobId} open: marking it failed`, { executionArn, status, jobStatus: found.job.status });
  await markJobFailed({ jobId, error: executionFailure(detail, status) }, { ...deps, observer });
  const message = `execution ${executionArn} ended ${status}: job ${jobId} marked failed and its batches in flight canceled`;
  return { outcome: 'marked-failed', executionArn, jobId, message };
}

/**
 * The failure recorded on the job: the error names the execution's status; the cause says which
 * execution, and carries its own error and cause (a Lambda error's JSON reduced to type and message).
 */
export function executionFailure(detail: ExecutionDetail, status: AbnormalStatus): CaughtError {
  const parts = [`execution ${detail.name} ended ${status}`];
  if (detail.error || detail.cause) {
    const inner = describeFailure({ Error: detail.error ?? undefined, Cause: detail.cause ?? '' });
    // A Lambda error's cause already starts with its type.
    if (detail.error && !inner.cause.startsWith(`${inner.error}: `)) parts.push(inner.error);
    if (inner.cause) parts.push(inner.cause);
  }
  return { Error: EXECUTION_ERRORS[status], Cause: parts.join(': ') };
}

interface Found {
  job?: JobItem;
  /** Why no job was found (for the log). */
  reason: string;
}

async function findJob(detail: ExecutionDetail, deps: ExecutionEndedDeps): Promise<Found> {
  const table = deps.config.table;
  const reasons: string[] = [];
  const candidate = candidateJobId(detail, reasons);
  if (candidate) {
    const job = await getItem<JobItem>(deps.dynamo, table, { pk: jobPk(candidate), sk: JOB_SK });
    if (job?.executionArn === detail.executionArn) return { job, reason: '' };
    reasons.push(
      job
        ? `job ${candidate}, named by its input, belongs to ${job.executionArn ? `execution ${job.executionArn}` : 'no execution'}`
        : `its input names job ${candidate}, which does not exist`,
    );
  }
  if (detail.startDate === undefined) {
    reasons.push('the event has no startDate to search the jobs index by');
    return { reason: reasons.join('; ') };
  }
  const job = await jobStartedBy(detail.executionArn, detail.startDate, detail.stopDate ?? undefined, deps);
  if (job) return { job, reason: '' };
  reasons.push('no job created around its start records it');
  return { reason: reasons.join('; ') };
}

/** The job id Register derived from this input (version id, else sequencer, else ETag), when the input says enough. */
function candidateJobId(detail: ExecutionDetail, reasons: string[]): string | undefined {
  if (detail.input === null || detail.input === undefined) {
    reasons.push('the event carries no execution input (EventBridge leaves out inputs over 248 KB)');
    return undefined;
  }
  try {
    const ref = parseRegisterEvent(JSON.parse(detail.input));
    const token = ref.versionId ?? ref.sequencer ?? (ref.etag ? bareEtag(ref.etag) : undefined);
    if (token) return jobIdFor({ bucket: ref.bucket, key: ref.key, token });
    reasons.push('its input has no version id, sequencer or ETag to derive the job id from');
  } catch (error) {
    // The message names a field, never the input's text (a job input carries no prompts anyway).
    const why = error instanceof InvalidEvent ? error.message : 'it is not JSON';
    reasons.push(`its input is not a job's (${why})`);
  }
  return undefined;
}

/** The job whose record names this execution, among jobs created around the execution's start. */
async function jobStartedBy(executionArn: string, startDate: number, stopDate: number | undefined, deps: ExecutionEndedDeps): Promise<JobItem | undefined> {
  const from = new Date(startDate - JOB_SEARCH_BEFORE_START_MS).toISOString();
  const until = new Date(Math.min(startDate + JOB_SEARCH_AFTER_START_MS, (stopDate ?? Number.POSITIVE_INFINITY) + JOB_SEARCH_BEFORE_START_MS)).toISOString();
  const filter = { expression: '#arn = :arn', names: { '#arn': 'executionArn' }, values: { ':arn': executionArn } };
  for await (const { jobId } of queryJobsIndex<JobItem>(deps.dynamo, deps.config.table, { from, until, filter, limit: 1 })) {
    // The index is eventually consistent: the record itself is read again.
    return getItem<JobItem>(deps.dynamo, deps.config.table, { pk: jobPk(jobId), sk: JOB_SK });
  }
  return undefined;
}
