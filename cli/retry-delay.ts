/**
 * When a retried step's next try comes, for the progress line ("retrying SubmitChunk: … next try in
 * 40s"): from the state's Retry field in the state machine definition, as Step Functions applies it
 * (the first retrier whose ErrorEquals names the error; IntervalSeconds × BackoffRate^n, capped by
 * MaxDelaySeconds; with JitterStrategy FULL, anywhere from 0 up to that). The local runtime scales
 * each retrier's wait to IntervalSeconds / time scale, without backoff or jitter (local/asl.ts
 * scaledRetryIntervals, read here too).
 */
import { forEachState, scaledRetryIntervals, type AslDefinition, type AslState } from '../local/asl';

/** A Retry field's entries, as the definition holds them. */
interface Retrier {
  ErrorEquals: string[];
  IntervalSeconds?: number;
  MaxAttempts?: number;
  BackoffRate?: number;
  MaxDelaySeconds?: number;
  JitterStrategy?: 'FULL' | 'NONE';
}

/** The wait before the next try; `upTo` when the jitter makes it anywhere from 0 to `ms`. */
export interface NextTry {
  ms: number;
  upTo: boolean;
}

/** Step Functions' defaults for a retrier's fields. */
const DEFAULTS = { IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 };

export class RetryClock {
  private readonly retriers = new Map<string, { type: string | undefined; retry: Retrier[] }>();
  /** Tries each retrier of each state has made since the state last moved on. */
  private readonly used = new Map<string, number[]>();

  /** The local engine's waits (ms per retrier of each state), which replace backoff and jitter there. */
  private readonly localIntervals: Record<string, number[]> | undefined;

  /** `timeScale`: the local runtime's (1 with --live, or on AWS). */
  constructor(
    definition: { States: Record<string, AslState> },
    private readonly timeScale = 1,
  ) {
    forEachState(definition, (name, state) => {
      if (Array.isArray(state.Retry)) this.retriers.set(name, { type: state.Type, retry: state.Retry as Retrier[] });
    });
    // The same intervals the local runtime gives the engine (local/runtime.ts), so the two cannot drift.
    this.localIntervals = timeScale === 1 ? undefined : scaledRetryIntervals(definition as AslDefinition, timeScale);
  }

  /**
   * A try of `state` failed with `error`: when the next one comes, counting the try. Undefined when
   * no retrier takes the error, or its attempts are used up (a Catch decides what comes next). The
   * tries are counted per state, not per Map iteration (the events do not say which chunk): with
   * several chunks retrying at once the backoff is overestimated, never underestimated.
   */
  failed(state: string, error: string): NextTry | undefined {
    const entry = this.retriers.get(state);
    if (!entry) return undefined;
    const index = entry.retry.findIndex((retrier) =>
      retrier.ErrorEquals.some(
        (name) => name === error || name === 'States.ALL' || (name === 'States.TaskFailed' && entry.type === 'Task' && error !== 'States.Timeout'),
      ),
    );
    if (index < 0) return undefined;
    const retrier = entry.retry[index]!;
    const used = this.used.get(state) ?? entry.retry.map(() => 0);
    this.used.set(state, used);
    if (used[index]! >= (retrier.MaxAttempts ?? DEFAULTS.MaxAttempts)) return undefined;
    const interval = retrier.IntervalSeconds ?? DEFAULTS.IntervalSeconds;
    let seconds: number;
    let upTo = false;
    if (this.timeScale === 1) {
      seconds = interval * (retrier.BackoffRate ?? DEFAULTS.BackoffRate) ** used[index]!;
      if (retrier.MaxDelaySeconds !== undefined) seconds = Math.min(seconds, retrier.MaxDelaySeconds);
      upTo = retrier.JitterStrategy === 'FULL';
    } else {
      seconds = (this.localIntervals?.[state]?.[index] ?? 0) / 1000;
    }
    used[index]! += 1;
    return { ms: seconds * 1000, upTo };
  }

  /** The state got past its step: its retriers start again from their first try. */
  movedOn(state?: string): void {
    if (state === undefined) this.used.clear();
    else this.used.delete(state);
  }
}
