/**
 * Reconcile: the daily safety net for jobs whose workflow died with work unfinished — batches whose
 * results nobody read (the API keeps them 29 days from create), batches still running for nobody.
 *
 * A job is looked at when it was created in the last 30 days, has not ended, and its execution is
 * no longer running (or no longer exists). Then each unfinished chunk is settled with the pipeline's
 * own steps:
 * - its batch ended → Collect, with no retry: maxAttempts is the attempt being collected, so every
 *   row's outcome is final (a retry would need a workflow to submit, poll and collect it);
 * - its batch is still in progress → the job is marked cancelRequested and the batch canceled; it
 *   is collected on a later run, once it has ended;
 * - its attempt was never submitted (pending, retry_wait, or a create whose outcome is unknown) →
 *   Submit, under cancelRequested: it adopts a batch an earlier create made (that batch is then
 *   settled as above) and never creates one; with none, Collect records the rows canceled;
 * - its batch is gone, or its results were archived → the chunk failure is recorded.
 * When every chunk is done or failed, Finalize writes the outputs; a job whose batches were canceled
 * (or never submitted) ends `canceled`, one whose batches had all ended `succeeded`. A job that never
 * got past Prepare has no batch: it is marked failed (and announced) as MarkJobFailed would.
 *
 * A failed job is looked at too, but only while its MarkJobFailed left work undone — a batch no
 * cancel or end is recorded for (a cancel that failed), or a failure never announced: MarkJobFailed
 * is re-run for it, which keeps the failure and finishes the rest.
 *
 * A failed job whose FinalizeJob failed (timed out, killed, throttled) after everything was collected
 * and paid — or whose execution failed where no Catch sees it (States.DataLimitExceeded, recorded by
 * ExecutionEnded) — is finalized after all: its failure's error is one a re-run can cure (finalizeRerunCures),
 * Prepare finished, every chunk is done or failed, no batch is left un-canceled, and no summary.json
 * exists (a Finalize that got that far finished). Those jobs are taken last in the run, once every
 * other job has had its turn, since a Finalize that timed out once may well take long again. Finalize
 * then writes the outputs and sets the job's final status; the job keeps its `failure`, and
 * summary.json reports it as `recoveredFrom`.
 *
 * A job with a chunk whose Collect could not finish while its batch's results wait at the API
 * (`collectLater`, shared/jobs/record-chunk-failure.ts: killed more often than the workflow retries it, the
 * API or storage unavailable, the key refused) has it collected here, whatever the job's status: Collect
 * goes on from its checkpoint, with no retry (as above), and the chunk is done. Results archived or a
 * batch gone leave the chunk failed. Once none is left, a job that had ended is finalized again: its
 * outputs are rewritten whole, and summary.json names the chunks collected late (`collectedLate`).
 *
 * Re-runnable: every step is the core's own idempotent step, a cancel is sent once per attempt
 * (recorded as cancelSentAt), and a finished job (or a failed one with nothing left undone) is no
 * longer looked at. Work per run is bounded: no step starts once the time budget is spent; the
 * next run carries on.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi } from '../anthropic/api';
import { ApiNotFound } from '../anthropic/errors';
import type { MessageBatch } from '../anthropic/types';
import { requireString, type NotifyConfig, type PipelineConfig } from '../config';
import type { NotifyClients } from '../notify';
import { errorFields, quietObserver, type InvocationKeys, type Observer } from '../observability';
import { ConditionFailed, queryJobsIndex, queryPartition, updateItem } from '../store/dynamo';
import { jobKeys } from '../store/keys';
import { headObject, isS3NotFound } from '../store/s3';
import { CHUNK_SK_PREFIX, jobPk, type ChunkAttempt, type ChunkItem, type JobItem } from '../store/items';
import { cancelBatch } from './cancel';
import { recordChunkFailure } from './record-chunk-failure';
import { attemptOf, chunkCondition, isoAt, jobKey, patchAttempt, readChunk, readJob, readJobChunks, updateChunk } from './chunk-state';
import { collectResults } from './collect-results';
import { LAMBDA_CRASH_ERRORS, LAMBDA_TRANSIENT_ERRORS, STORAGE_THROTTLED_ERRORS, UNCATCHABLE_ERRORS } from './contract';
import { EXECUTION_ERRORS } from './execution-ended';
import { failureLeftovers, markJobFailed, type FailDeps, type FailureLeftovers } from './mark-job-failed';
import { finalizeJob } from './finalize-job';
import { ENDED_JOB_STATUSES } from './queries';
import { submitChunk } from './submit-chunk';
import { sweepOrphans } from './orphans';
import { clockOf } from '../clock';

/** Batch results stay readable 29 days after create; a job's batches are created after the job. */
export const RECONCILE_WINDOW_DAYS = 30;
/** No step starts after this much of a run: a Lambda has 15 minutes, and one step may take a few. */
export const RECONCILE_BUDGET_MS = 12 * 60_000;
/** Execution statuses whose workflow still owns the job. */
export const LIVE_EXECUTION_STATUSES: ReadonlySet<string> = new Set(['RUNNING', 'PENDING_REDRIVE']);

/** The `error` recorded on a chunk the reconciler could not collect. */
export const RECONCILE_ERRORS = {
  /** The job's workflow ended before it was prepared: marked failed. */
  workflowEnded: 'WorkflowEnded',
  /** The batch's results were archived (29 days after create) before anyone read them. */
  resultsArchived: 'ResultsArchived',
  /** The API no longer knows the batch (deleted). */
  batchNotFound: 'BatchNotFound',
} as const;

/**
 * Failures of FinalizeJob a re-run can cure: the function timed out or was killed, or Lambda or
 * storage stayed unavailable or throttled through the workflow's retries, or the execution timed out.
 * Errors a re-run would only repeat (CountsMismatch, WorkFileMissing, SourceChanged, ...) and an
 * execution someone aborted are left as they are.
 */
export const FINALIZE_RERUN_ERRORS: ReadonlySet<string> = new Set<string>([
  'States.Timeout',
  ...LAMBDA_CRASH_ERRORS,
  ...LAMBDA_TRANSIENT_ERRORS,
  ...STORAGE_THROTTLED_ERRORS,
  EXECUTION_ERRORS.TIMED_OUT,
]);

/**
 * Failures no Catch saw: the execution itself failed with a terminal error (UNCATCHABLE_ERRORS,
 * e.g. the Map's gathered output over 256 KiB), so ExecutionEnded recorded `ExecutionFailed` and
 * FinalizeJob never ran. Finalize, run here outside the execution, is not subject to it.
 */
export const EXECUTION_RERUN_ERRORS: ReadonlySet<string> = new Set<string>(UNCATCHABLE_ERRORS);

/**
 * The error an execution failed with, read back from the failure ExecutionEnded recorded for it
 * (`ExecutionFailed`, cause `execution <name> ended FAILED: <error>: ...`, see executionFailure);
 * undefined for any other failure.
 */
export function executionErrorOf(failure: { error: string; cause: string }): string | undefined {
  if (failure.error !== EXECUTION_ERRORS.FAILED) return undefined;
  // Execution names hold no spaces or colons; error names no spaces.
  return /^execution [^\s:]+ ended FAILED: ([^\s:]+)(?::|$)/.exec(failure.cause)?.[1];
}

/** Whether Finalize, re-run by the reconciler, can cure a job's failure. */
export function finalizeRerunCures(failure: { error: string; cause: string }): boolean {
  if (FINALIZE_RERUN_ERRORS.has(failure.error)) return true;
  const executionError = executionErrorOf(failure);
  return executionError !== undefined && EXECUTION_RERUN_ERRORS.has(executionError);
}

export interface ReconcileConfig {
  /** BATCHLINE_STATE_MACHINE_ARN: the job state machine; jobs run by another one are left alone. */
  stateMachineArn: string;
}

export function readReconcileConfig(env: Record<string, string | undefined> = process.env): ReconcileConfig {
  return { stateMachineArn: requireString(env, 'BATCHLINE_STATE_MACHINE_ARN') };
}

export interface ReconcileDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: PipelineConfig;
  notify: { clients: NotifyClients; config: NotifyConfig };
  /** The execution's status (RUNNING, SUCCEEDED, FAILED, ...), or undefined when it does not exist. */
  describeExecution: (executionArn: string) => Promise<string | undefined>;
  /** When set, jobs whose execution belongs to another state machine are left alone. */
  stateMachineArn?: string;
  /** The local clock (epoch ms): the window, the budget and the records' timestamps. */
  now?: () => number;
  /** Default RECONCILE_BUDGET_MS. */
  budgetMs?: number;
  /** Where log lines and metrics go (the handler's invocation); each job's lines carry its id. */
  observer?: Observer;
}

export interface ReconcileReport {
  /** Open jobs of the window that were looked at (their execution described), and failed ones with work left undone. */
  examined: number;
  /** Chunk attempts collected (an attempt never submitted is collected as canceled rows). */
  collected: number;
  /** Batches canceled (those a failed job had left un-canceled included). */
  canceled: number;
  /** Jobs finalized. */
  finalized: number;
  /** Failed jobs whose FinalizeJob had failed (or never ran), finalized now (see finalizeRerunCures). */
  recovered: number;
  /** Jobs that died before Prepare finished, marked failed. */
  markedFailed: number;
  /** Batches of lost creates found this run, collected or canceled (shared/jobs/orphans.ts). */
  orphans: number;
  /** Jobs whose reconciliation threw (logged; the next run tries again). */
  errors: number;
  /** False when the time budget ran out before every open job was looked at. */
  complete: boolean;
}

const DAY_MS = 86_400_000;

export async function reconcileJobs(deps: ReconcileDeps): Promise<ReconcileReport> {
  const now = clockOf(deps);
  const deadline = now() + (deps.budgetMs ?? RECONCILE_BUDGET_MS);
  const outOfTime = () => now() >= deadline;
  const report: ReconcileReport = {
    examined: 0,
    collected: 0,
    canceled: 0,
    finalized: 0,
    recovered: 0,
    markedFailed: 0,
    orphans: 0,
    errors: 0,
    complete: true,
  };
  const since = isoAt(now() - RECONCILE_WINDOW_DAYS * DAY_MS);
  // Failed jobs whose Finalize is re-run, after every other job.
  const toRecover: string[] = [];

  for await (const listed of openJobs(deps.dynamo, deps.config.table, since)) {
    if (outOfTime()) {
      report.complete = false;
      break;
    }
    const observer = scopedObserver(deps.observer ?? quietObserver, { jobId: listed.jobId });
    try {
      // Most failed jobs left nothing undone: they cost a read of their chunks, not a DescribeExecution.
      let failed: FailedJob | undefined;
      if (listed.status === 'failed') {
        const job = await readJob(deps.dynamo, deps.config.table, listed.jobId);
        if (job.status === 'failed') {
          failed = await readFailedJob(job, deps);
          if (!failed.leftovers && !(await finalizeFailed(failed, deps))) continue;
        }
      }
      report.examined += 1;
      if (!(await reconcileJob(listed, deps, report, outOfTime, observer, toRecover, failed))) {
        report.complete = false;
        break;
      }
    } catch (error) {
      report.errors += 1;
      observer.error('reconciling the job failed; the next run tries again', { error: errorFields(error) });
    }
  }
  for (const jobId of toRecover) {
    if (outOfTime()) {
      report.complete = false;
      break;
    }
    const observer = scopedObserver(deps.observer ?? quietObserver, { jobId });
    try {
      await recoverFinalize(jobId, deps, report, observer);
    } catch (error) {
      report.errors += 1;
      observer.error('finalizing the failed job failed again; the next run tries again', { error: errorFields(error) });
    }
  }
  // Jobs with a chunk whose results Collect could not finish reading: they wait at the API.
  for await (const listed of queryJobsIndex<JobItem>(deps.dynamo, deps.config.table, { from: since, filter: COLLECT_LATER })) {
    if (outOfTime()) {
      report.complete = false;
      break;
    }
    const observer = scopedObserver(deps.observer ?? quietObserver, { jobId: listed.jobId });
    try {
      if (!(await collectLate(listed.jobId, deps, report, outOfTime, observer))) {
        report.complete = false;
        break;
      }
    } catch (error) {
      report.errors += 1;
      observer.error('collecting the results a Collect left failed; the next run tries again', { error: errorFields(error) });
    }
  }
  // Jobs with a create that went unanswered and was given up: the batch it may have made.
  for await (const listed of queryJobsIndex<JobItem>(deps.dynamo, deps.config.table, { from: since, filter: LOST_CREATES })) {
    if (outOfTime()) {
      report.complete = false;
      break;
    }
    const observer = scopedObserver(deps.observer ?? quietObserver, { jobId: listed.jobId });
    try {
      const job = await readJob(deps.dynamo, deps.config.table, listed.jobId);
      const before = new Map((job.orphanBatches ?? []).map((orphan) => [orphan.batchId, orphan.outcome]));
      const orphans = await sweepOrphans(job, { ...deps, now, observer });
      report.orphans += orphans.filter((orphan) => before.get(orphan.batchId) !== orphan.outcome).length;
    } catch (error) {
      report.errors += 1;
      observer.error('looking for the batches of lost creates failed; the next run tries again', { error: errorFields(error) });
    }
  }
  (deps.observer ?? quietObserver).info('reconciled', { ...report });
  return report;
}

const LOST_CREATES = { expression: 'attribute_exists(#lost)', names: { '#lost': 'lostCreates' } };
const COLLECT_LATER = { expression: 'attribute_exists(#later)', names: { '#later': 'collectLater' } };

/**
 * Collects the chunks of a job whose Collect could not finish (ChunkItem.collectLater), then
 * finalizes the job again if it had ended. False when the budget ran out part-way.
 */
async function collectLate(jobId: string, deps: ReconcileDeps, report: ReconcileReport, outOfTime: () => boolean, observer: Observer): Promise<boolean> {
  const now = clockOf(deps);
  const job = await readJob(deps.dynamo, deps.config.table, jobId);
  if (!job.collectLater) return true;
  for (const chunk of await readJobChunks(deps.dynamo, deps.config.table, jobId)) {
    if (!chunk.collectLater) continue;
    if (outOfTime()) return false;
    const step = scopedObserver(observer, { jobId, chunk: chunk.chunk });
    const { record } = attemptOf(chunk, chunk.currentAttempt);
    const batchId = record.batchId!;
    let left: { error: string; cause: string } | undefined;
    if (!record.collectedAt) {
      try {
        const batch = await deps.api.retrieve(batchId);
        if (batch.archived_at) {
          left = {
            error: RECONCILE_ERRORS.resultsArchived,
            cause: `the results of batch ${batchId} (attempt ${record.attempt}) were archived at ${batch.archived_at}, unread`,
          };
        }
      } catch (error) {
        if (!(error instanceof ApiNotFound)) throw error;
        left = { error: RECONCILE_ERRORS.batchNotFound, cause: `batch ${batchId} of attempt ${record.attempt} no longer exists` };
      }
      if (!left) {
        await collectResults({ jobId, chunk: chunk.chunk, attempt: record.attempt, batchId }, collectDeps(deps, record.attempt, step));
        report.collected += 1;
      }
    }
    const at = isoAt(now());
    // Collected: the chunk is done. Its results gone: it stays failed, its rows chunk_failed.
    await updateChunk(
      deps.dynamo,
      deps.config.table,
      chunk,
      left
        ? { set: { failure: left, updatedAt: at }, remove: ['collectLater'] }
        : { set: { status: 'done', updatedAt: at }, remove: ['collectLater', 'failure'] },
    );
    if (left) step.error('the results a Collect left could not be collected: the chunk stays failed', { error: left });
    else step.warn('collected the results a Collect had left at the API', { attempt: record.attempt, batchId });
  }
  // The job's outputs are rewritten once no chunk waits; a job still running is its workflow's to finalize.
  const current = await readJob(deps.dynamo, deps.config.table, jobId);
  if (current.status === 'succeeded' || current.status === 'canceled') {
    const chunks = await readJobChunks(deps.dynamo, deps.config.table, jobId);
    const late = chunks.filter((chunk) => {
      const collectedAt = attemptOf(chunk, chunk.currentAttempt).record.collectedAt;
      return collectedAt !== undefined && current.endedAt !== undefined && collectedAt > current.endedAt;
    });
    const out = await finalizeJob(
      { jobId, collectedLate: late.map((chunk) => chunk.chunk) },
      { s3: deps.s3, dynamo: deps.dynamo, config: deps.config, notify: deps.notify, now, observer },
    );
    report.finalized += 1;
    observer.warn('finalized the job again with the results collected late', {
      status: out.status,
      counts: out.counts,
      chunks: late.map((chunk) => chunk.chunk),
    });
  }
  try {
    // Unless another chunk was left to collect meanwhile.
    await updateItem(deps.dynamo, deps.config.table, jobKey(jobId), {
      remove: ['collectLater'],
      condition: { expression: '#later = :later', names: { '#later': 'collectLater' }, values: { ':later': job.collectLater } },
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
  }
  return true;
}

/**
 * An observer for one job (or one step of it) within the run: its keys go on its own lines only,
 * since the invocation's keys would otherwise carry one job's ids onto the next job's lines.
 */
function scopedObserver(parent: Observer, keys: InvocationKeys): Observer {
  let own: InvocationKeys = { ...keys };
  const fields = (more: Record<string, unknown> = {}) => ({ ...own, ...more });
  return {
    keys: (more) => {
      own = { ...own, ...Object.fromEntries(Object.entries(more).filter(([, value]) => value !== undefined)) };
    },
    info: (message, more) => parent.info(message, fields(more)),
    warn: (message, more) => parent.warn(message, fields(more)),
    error: (message, more) => parent.error(message, fields(more)),
    metric: (name, value) => parent.metric(name, value),
  };
}

/**
 * Jobs created since `since` (oldest first: their results are the nearest to archiving) that have
 * not ended, or that failed (a failure may have left batches running).
 */
function openJobs(dynamo: DynamoDBClient, table: string, since: string): AsyncGenerator<JobItem> {
  const ended = [...ENDED_JOB_STATUSES].filter((status) => status !== 'failed');
  const values = Object.fromEntries(ended.map((status, i) => [`:ended${i}`, status]));
  const filter = { expression: `NOT (#status IN (${Object.keys(values).join(', ')}))`, names: { '#status': 'status' }, values };
  return queryJobsIndex<JobItem>(dynamo, table, { from: since, filter });
}

/** An execution ARN (`...:execution:<machine>:<name>`) of the state machine `...:stateMachine:<machine>`. */
export function isExecutionOf(executionArn: string, stateMachineArn: string): boolean {
  return executionArn.startsWith(`${stateMachineArn.replace(':stateMachine:', ':execution:')}:`);
}

interface JobRun {
  job: JobItem;
  /** How the execution ended, for causes and logs. */
  ended: string;
  /** cancelRequested is set on the job (once per run). */
  stopping: boolean;
  observer: Observer;
  /** A fresh observer for one step of one chunk (the core's steps add their own keys). */
  step(chunk: number): Observer;
}

/**
 * Settles one job as far as it can go now. False when the budget ran out part-way. `failed`: the
 * job as read before its execution was described, when it was listed failed.
 */
async function reconcileJob(
  listed: JobItem,
  deps: ReconcileDeps,
  report: ReconcileReport,
  outOfTime: () => boolean,
  observer: Observer,
  toRecover: string[],
  failed: FailedJob | undefined,
): Promise<boolean> {
  const now = clockOf(deps);
  const executionArn = listed.executionArn;
  if (!executionArn) {
    observer.info('left alone: no execution is recorded on the job (it was not started by the workflow)', { jobStatus: listed.status });
    return true;
  }
  if (deps.stateMachineArn && !isExecutionOf(executionArn, deps.stateMachineArn)) {
    observer.info('left alone: its execution is not of this state machine', { executionArn });
    return true;
  }
  const status = await deps.describeExecution(executionArn);
  if (status !== undefined && LIVE_EXECUTION_STATUSES.has(status)) return true;

  // The index lags: the record decides.
  const job = await readJob(deps.dynamo, deps.config.table, listed.jobId);
  const ended = `execution ${executionArn} ${status === undefined ? 'no longer exists' : `ended ${status}`}`;
  if (job.status === 'failed') {
    // Its chunks as read a moment ago, before the DescribeExecution; its record as it is now.
    const state = await readFailedJob(job, deps, failed?.chunks);
    if (state.leftovers) {
      await finishFailure(state, ended, deps, report, observer);
      // markJobFailed throws unless every batch it was given is now recorded stopped, and the failure announced.
      state.leftovers = undefined;
    }
    if (await finalizeFailed(state, deps)) toRecover.push(job.jobId);
    return true;
  }
  if (ENDED_JOB_STATUSES.has(job.status)) return true;
  const run: JobRun = {
    job,
    ended,
    stopping: false,
    observer,
    step: (chunk) => scopedObserver(observer, { jobId: job.jobId, chunk }),
  };
  const before = { ...report };

  if (job.chunkCount === undefined) {
    await markJobFailed(
      { jobId: job.jobId, error: { Error: RECONCILE_ERRORS.workflowEnded, Cause: `${run.ended} before the job was prepared` } },
      failDeps(deps, observer),
    );
    report.markedFailed += 1;
    return true;
  }

  let open = 0;
  for await (const chunk of queryPartition<ChunkItem>(deps.dynamo, deps.config.table, jobPk(job.jobId), CHUNK_SK_PREFIX)) {
    if (chunk.status === 'done' || chunk.status === 'failed') continue;
    if (outOfTime()) return false;
    if (!(await settleChunk(chunk, run, deps, report))) open += 1;
  }
  if (open === 0) {
    if (outOfTime()) return false;
    // A MarkJobFailed (or ExecutionEnded) that ran meanwhile has the last word.
    const current = await readJob(deps.dynamo, deps.config.table, job.jobId);
    if (!ENDED_JOB_STATUSES.has(current.status)) {
      await finalizeJob({ jobId: job.jobId }, { s3: deps.s3, dynamo: deps.dynamo, config: deps.config, notify: deps.notify, now, observer });
      report.finalized += 1;
    }
  }
  observer.warn(`reconciled a job whose workflow is gone: ${run.ended}`, {
    executionArn,
    executionStatus: status ?? null,
    collected: report.collected - before.collected,
    canceled: report.canceled - before.canceled,
    finalized: report.finalized > before.finalized,
    chunksWaiting: open,
  });
  return true;
}

/** A failed job as this run read it: its chunks are read once, and what its failure left undone follows from them. */
interface FailedJob {
  job: JobItem;
  chunks: ChunkItem[];
  leftovers: FailureLeftovers | undefined;
}

async function readFailedJob(job: JobItem, deps: ReconcileDeps, chunks?: ChunkItem[]): Promise<FailedJob> {
  const read = chunks ?? (await readJobChunks(deps.dynamo, deps.config.table, job.jobId));
  return { job, chunks: read, leftovers: await failureLeftovers(deps.dynamo, deps.config.table, job, read) };
}

/**
 * Whether a failed job is one whose FinalizeJob failed with everything collected: a curable error,
 * Prepare finished, every chunk done or failed, no batch left un-canceled, and no summary written.
 */
async function finalizeFailed({ job, chunks, leftovers }: FailedJob, deps: ReconcileDeps): Promise<boolean> {
  if (job.status !== 'failed' || !job.failure || !finalizeRerunCures(job.failure)) return false;
  if (job.chunkCount === undefined || job.totalRows === undefined || job.validRows === undefined || job.invalidRows === undefined) return false;
  if (chunks.some((chunk) => chunk.status !== 'done' && chunk.status !== 'failed')) return false;
  if (chunks.length !== job.chunkCount) return false;
  if (leftovers) return false;
  return !(await objectExists(deps.s3, deps.config.bucket, jobKeys(job.jobId).summary));
}

async function objectExists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await headObject(s3, bucket, key);
    return true;
  } catch (error) {
    if (isS3NotFound(error)) return false;
    throw error;
  }
}

/**
 * Finalizes a job whose FinalizeJob failed, once it is checked again (a concurrent run may have done
 * it): read afresh, since every other job had its turn meanwhile, and only ids wait until then.
 */
async function recoverFinalize(jobId: string, deps: ReconcileDeps, report: ReconcileReport, observer: Observer): Promise<void> {
  const job = await readJob(deps.dynamo, deps.config.table, jobId);
  if (job.status !== 'failed' || !(await finalizeFailed(await readFailedJob(job, deps), deps))) return;
  const out = await finalizeJob(
    { jobId, recovering: true },
    { s3: deps.s3, dynamo: deps.dynamo, config: deps.config, notify: deps.notify, now: deps.now, observer },
  );
  report.recovered += 1;
  observer.warn('finalized a job whose FinalizeJob had failed', { failure: job.failure, status: out.status, counts: out.counts });
}

/**
 * A failed job whose MarkJobFailed left batches un-canceled (or the failure unannounced): it is re-run.
 * The job keeps its own failure; the error given here is recorded only on a job not failed yet.
 */
async function finishFailure({ job, chunks }: FailedJob, ended: string, deps: ReconcileDeps, report: ReconcileReport, observer: Observer): Promise<void> {
  const done = await markJobFailed({ jobId: job.jobId, error: { Error: RECONCILE_ERRORS.workflowEnded, Cause: ended } }, failDeps(deps, observer), chunks);
  report.canceled += done.batchesCanceled;
  observer.warn(`finished the failure of a job whose workflow is gone: ${ended}`, { batchesCanceled: done.batchesCanceled, announced: done.announced });
}

function failDeps(deps: ReconcileDeps, observer: Observer): FailDeps {
  const now = clockOf(deps);
  return {
    dynamo: deps.dynamo,
    api: deps.api,
    ...deps.notify.clients,
    config: { table: deps.config.table, notify: deps.notify.config },
    now,
    observer,
  };
}

/** Moves one unfinished chunk on. True when the chunk is now done or failed. */
async function settleChunk(chunk: ChunkItem, run: JobRun, deps: ReconcileDeps, report: ReconcileReport): Promise<boolean> {
  const { jobId } = run.job;
  const now = clockOf(deps);
  let attempt = chunk.currentAttempt;
  let { record } = attemptOf(chunk, attempt);
  if (record.collectedAt) return true;

  let batchId = record.batchId;
  if (!batchId) {
    await stopJob(run, deps);
    const submitted = await submitChunk(
      { jobId, chunk: chunk.chunk },
      { s3: deps.s3, dynamo: deps.dynamo, api: deps.api, config: deps.config, now, observer: run.step(chunk.chunk) },
    );
    if (submitted.batchId === null) {
      await collectResults(
        { jobId, chunk: chunk.chunk, attempt: submitted.attempt, batchId: null },
        collectDeps(deps, submitted.attempt, run.step(chunk.chunk)),
      );
      report.collected += 1;
      return true;
    }
    // An earlier create had landed after all: that batch is this attempt's, and is settled like any other.
    attempt = submitted.attempt;
    batchId = submitted.batchId;
    record = { ...record, batchId };
  }

  let batch: MessageBatch;
  try {
    batch = await deps.api.retrieve(batchId);
  } catch (error) {
    if (!(error instanceof ApiNotFound)) throw error;
    await failChunk(chunk.chunk, RECONCILE_ERRORS.batchNotFound, `batch ${batchId} of attempt ${attempt} no longer exists; ${run.ended}`, run, deps);
    return true;
  }

  if (batch.processing_status === 'ended') {
    if (batch.archived_at) {
      await noteAttempt(jobId, chunk.chunk, attempt, batchId, { processingStatus: 'ended', endedAt: batch.ended_at ?? undefined }, deps);
      await failChunk(
        chunk.chunk,
        RECONCILE_ERRORS.resultsArchived,
        `the results of batch ${batchId} (attempt ${attempt}) were archived at ${batch.archived_at}, unread; ${run.ended}`,
        run,
        deps,
      );
      return true;
    }
    await collectResults({ jobId, chunk: chunk.chunk, attempt, batchId }, collectDeps(deps, attempt, run.step(chunk.chunk)));
    report.collected += 1;
    return true;
  }

  if (batch.processing_status === 'in_progress' && !record.cancelSentAt) {
    await stopJob(run, deps);
    const cancel = await cancelBatch(deps.api, batchId, record.createdAt);
    if (cancel.outcome === 'gone') {
      await failChunk(chunk.chunk, RECONCILE_ERRORS.batchNotFound, `batch ${batchId} of attempt ${attempt} no longer exists; ${run.ended}`, run, deps);
      return true;
    }
    // It ended (or began canceling) between the two calls, or the cancel was refused: the next run collects it, or asks again.
    if (cancel.outcome !== 'canceled') return false;
    batch = cancel.batch;
    await noteAttempt(jobId, chunk.chunk, attempt, batchId, { processingStatus: batch.processing_status, cancelSentAt: isoAt(now()) }, deps);
    run.step(chunk.chunk).info('canceled the batch of a job whose workflow is gone', { attempt, batchId });
    report.canceled += 1;
  }
  return false;
}

/** Collect with no retry: every outcome of this attempt is final. */
function collectDeps(deps: ReconcileDeps, attempt: number, observer: Observer) {
  return { s3: deps.s3, dynamo: deps.dynamo, api: deps.api, config: { ...deps.config, maxAttempts: attempt }, now: deps.now, observer };
}

/** Marks the job cancelRequested: Submit then creates nothing, and Finalize reports the job canceled. */
async function stopJob(run: JobRun, deps: ReconcileDeps): Promise<void> {
  if (run.stopping || run.job.cancelRequested) return;
  await updateItem(deps.dynamo, deps.config.table, jobKey(run.job.jobId), {
    set: { cancelRequested: true, updatedAt: isoAt(clockOf(deps)()) },
  });
  run.stopping = true;
}

async function failChunk(chunk: number, error: string, cause: string, run: JobRun, deps: ReconcileDeps): Promise<void> {
  await recordChunkFailure(
    { jobId: run.job.jobId, chunk, error: { Error: error, Cause: cause } },
    { dynamo: deps.dynamo, api: deps.api, config: deps.config, now: deps.now, observer: run.step(chunk) },
  );
}

/** Records what was seen or done on an attempt, as Poll does: only while the attempt is current and uncollected. */
async function noteAttempt(jobId: string, chunk: number, attempt: number, batchId: string, patch: Partial<ChunkAttempt>, deps: ReconcileDeps): Promise<void> {
  const item = await readChunk(deps.dynamo, deps.config.table, jobId, chunk);
  const { index } = attemptOf(item, attempt);
  await updateChunk(deps.dynamo, deps.config.table, item, {
    set: { attempts: patchAttempt(item, index, patch), updatedAt: isoAt(clockOf(deps)()) },
    condition: chunkCondition(`#ca = :attempt AND #att[${index}].#bid = :batchId AND attribute_not_exists(#att[${index}].#col)`, {
      ':attempt': attempt,
      ':batchId': batchId,
    }),
  });
}
