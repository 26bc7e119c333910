/** `batchline results JOB`: a job's outputs, streamed from the bucket into a folder. */
import path from 'node:path';
import { getJob, hasEnded } from '../../shared/jobs/queries';
import { jobKeys } from '../../shared/store/keys';
import { displayPath } from '../format';
import { copyOutputs } from '../outputs';
import { oneJob, OpsFailure, opsCommand } from './command';
import { oneLine } from './layout';
import { TARGET_HELP } from './target';
import { JSON_FLAGS, JSON_HELP, wantsJson, writeJson } from '../json';
import { openWithDesktop } from '../open';
import { REPORT_FILE } from '../outputs';

export const RESULTS_HELP = `Usage: batchline results JOB [options]

Downloads a job's outputs once it has ended: results.jsonl (one line per valid input row, in input
order), errors.jsonl (rows that did not succeed), invalid.jsonl (lines that were not valid
requests), summary.json (counts, tokens, cost, timings) and summary.html (the same summary as a
page to look at: outcomes, errors by type, cost by model, tokens, batches).

Options:
  --out DIR          where to write them (default ./batchline-out/<jobId>/)
  --open             open summary.html with the desktop's opener (xdg-open, or open on macOS);
                     where there is none, print its path
${JSON_HELP}
${TARGET_HELP}
  -h, --help         show this help

Exit status: 0 when the outputs are downloaded (whatever the job's outcome: "batchline status JOB"
exits by it), 1 when the job has not ended or left no outputs, 2 for a usage error.
`;

export const resultsCommand = opsCommand(
  'results',
  RESULTS_HELP,
  { out: { type: 'string' }, open: { type: 'boolean' }, ...JSON_FLAGS },
  async ({ values, positionals }, open, io) => {
    const jobId = oneJob(positionals, 'results');
    const json = wantsJson(values);
    const target = await open();
    const job = await getJob(target, jobId);
    if (!hasEnded(job)) {
      throw new OpsFailure(
        `job ${jobId} has not ended yet (${job.status}): its outputs are written when it ends (follow it with: batchline status ${jobId}${target.flags})`,
      );
    }
    const dir = path.resolve(io.cwd, (values.out as string | undefined) ?? path.join('batchline-out', jobId));
    const written = await copyOutputs(target.s3, target.bucket, target.prefixes, jobId, dir);
    if (written.length === 0) {
      const why = job.failure ? ` (it failed: ${job.failure.error}: ${oneLine(job.failure.cause)})` : '';
      throw new OpsFailure(`job ${jobId} ${job.status} and left no outputs in s3://${target.bucket}/${jobKeys(jobId, target.prefixes).resultsPrefix}${why}`);
    }
    const screen = json ? io.stderr : io.stdout;
    screen.write(`Outputs of job ${jobId} (${job.status}) in ${displayPath(io.cwd, dir)}/: ${written.map((file) => path.basename(file)).join(', ')}\n`);
    const report = written.find((file) => path.basename(file) === REPORT_FILE);
    let openedWith: string | undefined;
    if (values.open === true) {
      if (!report) screen.write(`Job ${jobId} has no ${REPORT_FILE} (it ended before batchline wrote one): see summary.json\n`);
      else {
        openedWith = await openWithDesktop(report, io.env);
        screen.write(
          openedWith
            ? `Opened ${displayPath(io.cwd, report)} with ${openedWith}\n`
            : `Report: ${displayPath(io.cwd, report)} (no xdg-open or open here: open it in a browser)\n`,
        );
      }
    }
    if (json)
      writeJson(io.stdout, 'results', {
        jobId,
        status: job.status,
        dir,
        files: written.map((file) => path.basename(file)),
        report: report ?? null,
        openedWith: openedWith ?? null,
      });
    return 0;
  },
);
