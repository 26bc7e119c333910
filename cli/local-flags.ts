/** The flags `batchline run` and `batchline serve` share: how the local stack is started. */
import type { LocalStack, LocalStackOptions } from '../local/runtime';
import { positiveNumber, UsageError, type Options } from './args';
import type { Io } from './io';
import { settingsFromEnv } from './settings';
import { priceTableFromConfig } from '../shared/cost/prices';
import { modelCatalog } from '../shared/validation/models';

export const LOCAL_STACK_FLAGS = {
  lenient: { type: 'boolean' },
  'allow-unknown-models': { type: 'boolean' },
  live: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  'time-scale': { type: 'string' },
  verbose: { type: 'boolean' },
} as const satisfies Options;

export interface LocalStackFlags {
  'allow-unknown-models'?: boolean;
  live?: boolean;
  'time-scale'?: string;
  verbose?: boolean;
}

/**
 * The local stack's options from the shared flags and the environment; UsageError for a bad
 * combination. `what` names the live command in the error a missing key gets.
 */
export function localStackOptions(values: LocalStackFlags, io: Io, what = '--live'): LocalStackOptions {
  const timeScale = positiveNumber(values['time-scale'], '--time-scale');
  const apiKey = io.env.ANTHROPIC_API_KEY;
  if (values.live && !apiKey) throw new UsageError(`${what} needs ANTHROPIC_API_KEY in the environment`);
  if (values.live && timeScale !== undefined) throw new UsageError('--time-scale applies to the simulator; with --live, time is real');
  const settings = settingsFromEnv(io.env);
  if (values['allow-unknown-models']) settings.allowUnknownModels = 'true';
  return {
    timeScale,
    live: values.live ? { apiKey: apiKey!, baseUrl: io.env.ANTHROPIC_BASE_URL } : undefined,
    settings,
    // The simulator serves the models batchline knows, the price table's extensions included; like
    // the API, it errors a request for any other (not_found_error), whatever allowUnknownModels says.
    simulator: { models: modelCatalog(priceTableFromConfig({ pricesJson: settings.pricesJson })) },
    log: (message) => io.stderr.write(`${message}\n`),
    handlerLogLevel: values.verbose ? 'INFO' : undefined,
  };
}

/** Starts the local stack; the runtime is loaded only now (the SDK, the engine and the handlers take seconds, a usage error should not). */
export async function startLocal(options: LocalStackOptions): Promise<LocalStack> {
  const { startLocalStack } = await import('../local/runtime');
  return startLocalStack(options);
}
