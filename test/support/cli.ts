/** Running the `batchline` command as a user would: a real process, from bin/batchline.mjs. */
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `batchline ARGS` in `cwd` and resolves when it exits (a generous timeout: tsx compiles the CLI first). */
export function batchline(args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'bin/batchline.mjs'), ...args],
      { cwd: options.cwd, timeout: 150_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...options.env } },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** A `batchline` process still running: wait for what it prints, signal it, then for its end. */
export interface Running {
  pid: number;
  /** Resolves once stderr (or stdout) has printed `text`; rejects if the process ends first. */
  printed(text: string, stream?: 'stdout' | 'stderr'): Promise<void>;
  /** Resolves with the first match of `pattern` in stdout (or stderr); rejects if the process ends first. */
  matched(pattern: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpMatchArray>;
  /** What the process has printed so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Whether the process is still running. */
  readonly running: boolean;
  signal(signal: NodeJS.Signals): void;
  done: Promise<Run>;
}

export function startBatchline(args: string[], options: { cwd: string; env?: Record<string, string> }): Running {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/batchline.mjs'), ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const text = { stdout: '', stderr: '' };
  const waiters: Array<() => void> = [];
  const notify = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  child.stdout.on('data', (chunk: Buffer) => {
    text.stdout += chunk.toString('utf8');
    notify();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    text.stderr += chunk.toString('utf8');
    notify();
  });
  let ended = false;
  const done = new Promise<Run>((resolve) => {
    child.once('close', (code, signal) => {
      ended = true;
      notify();
      if (signal) text.stderr += `\n[test: killed by ${signal}]`;
      resolve({ code: code ?? (signal ? 128 : 1), stdout: text.stdout, stderr: text.stderr });
    });
  });
  /** Resolves with what `test` finds in the stream's output so far, as soon as it finds something. */
  const until = <T>(test: (output: string) => T | undefined, stream: 'stdout' | 'stderr', what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = test(text[stream]);
        if (found !== undefined) resolve(found);
        else if (ended) reject(new Error(`batchline ${args.join(' ')} ended without printing ${what}:\n${text.stdout}\n${text.stderr}`));
        else waiters.push(check);
      };
      check();
    });
  return {
    pid: child.pid!,
    async printed(wanted, stream = 'stderr') {
      await until((output) => (output.includes(wanted) ? true : undefined), stream, JSON.stringify(wanted));
    },
    matched(pattern, stream = 'stdout') {
      return until((output) => output.match(pattern) ?? undefined, stream, String(pattern));
    },
    get stdout() {
      return text.stdout;
    },
    get stderr() {
      return text.stderr;
    },
    get running() {
      return !ended;
    },
    signal(signal) {
      process.kill(child.pid!, signal);
    },
    done,
  };
}
