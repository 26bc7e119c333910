/**
 * The commands that operate a stack, deployed or local: register them with the others in main.ts
 * (`...OPS_COMMANDS`). Each is `{run(args, io), help}`, as main's COMMANDS are.
 */
import { cancelCommand } from './cancel';
import type { OpsCommand } from './command';
import { getCommand } from './get';
import { jobsCommand } from './jobs';
import { resultsCommand } from './results';
import { statusCommand } from './status';
import { rerunCommand } from './rerun';
import { submitCommand } from './submit';

export const OPS_COMMANDS: Record<string, OpsCommand> = {
  submit: submitCommand,
  rerun: rerunCommand,
  jobs: jobsCommand,
  status: statusCommand,
  get: getCommand,
  cancel: cancelCommand,
  results: resultsCommand,
};

/** Lines for the "Commands:" list of `batchline --help`. */
export const OPS_HELP_LINES = `  submit FILE.jsonl     upload a file to a stack's inbox and follow its job
  rerun JOB             send again only a finished job's rows that did not succeed
  jobs                  list a stack's recent jobs
  status JOB            a job's progress, chunk by chunk
  get JOB CUSTOM_ID     one row's status and result
  cancel JOB            ask a running job to cancel its batches
  results JOB           download a job's outputs
`;
