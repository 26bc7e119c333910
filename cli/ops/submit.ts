/**
 * `batchline submit FILE`: uploads a file to the stack's inbox (its prefix from target.ts), finds the job its upload started
 * and follows it to the end, as `run` does locally.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getJson, JSONL_CONTENT_TYPE, uploadFile as uploadInput } from '../../shared/store/s3';
import type { JobSummary } from '../../shared/jobs/finalize-job';
import { jobForUpload, jobIdsForKey, type JobProgressReport, type QueryDeps, type UploadedObject } from '../../shared/jobs/queries';
import { MAX_COST_METADATA, MODE_METADATA } from '../../shared/jobs/register-job';
import { reuseMetadata } from '../../shared/jobs/rerun';
import { PRIME_CACHE_METADATA } from '../../shared/jobs/prime-cache';
import { DEADLINE_METADATA } from '../../shared/jobs/deadline';
import { inboxKey, jobKeys } from '../../shared/store/keys';
import { deadlineFlag, positiveNumber, readableFile, UsageError } from '../args';
import { displayPath, duration, plural } from '../format';
import { onInterrupt, type Io } from '../io';
import { ProgressView } from '../progress';
import { formatSummary, jobDurationMs, LOCAL_KEY, STACK_KEY } from '../run';
import { EXIT_STATUS_HELP, exitStatusOf, shortfallLine, type JobEnd } from '../exit-status';
import { JSON_FLAGS, JSON_HELP, jobDocument, wantsJson, writeJson } from '../json';
import { OpsFailure, opsCommand } from './command';
import { followJob, type FollowOptions } from './follow';
import { ValidationWatch } from '../../local/progress';
import { TARGET_HELP, type Target } from './target';

export const SUBMIT_HELP = `Usage: batchline submit FILE.jsonl [options]

Uploads a JSONL file of {custom_id, params} requests to the stack's inbox (as inbox/<file name>, or
under the inbox prefix the stack's outputs name), waits for the job the upload starts, and follows it
to the end with its progress and summary. The outputs stay in the bucket under results/<jobId>/ (or
the stack's results prefix): "batchline results JOB" downloads them.

Options:
  --lenient          run the valid rows even if some lines are invalid (default: strict, any
                     invalid line rejects the file before anything is sent)
  --reuse JOB        take over JOB's succeeded rows whose custom_id and params are the same
                     (object metadata batchline-reuse): they are not sent again, and results.jsonl
                     copies them in with "reused_from" (see batchline rerun)
  --max-cost USD     the job's budget (object metadata batchline-max-cost): rejected before
                     anything is sent if its estimate is higher, and no retry that would pass it
  --deadline WHEN    the job's deadline (object metadata batchline-deadline): an ISO time with its
                     zone or a duration (6h, 90m, from when the job is registered). A batch still
                     running at WHEN less the stack's deadlineMarginSeconds is canceled and its
                     unfinished rows sent as synchronous Messages calls at standard price; rows
                     unanswered at WHEN end expired
  --prime-cache      before each batch, write the prompt-cache prefixes its rows share with one
                     Messages call each (at standard price), so the batch's rows read them
  --no-follow        print the job id once the job is registered, and return
${JSON_HELP}
${TARGET_HELP}
  -h, --help         show this help

With --no-follow the exit status is 0 once the job is registered. Otherwise:

${EXIT_STATUS_HELP}`;

/** How long a job may take to appear after its upload (EventBridge delivers in seconds). */
export const FIND_TIMEOUT_MS = 120_000;
/** Jobs created up to this long before the upload still count as candidates: the clocks may differ. */
const CLOCK_SKEW_MS = 10 * 60_000;

export const submitCommand = opsCommand(
  'submit',
  SUBMIT_HELP,
  {
    lenient: { type: 'boolean' },
    'prime-cache': { type: 'boolean' },
    'no-follow': { type: 'boolean' },
    reuse: { type: 'string' },
    'max-cost': { type: 'string' },
    deadline: { type: 'string' },
    ...JSON_FLAGS,
  },
  async ({ values, positionals }, open, io) => {
    const json = wantsJson(values);
    if (positionals.length !== 1) throw new UsageError(`needs one file, got ${plural(positionals.length, 'argument')} (see batchline submit --help)`);
    const file = await readableFile(io.cwd, positionals[0]!);
    const mode = values.lenient === true ? 'lenient' : 'strict';
    const maxCostUsd = positiveNumber(values['max-cost'] as string | undefined, '--max-cost');
    const reuse = values.reuse as string | undefined;
    const deadline = deadlineFlag(values.deadline as string | undefined);
    const metadata = reuse === undefined ? (maxCostUsd === undefined ? {} : { [MAX_COST_METADATA]: String(maxCostUsd) }) : reuseMetadata(reuse, { maxCostUsd });
    const target = await open();
    const key = inboxKey(path.basename(file), target.prefixes);
    // With --json, stdout holds the one document: what a person reads goes to stderr.
    const screen = json ? io.stderr : io.stdout;
    const tty = screen.isTTY === true;

    screen.write(`Uploading ${displayPath(io.cwd, file)} to s3://${target.bucket}/${key} (${mode})\n`);
    const startedAt = Date.now();
    const since = new Date(startedAt - CLOCK_SKEW_MS).toISOString();
    const known = await jobIdsForKey(target, target.bucket, key, since);
    if (values['prime-cache'] === true) metadata[PRIME_CACHE_METADATA] = 'true';
    if (deadline !== undefined) metadata[DEADLINE_METADATA] = deadline;
    const progress = tty ? (percent: number) => screen.write(`\r\x1b[2KUploading… ${percent}%`) : undefined;
    const uploaded = await uploadFile(target, file, key, mode, progress, metadata);
    if (tty) screen.write('\r\x1b[2K');
    const jobId = await waitForJob(target, uploaded, { since, exclude: known });
    const status = `batchline status ${jobId}${target.flags}`;
    if (values['no-follow'] === true) {
      screen.write(`Job ${jobId} registered. Follow it with: ${status}\n`);
      if (json) writeJson(io.stdout, 'submit', { jobId, registered: true, input: { bucket: target.bucket, key } });
      return 0;
    }
    return followToEnd(target, jobId, io, { tty, startedAt, json: json ? 'submit' : undefined, opening: `Job ${jobId}\n` });
  },
);

/** Streams the file to `key` (multipart when large), with the validation mode (and priming, when asked) as object metadata. */
export async function uploadFile(
  deps: Pick<QueryDeps, 's3' | 'bucket'>,
  file: string,
  key: string,
  mode: 'strict' | 'lenient',
  onProgress?: (percent: number) => void,
  metadata: Record<string, string> = {},
): Promise<UploadedObject> {
  const done = await uploadInput(deps.s3, deps.bucket, key, file, {
    metadata: { ...metadata, [MODE_METADATA]: mode },
    contentType: JSONL_CONTENT_TYPE,
    onProgress,
  });
  return { bucket: deps.bucket, key, ...done };
}

/** Polls until Register has recorded the upload's job; OpsFailure after `timeoutMs`. */
export async function waitForJob(
  deps: Pick<QueryDeps, 'dynamo' | 'table'>,
  uploaded: UploadedObject,
  options: { since: string; exclude?: ReadonlySet<string>; timeoutMs?: number; intervalMs?: number },
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? FIND_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let interval = options.intervalMs ?? 100;
  for (;;) {
    const job = await jobForUpload(deps, uploaded, options);
    if (job) return job.jobId;
    if (Date.now() >= deadline) {
      throw new OpsFailure(
        `no job appeared for s3://${uploaded.bucket}/${uploaded.key} within ${duration(timeoutMs)}: is the stack's inbox trigger enabled? ("batchline jobs" lists recent jobs)`,
      );
    }
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())));
    interval = Math.min(2_000, interval * 2);
  }
}

/**
 * Follows the job with a progress view, then prints its summary; returns its exit status (cli/exit-status.ts).
 * `opening` is printed once Ctrl-C is handled: a line that says Ctrl-C stops following must not come
 * before it does (until then a Ctrl-C kills the process outright).
 */
export async function followToEnd(
  target: Pick<Target, 's3' | 'dynamo' | 'bucket' | 'table' | 'prefixes' | 'flags' | 'kind'>,
  jobId: string,
  io: Io,
  options: FollowOptions & { tty: boolean; startedAt: number; json?: string; opening?: string },
): Promise<number> {
  // With --json (the command's name here), the person's lines go to stderr and stdout gets the one document.
  const screen = options.json ? io.stderr : io.stdout;
  const view = new ProgressView(screen, options.tty, options.startedAt);
  const stopInterrupt = onInterrupt(async () => {
    view.finish();
    io.stderr.write(
      `\nStopped following job ${jobId}; it keeps running (batchline status ${jobId}${target.flags}, or cancel it with batchline cancel ${jobId}${target.flags})\n`,
    );
  });
  let report: JobProgressReport;
  try {
    if (options.opening) screen.write(options.opening);
    report = await followJob(target, jobId, view, { ...options, validation: new ValidationWatch(target.s3, target.bucket, jobId, target.prefixes) });
  } finally {
    stopInterrupt();
  }
  const { job } = report;
  const keys = jobKeys(jobId, target.prefixes);
  const summary = await getJson<JobSummary>(target.s3, target.bucket, keys.summary);
  const elapsedMs = jobDurationMs(summary) ?? Date.parse(job.endedAt ?? job.updatedAt) - Date.parse(job.createdAt);
  const keyFrom = target.kind === 'local' ? LOCAL_KEY : STACK_KEY;
  screen.write(`\n${formatSummary({ jobId, status: job.status, execution: undefined, job, summary, keys }, elapsedMs, keyFrom)}\n`);
  if (summary) {
    screen.write(`\nOutputs in s3://${target.bucket}/${keys.resultsPrefix} (download them with: batchline results ${jobId}${target.flags})\n`);
  }
  const end: JobEnd = { status: job.status, counts: summary?.counts ?? job.counts };
  const shortfall = shortfallLine(end);
  if (shortfall) screen.write(`${shortfall}\n`);
  const exitStatus = exitStatusOf(end);
  if (options.json) writeJson(io.stdout, options.json, jobDocument(report, summary, exitStatus, target));
  return exitStatus;
}
