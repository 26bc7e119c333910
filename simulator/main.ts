/**
 * `npm run simulator`: the Batches API simulator as a standalone server.
 *   npm run simulator -- --port 8787 --time-scale 60 --processing-seconds 120 --seed 7
 */
import { parseArgs } from 'node:util';
import { startSimulator } from './server';

function numberFlag(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got "${value}"`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'time-scale': { type: 'string' },
      'processing-seconds': { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('Usage: npm run simulator -- [--port N] [--host ADDR] [--time-scale X] [--processing-seconds S] [--seed N]\n');
    return;
  }
  const simulator = await startSimulator({
    port: numberFlag(values.port, 'port') ?? 8787,
    host: values.host,
    timeScale: numberFlag(values['time-scale'], 'time-scale'),
    processingSeconds: numberFlag(values['processing-seconds'], 'processing-seconds'),
    seed: numberFlag(values.seed, 'seed'),
  });
  process.stdout.write(`Message Batches API simulator listening on ${simulator.url}\n`);
  process.stdout.write(`Point a client at it: ANTHROPIC_BASE_URL=${simulator.url} ANTHROPIC_API_KEY=any-non-empty-key\n`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: stopping\n`);
    simulator.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
