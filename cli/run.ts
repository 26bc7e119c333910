/** `batchline run FILE.jsonl`: one file through the whole pipeline, locally, with progress and a summary. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobOutcome, LocalStack } from '../local/runtime';
import { atMostOne, deadlineFlag, parse, positiveNumber, readableFile } from './args';
import { LOCAL_STACK_FLAGS, localStackOptions, startLocal } from './local-flags';
import { count, displayPath, duration, plural, usd } from './format';
import { copyOutputs, firstInvalidLines, invalidLinesExcerpt, REPORT_FILE } from './outputs';
import { BatchesInFlight, onLiveInterrupt } from './in-flight';
import { checkReachable } from './reach';
import { ProgressView } from './progress';
import { RetryClock } from './retry-delay';
import { readLiveProgress, ValidationWatch } from '../local/progress';
import { JSON_FLAGS, JSON_HELP, jsonJob, wantsJson, writeJson } from './json';
import { onInterrupt, type Io } from './io';
import { oneLine } from './ops/layout';
import { EXIT_STATUS_HELP, exitStatusOf, shortfallLine, type JobEnd } from './exit-status';
import { STATE_DIR, unfinishedIn } from '../local/state';
import { confirmPaying } from './confirm';
import { estimateCommand } from './estimate';

export const DEFAULT_EXAMPLE = 'examples/classification.jsonl';
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export const RUN_HELP = `Usage: batchline run [FILE.jsonl] [options]

Runs one JSONL file of {custom_id, params} requests through the batchline pipeline on this
machine: the CDK app's state machine, its Lambda handlers, local S3 and DynamoDB, and a simulator
of the Message Batches API (or the real API with --live). Prints progress and a summary, and
copies the outputs (results.jsonl, errors.jsonl, invalid.jsonl, summary.json, and summary.html,
the job's report to open in a browser) to a folder.

FILE defaults to ${DEFAULT_EXAMPLE}.

Options:
  --lenient          run the valid rows even if some lines are invalid (default: strict,
                     any invalid line rejects the file before anything is sent)
  --prime-cache      before each batch, write the prompt-cache prefixes its rows share with one
                     Messages call each (at standard price), so the batch's rows read them
                     (README, "Prompt caching")
  --allow-unknown-models
                     accept a model batchline does not know (not in its price table, nor added
                     with BATCHLINE_PRICES); by default such a line is invalid. The simulator
                     errors its rows with not_found_error, as the API does for a model it lacks
  --live             use the real Message Batches API (needs ANTHROPIC_API_KEY; costs money,
                     and batches take minutes to hours). Shows the file's estimate and asks
                     before sending; keeps the local state in .batchline/state/, so that
                     "batchline resume" carries the job on if this process stops. Ctrl-C then
                     lists the batches still running at the API; a second Ctrl-C cancels them
  --max-cost USD     the job's budget: rejected before anything is sent if its estimated cost
                     (output at max_tokens) is higher, and no retry sent that would take the
                     cost past it (its rows end errored budget_exceeded). Also BATCHLINE_MAX_COST_USD
  --deadline WHEN    the job's deadline: an ISO time with its zone (2026-12-08T06:00:00Z) or a
                     duration (6h, 90m). A batch still running at WHEN less the margin
                     (BATCHLINE_DEADLINE_MARGIN_SECONDS, 1800) is canceled, its finished rows
                     kept, and the rest sent as synchronous Messages calls at standard price; rows
                     unanswered at WHEN end expired. With the simulator, a duration is simulated
                     time (README, "Deadlines")
  -y, --yes          with --live, send without asking (needed when stdin is not a terminal)
  --out DIR          where to copy the outputs (default ./batchline-out/<jobId>/)
  --time-scale N     simulated seconds per real second (default 600)
  --verbose          print the handlers' own log lines (JSON, as in CloudWatch) and the
                     stack's own events (topic notifications, event bus events) as well
${JSON_HELP}
  -h, --help         show this help

Pipeline settings come from the environment, e.g. BATCHLINE_MAX_REQUESTS_PER_CHUNK=50,
BATCHLINE_MAX_ATTEMPTS=3 (see examples/README.md).

${EXIT_STATUS_HELP}`;

/** Where a local run's key comes from (with --live; the simulator's own key is never refused). */
export const LOCAL_KEY = 'ANTHROPIC_API_KEY';
/** Where a deployed stack's key comes from. */
export const STACK_KEY = "the key in the stack's secret (its ApiKeySecretName output)";

/**
 * A job's failure in one line. A key the API refused (ApiAuthError: 401, or 403) is said as such,
 * with what to check, rather than as the error's name and the client's message.
 */
export function failureText(failure: { error: string; cause: string }, keyFrom: string): string {
  if (failure.error === 'ApiAuthError') {
    const status = /\b(40[13])\b/.exec(failure.cause)?.[1] ?? '401';
    return `the API refused the key (${status}): check ${keyFrom}`;
  }
  return `${failure.error}${failure.cause ? `: ${oneLine(failure.cause)}` : ''}`;
}

export async function runCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...LOCAL_STACK_FLAGS,
      ...JSON_FLAGS,
      out: { type: 'string' },
      'max-cost': { type: 'string' },
      'prime-cache': { type: 'boolean' },
      deadline: { type: 'string' },
    },
    'run',
  );
  if (values.help) {
    io.stdout.write(RUN_HELP);
    return 0;
  }
  const json = wantsJson(values);
  const given = atMostOne(positionals, 'run');
  const file = await readableFile(io.cwd, given ?? path.join(REPO_ROOT, DEFAULT_EXAMPLE));
  const options = localStackOptions(values, io);
  const maxCostUsd = positiveNumber(values['max-cost'], '--max-cost');
  const deadline = deadlineFlag(values.deadline as string | undefined);
  // The stack's budget (maxCostUsd) is the job's: a local run's stack runs this one job.
  if (maxCostUsd !== undefined) options.settings = { ...options.settings, maxCostUsd };

  // Without a network a live run would retry its first create for minutes: find out first.
  const stateDir = path.join(io.cwd, STATE_DIR);
  if (options.live) {
    await checkReachable(options.live.baseUrl, options.live.apiKey);
    const unfinished = unfinishedIn(stateDir).length;
    if (unfinished > 0) {
      io.stderr.write(
        `${plural(unfinished, 'job')} of an earlier live run ${unfinished === 1 ? 'is' : 'are'} unfinished here: "batchline resume" carries them on.\n`,
      );
    }
    // What it may cost, before anything is paid (the estimate's lines, on stderr beside the question).
    await estimateCommand([file, ...(values['allow-unknown-models'] ? ['--allow-unknown-models'] : [])], { ...io, stdout: io.stderr });
    await confirmPaying('Send this file to the Message Batches API, billed to ANTHROPIC_API_KEY?', { yes: values.yes === true, output: io.stderr });
  }
  io.stderr.write(`Starting the local stack${values.live ? ' (live: the real Message Batches API)' : ''}…\n`);
  // Live batches outlive this process: their link back to the job is kept on disk (docs/local-state.md).
  const stack = await startLocal(options.live ? { ...options, stateDir } : options);
  // With --live, batches run (and bill) at the API whatever becomes of this process: Ctrl-C names
  // them first, and a second Ctrl-C cancels them (./in-flight.ts).
  const inFlight = new BatchesInFlight();
  const unwatch = stack.on((event) => inFlight.observe(event));
  const stopInterrupt = options.live
    ? onLiveInterrupt(
        inFlight,
        options.live,
        (line) => io.stderr.write(`${line}\n`),
        () => stack.stop(),
      )
    : onInterrupt(async () => {
        io.stderr.write('\nInterrupted: stopping the local stack…\n');
        await stack.stop();
      });
  try {
    return await runFile(
      stack,
      file,
      {
        lenient: values.lenient === true,
        primeCache: values['prime-cache'] === true,
        deadline,
        out: values.out as string | undefined,
        verbose: values.verbose === true,
        simulated: values.live !== true,
        json,
      },
      io,
    );
  } finally {
    stopInterrupt();
    unwatch();
    await stack.stop();
  }
}

interface RunOptions {
  /** --json: the result as one JSON document on stdout; every human line on stderr. */
  json: boolean;
  lenient: boolean;
  /** --prime-cache: object metadata `batchline-prime-cache: true`. */
  primeCache: boolean;
  /** --deadline: object metadata `batchline-deadline` (a duration resolved on the API's clock). */
  deadline?: string;
  out?: string;
  /** --verbose: the stack's plumbing (topic, event bus) on screen too. */
  verbose: boolean;
  /** Not --live: the simulator answered, and the summary says so. */
  simulated: boolean;
}

async function runFile(stack: LocalStack, file: string, options: RunOptions, io: Io): Promise<number> {
  // With --json, stdout holds the one document: progress and the summary a person reads go to stderr.
  const screen = options.json ? io.stderr : io.stdout;
  const retryClock = new RetryClock(stack.stepFunctions.definition, stack.timeScale);
  const view = new ProgressView(screen, screen.isTTY === true, Date.now(), options.verbose, !options.simulated, retryClock);
  const unsubscribe = stack.on((event) => view.event(event));
  const startedAt = Date.now();
  screen.write(`Submitting ${displayPath(io.cwd, file)} (${options.lenient ? 'lenient' : 'strict'})\n`);
  const jobId = await stack.submitFile(file, {
    lenient: options.lenient,
    ...(options.primeCache ? { primeCache: true } : {}),
    ...(options.deadline ? { deadline: options.deadline } : {}),
  });
  screen.write(`Job ${jobId}\n`);
  let ended = false;
  const watch = new ValidationWatch(stack.s3, stack.bucket, jobId, stack.prefixes);
  const ticker = setInterval(() => {
    readLiveProgress(stack, jobId, watch).then(
      // A read still in flight when the job ends must not redraw the bar over the summary.
      (progress) => ended || view.update(progress),
      () => undefined,
    );
  }, 150);
  let outcome: JobOutcome;
  try {
    outcome = await stack.waitForJob(jobId);
  } finally {
    ended = true;
    clearInterval(ticker);
    unsubscribe();
    view.finish();
  }
  const dir = path.resolve(io.cwd, options.out ?? path.join('batchline-out', jobId));
  return reportJob(stack, outcome, Date.now() - startedAt, dir, io, { simulated: options.simulated, json: options.json });
}

/** A job's summary, its outputs copied to `dir`, the first invalid lines; returns its exit status. */
export async function reportJob(
  stack: LocalStack,
  outcome: JobOutcome,
  elapsedMs: number,
  dir: string,
  io: Io,
  options: { simulated: boolean; json?: boolean },
): Promise<number> {
  const { jobId } = outcome;
  // With --json, stdout holds the one document: the summary a person reads goes to stderr.
  const screen = options.json ? io.stderr : io.stdout;
  // The job's own time, which summary.json's durationSeconds rounds: the screen and the file agree.
  elapsedMs = jobDurationMs(outcome.summary) ?? elapsedMs;
  screen.write(`\n${formatSummary(outcome, elapsedMs, LOCAL_KEY, { simulated: options.simulated })}\n`);
  const written = await copyOutputs(stack.s3, stack.bucket, stack.prefixes, jobId, dir);
  screen.write(
    written.length > 0 ? `\nOutputs in ${displayPath(io.cwd, dir)}/: ${written.map((f) => path.basename(f)).join(', ')}\n` : '\nNo outputs were written.\n',
  );
  const invalid = written.find((f) => path.basename(f) === 'invalid.jsonl');
  const excerpt = invalid && (await invalidLinesExcerpt(invalid, displayPath(io.cwd, invalid)));
  const report = written.find((f) => path.basename(f) === REPORT_FILE);
  if (report) screen.write(`Report: ${displayPath(io.cwd, report)}\n`);
  if (excerpt) screen.write(`\n${excerpt}\n`);
  const end = jobEnd(outcome);
  const shortfall = shortfallLine(end);
  if (shortfall) screen.write(`${shortfall}\n`);
  const exitStatus = exitStatusOf(end);
  if (options.json) {
    const failed = outcome.status === 'failed' || outcome.execution?.status === 'FAILED';
    const failure = failed ? (outcome.job?.failure ?? { error: outcome.execution?.error ?? 'unknown', cause: outcome.execution?.cause ?? '' }) : undefined;
    writeJson(io.stdout, 'run', {
      ...jsonJob({ jobId, status: outcome.status, ended: true, exitStatus, job: outcome.job, summary: outcome.summary, failure }),
      durationSeconds: Math.round(elapsedMs / 100) / 10,
      simulated: options.simulated,
      outputs: { dir, files: written.map((f) => path.basename(f)), report: report ?? null },
      invalidLines: (invalid && (await firstInvalidLines(invalid))?.lines) ?? [],
    });
  }
  return exitStatus;
}

/** How long a job took by its own record (registered to ended), as summary.json's durationSeconds measures it, unrounded. */
export function jobDurationMs(summary: JobOutcome['summary']): number | undefined {
  if (!summary) return undefined;
  const ms = Date.parse(summary.timings.endedAt) - Date.parse(summary.timings.createdAt);
  return Number.isFinite(ms) && ms >= 0 ? ms : summary.timings.durationSeconds * 1000;
}

/** How a local job ended, for its exit status. */
export function jobEnd(outcome: JobOutcome): JobEnd {
  return {
    status: outcome.status,
    counts: outcome.summary?.counts ?? outcome.job?.counts,
    executionFailed: outcome.execution?.status === 'FAILED',
  };
}

/**
 * `keyFrom`: where the key the API may refuse comes from, for the failure line of a job that failed
 * on it (default: the local run's ANTHROPIC_API_KEY).
 */
export function formatSummary(outcome: JobOutcome, elapsedMs: number, keyFrom = LOCAL_KEY, options: { simulated?: boolean } = {}): string {
  const { summary, job } = outcome;
  const lines = [`Job ${outcome.jobId}: ${outcome.status ?? 'unknown'} in ${duration(elapsedMs)}`];
  if (outcome.status === 'failed' || outcome.execution?.status === 'FAILED') {
    const failure = job?.failure ?? { error: outcome.execution?.error ?? 'unknown', cause: outcome.execution?.cause ?? '' };
    lines.push(`  failure   ${failureText(failure, keyFrom)}`);
  } else if (outcome.status === 'rejected' && job?.failure?.error === 'BudgetExceeded') {
    lines.push(`  rejected  ${failureText(job.failure, keyFrom)}`);
  }
  const counts = summary?.counts ?? job?.counts;
  if (counts) {
    // A rejected file's valid rows were never sent: nobody canceled them (summary.json counts them as
    // canceled, so its counts add up, and says why in notSubmitted).
    const rejected = outcome.status === 'rejected' ? counts.canceled : 0;
    const rows = (['succeeded', 'errored', 'expired', 'canceled', 'invalid'] as const).map(
      (status) => `${count(status === 'canceled' ? counts.canceled - rejected : counts[status])} ${status}`,
    );
    lines.push(`  rows      ${rows.join(', ')}${rejected > 0 ? `; ${plural(rejected, 'valid row')} not submitted: the file was rejected` : ''}`);
  }
  if (summary) {
    const errors = Object.entries(summary.errorsByType);
    if (errors.length > 0) lines.push(`  errors    ${errors.map(([type, n]) => `${count(n)} ${type}`).join(', ')}`);
    lines.push(`  batches   ${count(summary.batches.length)} (${count(summary.retries.attempts)} retry attempts, ${count(summary.retries.rows)} rows retried)`);
    const { tokens, cost } = summary;
    lines.push(
      `  tokens    ${count(tokens.input)} input, ${count(tokens.output)} output, ` +
        `${count(tokens.cache_read_input)} cache read, ${count(tokens.cache_creation_input)} cache write`,
    );
    lines.push(`  cost      ${usd(cost.batchUsd)} at batch rates (${usd(cost.standardUsd)} without the batch discount: ${usd(cost.savedUsd)} saved)`);
    const cache = summary.promptCache;
    if (cache) {
      const ratio = `${(cache.readRatio * 100).toFixed(1)}% of ${count(cache.cacheableInputTokens)} cacheable input tokens read from the cache`;
      const primed = cache.priming;
      lines.push(
        `  cache     ${ratio}${primed ? `; primed ${plural(primed.prefixes, 'prefix', 'prefixes')} for ${usd(primed.costUsd)}, saving at most ${usd(primed.savedUsd)}` : ''}`,
      );
    }
    if (cost.unpricedModels.length > 0) lines.push(`            not priced: ${cost.unpricedModels.join(', ')} (set BATCHLINE_PRICES)`);
    if (summary.reused) {
      const { fromJob, rows, costUsd } = summary.reused;
      lines.push(`  reused    ${plural(rows, 'row')} from job ${fromJob}, not sent again (${usd(costUsd)} paid there, not counted above)`);
    }
    if (summary.synchronous) {
      const sync = summary.synchronous;
      const answered = sync.counts.succeeded + sync.counts.errored;
      lines.push(
        `  deadline  ${plural(sync.rows, 'row')} left by the batch canceled for the deadline${sync.deadline ? ` (${sync.deadline})` : ''}: ` +
          `${count(answered)} sent synchronously for ${usd(sync.costUsd)} at standard rates (${usd(sync.premiumUsd)} over batch rates), ${count(sync.counts.expired)} expired`,
      );
    }
    if (summary.budget) {
      const { maxCostUsd, estimateUsd, expectedUsd } = summary.budget;
      // Summaries written before the expected figure existed have only the upper bound.
      const expected = expectedUsd ?? estimateUsd;
      const estimated =
        expected === null
          ? ''
          : ` (estimated ${usd(expected)} before sending${estimateUsd !== null && estimateUsd !== expected ? `, at most ${usd(estimateUsd)}` : ''})`;
      lines.push(`  budget    ${usd(maxCostUsd)}${estimated}`);
    }
  }
  if (options.simulated) {
    lines.push('  simulated replies, tokens and cost came from the Batches API simulator, not the real API (--live)');
  }
  return lines.join('\n');
}
