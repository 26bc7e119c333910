/**
 * `npm run bench` — runs the benchmarks and prints their figures, then a summary of every target
 * with PASS or MISS. Benchmarks print; they never fail the build (the exit code is 0 unless a
 * benchmark could not run at all).
 *
 *   npm run bench                          all, default sizes (a few minutes on 2 cores)
 *   npm run bench -- prepare --rows 100000 one benchmark, sized
 *   npm run bench -- --full                the issue's sizes (prepare: 1,000,000 rows ≈ 1 GB)
 *
 *   npm run bench -- scale --scale-10m     the growth benchmark at 100k, 1M and 10M rows (an hour or more)
 *
 * Names: prepare, polling, collect, end-to-end (or e2e), cost, estimate (the budget guard's cost
 * estimate ÷ what the simulator billed), scale, tokens. `cost` is built from the
 * figures of the others, so naming it alone runs prepare, polling and collect first.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import type { BenchContext, BenchOptions } from './context';
import { renderReport, renderSummary, type BenchReport } from './report';

type BenchName = 'prepare' | 'polling' | 'collect' | 'end-to-end' | 'cost' | 'estimate' | 'scale' | 'tokens';

const ORDER: BenchName[] = ['prepare', 'polling', 'collect', 'end-to-end', 'cost', 'estimate', 'scale', 'tokens'];
const ALIASES: Record<string, BenchName> = { e2e: 'end-to-end', endtoend: 'end-to-end', poll: 'polling' };
/** What the cost estimate is built from. */
const COST_NEEDS: BenchName[] = ['prepare', 'polling', 'collect'];

const BENCHES: Record<BenchName, () => Promise<(ctx: BenchContext) => Promise<BenchReport>>> = {
  prepare: async () => (await import('./prepare')).benchPrepare,
  polling: async () => (await import('./polling')).benchPolling,
  collect: async () => (await import('./collect')).benchCollect,
  'end-to-end': async () => (await import('./end-to-end')).benchEndToEnd,
  cost: async () => (await import('./cost')).benchCost,
  estimate: async () => (await import('./estimate')).benchEstimate,
  scale: async () => (await import('./scale')).benchScale,
  tokens: async () => (await import('./tokens')).benchTokens,
};

const USAGE = `usage: npm run bench -- [${ORDER.join('|')}|e2e ...] [--rows N] [--full] [--scale-10m] [--prepare-only]`;

function parseArgs(argv: string[]): { names: BenchName[]; rows: number | undefined; full: boolean; scale10m: boolean; prepareOnly: boolean } {
  const names: BenchName[] = [];
  let rows: number | undefined;
  let full = false;
  let scale10m = false;
  let prepareOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--full') full = true;
    else if (arg === '--scale-10m') scale10m = true;
    else if (arg === '--prepare-only') prepareOnly = true;
    else if (arg === '--rows' || arg.startsWith('--rows=')) {
      const value = arg.includes('=') ? arg.slice('--rows='.length) : argv[++i];
      const n = Number(value?.replace(/_/g, ''));
      if (!Number.isInteger(n) || n < 1) throw new Error(`--rows needs a whole number ≥ 1, got ${value}\n${USAGE}`);
      rows = n;
    } else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else {
      const name = (ALIASES[arg] ?? arg) as BenchName;
      if (!ORDER.includes(name)) throw new Error(`unknown benchmark "${arg}"\n${USAGE}`);
      if (!names.includes(name)) names.push(name);
    }
  }
  const chosen = names.length > 0 ? names : [...ORDER];
  if (chosen.includes('cost')) for (const need of COST_NEEDS) if (!chosen.includes(need)) chosen.push(need);
  return { names: ORDER.filter((name) => chosen.includes(name)), rows, full, scale10m, prepareOnly };
}

async function main(): Promise<void> {
  // The SDK's Node 20 notice would repeat in every child process.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const args = parseArgs(process.argv.slice(2));
  const workDir = await mkdtemp(path.join(tmpdir(), 'batchline-bench-'));
  const options: BenchOptions = { rows: args.rows, full: args.full, scale10m: args.scale10m, prepareOnly: args.prepareOnly, workDir };
  const ctx: BenchContext = { options, measured: {}, log: (line) => process.stderr.write(`[bench] ${line}\n`) };
  const reports: BenchReport[] = [];
  const failures: Array<{ name: string; error: string }> = [];
  const cleanup = () => rm(workDir, { recursive: true, force: true });
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));

  // Other work on the machine skews every figure: the load average is printed with them.
  const load = () =>
    loadavg()
      .map((n) => n.toFixed(1))
      .join(' ');
  console.log(
    `batchline benchmarks — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${process.version}, ` +
      `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), load average ${load()}, ` +
      `${args.full ? '--full sizes' : 'default sizes'}${args.rows ? `, --rows ${args.rows}` : ''}`,
  );
  try {
    for (const name of args.names) {
      const started = Date.now();
      try {
        const bench = await BENCHES[name]();
        const report = await bench(ctx);
        reports.push(report);
        console.log(renderReport(report));
        ctx.log(`${name} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } catch (error) {
        const message = error instanceof Error ? error.message.split('\n')[0]! : String(error);
        failures.push({ name, error: message });
        ctx.log(`${name} could not run: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    }
  } finally {
    await cleanup();
  }
  console.log(renderSummary(reports, failures));
  console.log(`load average at the end: ${load()}`);
  // A MISS is a figure, not a failure; only a benchmark that could not run sets the exit code.
  // Exit explicitly: SDK keep-alive sockets must not hold the process open.
  process.exit(failures.length > 0 ? 1 : 0);
}

await main();
