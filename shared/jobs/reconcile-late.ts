/**
 * Reconcile (shared/jobs/reconcile-jobs.ts): chunks collected late.
 *
 * A job with a chunk whose Collect could not finish while its batch's results wait at the API
 * (`collectLater`, shared/jobs/record-chunk-failure.ts: killed more often than the workflow retries it, the
 * API or storage unavailable, the key refused) has it collected here, whatever the job's status: Collect
 * goes on from its checkpoint, with no retry (shared/jobs/reconcile-chunks.ts), and the chunk is done. Results archived or a
 * batch gone leave the chunk failed. Once none is left, a job that had ended is finalized again: its
 * outputs are rewritten whole, and summary.json names the chunks collected late (`collectedLate`).
 */
import { ApiNotFound } from '../anthropic/errors';
import type { Observer } from '../observability';
import { ConditionFailed, updateItem } from '../store/dynamo';
import { attemptOf, isoAt, jobKey, readJob, readJobChunks, updateChunk } from './chunk-state';
import { collectResults } from './collect-results';
import { finalizeJob } from './finalize-job';
import { collectDeps, RECONCILE_ERRORS } from './reconcile-chunks';
import { scopedObserver } from './reconcile-observer';
import type { ReconcileDeps, ReconcileReport } from './reconcile-jobs';
import { clockOf } from '../clock';

/**
 * Collects the chunks of a job whose Collect could not finish (ChunkItem.collectLater), then
 * finalizes the job again if it had ended. False when the budget ran out part-way.
 */
export async function collectLate(jobId: string, deps: ReconcileDeps, report: ReconcileReport, outOfTime: () => boolean, observer: Observer): Promise<boolean> {
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
