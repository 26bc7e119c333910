/**
 * The child side of bench/child.ts: imports one task module, runs one function, replies with its
 * value and the process's memory figures, and exits.
 */

import { readFileSync } from 'node:fs';

interface Request {
  module: string;
  fn: string;
  input: unknown;
}

process.once('message', (message) => void run(message as Request));

async function run({ module, fn, input }: Request): Promise<void> {
  try {
    const mod = (await import(new URL(module, import.meta.url).href)) as Record<string, (input: unknown) => Promise<unknown>>;
    const task = mod[fn];
    if (typeof task !== 'function') throw new Error(`${module} exports no function ${fn}`);
    const startRss = process.memoryUsage.rss();
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const value = await task(input);
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    reply({ ok: true, value, startRss, maxRss: peakRss(), cpuMs: (cpu.user + cpu.system) / 1000, wallMs });
  } catch (error) {
    reply({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
}

/**
 * The kernel's high-water mark of this process's resident memory: a peak between two samples is
 * never missed. On Linux, /proc/self/status's VmHWM, this process's own memory's: getrusage's
 * maxrss is not, since exec keeps the larger of it and the memory the process had before exec,
 * which, as Node spawns its children, is the parent's (at 10M rows the bench's parent, holding the
 * simulator's batches, passed 1.9 GB, and every child reported that).
 */
function peakRss(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {
    // Not Linux: getrusage's figure, in kilobytes.
  }
  return process.resourceUsage().maxRSS * 1024;
}

function reply(message: unknown): void {
  // Keep-alive sockets and timers of the task must not hold the child open.
  process.send!(message, () => process.exit(0));
}
