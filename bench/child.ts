/**
 * Runs one measured task in a fresh Node process (bench/worker.ts), so its peak RSS is its own:
 * not the emulators', not the other benchmarks'. The parent keeps the servers (s3rver, dynalite,
 * the simulator); the child holds only the code under test and its SDK clients.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface TaskRef {
  /** A module of bench/, e.g. `./prepare-tasks`. */
  module: string;
  /** Its exported async function, called with the input. */
  fn: string;
}

export interface ChildMeasure<T> {
  value: T;
  /** RSS once the task's module was imported, before the task ran. */
  startRssBytes: number;
  /** Peak RSS of the child over its life (the kernel's high-water mark of its own memory: bench/worker.ts). */
  peakRssBytes: number;
  /** The task's run in the child: wall time, and CPU time (user + system) the child used meanwhile. */
  wallMs: number;
  cpuMs: number;
  /** CPU time this (the parent) process used while the child ran: the emulators' share of the work. */
  parentCpuMs: number;
}

/** CPU time as a share of one core over the wall time, e.g. "93%". */
export function cpuShare(cpuMs: number, wallMs: number): string {
  return `${Math.round((cpuMs / Math.max(1, wallMs)) * 100)}%`;
}

type Reply<T> = { ok: true; value: T; startRss: number; maxRss: number; cpuMs: number; wallMs: number } | { ok: false; error: string };

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** BENCH_CPU_PROF_DIR=dir: every child writes a V8 CPU profile there (open it in Chrome DevTools). */
function execArgv(): string[] {
  const profileDir = process.env.BENCH_CPU_PROF_DIR;
  return profileDir ? ['--import', 'tsx', '--cpu-prof', `--cpu-prof-dir=${profileDir}`] : ['--import', 'tsx'];
}

export function runInChild<T>(task: TaskRef, input: unknown, options: { env?: Record<string, string> } = {}): Promise<ChildMeasure<T>> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [], {
      execArgv: execArgv(),
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const parentCpu = process.cpuUsage();
    let reply: Reply<T> | undefined;
    child.once('message', (message) => {
      reply = message as Reply<T>;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (reply?.ok) {
        const used = process.cpuUsage(parentCpu);
        resolve({
          value: reply.value,
          startRssBytes: reply.startRss,
          peakRssBytes: reply.maxRss,
          wallMs: reply.wallMs,
          cpuMs: reply.cpuMs,
          parentCpuMs: (used.user + used.system) / 1000,
        });
      } else if (reply) {
        // The child's first line says what went wrong; its stack goes along for the log.
        const error = new Error(`${task.fn}: ${reply.error.split('\n')[0]!.replace(/^Error: /, '')}`);
        error.stack = `${error.message}\n  in the child process:\n${reply.error}`;
        reject(error);
      } else {
        reject(new Error(`${task.fn}: the child process exited (${signal ?? `code ${code}`}) without a reply`));
      }
    });
    child.send({ module: task.module, fn: task.fn, input });
  });
}
