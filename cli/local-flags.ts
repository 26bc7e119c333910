/** The flags `batchline run` and `batchline serve` share: how the local stack is started. */
import type { LocalStack, LocalStackOptions } from '../local/runtime';
import { positiveNumber, UsageError, type Options } from './args';
import type { Io } from './io';
import { settingsFromEnv } from './settings';

export const LOCAL_STACK_FLAGS = {
  lenient: { type: 'boolean' },
  live: { type: 'boolean' },
  'time-scale': { type: 'string' },
  verbose: { type: 'boolean' },
} as const satisfies Options;

export interface LocalStackFlags {
  live?: boolean;
  'time-scale'?: string;
  verbose?: boolean;
}

/** The local stack's options from the shared flags and the environment; UsageError for a bad combination. */
export function localStackOptions(values: LocalStackFlags, io: Io): LocalStackOptions {
  const timeScale = positiveNumber(values['time-scale'], '--time-scale');
  const apiKey = io.env.ANTHROPIC_API_KEY;
  if (values.live && !apiKey) throw new UsageError('--live needs ANTHROPIC_API_KEY in the environment');
  if (values.live && timeScale !== undefined) throw new UsageError('--time-scale applies to the simulator; with --live, time is real');
  return {
    timeScale,
    live: values.live ? { apiKey: apiKey!, baseUrl: io.env.ANTHROPIC_BASE_URL } : undefined,
    settings: settingsFromEnv(io.env),
    log: (message) => io.stderr.write(`${message}\n`),
    handlerLogLevel: values.verbose ? 'INFO' : undefined,
  };
}

/** Starts the local stack; the runtime is loaded only now (the SDK, the engine and the handlers take seconds, a usage error should not). */
export async function startLocal(options: LocalStackOptions): Promise<LocalStack> {
  const { startLocalStack } = await import('../local/runtime');
  return startLocalStack(options);
}
