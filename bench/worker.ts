/**
 * The child side of bench/child.ts: imports one task module, runs one function, replies with its
 * value and the process's memory figures, and exits.
 */

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
    // The kernel's high-water mark, in kilobytes: a peak between two samples is never missed.
    reply({ ok: true, value, startRss, maxRss: process.resourceUsage().maxRSS * 1024, cpuMs: (cpu.user + cpu.system) / 1000, wallMs });
  } catch (error) {
    reply({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
}

function reply(message: unknown): void {
  // Keep-alive sockets and timers of the task must not hold the child open.
  process.send!(message, () => process.exit(0));
}
