/**
 * Following a job from its records alone (another process, or AWS, runs it): each snapshot is
 * compared with the one before, and what changed is told as the workflow events the local runtime
 * emits, so `submit` reads like `run` — one redrawn bar on a terminal, a line per step otherwise.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalEvent } from '../../local/runtime';
import { hasEnded, jobProgress, type JobProgressReport, type QueryDeps } from '../../shared/jobs/queries';
import type { ChunkAttempt } from '../../shared/store/items';
import type { ProgressView } from '../progress';
import { batchProgress, type LiveProgress, type ValidationWatch } from '../../local/progress';

/** The steps that happened between two snapshots of a job, in workflow order. */
export function eventsBetween(before: JobProgressReport | undefined, after: JobProgressReport): LocalEvent[] {
  const events: LocalEvent[] = [];
  const { job } = after;
  if (before?.job.chunkCount === undefined && job.chunkCount !== undefined) {
    events.push({
      type: 'job-prepared',
      jobId: job.jobId,
      outcome: job.status === 'rejected' ? 'rejected' : job.chunkCount > 0 ? 'ready' : 'empty',
      chunks: job.chunkCount,
      validRows: job.validRows ?? 0,
      invalidRows: job.invalidRows ?? 0,
    });
  }
  const earlier = new Map<string, ChunkAttempt>();
  const earlierStatus = new Map<number, string>();
  for (const chunk of before?.chunks ?? []) {
    earlierStatus.set(chunk.chunk, chunk.status);
    for (const attempt of chunk.attempts) earlier.set(`${chunk.chunk}/${attempt.attempt}`, attempt);
  }
  for (const chunk of after.chunks) {
    const ref = { jobId: job.jobId, chunk: chunk.chunk };
    for (const attempt of chunk.attempts) {
      const was = earlier.get(`${chunk.chunk}/${attempt.attempt}`);
      if (attempt.batchId && !was?.batchId) {
        events.push({ type: 'batch-submitted', ...ref, attempt: attempt.attempt, batchId: attempt.batchId, canceled: false });
      }
      if (attempt.collectedAt && !was?.collectedAt) {
        if (attempt.sync) {
          // The deadline fallback's synchronous attempt: no batch.
          events.push({ type: 'stragglers-ran', ...ref, attempt: attempt.attempt, done: true, remaining: 0 });
          continue;
        }
        if (!attempt.batchId) events.push({ type: 'batch-submitted', ...ref, attempt: attempt.attempt, batchId: null, canceled: true });
        const next = (attempt.retryRows ?? 0) > 0;
        events.push({
          type: 'chunk-collected',
          ...ref,
          attempt: attempt.attempt,
          retry: next && !attempt.straggled,
          ...(next && attempt.straggled ? { stragglers: true } : {}),
        });
      }
    }
    if (chunk.status === 'failed' && earlierStatus.get(chunk.chunk) !== 'failed') {
      events.push({ type: 'chunk-failed', ...ref, error: chunk.failure?.error ?? 'unknown' });
    }
  }
  const ended = (report: JobProgressReport | undefined) => report !== undefined && hasEnded(report.job);
  if (ended(after) && !ended(before)) {
    events.push(
      job.status === 'failed'
        ? { type: 'job-failed', jobId: job.jobId, error: job.failure?.error ?? 'unknown' }
        : { type: 'job-finalized', jobId: job.jobId, status: job.status },
    );
  }
  return events;
}

export interface FollowOptions {
  /** The first wait between snapshots; each wait is half as long again, up to `maxIntervalMs`. */
  minIntervalMs?: number;
  maxIntervalMs?: number;
  /** How often the bar is redrawn between snapshots (terminal only). */
  redrawMs?: number;
  tty?: boolean;
  /** Prepare's progress while it validates (read from the row indexes it writes), for the bar. */
  validation?: ValidationWatch;
}

/** Reads the job's records until it has ended, telling `view` what changes; resolves with the last snapshot. */
export async function followJob(
  deps: Pick<QueryDeps, 'dynamo' | 'table'>,
  jobId: string,
  view: ProgressView,
  options: FollowOptions = {},
): Promise<JobProgressReport> {
  const maxIntervalMs = options.maxIntervalMs ?? 5_000;
  let interval = options.minIntervalMs ?? 250;
  let last: JobProgressReport | undefined;
  const live = (report: JobProgressReport): LiveProgress => ({ ...report.totals, ended: hasEnded(report.job), ...batchProgress(report.chunks) });
  let shown: LiveProgress | undefined;
  const ticker = options.tty ? setInterval(() => shown && view.update(shown), options.redrawMs ?? 200) : undefined;
  try {
    for (;;) {
      let report = await jobProgress(deps, jobId);
      const ended = hasEnded(report.job);
      // Its chunks may have been read just before their last update: once ended, they no longer change.
      if (ended) report = await jobProgress(deps, jobId);
      for (const event of eventsBetween(last, report)) view.event(event);
      const snapshot = live(report);
      // While Prepare validates, how far it has got (the rows and the share of the input read).
      if (options.validation && report.job.validRows === undefined && !ended) {
        const validating = await options.validation.read(report.job).catch(() => undefined);
        if (validating) snapshot.validating = validating;
      }
      shown = snapshot;
      view.update(snapshot);
      last = report;
      if (ended) return report;
      await sleep(interval);
      interval = Math.min(maxIntervalMs, Math.ceil(interval * 1.5));
    }
  } finally {
    if (ticker) clearInterval(ticker);
    view.finish();
  }
}
