/**
 * `batchline serve`: keeps the local stack up and treats a folder as the bucket's inbox. A file
 * dropped there is uploaded once it has stopped growing, and each job's progress and outputs are
 * reported as they come.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalStack } from '../local/runtime';
import { deadlineFlag, parse, port, UsageError } from './args';
import { LOCAL_STACK_FLAGS, localStackOptions, startLocal } from './local-flags';
import type { Io } from './io';
import { removeLocalState, writeLocalState } from './ops/local-state';
import { displayPath } from './format';
import { copyOutputs, invalidLinesExcerpt } from './outputs';
import { describeEvent, shownEvent } from './progress';
import { BatchesInFlight, cancelAll } from './in-flight';
import { confirmPaying } from './confirm';
import { STATE_DIR } from '../local/state';
import { checkReachable } from './reach';
import { formatSummary } from './run';

export const SERVE_HELP = `Usage: batchline serve [options]

Keeps the local pipeline running and watches a folder that stands for the bucket's inbox: drop a
JSONL file there (files already in it are left alone) and it runs as a job, with its progress
printed and its outputs copied out when it ends. The local S3 endpoint is printed too, so any S3
client can upload to the inbox prefix it prints directly, and "batchline status|jobs|cancel --local DIR" in another
terminal can follow the jobs. Type "sweep" and Enter to run the stack's schedules now. Ctrl-C stops.

Options:
  --dir DIR          the folder to watch (default ./batchline-inbox, created if missing)
  --out DIR          where each job's outputs go, in <jobId>/ (default ./batchline-out)
  --lenient          run the valid rows of files with invalid lines (default: strict)
  --deadline DUR     each dropped file's deadline, as a duration from when it is dropped (6h,
                     90m; simulated time with the simulator): see batchline run --help
  --allow-unknown-models
                     accept a model batchline does not know (see batchline run --help)
  --live             use the real Message Batches API (needs ANTHROPIC_API_KEY; asks once
                     before serving, as every file dropped is billed). The local state is kept
                     in .batchline/state/: "batchline resume" carries on the jobs a stop left.
                     The first Ctrl-C lists the batches still running at the API; a second
                     cancels them there and stops
  -y, --yes          with --live, serve without asking (needed when stdin is not a terminal)
  --time-scale N     simulated seconds per real second (default 600)
  --port N           serve local S3 on this port (default: any free port)
  --verbose          print the handlers' own log lines (JSON, as in CloudWatch) and the
                     stack's own events (topic notifications, event bus events) as well
  -h, --help         show this help

Exit status: 0 when stopped with Ctrl-C (each job's outcome is in its summary), 1 when the local
stack fails, 2 for a usage error (a flag, a port in use, --live without ANTHROPIC_API_KEY, or
without --yes when stdin is not a terminal).
`;

/** How long a file's size and mtime must hold still before it is taken as complete. */
const STABLE_MS = 400;

export async function serveCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    args,
    { ...LOCAL_STACK_FLAGS, dir: { type: 'string' }, out: { type: 'string' }, port: { type: 'string' }, deadline: { type: 'string' } },
    'serve',
  );
  if (values.help) {
    io.stdout.write(SERVE_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`batchline serve takes no file (drop files in the watched folder; see batchline serve --help)`);
  const options = localStackOptions(values, io);
  const s3Port = port(values.port as string | undefined, '--port');
  const deadline = deadlineFlag(values.deadline as string | undefined);
  const dir = path.resolve(io.cwd, (values.dir as string | undefined) ?? 'batchline-inbox');
  const outRoot = path.resolve(io.cwd, (values.out as string | undefined) ?? 'batchline-out');
  await mkdir(dir, { recursive: true }).catch((error: Error) => {
    throw new UsageError(`cannot use ${dir} as the inbox folder: ${error.message}`);
  });

  if (options.live) {
    await checkReachable(options.live.baseUrl, options.live.apiKey);
    await confirmPaying('Every file dropped in the folder is sent to the Message Batches API, billed to ANTHROPIC_API_KEY. Serve?', {
      yes: values.yes === true,
      output: io.stderr,
    });
  }
  // Live batches outlive this process: their link back to each job is kept on disk (docs/local-state.md).
  const stack = await startLocal({ ...options, ports: { s3: s3Port }, ...(options.live ? { stateDir: path.join(io.cwd, STATE_DIR) } : {}) });
  // Lets `batchline status|jobs|get|cancel --local DIR` in another terminal find this stack.
  const stateFile = await writeLocalState(io.cwd, stack);
  const say = (line: string) => io.stdout.write(`${line}\n`);
  say(`batchline is serving locally${values.live ? ' (live: the real Message Batches API)' : ` (Batches API simulator, ${stack.timeScale}× time)`}.`);
  say(`  watching  ${displayPath(io.cwd, dir)}/  → s3://${stack.bucket}/${stack.prefixes.inbox}`);
  say(`  S3        ${stack.s3Endpoint} (bucket ${stack.bucket}, access key S3RVER / secret S3RVER, path-style)`);
  say(`  outputs   ${displayPath(io.cwd, outRoot)}/<jobId>/`);
  if (stack.schedules.length > 0) say(`  schedules ${stack.schedules.map(scheduleLabel).join(', ')} — type "sweep" to run them now`);
  say(`  state     ${displayPath(io.cwd, stateFile)} (for "batchline status|jobs|cancel --local ${displayPath(io.cwd, io.cwd)}")`);
  const verbose = values.verbose === true;
  const unsubscribe = stack.on((event) => {
    if (!shownEvent(event, verbose)) return;
    const text = describeEvent(event);
    // Each line names its job, so several files at once can be told apart.
    const job = 'jobId' in event && event.jobId ? `[${event.jobId}] ` : '';
    if (text !== undefined && event.type !== 'job-registered') say(`  ${job}${text}`);
  });
  const running = new Map<string, string>();
  let stopping = false;
  const inFlight = new BatchesInFlight();
  const unwatch = stack.on((event) => inFlight.observe(event));
  const watcher = watchInbox(dir, (file) => {
    void runJob(stack, file, { lenient: values.lenient === true, deadline, outRoot, simulated: values.live !== true, running }, io).catch((error: Error) => {
      // Once stopping, a job's wait ends with the stack's sockets: what became of it is said below.
      if (!stopping) say(`  ${path.basename(file)}: ${error.message}`);
    });
  });
  const live = options.live;
  let canceledAtApi = false;
  // Ctrl-C is handled from here (the promise's body runs now), before the line that says it stops.
  const stopRequested = new Promise<void>((resolve) => {
    if (!live) {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      return;
    }
    // Live, as run --live: the first Ctrl-C names the batches running at the API and stops nothing;
    // a second cancels them there, then stops (./in-flight.ts).
    let presses = 0;
    const onSignal = () => {
      presses += 1;
      const batches = inFlight.list;
      if (presses === 1 && batches.length > 0) {
        say('\nInterrupted. Still running at the API, and billed, whatever happens here:');
        for (const { jobId, batchId, chunk } of batches) say(`  ${batchId} (job ${jobId}, chunk ${chunk})`);
        say(
          'They are kept running, and so is serve. Should it stop, "batchline resume" in this folder carries their jobs on from ' +
            '.batchline/state/. Press Ctrl-C again to cancel them at the API and stop.',
        );
        return;
      }
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (presses === 2 && batches.length > 0) {
        canceledAtApi = true;
        void cancelAll(batches, live, say).finally(resolve);
      } else resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  // Said only once the folder is watched and Ctrl-C handled: a file dropped on seeing it is never
  // missed, and a Ctrl-C on seeing it stops serve as said, not by the signal's default.
  say('Drop a .jsonl file in the folder; Ctrl-C stops.');
  const commands = readCommands(stack, io);
  await stopRequested;
  stopping = true;
  say('\nStopping…');
  // Name what was still running, and what becomes of it.
  for (const [jobId, file] of running)
    say(
      `  ${file} (job ${jobId}) had not ended: ${values.live ? 'its outputs were not written; "batchline resume" carries it on' : 'it ends here, with the simulator; drop the file again to run it'}`,
    );
  const batches = inFlight.list;
  if (values.live && batches.length > 0 && !canceledAtApi) {
    say('  Still running at the API, and billed ("batchline resume" collects them; their results stay there 29 days):');
    for (const { jobId, batchId, chunk } of batches) say(`    ${batchId} (job ${jobId}, chunk ${chunk})`);
  }
  commands?.close();
  watcher.close();
  unsubscribe();
  unwatch();
  await removeLocalState(io.cwd);
  await stack.stop();
  return 0;
}

async function runJob(
  stack: LocalStack,
  file: string,
  options: { lenient: boolean; deadline?: string; outRoot: string; simulated: boolean; running: Map<string, string> },
  io: Io,
): Promise<void> {
  const say = (line: string) => io.stdout.write(`${line}\n`);
  const startedAt = Date.now();
  const jobId = await stack.submitFile(file, { lenient: options.lenient, ...(options.deadline ? { deadline: options.deadline } : {}) });
  say(`${path.basename(file)} → job ${jobId}`);
  options.running.set(jobId, path.basename(file));
  let outcome;
  try {
    outcome = await stack.waitForJob(jobId);
  } finally {
    options.running.delete(jobId);
  }
  const dir = path.join(options.outRoot, jobId);
  const written = await copyOutputs(stack.s3, stack.bucket, stack.prefixes, jobId, dir);
  say(formatSummary(outcome, Date.now() - startedAt, undefined, { simulated: options.simulated }));
  if (written.length > 0) say(`  outputs   ${displayPath(io.cwd, dir)}/: ${written.map((f) => path.basename(f)).join(', ')}`);
  const invalid = written.find((f) => path.basename(f) === 'invalid.jsonl');
  const excerpt = invalid && (await invalidLinesExcerpt(invalid, displayPath(io.cwd, invalid)));
  if (excerpt) say(excerpt.replace(/^/gm, '  '));
}

/** Calls `onFile` once per file that appears (or is rewritten) in `dir`, after it stops changing. */
export function watchInbox(dir: string, onFile: (file: string) => void): FSWatcher {
  const seen = new Map<string, string>();
  const pending = new Set<string>();
  const consider = async (name: string) => {
    if (pending.has(name) || name.startsWith('.') || /(\.tmp|\.part|\.crdownload|~)$/.test(name)) return;
    pending.add(name);
    try {
      const file = path.join(dir, name);
      let before = await signature(file);
      for (;;) {
        if (before === undefined) return;
        await sleep(STABLE_MS);
        const after = await signature(file);
        if (after === before) break;
        before = after;
      }
      if (seen.get(name) === before) return;
      seen.set(name, before);
      onFile(file);
    } finally {
      pending.delete(name);
    }
  };
  return watch(dir, (_event, name) => {
    if (name) void consider(name.toString());
  });
}

async function signature(file: string): Promise<string | undefined> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile() || info.size === 0) return undefined;
  return `${info.size}:${info.mtimeMs}`;
}

function readCommands(stack: LocalStack, io: Io) {
  if (!process.stdin.isTTY) return undefined;
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (!['sweep', 's'].includes(line.trim())) {
      if (line.trim() !== '') io.stdout.write('  (type "sweep" to run the schedules; Ctrl-C stops)\n');
      return;
    }
    stack.runSchedules().then(
      (runs) => {
        for (const run of runs) io.stdout.write(`  schedule ${scheduleLabel(run.schedule)}: ${JSON.stringify(run.output)}\n`);
        if (runs.length === 0) io.stdout.write('  the stack has no schedules\n');
      },
      (error: Error) => io.stdout.write(`  schedules failed: ${error.message}\n`),
    );
  });
  return lines;
}

function scheduleLabel(schedule: { name: string; input: unknown }): string {
  const input = schedule.input as { schedule?: string; prefix?: string } | null;
  // A schedule without a name of its own goes by its logical id, less the hash CDK appends.
  return input?.schedule ? `${input.schedule} (${input.prefix ?? ''})` : schedule.name.replace(/[0-9A-F]{8}$/, '');
}
