/**
 * When a retried step's next try comes, for the progress line ("retrying SubmitChunk: … next try in
 * 40s"): from the state's Retry field in the state machine definition, as Step Functions applies it
 * (the first retrier whose ErrorEquals names the error; IntervalSeconds × BackoffRate^n, capped by
 * MaxDelaySeconds; with JitterStrategy FULL, anywhere from 0 up to that). The local runtime scales
 * each retrier's wait to IntervalSeconds / time scale, without backoff or jitter (local/asl.ts).
 */

/** A Retry field's entries, as the definition holds them. */
interface Retrier {
  ErrorEquals: string[];
  IntervalSeconds?: number;
  MaxAttempts?: number;
  BackoffRate?: number;
  MaxDelaySeconds?: number;
  JitterStrategy?: 'FULL' | 'NONE';
}

interface States {
  States?: Record<string, { Type?: string; Retry?: Retrier[]; Iterator?: States; ItemProcessor?: States; Branches?: States[] }>;
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

  /** `timeScale`: the local runtime's (1 with --live, or on AWS). */
  constructor(
    definition: States,
    private readonly timeScale = 1,
  ) {
    const visit = (machine: States | undefined) => {
      for (const [name, state] of Object.entries(machine?.States ?? {})) {
        if (state.Retry) this.retriers.set(name, { type: state.Type, retry: state.Retry });
        visit(state.Iterator);
        visit(state.ItemProcessor);
        for (const branch of state.Branches ?? []) visit(branch);
      }
    };
    visit(definition);
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
      seconds = Math.min(interval / this.timeScale, retrier.MaxDelaySeconds ?? Number.POSITIVE_INFINITY);
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
