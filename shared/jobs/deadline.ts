/**
 * A job's deadline (docs/architecture.md, "Deadline fallback"): an ISO time or a duration, resolved
 * to an instant at Register and kept on the job record with the stack's margin. A batch still
 * running at `deadline − margin` is canceled (PollBatch), its finished rows kept (CollectResults),
 * and the rest sent as synchronous Messages calls (RunStragglers) until the deadline.
 *
 * Every comparison is on the API's clock (its `Date` header), as batch ages are, so a simulator
 * whose clock runs fast drives the same decisions; Register resolves a duration on its own clock,
 * which in AWS is the API's within seconds (the local CLI resolves it on the simulator's).
 */
import type { JobItem } from '../store/items';

/** User metadata that sets a file's deadline (`x-amz-meta-batchline-deadline`): an ISO time or a duration (`6h`, `90m`, `1h30m`). */
export const DEADLINE_METADATA = 'batchline-deadline';

/** A deadline that is neither an ISO time nor a duration, that has passed already, or whose cancel time (deadline − margin) has. */
export class InvalidDeadline extends Error {
  override readonly name = 'InvalidDeadline';
}

const UNIT_SECONDS: Readonly<Record<string, number>> = { d: 86_400, h: 3600, m: 60, s: 1 };
/** A deadline further than this is no deadline: a batch ends within 24 h anyway. */
export const MAX_DEADLINE_SECONDS = 30 * 86_400;

/** Seconds of a duration like `6h`, `90m`, `1h30m`, `45s`, `2d`; undefined when the text is not one. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (!/^(\d+(\.\d+)?[dhms])+$/.test(trimmed)) return undefined;
  let seconds = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)([dhms])/g)) seconds += Number(amount) * UNIT_SECONDS[unit!]!;
  return seconds;
}

/** An ISO 8601 time with a date, a time and a zone (`2026-12-08T06:00:00Z`, `...+02:00`). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * The instant (epoch ms) a deadline names, from `nowMs` for a duration. `what` names where the
 * value came from in the error (`--deadline`, the object's batchline-deadline metadata). Given the
 * stack's margin (Register), a deadline whose cancel time `deadline − margin` is not after now is
 * refused: its batch would be canceled as soon as it was created, every row paid at standard rates.
 */
export function resolveDeadline(value: string, nowMs: number, what: string, marginSeconds?: number): number {
  const text = value.trim();
  const hint = 'use an ISO time with its zone (2026-12-08T06:00:00Z) or a duration (6h, 90m, 1h30m)';
  const seconds = parseDuration(text);
  let at: number;
  if (seconds !== undefined) {
    if (!(seconds > 0)) throw new InvalidDeadline(`${what} is "${value}": a duration must be more than 0; ${hint}`);
    at = nowMs + seconds * 1000;
  } else if (ISO_TIME.test(text) && Number.isFinite(Date.parse(text))) {
    at = Date.parse(text);
    if (at <= nowMs) throw new InvalidDeadline(`${what} is "${value}", which has passed already (now ${new Date(nowMs).toISOString()})`);
  } else {
    throw new InvalidDeadline(`${what} is "${value}"; ${hint}`);
  }
  if (at - nowMs > MAX_DEADLINE_SECONDS * 1000) {
    throw new InvalidDeadline(`${what} is "${value}", more than ${MAX_DEADLINE_SECONDS / 86_400} days away; a batch ends within 24 hours anyway`);
  }
  if (marginSeconds !== undefined && at - marginSeconds * 1000 <= nowMs) {
    throw new InvalidDeadline(
      `${what} is "${value}", within the stack's deadline margin of ${marginSeconds} s (deadlineMarginSeconds) from now ` +
        `(${new Date(nowMs).toISOString()}): its batch would be canceled at once; give a deadline more than ${marginSeconds} s away, or lower deadlineMarginSeconds`,
    );
  }
  return at;
}

/** A job's deadline as its steps use it (epoch ms on the API's clock). */
export interface JobDeadline {
  /** Rows unanswered by then end `expired`. */
  at: number;
  /** A batch still in progress from then on is canceled: `at − margin`. */
  cancelAt: number;
}

export function deadlineOf(job: Pick<JobItem, 'deadline'>): JobDeadline | undefined {
  if (!job.deadline) return undefined;
  const at = Date.parse(job.deadline.at);
  return { at, cancelAt: at - job.deadline.marginSeconds * 1000 };
}

/** Whether a batch of this job still running at `apiNow` is to be canceled for the deadline (never for a job asked to cancel: that cancel is the user's). */
export function deadlineCancelDue(job: Pick<JobItem, 'deadline' | 'cancelRequested'>, apiNow: number): boolean {
  const deadline = deadlineOf(job);
  return deadline !== undefined && job.cancelRequested !== true && apiNow >= deadline.cancelAt;
}
