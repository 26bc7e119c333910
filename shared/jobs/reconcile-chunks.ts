/**
 * Reconcile (shared/jobs/reconcile-jobs.ts): a job whose workflow is gone, with chunks unfinished.
 * Each unfinished chunk is settled with the pipeline's own steps:
 * - its batch ended → Collect, with no retry: maxAttempts is the attempt being collected, so every
 *   row's outcome is final (a retry would need a workflow to submit, poll and collect it);
 * - its batch is still in progress → the job is marked cancelRequested and the batch canceled; it
 *   is collected on a later run, once it has ended;
 * - its attempt was never submitted (pending, retry_wait, or a create whose outcome is unknown) →
 *   Submit, under cancelRequested: it adopts a batch an earlier create made (that batch is then
 *   settled as above) and never creates one; with none, Collect records the rows canceled;
 * - its batch is gone, or its results were archived → the chunk failure is recorded;
 * - its attempt is the deadline fallback's synchronous one → settled as it stands, nothing more sent
 *   (shared/jobs/stragglers.ts finishStragglers).
 * When every chunk is done or failed, Finalize writes the outputs; a job whose batches were canceled
 * (or never submitted) ends `canceled`, one whose batches had all ended `succeeded`.
 *
 * A cancel is sent once per attempt (recorded as cancelSentAt).
 */
import { ApiNotFound } from '../anthropic/errors';
import type { MessageBatch } from '../anthropic/types';
import type { Observer } from '../observability';
import { queryPartition, updateItem } from '../store/dynamo';
import { CHUNK_SK_PREFIX, jobPk, type ChunkAttempt, type ChunkItem, type JobItem } from '../store/items';
import { cancelBatch } from './cancel';
import { recordChunkFailure } from './record-chunk-failure';
import { attemptOf, chunkCondition, isoAt, jobKey, patchAttempt, readChunk, readJob, updateChunk } from './chunk-state';
import { collectResults } from './collect-results';
import { finishStragglers } from './stragglers';
import { finalizeJob } from './finalize-job';
import { ENDED_JOB_STATUSES } from './queries';
import { submitChunk } from './submit-chunk';
import { scopedObserver } from './reconcile-observer';
import type { ReconcileDeps, ReconcileReport } from './reconcile-jobs';
import { clockOf } from '../clock';

/** The `error` recorded on a chunk the reconciler could not collect. */
export const RECONCILE_ERRORS = {
  /** The job's workflow ended before it was prepared: marked failed. */
  workflowEnded: 'WorkflowEnded',
  /** The batch's results were archived (29 days after create) before anyone read them. */
  resultsArchived: 'ResultsArchived',
  /** The API no longer knows the batch (deleted). */
  batchNotFound: 'BatchNotFound',
} as const;

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
 * Settles the chunks of a job whose workflow is gone (`ended` says how), and finalizes it once none
 * is left open. False when the budget ran out part-way.
 */
export async function settleDeadJob(
  job: JobItem,
  ended: string,
  execution: { executionArn: string; status: string | undefined },
  deps: ReconcileDeps,
  report: ReconcileReport,
  outOfTime: () => boolean,
  observer: Observer,
): Promise<boolean> {
  const now = clockOf(deps);
  const run: JobRun = {
    job,
    ended,
    stopping: false,
    observer,
    step: (chunk) => scopedObserver(observer, { jobId: job.jobId, chunk }),
  };
  const before = { ...report };

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
    executionArn: execution.executionArn,
    executionStatus: execution.status ?? null,
    collected: report.collected - before.collected,
    canceled: report.canceled - before.canceled,
    finalized: report.finalized > before.finalized,
    chunksWaiting: open,
  });
  return true;
}

/** Moves one unfinished chunk on. True when the chunk is now done or failed. */
async function settleChunk(chunk: ChunkItem, run: JobRun, deps: ReconcileDeps, report: ReconcileReport): Promise<boolean> {
  const { jobId } = run.job;
  const now = clockOf(deps);
  let attempt = chunk.currentAttempt;
  let { record } = attemptOf(chunk, attempt);
  if (record.collectedAt) return true;

  // The deadline fallback's synchronous attempt: nothing more is sent once the workflow is gone;
  // the answers stored are kept, the rest end unknown or expired (shared/jobs/stragglers.ts).
  if (record.sync) {
    await stopJob(run, deps);
    await finishStragglers(
      { jobId, chunk: chunk.chunk, attempt },
      { s3: deps.s3, dynamo: deps.dynamo, config: deps.config, now, observer: run.step(chunk.chunk) },
    );
    report.collected += 1;
    return true;
  }
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

/** Collect with no retry (nor deadline fallback): every outcome of this attempt is final. */
export function collectDeps(deps: ReconcileDeps, attempt: number, observer: Observer) {
  return { s3: deps.s3, dynamo: deps.dynamo, api: deps.api, config: { ...deps.config, maxAttempts: attempt }, now: deps.now, observer, final: true };
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
