/**
 * The poller's schedule, locally (functions/poll-batches.ts on its rate): ticks run on a timer, not
 * on the stack's runSchedules().
 */
import { LocalStackError } from './errors';
import type { LocalSchedule } from './events';
import type { LocalFunction } from './lambda';
import type { LocalEvent } from './stack-events';

export interface LocalPoller {
  schedule: LocalSchedule;
  /** Real ms between ticks. */
  periodMs: number;
  /** Runs one tick now (after the one in flight, if any), as the schedule would. */
  tick(): Promise<unknown>;
  /**
   * Stops the ticks (the poller is down) until resume(); resolves once the tick in flight, if any,
   * has ended, so nothing it writes (its health record) lands after the caller's next step.
   */
  pause(): Promise<void>;
  resume(): void;
  readonly ticks: number;
}

/** The poller's ticks are at least this far apart in real time, whatever the time scale. */
export const POLLER_MIN_TICK_MS = 50;

/** The handler the poller's schedule targets (its ticks run on a timer, not on runSchedules). */
export const POLLER_ENTRY = 'functions/poll-batches.ts';

/**
 * The poller's schedule, locally: a timer every `rate` / time scale, one tick at a time (as reserved
 * concurrency 1 makes it in AWS; a tick due while one runs is dropped, as an event past its max age).
 */
export function startPoller(
  schedule: LocalSchedule,
  fn: LocalFunction,
  periodMs: number,
  emit: (event: LocalEvent) => void,
  invoke: (fn: LocalFunction, input: unknown) => Promise<unknown>,
): LocalPoller & { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  let paused = false;
  let stopped = false;
  let ticks = 0;
  const run = (): Promise<unknown> => {
    const started = performance.now();
    const tick = invoke(fn, schedule.input).then(
      (report) => {
        ticks += 1;
        emit({ type: 'poller-ticked', report, ms: performance.now() - started });
        return report;
      },
      (error: Error) => {
        emit({ type: 'poller-ticked', error: error.name, ms: performance.now() - started });
        return undefined;
      },
    );
    running = tick;
    void tick.finally(() => {
      if (running === tick) running = undefined;
    });
    return tick;
  };
  const timer = setInterval(() => {
    if (!paused && !stopped && !running) void run();
  }, periodMs);
  timer.unref();
  return {
    schedule,
    periodMs,
    get ticks() {
      return ticks;
    },
    async tick() {
      while (running) await running;
      return run();
    },
    async pause() {
      paused = true;
      while (running) await running;
    },
    resume: () => void (paused = false),
    async stop() {
      stopped = true;
      clearInterval(timer);
      while (running) await running;
    },
  };
}

/** `rate(n unit)` in seconds; the poller's schedule is a rate. */
export function scheduleSeconds(expression: string): number {
  const match = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (!match) throw new LocalStackError(`the poller's schedule must be a rate(...) expression, got ${expression}`);
  const unit = { minute: 60, minutes: 60, hour: 3600, hours: 3600, day: 86_400, days: 86_400 }[match[2]!]!;
  return Number(match[1]) * unit;
}
