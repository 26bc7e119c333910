/**
 * What the CLI's exit status says, decided in one place so `run`, `submit` and `status` agree and
 * a script can trust `batchline run f.jsonl && publish`:
 *
 *   0    the job ran to the end and every input row succeeded
 *   1    the job failed or was rejected (or the command failed)
 *   2    a usage error: a flag, a file, a setting
 *   3    the job ran to the end, but some rows did not succeed (errored, expired, canceled, or
 *        invalid under --lenient): their reasons are in errors.jsonl and invalid.jsonl
 *   130  interrupted (Ctrl-C)
 */
import type { JobStatus, RowCounts } from '../shared/store/items';
import { count } from './format';

export const EXIT = {
  succeeded: 0,
  failed: 1,
  usage: 2,
  rowsNotSucceeded: 3,
  interrupted: 130,
} as const;

/** The lines every command's --help ends with. */
export const EXIT_STATUS_HELP = `Exit status:
  0    the job ran to the end and every input row succeeded
  3    the job ran to the end, but some rows did not succeed (errored, expired, canceled,
       or invalid under --lenient)
  1    the job failed or was rejected, or the command failed
  2    a usage error (a flag, a file, a setting)
  130  interrupted (Ctrl-C)
`;

/** What the exit status is decided from: how the job ended and its rows' counts. */
export interface JobEnd {
  status: JobStatus | undefined;
  /** The rows' final counts (summary.json's, else the job record's). */
  counts: RowCounts | undefined;
  /** The job's execution failed, whatever its record says. */
  executionFailed?: boolean;
}

/** The exit status of a job that has ended (see the table above). */
export function exitStatusOf(end: JobEnd): number {
  if (end.executionFailed) return EXIT.failed;
  if (end.status !== 'succeeded' && end.status !== 'canceled') return EXIT.failed;
  // A job that ended without counts cannot show that every row succeeded.
  if (!end.counts) return EXIT.rowsNotSucceeded;
  return rowsNotSucceeded(end.counts) > 0 ? EXIT.rowsNotSucceeded : EXIT.succeeded;
}

export function rowsNotSucceeded(counts: RowCounts): number {
  return counts.errored + counts.expired + counts.canceled + counts.invalid;
}

/**
 * The closing line of a job that ran to the end with rows that did not succeed, e.g.
 * `2 of 30 rows did not succeed (1 errored, 1 invalid): exit status 3`; undefined otherwise.
 */
export function shortfallLine(end: JobEnd): string | undefined {
  if (exitStatusOf(end) !== EXIT.rowsNotSucceeded || !end.counts) return undefined;
  const { counts } = end;
  const total = counts.succeeded + rowsNotSucceeded(counts);
  const parts = (['errored', 'expired', 'canceled', 'invalid'] as const)
    .filter((status) => counts[status] > 0)
    .map((status) => `${count(counts[status])} ${status}`);
  return `${count(rowsNotSucceeded(counts))} of ${count(total)} rows did not succeed (${parts.join(', ')}): exit status ${EXIT.rowsNotSucceeded}`;
}
