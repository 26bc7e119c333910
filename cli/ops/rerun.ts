/**
 * `batchline rerun JOB`: a new job on JOB's input that sends only the rows that did not succeed
 * (shared/jobs/rerun.ts copies the input inside S3 to the stack's inbox with `batchline-reuse`), followed to
 * the end as `submit` follows an upload.
 */
import { startRerun } from '../../shared/jobs/rerun';
import { parseOnly, ReuseNotPossible } from '../../shared/jobs/reuse';
import { positiveNumber, UsageError } from '../args';
import type { Io } from '../io';
import { EXIT_STATUS_HELP } from '../exit-status';
import { OpsFailure, oneJob, opsCommand } from './command';
import { followToEnd, waitForJob } from './submit';
import { TARGET_HELP } from './target';

export const RERUN_HELP = `Usage: batchline rerun JOB [options]

Starts a new job on JOB's input (the very upload JOB ran, copied inside the bucket to the stack's
inbox as inbox/<name>.rerun-<time>-<random>.jsonl) that sends only the rows whose final status was not succeeded,
and follows it to the end. Its results.jsonl has every row of the input in input order: the rows
it sent with their new results, the others copied from JOB's results.jsonl with "reused_from":
"JOB" (their attempts and batch_id say where they ran). Nothing that succeeded is sent again, and
the summary's cost counts only what the new job paid ("reused" says how many rows and what they
had cost).

Options:
  --only LIST        send only rows with these statuses or error types, comma-separated (e.g.
                     expired,overloaded_error); the other rows that did not succeed are carried
                     over as they were
  --max-cost USD     the new job's budget (object metadata batchline-max-cost): rejected before
                     anything is sent if its estimate is higher, and no retry that would pass it
  --no-follow        print the new job's id once it is registered, and return
${TARGET_HELP}
  -h, --help         show this help

With --no-follow the exit status is 0 once the job is registered. Otherwise:

${EXIT_STATUS_HELP}`;

/** Jobs created up to this long before the copy still count as candidates: the clocks may differ. */
const CLOCK_SKEW_MS = 10 * 60_000;

export const rerunCommand = opsCommand(
  'rerun',
  RERUN_HELP,
  { only: { type: 'string' }, 'max-cost': { type: 'string' }, 'no-follow': { type: 'boolean' } },
  async ({ values, positionals }, open, io: Io) => {
    const jobId = oneJob(positionals, 'rerun');
    const only = values.only === undefined ? undefined : usage(() => parseOnly(String(values.only), '--only'));
    const maxCostUsd = positiveNumber(values['max-cost'] as string | undefined, '--max-cost');
    const target = await open();
    const startedAt = Date.now();
    const since = new Date(startedAt - CLOCK_SKEW_MS).toISOString();
    let uploaded;
    try {
      uploaded = await startRerun(target, jobId, { only, maxCostUsd });
    } catch (error) {
      if (error instanceof ReuseNotPossible) throw new OpsFailure(error.message);
      throw error;
    }
    io.stdout.write(`Rerunning job ${jobId}${only ? ` (only ${only.join(', ')})` : ''}: s3://${uploaded.bucket}/${uploaded.key}\n`);
    // The copy's key is new (it names the time), so no earlier job can be taken for its job.
    const newJob = await waitForJob(target, uploaded, { since });
    if (values['no-follow'] === true) {
      io.stdout.write(`Job ${newJob} registered. Follow it with: batchline status ${newJob}${target.flags}\n`);
      return 0;
    }
    io.stdout.write(`Job ${newJob}\n`);
    return followToEnd(target, newJob, io, { tty: io.stdout.isTTY === true, startedAt });
  },
);

function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof ReuseNotPossible) throw new UsageError(error.message);
    throw error;
  }
}
