/**
 * Reconcile (shared/jobs/reconcile-jobs.ts): failed jobs with work left, finished or finalized after all.
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
 * A failed job with nothing left undone is no longer looked at.
 */
import type { Observer } from '../observability';
import { jobKeys } from '../store/keys';
import { objectExists } from '../store/s3';
import type { ChunkItem, JobItem } from '../store/items';
import { readJob, readJobChunks } from './chunk-state';
import { LAMBDA_CRASH_ERRORS, LAMBDA_TRANSIENT_ERRORS, STORAGE_THROTTLED_ERRORS, UNCATCHABLE_ERRORS } from './contract';
import { EXECUTION_ERRORS } from './execution-ended';
import { failureLeftovers, markJobFailed, type FailDeps, type FailureLeftovers } from './mark-job-failed';
import { finalizeJob } from './finalize-job';
import { RECONCILE_ERRORS } from './reconcile-chunks';
import type { ReconcileDeps, ReconcileReport } from './reconcile-jobs';
import { clockOf } from '../clock';

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

/** A failed job as this run read it: its chunks are read once, and what its failure left undone follows from them. */
export interface FailedJob {
  job: JobItem;
  chunks: ChunkItem[];
  leftovers: FailureLeftovers | undefined;
}

export async function readFailedJob(job: JobItem, deps: ReconcileDeps, chunks?: ChunkItem[]): Promise<FailedJob> {
  const read = chunks ?? (await readJobChunks(deps.dynamo, deps.config.table, job.jobId));
  return { job, chunks: read, leftovers: await failureLeftovers(deps.dynamo, deps.config.table, job, read) };
}

/**
 * A failed job whose workflow is gone (`ended` says how): its failure finished if it left work undone.
 * True when it is one to finalize after all (recoverFinalize, once every other job had its turn).
 * `chunks`: its chunks as read before its execution was described.
 */
export async function settleFailedJob(
  job: JobItem,
  ended: string,
  deps: ReconcileDeps,
  report: ReconcileReport,
  observer: Observer,
  chunks: ChunkItem[] | undefined,
): Promise<boolean> {
  // Its chunks as read a moment ago, before the DescribeExecution; its record as it is now.
  const state = await readFailedJob(job, deps, chunks);
  if (state.leftovers) {
    await finishFailure(state, ended, deps, report, observer);
    // markJobFailed throws unless every batch it was given is now recorded stopped, and the failure announced.
    state.leftovers = undefined;
  }
  return finalizeFailed(state, deps);
}

/**
 * Whether a failed job is one whose FinalizeJob failed with everything collected: a curable error,
 * Prepare finished, every chunk done or failed, no batch left un-canceled, and no summary written.
 */
export async function finalizeFailed({ job, chunks, leftovers }: FailedJob, deps: ReconcileDeps): Promise<boolean> {
  if (job.status !== 'failed' || !job.failure || !finalizeRerunCures(job.failure)) return false;
  if (job.chunkCount === undefined || job.totalRows === undefined || job.validRows === undefined || job.invalidRows === undefined) return false;
  if (chunks.some((chunk) => chunk.status !== 'done' && chunk.status !== 'failed')) return false;
  if (chunks.length !== job.chunkCount) return false;
  if (leftovers) return false;
  return !(await objectExists(deps.s3, deps.config.bucket, jobKeys(job.jobId).summary));
}

/**
 * Finalizes a job whose FinalizeJob failed, once it is checked again (a concurrent run may have done
 * it): read afresh, since every other job had its turn meanwhile, and only ids wait until then.
 */
export async function recoverFinalize(jobId: string, deps: ReconcileDeps, report: ReconcileReport, observer: Observer): Promise<void> {
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

export function failDeps(deps: ReconcileDeps, observer: Observer): FailDeps {
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
