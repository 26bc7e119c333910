/** `batchline cancel JOB`: asks a running job to stop; its workflow cancels the batches. */
import { requestCancel, type CancelOutcome } from '../../shared/jobs/queries';
import { oneJob, opsCommand } from './command';
import { when } from './layout';
import { TARGET_HELP } from './target';
import { JSON_FLAGS, JSON_HELP, wantsJson, writeJson } from '../json';

export const CANCEL_HELP = `Usage: batchline cancel JOB [options]

Asks a job to cancel. The running workflow acts on it: chunks not yet submitted create no batch,
batches in progress are canceled at their next poll, and the job still ends with its outputs
(rows the API had already processed keep their results; the rest end as canceled).

Exit status: 0 when the cancel is requested (or already was), 1 when the job has already ended or
is finishing, 2 for a usage error.

Options:
${JSON_HELP}
${TARGET_HELP}
  -h, --help         show this help
`;

export const cancelCommand = opsCommand('cancel', CANCEL_HELP, { ...JSON_FLAGS }, async ({ values, positionals }, open, io) => {
  const jobId = oneJob(positionals, 'cancel');
  const json = wantsJson(values);
  const target = await open();
  const outcome = await requestCancel(target, jobId);
  const ok = outcome.outcome === 'requested' || outcome.outcome === 'already-requested';
  const message = cancelMessage(outcome, `batchline status ${jobId}${target.flags}`);
  const exitStatus = ok ? 0 : 1;
  if (json) {
    writeJson(io.stdout, 'cancel', { jobId, outcome: outcome.outcome, status: outcome.job.status, exitStatus, message });
    return exitStatus;
  }
  (ok ? io.stdout : io.stderr).write(`${message}\n`);
  return exitStatus;
});

export function cancelMessage(outcome: CancelOutcome, statusCommand: string): string {
  const { job } = outcome;
  switch (outcome.outcome) {
    case 'requested':
      return `Cancel requested for job ${job.jobId} (${job.status}): batches in progress are canceled at their next poll. Follow it with: ${statusCommand}`;
    case 'already-requested':
      return `Cancel was already requested for job ${job.jobId}; it is still ${job.status}. Follow it with: ${statusCommand}`;
    case 'finalizing':
      return `Job ${job.jobId} is finishing (${job.status}): no batch is left to cancel.`;
    case 'ended':
      return `Job ${job.jobId} has already ended (${job.status}${job.endedAt ? ` at ${when(job.endedAt)}` : ''}): nothing to cancel.`;
  }
}
