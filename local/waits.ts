/** Wait states, locally: how long each waits in real time, on the simulator's clock and time scale. */
import type { WaitSpec } from './asl';
import { LocalStackError } from './errors';

/**
 * How long a Wait state waits, in real ms: its seconds (or the time until its timestamp, on the
 * simulator's clock) divided by the time scale. Like the service, a SecondsPath that is not a
 * non-negative whole number fails the execution.
 */
export function waitMs(state: string, spec: WaitSpec, input: unknown, timeScale: number, clock: () => number): number {
  if (spec.Seconds !== undefined) return (spec.Seconds * 1000) / timeScale;
  if (spec.SecondsPath !== undefined) {
    const seconds = readPath(input, spec.SecondsPath);
    if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 0) {
      throw Object.assign(new Error(`Wait ${state}: ${spec.SecondsPath} is ${JSON.stringify(seconds)}, not a non-negative whole number of seconds`), {
        name: 'States.Runtime',
      });
    }
    return (seconds * 1000) / timeScale;
  }
  const timestamp = spec.Timestamp ?? readPath(input, spec.TimestampPath ?? '$');
  const at = typeof timestamp === 'string' ? Date.parse(timestamp) : Number.NaN;
  if (Number.isNaN(at)) throw Object.assign(new Error(`Wait ${state}: no timestamp to wait for`), { name: 'States.Runtime' });
  return Math.max(0, at - clock()) / timeScale;
}

/** A JSONPath of plain field steps (`$.a.b`, `$['a']`), which is all Wait paths need here. */
export function readPath(value: unknown, jsonPath: string): unknown {
  if (!jsonPath.startsWith('$')) throw new LocalStackError(`unsupported path ${jsonPath}`);
  const steps = [...jsonPath.slice(1).matchAll(/\.([^.[\]]+)|\['([^']+)'\]/g)].map((m) => m[1] ?? m[2]!);
  let current = value;
  for (const step of steps) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[step];
  }
  return current;
}
