/**
 * A chunk's whole life (submit, poll, collect, retry) runs as one child execution of ForEachChunk,
 * and a Standard execution's history holds at most 25,000 events. The settings decide how long
 * that history can grow: a batch may run its full 24 h, polled on shared/jobs/poll-batch.ts's schedule
 * (pollMinSeconds, pollFraction, pollMaxSeconds), and a chunk may take maxAttempts attempts. Past
 * the cap the child fails with nothing to catch it, so the stack refuses such settings at synth.
 *
 * The count walks the chunk lifecycle's own definition, as bench/definition.ts walks the job: the
 * longest life is every attempt's batch polled for 24 h, each attempt but the last followed by a
 * retry, and the chunk then failing after all (RecordChunkFailure). Retries are counted at their
 * worst for the tasks that run once per attempt (Submit may wait out a full queue for hours); the
 * poll loop's own retries, which no setting bounds, get HISTORY_HEADROOM instead.
 *
 * A job with a deadline may end its last attempt with the deadline fallback instead (RunStragglers,
 * shared/jobs/stragglers.ts): at most STRAGGLER_INVOCATIONS invocations, each retried at its worst,
 * before the chunk fails; no batch attempt follows it, so it is counted once, after the last.
 *
 * With the poller (an AwaitBatch state), the worst attempt is WATCH_ARMS_CAP arms that each woke to
 * a batch still running (spurious wakes, cancels forwarded), then the poller down for the rest of
 * the 24 h, so the Wait loop polls the whole day: the poller can add at most the cap's events.
 *
 * Plain ASL in, no CDK: infra/workflow.ts hands over the rendered item processor.
 */
import { simulatePolling, type PollSettings } from '../shared/jobs/poll-batch';
import { WATCH_ARMS_CAP } from '../shared/jobs/watch';
import { CONTEXT_KEYS, SettingsError } from './settings';
import { STATE } from '../shared/jobs/contract';
import { MAX_INVOCATIONS as STRAGGLER_INVOCATIONS } from '../shared/jobs/stragglers';

/** Events a Standard execution's history may hold. */
export const HISTORY_EVENT_LIMIT = 25_000;
/** The share of the history kept free for retries of the poll loop, and polls past expiry. */
export const HISTORY_HEADROOM = 0.1;
/** A batch ends (or expires) at most this long after it is created. */
export const BATCH_LIFETIME_SECONDS = 86_400;

/**
 * History events per state executed, as Step Functions records them (bench/definition.ts's EVENTS).
 * Task: entered, Lambda scheduled, started, succeeded, exited. Wait, Choice, Pass, Succeed: entered,
 * exited. Each execution: started and succeeded (or failed).
 */
export const EVENTS = { Task: 5, Wait: 2, Choice: 2, Pass: 2, Succeed: 2, Fail: 1, execution: 2 } as const;
/** A callback Task (`.waitForTaskToken`) may also record TaskSubmitted: counted at 6 (heartbeats add none). */
export const CALLBACK_TASK_EVENTS = 6;
/** A Task retried: the failure (LambdaFunctionFailed or TimedOut), then scheduled and started again. */
export const EVENTS_PER_RETRY = 3;

/** The part of an ASL state the walk reads. */
export interface AslState {
  Type: string;
  Next?: string;
  End?: boolean;
  Default?: string;
  Choices?: Array<{ Variable?: string; BooleanEquals?: boolean; Next?: string; [comparison: string]: unknown }>;
  Retry?: Array<{ ErrorEquals: string[]; MaxAttempts?: number }>;
  Catch?: Array<{ ErrorEquals: string[]; Next: string }>;
  [field: string]: unknown;
}

export interface AslGraph {
  StartAt: string;
  States: Record<string, AslState>;
}

/** The settings that size a chunk's history (shared/config.ts's names). */
export interface ChunkHistorySettings extends PollSettings {
  maxAttempts: number;
}

export interface ChunkHistory {
  /** Polls of one attempt whose batch runs its full 24 h. */
  pollsPerAttempt: number;
  /** Events of one such attempt, its once-per-attempt tasks' retries at their worst included. */
  eventsPerAttempt: number;
  /** Events of the longest life: maxAttempts such attempts, then the chunk recorded failed. */
  events: number;
  /** Events that life may use: HISTORY_EVENT_LIMIT less HISTORY_HEADROOM. */
  budget: number;
  /** Attempts of 24 h that fit in the budget. */
  attemptsThatFit: number;
}

/** The history of a chunk's longest life under `settings`, counted on its item processor `processor`. */
export function chunkHistory(processor: AslGraph, settings: ChunkHistorySettings): ChunkHistory {
  const pollsPerAttempt = simulatePolling(BATCH_LIFETIME_SECONDS, settings).polls;
  const eventsOf = (attempts: number) => walkChunk(processor, attempts, pollsPerAttempt);
  const one = eventsOf(1);
  // What one more attempt adds (the retry wait and the next Submit included).
  const eventsPerAttempt = eventsOf(2) - one;
  const fixed = one - eventsPerAttempt;
  const budget = Math.floor(HISTORY_EVENT_LIMIT * (1 - HISTORY_HEADROOM));
  return {
    pollsPerAttempt,
    eventsPerAttempt,
    events: eventsOf(settings.maxAttempts),
    budget,
    attemptsThatFit: Math.max(0, Math.floor((budget - fixed) / eventsPerAttempt)),
  };
}

/** Throws SettingsError, naming the settings to change, when a chunk's longest life would not fit its history. */
export function checkHistoryBudget(processor: AslGraph, settings: ChunkHistorySettings): ChunkHistory {
  const history = chunkHistory(processor, settings);
  if (history.events <= history.budget) return history;
  const name = (key: keyof ChunkHistorySettings) => `${CONTEXT_KEYS.settings}.${key}`;
  const polling = `${name('pollMinSeconds')} ${settings.pollMinSeconds}, ${name('pollFraction')} ${settings.pollFraction} and ${name('pollMaxSeconds')} ${settings.pollMaxSeconds}`;
  const perAttempt = `a batch that runs its full 24 h is polled ${fmt(history.pollsPerAttempt)} times, ~${fmt(history.eventsPerAttempt)} history events per attempt`;
  const cap = `the ${fmt(history.budget)} a chunk's child execution may record (Step Functions' ${fmt(HISTORY_EVENT_LIMIT)}, less ${HISTORY_HEADROOM * 100}% kept for retries)`;
  if (history.attemptsThatFit === 0) {
    throw new SettingsError(
      `${polling} poll too often: ${perAttempt}, more than ${cap}. Raise ${name('pollMinSeconds')}, ${name('pollFraction')} or ${name('pollMaxSeconds')}.`,
    );
  }
  throw new SettingsError(
    `${name('maxAttempts')} ${settings.maxAttempts} does not fit a chunk's history with ${polling}: ${perAttempt}, so ${settings.maxAttempts} attempts need ~${fmt(history.events)} events, more than ${cap}. ` +
      `Lower ${name('maxAttempts')} to ${history.attemptsThatFit}, or poll less often (raise ${name('pollMaxSeconds')}).`,
  );
}

const fmt = (n: number) => n.toLocaleString('en-US');

/**
 * Events of a chunk's life of `attempts` attempts, each polled `polls` times, ending failed: the
 * item processor walked with the outputs the contract gives its tasks (an unknown Task stops the
 * walk, so a changed lifecycle cannot be miscounted silently).
 */
export function walkChunk(processor: AslGraph, attempts: number, polls: number): number {
  const runs: Record<string, number> = {};
  // With the poller: each attempt's first polls follow arms (watch true) up to the cap, then the Wait loop's.
  const arms = STATE.AwaitBatch in processor.States ? WATCH_ARMS_CAP : 0;
  const cycle = arms + polls;
  const output = (state: string, run: number): Record<string, unknown> => {
    switch (state) {
      case STATE.SubmitChunk:
        return { canceled: false };
      case STATE.AwaitBatch:
      case STATE.AwaitRetry:
        return {};
      case STATE.PollBatch:
        return { ended: run % cycle === 0, watch: run % cycle !== 0 && run % cycle < arms };
      case STATE.CollectResults:
        return { retry: run < attempts, stragglers: run === attempts };
      case STATE.RunStragglers:
        return { done: run >= STRAGGLER_INVOCATIONS };
      case STATE.FinalizeChunk:
        return { failed: false };
      default:
        throw new Error(`the history budget knows no output for Task ${state}; update infra/history-budget.ts with docs/workflow-contract.md`);
    }
  };
  let events = EVENTS.execution;
  let data: Record<string, unknown> = {};
  let name: string | undefined = processor.StartAt;
  let catchTarget: string | undefined;
  for (let step = 0; name !== undefined; step++) {
    if (step > 10_000_000) throw new Error('the chunk lifecycle did not end (a loop that never exits?)');
    const state = stateOf(processor, name);
    const run = (runs[name] = (runs[name] ?? 0) + 1);
    events += eventsOf(state);
    if (state.Type === 'Task') {
      data = output(name, run);
      catchTarget ??= state.Catch?.[0]?.Next;
    } else if (state.Type === 'Choice') {
      name = choose(name, state, data);
      continue;
    } else if (state.Type === 'Succeed' || state.Type === 'Fail') {
      break;
    }
    name = state.End === true ? undefined : state.Next;
  }
  // Retries at their worst for the tasks that ran once per attempt; the poll loop's are in the headroom.
  for (const [stateName, count] of Object.entries(runs)) {
    const state = stateOf(processor, stateName);
    if (state.Type === 'Task' && (count <= attempts || stateName === STATE.RunStragglers)) events += count * worstRetries(state);
  }
  // The chunk fails at the very end: its failure recorded (retried at worst), then its rows
  // finalized, instead of ChunkDone (a Choice on the way is taken by its Default).
  for (let tail = catchTarget; tail !== undefined; ) {
    const state = stateOf(processor, tail);
    events += eventsOf(state) + (state.Type === 'Task' ? worstRetries(state) : 0);
    tail = state.End === true ? undefined : state.Type === 'Choice' ? state.Default : state.Next;
  }
  return events;
}

function stateOf(graph: AslGraph, name: string): AslState {
  const state = graph.States[name];
  if (!state) throw new Error(`the chunk lifecycle has no state ${name}`);
  return state;
}

function eventsOf(state: AslState): number {
  if (state.Type === 'Task' && String(state.Resource ?? '').endsWith('.waitForTaskToken')) return CALLBACK_TASK_EVENTS;
  const events = EVENTS[state.Type as keyof typeof EVENTS];
  if (events === undefined) throw new Error(`the history budget does not count ${state.Type} states`);
  return events;
}

/** Events of every retry a Task's Retry fields allow (ASL's default MaxAttempts is 3). */
function worstRetries(state: AslState): number {
  return (state.Retry ?? []).reduce((sum, retrier) => sum + (retrier.MaxAttempts ?? 3), 0) * EVENTS_PER_RETRY;
}

function choose(name: string, state: AslState, data: Record<string, unknown>): string {
  for (const rule of state.Choices ?? []) {
    const comparisons = Object.keys(rule).filter((key) => key !== 'Variable' && key !== 'Next' && rule[key] !== undefined);
    if (comparisons.join() !== 'BooleanEquals' || typeof rule.Variable !== 'string' || !rule.Variable.startsWith('$.') || !rule.Next) {
      throw new Error(`Choice ${name}: the history budget only reads BooleanEquals on $.field, got ${JSON.stringify(rule)}`);
    }
    if (data[rule.Variable.slice(2)] === rule.BooleanEquals) return rule.Next;
  }
  if (typeof state.Default !== 'string') throw new Error(`Choice ${name}: no rule matched and there is no Default`);
  return state.Default;
}
