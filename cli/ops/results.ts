/** `batchline results JOB`: a job's outputs, streamed from the bucket into a folder. */
import path from 'node:path';
import { getJob, hasEnded } from '../../shared/jobs/queries';
import { jobKeys } from '../../shared/store/keys';
import { displayPath } from '../format';
import { copyOutputs } from '../outputs';
import { oneJob, OpsFailure, opsCommand } from './command';
import { oneLine } from './layout';
import { TARGET_HELP } from './target';

export const RESULTS_HELP = `Usage: batchline results JOB [options]

Downloads a job's outputs once it has ended: results.jsonl (one line per valid input row, in input
order), errors.jsonl (rows that did not succeed), invalid.jsonl (lines that were not valid
requests) and summary.json (counts, tokens, cost, timings).

Options:
  --out DIR          where to write them (default ./batchline-out/<jobId>/)
${TARGET_HELP}
  -h, --help         show this help

Exit status: 0 when the outputs are downloaded (whatever the job's outcome: "batchline status JOB"
exits by it), 1 when the job has not ended or left no outputs, 2 for a usage error.
`;

export const resultsCommand = opsCommand('results', RESULTS_HELP, { out: { type: 'string' } }, async ({ values, positionals }, open, io) => {
  const jobId = oneJob(positionals, 'results');
  const target = await open();
  const job = await getJob(target, jobId);
  if (!hasEnded(job)) {
    throw new OpsFailure(
      `job ${jobId} has not ended yet (${job.status}): its outputs are written when it ends (follow it with: batchline status ${jobId}${target.flags})`,
    );
  }
  const dir = path.resolve(io.cwd, (values.out as string | undefined) ?? path.join('batchline-out', jobId));
  const written = await copyOutputs(target.s3, target.bucket, jobId, dir);
  if (written.length === 0) {
    const why = job.failure ? ` (it failed: ${job.failure.error}: ${oneLine(job.failure.cause)})` : '';
    throw new OpsFailure(`job ${jobId} ${job.status} and left no outputs in s3://${target.bucket}/${jobKeys(jobId).resultsPrefix}${why}`);
  }
  io.stdout.write(`Outputs of job ${jobId} (${job.status}) in ${displayPath(io.cwd, dir)}/: ${written.map((file) => path.basename(file)).join(', ')}\n`);
  return 0;
});
