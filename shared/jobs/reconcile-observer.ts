/**
 * The reconciler's observer for one job (or one step of it) within a run (shared/jobs/reconcile-jobs.ts).
 */
import type { InvocationKeys, Observer } from '../observability';

/**
 * An observer for one job (or one step of it) within the run: its keys go on its own lines only,
 * since the invocation's keys would otherwise carry one job's ids onto the next job's lines.
 */
export function scopedObserver(parent: Observer, keys: InvocationKeys): Observer {
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
