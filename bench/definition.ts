/**
 * The synthesized job state machine, walked rather than run: given what each Task returns, which
 * states execute and how often. The local engine counts nothing that Step Functions bills, so
 * transitions (one per state executed) and history events (an estimate per state type) are
 * computed from the definition's own structure — its Choices, loops and Map — here.
 */
import { fileURLToPath } from 'node:url';
import type { AslDefinition, AslState } from '../local/asl';
import { findJobStateMachine, resolveDefinition, taskTargets } from '../local/asl';
import { findFunction, localFunctions } from '../local/lambda';
import { synthesizeTemplate } from '../local/synth';
import { LocalNames } from '../local/template';
import { STATE } from '../shared/jobs/contract';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface JobMachine {
  definition: AslDefinition;
  /** Memory (MB) of the Lambda function each Task state invokes, by state name. */
  taskMemoryMb: Record<string, number>;
  /** Memory (MB) of every function, by handler name (functions/<name>.ts). */
  functionMemoryMb: Record<string, number>;
  /** The Map's MaxConcurrency. */
  maxConcurrency: number | undefined;
}

/** The job state machine as deployed (synthesized from infra/, cached by local/synth.ts). */
export async function loadJobMachine(): Promise<JobMachine> {
  const template = await synthesizeTemplate({ root: REPO_ROOT });
  const names = new LocalNames(template);
  const definition = resolveDefinition(names, findJobStateMachine(template, names));
  const functions = localFunctions(template, names);
  const taskMemoryMb: Record<string, number> = {};
  for (const target of taskTargets(definition)) {
    const fn = findFunction(functions, target.functionRef);
    if (fn) taskMemoryMb[target.state] = fn.memoryMb;
  }
  const functionMemoryMb = Object.fromEntries(functions.map((fn) => [fn.entry.replace(/^functions\/|\.ts$/g, ''), fn.memoryMb]));
  const maxConcurrency = (definition.States.ForEachChunk as { MaxConcurrency?: number } | undefined)?.MaxConcurrency;
  return { definition, taskMemoryMb, functionMemoryMb, maxConcurrency };
}

/** What a Task returns, given its state name, its input and how many times it has run in this execution (1-based). */
export type TaskOutputs = (state: string, input: Json, run: number) => Json;
type Json = unknown;

export interface ExecutionCount {
  /** States executed: what Step Functions Standard bills as state transitions. */
  transitions: number;
  /** History events, estimated by state type (see EVENTS). */
  events: number;
  /** Executions of each state. */
  states: Record<string, number>;
  /** Child executions (a Distributed Map's items), each with its own history. */
  children: ExecutionCount[];
}

/**
 * History events per state, as Step Functions records them (an estimate: retries and failures add
 * more). Task: entered, (Lambda) scheduled, started, succeeded, exited. Wait, Choice, Pass,
 * Succeed: entered, exited. Map: entered, map run started, map run succeeded, exited.
 * Each execution: ExecutionStarted and ExecutionSucceeded.
 */
export const EVENTS = { Task: 5, Wait: 2, Choice: 2, Pass: 2, Succeed: 2, Fail: 1, Map: 4, Parallel: 4, execution: 2 } as const;
/** A callback Task (`.waitForTaskToken`, AwaitBatch) may also record TaskSubmitted: 6 (heartbeats add none). */
export const CALLBACK_TASK_EVENTS = 6;
const isCallback = (state: AslState) => state.Type === 'Task' && String(state.Resource ?? '').endsWith('.waitForTaskToken');

const MAX_STEPS = 1_000_000;

export function walkExecution(graph: Pick<AslDefinition, 'StartAt' | 'States'>, input: Json, outputs: TaskOutputs): ExecutionCount {
  const count: ExecutionCount = { transitions: 0, events: EVENTS.execution, states: {}, children: [] };
  let name: string | undefined = graph.StartAt;
  let data = input;
  for (let step = 0; name !== undefined; step++) {
    if (step > MAX_STEPS) throw new Error(`the walk did not end after ${MAX_STEPS} states (a loop that never exits?)`);
    const state: AslState | undefined = graph.States[name];
    if (!state) throw new Error(`the definition has no state ${name}`);
    const runs = (count.states[name] ?? 0) + 1;
    count.states[name] = runs;
    count.transitions += 1;
    count.events += isCallback(state) ? CALLBACK_TASK_EVENTS : (EVENTS[state.Type as keyof typeof EVENTS] ?? 2);
    switch (state.Type) {
      case 'Task':
        data = applyResultPath(data, outputs(name, data, runs), state.ResultPath);
        break;
      case 'Map': {
        const processor = (state.ItemProcessor ?? state.Iterator) as AslDefinition | undefined;
        if (!processor) throw new Error(`Map ${name} has no ItemProcessor`);
        const items = readPath(data, (state.ItemsPath as string | undefined) ?? '$');
        if (!Array.isArray(items)) throw new Error(`Map ${name}: ${String(state.ItemsPath)} is not an array`);
        const selector = state.ItemSelector as Record<string, unknown> | undefined;
        const results = items.map((item) => {
          const child = walkExecution(processor, selector ? selectItem(selector, data, item) : item, outputs);
          count.children.push(child);
          return null;
        });
        data = applyResultPath(data, results, state.ResultPath);
        break;
      }
      case 'Choice':
        name = choose(name, state, data);
        continue;
      case 'Succeed':
      case 'Fail':
        return count;
      case 'Wait':
      case 'Pass':
        break;
      default:
        throw new Error(`state ${name}: type ${state.Type} is not walked`);
    }
    name = state.End === true ? undefined : (state.Next as string | undefined);
  }
  return count;
}

/** Transitions of an execution and all its children. */
export function totalTransitions(count: ExecutionCount): number {
  return count.transitions + count.children.reduce((sum, child) => sum + totalTransitions(child), 0);
}

function choose(name: string, state: AslState, data: Json): string {
  for (const rule of (state.Choices as ChoiceRule[] | undefined) ?? []) {
    if (matches(rule, data)) return rule.Next!;
  }
  if (typeof state.Default !== 'string') throw new Error(`Choice ${name}: no rule matched and there is no Default`);
  return state.Default;
}

interface ChoiceRule {
  Next?: string;
  Variable?: string;
  And?: ChoiceRule[];
  Or?: ChoiceRule[];
  Not?: ChoiceRule;
  [comparison: string]: unknown;
}

function matches(rule: ChoiceRule, data: Json): boolean {
  if (rule.And) return rule.And.every((r) => matches(r, data));
  if (rule.Or) return rule.Or.some((r) => matches(r, data));
  if (rule.Not) return !matches(rule.Not, data);
  if (typeof rule.Variable !== 'string') throw new Error(`a Choice rule without Variable: ${JSON.stringify(rule)}`);
  const value = readPath(data, rule.Variable);
  for (const [key, expected] of Object.entries(rule)) {
    switch (key) {
      case 'Variable':
      case 'Next':
        continue;
      case 'BooleanEquals':
      case 'StringEquals':
      case 'NumericEquals':
        return value === expected;
      case 'NumericGreaterThan':
        return typeof value === 'number' && value > (expected as number);
      case 'NumericLessThan':
        return typeof value === 'number' && value < (expected as number);
      case 'IsPresent':
        return (value !== undefined) === expected;
      case 'IsNull':
        return (value === null) === expected;
      default:
        throw new Error(`Choice comparison ${key} is not walked`);
    }
  }
  throw new Error(`a Choice rule without a comparison: ${JSON.stringify(rule)}`);
}

/** A Map's ItemSelector: `key.$` fields read the state input (`$…`) or the item (`$$.Map.Item.Value`). */
function selectItem(selector: Record<string, unknown>, data: Json, item: Json): Json {
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(selector)) {
    if (!key.endsWith('.$')) {
      out[key] = value;
    } else if (value === '$$.Map.Item.Value') {
      out[key.slice(0, -2)] = item;
    } else {
      out[key.slice(0, -2)] = readPath(data, String(value));
    }
  }
  return out;
}

/** `$`, `$.a.b` — the paths this workflow's definition uses. */
function readPath(data: Json, path: string): Json {
  if (path === '$') return data;
  if (!path.startsWith('$.')) throw new Error(`path ${path} is not walked`);
  let current = data;
  for (const step of path.slice(2).split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, Json>)[step];
  }
  return current;
}

function applyResultPath(data: Json, result: Json, resultPath: unknown): Json {
  if (resultPath === null) return data;
  if (resultPath === undefined || resultPath === '$') return result;
  if (typeof resultPath !== 'string' || !resultPath.startsWith('$.')) throw new Error(`ResultPath ${String(resultPath)} is not walked`);
  const copy = structuredClone((data ?? {}) as Record<string, Json>);
  const steps = resultPath.slice(2).split('.');
  let target = copy;
  for (const step of steps.slice(0, -1)) target = (target[step] ??= {}) as Record<string, Json>;
  target[steps.at(-1)!] = result;
  return copy;
}

export interface JobScenario {
  chunks: number;
  /** Batch attempts per chunk (2 when some rows are retried once). */
  attemptsPerChunk: number;
  /** Polls of each attempt until its batch is seen ended. */
  pollsPerAttempt: number;
  /**
   * How attempts wait, when the definition has AwaitBatch: `poller` (default), every poll follows a
   * wake (one poll: woken as the batch ended); `fallback`, the poller is down: one AwaitBatch that
   * times out, then the Wait loop's polls.
   */
  wait?: 'poller' | 'fallback';
}

/**
 * A job that goes well: registered, prepared into `chunks`, each chunk submitted and polled
 * `pollsPerAttempt` times per attempt, collected (retried while attempts remain), its rows
 * finalized (FinalizeChunk); then the job finalized.
 * The outputs follow docs/workflow-contract.md; an unknown Task state fails the walk, so a changed
 * definition cannot be miscounted silently.
 */
export function walkJob(definition: AslDefinition, scenario: JobScenario): ExecutionCount {
  const jobId = 'job-walk';
  const outputs: TaskOutputs = (state, input, run) => {
    const ref = input as { jobId: string; chunk: number };
    switch (state) {
      case STATE.RegisterJob:
        return { jobId, duplicate: false };
      case STATE.PrepareJob:
        return {
          jobId,
          outcome: 'ready',
          chunks: Array.from({ length: scenario.chunks }, (_, chunk) => chunk),
          validRows: 0,
          invalidRows: 0,
        };
      case STATE.SubmitChunk:
        return { ...ref, attempt: run, batchId: `batch-${run}`, canceled: false, waitSeconds: 30 };
      case STATE.AwaitBatch:
        return { reason: 'ended' };
      // Its timeout (the backoff) ends it; the Catch of the timeout goes where Next goes.
      case STATE.AwaitRetry:
        return {};
      case STATE.PollBatch:
        return { ...(input as object), ended: run % scenario.pollsPerAttempt === 0, waitSeconds: 60, watch: (scenario.wait ?? 'poller') === 'poller' };
      case STATE.CollectResults: {
        const retry = run < scenario.attemptsPerChunk;
        return { ...ref, attempt: run, retry, retryWaitSeconds: retry ? 60 : 0, stragglers: false };
      }
      case STATE.FinalizeChunk:
        return { ...ref, rows: 0, failed: false };
      case STATE.FinalizeJob:
        return { jobId, status: 'succeeded', counts: {} };
      default:
        throw new Error(`the walk knows no output for Task ${state}; update bench/definition.ts with the workflow contract`);
    }
  };
  return walkExecution(definition, { bucket: 'b', key: 'inbox/k.jsonl' }, outputs);
}
