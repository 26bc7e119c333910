/**
 * Reconcile: the daily safety net for jobs whose workflow died with work unfinished — batches whose
 * results nobody read (the API keeps them 29 days from create), batches still running for nobody.
 * This module is the run: which jobs are looked at, in what order, within what budget, and its report.
 *
 * A job is looked at when it was created in the last 30 days, has not ended, and its execution is
 * no longer running (or no longer exists). Then each unfinished chunk is settled with the pipeline's
 * own steps, and the job finalized once none is left (shared/jobs/reconcile-chunks.ts). A job that never
 * got past Prepare has no batch: it is marked failed (and announced) as MarkJobFailed would.
 *
 * A failed job is looked at too, but only while its MarkJobFailed left work undone, or when its
 * FinalizeJob failed (or its execution failed past every Catch) in a way a re-run cures: those are
 * finalized after all, last in the run, once every other job has had its turn (shared/jobs/reconcile-failed.ts). Then chunks whose Collect could not finish are
 * collected late, whatever their job's status (shared/jobs/reconcile-late.ts), and last the batches of
 * creates given up are looked for (shared/jobs/orphans.ts).
 *
 * Re-runnable: every step is the core's own idempotent step, a cancel is sent once per attempt
 * (recorded as cancelSentAt), and a finished job (or a failed one with nothing left undone) is no
 * longer looked at. Work per run is bounded: no step starts once the time budget is spent; the
 * next run carries on.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi } from '../anthropic/api';
import { requireString, type NotifyConfig, type PipelineConfig } from '../config';
import type { NotifyClients } from '../notify';
import { errorFields, quietObserver, type Observer } from '../observability';
import { queryJobsIndex } from '../store/dynamo';
import type { JobItem } from '../store/items';
import { isoAt, readJob } from './chunk-state';
import { markJobFailed } from './mark-job-failed';
import { ENDED_JOB_STATUSES } from './queries';
import { sweepOrphans } from './orphans';
import { RECONCILE_ERRORS, settleDeadJob } from './reconcile-chunks';
import { failDeps, finalizeFailed, readFailedJob, recoverFinalize, settleFailedJob, type FailedJob } from './reconcile-failed';
import { collectLate } from './reconcile-late';
import { scopedObserver } from './reconcile-observer';
import { clockOf } from '../clock';

export { RECONCILE_ERRORS } from './reconcile-chunks';
export { EXECUTION_RERUN_ERRORS, executionErrorOf, FINALIZE_RERUN_ERRORS, finalizeRerunCures } from './reconcile-failed';

/** Batch results stay readable 29 days after create; a job's batches are created after the job. */
export const RECONCILE_WINDOW_DAYS = 30;
/** No step starts after this much of a run: a Lambda has 15 minutes, and one step may take a few. */
export const RECONCILE_BUDGET_MS = 12 * 60_000;
/** Execution statuses whose workflow still owns the job. */
export const LIVE_EXECUTION_STATUSES: ReadonlySet<string> = new Set(['RUNNING', 'PENDING_REDRIVE']);

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
    if (await settleFailedJob(job, ended, deps, report, observer, failed?.chunks)) toRecover.push(job.jobId);
    return true;
  }
  if (ENDED_JOB_STATUSES.has(job.status)) return true;

  if (job.chunkCount === undefined) {
    await markJobFailed(
      { jobId: job.jobId, error: { Error: RECONCILE_ERRORS.workflowEnded, Cause: `${ended} before the job was prepared` } },
      failDeps(deps, observer),
    );
    report.markedFailed += 1;
    return true;
  }
  return settleDeadJob(job, ended, { executionArn, status }, deps, report, outOfTime, observer);
}
