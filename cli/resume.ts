/**
 * `batchline resume`: carries on the live jobs a stopped, killed or crashed `run --live` (or
 * `serve --live`) left in `.batchline/state/` (docs/local-state.md). The local stack restarts on
 * that state and starts each unfinished execution again; every step is safe to re-run, so batches
 * already created are polled and collected, never created again.
 */
import path from 'node:path';
import { recordedSettings, STATE_DIR, unfinishedIn } from '../local/state';
import { parse } from './args';
import { displayPath } from './format';
import { BatchesInFlight, onLiveInterrupt } from './in-flight';
import type { Io } from './io';
import { localStackOptions, startLocal } from './local-flags';
import { checkReachable } from './reach';
import { EXIT } from './exit-status';
import { reportJob } from './run';
import { ProgressView } from './progress';

export const RESUME_HELP = `Usage: batchline resume [options]

Carries on the live jobs that a stopped, killed or crashed "batchline run --live" or "batchline
serve --live" left unfinished in .batchline/state/ of this folder: the local stack restarts on that
state, batches already created at the API are polled and collected (never created again), rows not
yet submitted are submitted, and each job ends with its summary and outputs as "run" gives them.
Needs ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL, if the run used one).

Options:
  --out DIR          where each job's outputs go, in <jobId>/ (default ./batchline-out)
  --verbose          print the handlers' own log lines and the stack's own events as well
  -h, --help         show this help

Exit status, the worst of its jobs':
  0    every job ran to the end and every input row succeeded, or nothing was left to resume
  3    every job ran to the end, but some rows did not succeed (errored, expired, canceled,
       or invalid under --lenient)
  1    a job failed, was rejected or could not go on, or the command failed
  2    a usage error (a flag, no ANTHROPIC_API_KEY)
  130  interrupted (Ctrl-C)
`;

export async function resumeCommand(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { out: { type: 'string' }, verbose: { type: 'boolean' } }, 'resume');
  if (values.help) {
    io.stdout.write(RESUME_HELP);
    return 0;
  }
  const stateDir = path.join(io.cwd, STATE_DIR);
  const pending = unfinishedIn(stateDir);
  if (pending.length === 0) {
    io.stdout.write(`Nothing to resume: no unfinished job in ${displayPath(io.cwd, stateDir)}/.\n`);
    return 0;
  }
  const options = localStackOptions({ live: true, verbose: values.verbose === true }, io, 'batchline resume');
  // The jobs go on with the settings they started with (chunk limits, attempts, polling), whatever this shell sets.
  const settings = recordedSettings(stateDir);
  if (settings && !sameSettings(settings, options.settings ?? {})) {
    io.stderr.write('Resuming with the settings of the run that started these jobs, not the BATCHLINE_* variables set here.\n');
  }
  if (settings) options.settings = settings;
  const api = options.live!;
  await checkReachable(api.baseUrl, api.apiKey);
  io.stderr.write(`Resuming from ${displayPath(io.cwd, stateDir)}/ (live: the real Message Batches API)…\n`);
  const stack = await startLocal({ ...options, stateDir });
  const inFlight = new BatchesInFlight();
  const unwatch = stack.on((event) => inFlight.observe(event));
  const stopInterrupt = onLiveInterrupt(
    inFlight,
    api,
    (line) => io.stderr.write(`${line}\n`),
    () => stack.stop(),
  );
  const view = new ProgressView(io.stdout, false, Date.now(), values.verbose === true, true);
  const unsubscribe = stack.on((event) => view.event(event));
  try {
    const resumed = await stack.resume();
    let status: number = EXIT.succeeded;
    for (const execution of resumed) {
      if (execution.error) {
        io.stdout.write(`An execution started ${execution.startedAt} could not go on: ${execution.error.message}\n`);
        status = worse(status, EXIT.failed);
      } else io.stdout.write(`Job ${execution.jobId}: carried on from where it stood\n`);
    }
    const outRoot = path.resolve(io.cwd, (values.out as string | undefined) ?? 'batchline-out');
    const startedAt = Date.now();
    for (const execution of resumed) {
      if (!execution.jobId) continue;
      const outcome = await stack.waitForJob(execution.jobId);
      const jobStatus = await reportJob(stack, outcome, Date.now() - startedAt, path.join(outRoot, execution.jobId), io, { simulated: false });
      status = worse(status, jobStatus);
    }
    return status;
  } finally {
    unsubscribe();
    stopInterrupt();
    unwatch();
    await stack.stop();
  }
}

/** Of two exit statuses, the one that says more went wrong (1 over 3 over 0). */
function worse(a: number, b: number): number {
  const rank = (status: number) => (status === EXIT.failed ? 2 : status === EXIT.rowsNotSucceeded ? 1 : 0);
  return rank(b) > rank(a) ? b : a;
}

function sameSettings(a: Record<string, string | number>, b: Record<string, string | number>): boolean {
  const text = (settings: Record<string, string | number>) =>
    JSON.stringify(
      Object.entries(settings)
        .map(([name, value]) => [name, String(value)])
        .sort(),
    );
  return text(a) === text(b);
}
