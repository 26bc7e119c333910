/**
 * The job state machine as plain ASL, for aws-local-stepfunctions: its DefinitionString resolved
 * to local names, checked against what the local engine can really execute, and its Wait states
 * made to follow the simulator's clock.
 */
import { LocalNames, resourcesOfType, type CfnTemplate } from './template';
import { STATE } from '../shared/jobs/contract';

export interface AslState {
  Type: string;
  [field: string]: unknown;
}

export interface AslDefinition {
  StartAt: string;
  States: Record<string, AslState>;
  QueryLanguage?: string;
  [field: string]: unknown;
}

/** A definition the local engine would run wrongly or not at all. */
export class UnsupportedDefinition extends Error {
  override readonly name = 'UnsupportedDefinition';
  constructor(readonly problems: string[]) {
    super(`the state machine cannot run locally:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export class StateMachineNotFound extends Error {
  override readonly name = 'StateMachineNotFound';
}

/** The state that marks the job state machine (docs/workflow-contract.md). */
const JOB_ENTRY_STATE = STATE.RegisterJob;

/** Calls every state, nested ones (Map item processors, Parallel branches) included, depth first. */
export function forEachState(
  definition: { States: Record<string, AslState> },
  visit: (name: string, state: AslState, parents: string[]) => void,
  parents: string[] = [],
): void {
  for (const [name, state] of Object.entries(definition.States)) {
    visit(name, state, parents);
    const processor = (state.ItemProcessor ?? state.Iterator) as AslDefinition | undefined;
    if (processor?.States) forEachState(processor, visit, [...parents, name]);
    if (Array.isArray(state.Branches)) {
      for (const branch of state.Branches as AslDefinition[]) forEachState(branch, visit, [...parents, name]);
    }
  }
}

export function resolveDefinition(names: LocalNames, logicalId: string): AslDefinition {
  const props = names.resource(logicalId).Properties ?? {};
  let text: string;
  if (props.DefinitionString !== undefined) {
    text = names.resolveString(props.DefinitionString, `DefinitionString of ${logicalId}`);
  } else if (props.Definition !== undefined) {
    text = JSON.stringify(names.resolve(props.Definition));
  } else {
    throw new UnsupportedDefinition([`${logicalId} keeps its definition outside the template (DefinitionS3Location)`]);
  }
  const substitutions = (names.resolve(props.DefinitionSubstitutions) ?? {}) as Record<string, unknown>;
  text = text.replace(/\$\{([^}]+)\}/g, (match, key: string) => (key in substitutions ? String(substitutions[key]) : match));
  return JSON.parse(text) as AslDefinition;
}

/** The job state machine's logical id: the only state machine, or the one that starts at RegisterJob. */
export function findJobStateMachine(template: CfnTemplate, names = new LocalNames(template)): string {
  const machines = resourcesOfType(template, 'AWS::StepFunctions::StateMachine');
  if (machines.length === 1) return machines[0]!;
  const jobMachines = machines.filter((id) => resolveDefinition(names, id).StartAt === JOB_ENTRY_STATE);
  if (jobMachines.length === 1) return jobMachines[0]!;
  throw new StateMachineNotFound(
    machines.length === 0
      ? 'the synthesized template has no state machine'
      : `cannot tell the job state machine among ${machines.join(', ')} (expected exactly one starting at ${JOB_ENTRY_STATE})`,
  );
}

/** How a Task state reaches its Lambda function. */
export interface TaskTarget {
  state: string;
  /** The function name or ARN the state names. */
  functionRef: string;
  /**
   * `direct`: Resource is the function ARN (payloadResponseOnly); `invoke`: the lambda:invoke
   * integration; `callback`: lambda:invoke.waitForTaskToken (the task waits for SendTask*, see
   * task-tokens.ts).
   */
  integration: 'direct' | 'invoke' | 'callback';
}

const LAMBDA_ARN = /^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:]+)(?::[^:]+)?$/;
const LAMBDA_INVOKE = /^arn:aws[a-z-]*:states:::lambda:invoke(\.waitForTaskToken)?$/;

/** The Lambda function a Task state calls, or a reason it has no local handler. */
export function taskTarget(name: string, state: AslState): TaskTarget | { problem: string } {
  const resource = String(state.Resource ?? '');
  const direct = LAMBDA_ARN.exec(resource);
  if (direct) return { state: name, functionRef: direct[1]!, integration: 'direct' };
  const invoke = LAMBDA_INVOKE.exec(resource);
  if (invoke) {
    const ref = (state.Parameters as Record<string, unknown> | undefined)?.FunctionName;
    if (typeof ref !== 'string') return { problem: `Task ${name} chooses its function at run time (FunctionName.$), which has no local handler` };
    return { state: name, functionRef: functionNameOf(ref), integration: invoke[1] ? 'callback' : 'invoke' };
  }
  return { problem: `Task ${name} calls ${resource || '(no Resource)'}, which has no local handler` };
}

/** `my-fn`, `my-fn:alias`, or a function ARN (qualified or not) → the function name. */
export function functionNameOf(ref: string): string {
  const fromArn = LAMBDA_ARN.exec(ref);
  if (fromArn) return fromArn[1]!;
  return ref.split(':')[0]!;
}

/**
 * Everything in a definition the local engine cannot run faithfully. aws-local-stepfunctions
 * ignores JSONata without a word (Outputs dropped, Choice conditions skipped), fails on Assign and
 * ItemReader, and sends a Task with no local override to the real Lambda API.
 */
export function findUnsupported(definition: AslDefinition, hasFunction: (functionName: string) => boolean): string[] {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  if (definition.QueryLanguage === 'JSONata') problems.push('the state machine uses JSONata (QueryLanguage JSONata)');
  forEachState(definition, (name, state, parents) => {
    const where = parents.length > 0 ? `${name} (in ${parents.join(' > ')})` : name;
    const previous = seen.get(name);
    if (previous !== undefined) problems.push(`state name ${name} is used twice (${previous} and ${where}); local overrides are keyed by name`);
    seen.set(name, where);
    if (state.QueryLanguage === 'JSONata') problems.push(`state ${where} uses JSONata (QueryLanguage JSONata)`);
    const processor = (state.ItemProcessor ?? state.Iterator) as AslDefinition | undefined;
    if (processor?.QueryLanguage === 'JSONata') problems.push(`the item processor of ${where} uses JSONata`);
    if ('Assign' in state) problems.push(`state ${where} sets variables (Assign)`);
    if ('ItemReader' in state) problems.push(`Map ${where} reads its items with ItemReader`);
    if (state.Type === 'Task') {
      const target = taskTarget(name, state);
      if ('problem' in target) problems.push(target.problem);
      else if (!hasFunction(target.functionRef)) problems.push(`Task ${where} calls function ${target.functionRef}, which is not in the template`);
      else if (target.integration === 'callback') problems.push(...callbackProblems(where, state));
    }
  });
  return problems;
}

/**
 * What a callback Task must be for the local engine to run it as AWS would: the token in its
 * Payload (the override fills it in), a constant heartbeat and a timeout that is constant or a
 * state-input field the Payload also carries (the engine reads `*Path` against the wrong input), and a missed heartbeat caught under both names AWS may report it by.
 */
function callbackProblems(where: string, state: AslState): string[] {
  const problems: string[] = [];
  const payload = (state.Parameters as { Payload?: Record<string, unknown> } | undefined)?.Payload;
  if (!payload || !Object.values(payload).includes(TASK_TOKEN_PATH)) {
    problems.push(`callback Task ${where} does not pass ${TASK_TOKEN_PATH} in its Payload, so nothing could settle it`);
  }
  if ('HeartbeatSecondsPath' in state) {
    problems.push(`callback Task ${where} sets HeartbeatSecondsPath; use a constant (the local engine reads the path against the effective input)`);
  }
  // The engine would read the path against the effective input (the Parameters), AWS against the
  // state input: the override reads it from the Payload, so the Payload must carry it as it is.
  const timeoutPath = state.TimeoutSecondsPath;
  if (timeoutPath !== undefined) {
    const field = typeof timeoutPath === 'string' && /^\$\.[A-Za-z_][A-Za-z0-9_]*$/.test(timeoutPath) ? timeoutPath.slice(2) : undefined;
    if (!field || payload?.[`${field}.$`] !== timeoutPath) {
      problems.push(
        `callback Task ${where} sets TimeoutSecondsPath ${JSON.stringify(timeoutPath)}; the local engine needs a top-level $.field that its Payload also passes as "field.$"`,
      );
    }
  }
  if (typeof state.HeartbeatSeconds === 'number') {
    for (const rule of [...((state.Retry as Array<{ ErrorEquals: string[] }>) ?? []), ...((state.Catch as Array<{ ErrorEquals: string[] }>) ?? [])]) {
      if (rule.ErrorEquals.includes('States.Timeout') && !rule.ErrorEquals.includes('States.HeartbeatTimeout')) {
        problems.push(`callback Task ${where} has a heartbeat and a Retry or Catch on States.Timeout without States.HeartbeatTimeout`);
      }
    }
  }
  return problems;
}

/** The context path of a callback Task's token. */
export const TASK_TOKEN_PATH = '$$.Task.Token';

export function assertRunnableLocally(definition: AslDefinition, hasFunction: (functionName: string) => boolean): void {
  const problems = findUnsupported(definition, hasFunction);
  if (problems.length > 0) throw new UnsupportedDefinition(problems);
}

export function taskTargets(definition: AslDefinition): TaskTarget[] {
  const targets: TaskTarget[] = [];
  forEachState(definition, (name, state) => {
    if (state.Type !== 'Task') return;
    const target = taskTarget(name, state);
    if (!('problem' in target)) targets.push(target);
  });
  return targets;
}

/** The resource of the Task states that stand in for Wait states (see `localizeWaits`). */
export const LOCAL_WAIT_RESOURCE = 'arn:aws:lambda:us-east-1:000000000000:function:batchline-local-wait';

/** What a Wait state waits for: the fields of the original state that say how long. */
export interface WaitSpec {
  Seconds?: number;
  SecondsPath?: string;
  Timestamp?: string;
  TimestampPath?: string;
}

/**
 * Turns every Wait state into a Task state that runs a local wait. The engine's own Wait sleeps in
 * real seconds, and its `waitTimeOverrides` are one fixed number per state name — neither can
 * follow a simulator whose clock runs N times faster, while a Task handler can read the seconds
 * from the state's input and sleep seconds/N. A Task without Parameters or ResultPath that returns
 * its input passes data exactly as the Wait did (InputPath and OutputPath are kept). The timeout
 * stays under setTimeout's 2^31 ms ceiling.
 */
export function localizeWaits(definition: AslDefinition): { definition: AslDefinition; waits: Map<string, WaitSpec> } {
  const copy = structuredClone(definition);
  const waits = new Map<string, WaitSpec>();
  forEachState(copy, (name, state) => {
    if (state.Type !== 'Wait') return;
    const { Seconds, SecondsPath, Timestamp, TimestampPath } = state as WaitSpec;
    waits.set(name, { Seconds, SecondsPath, Timestamp, TimestampPath });
    for (const field of ['Seconds', 'SecondsPath', 'Timestamp', 'TimestampPath']) delete state[field];
    state.Type = 'Task';
    state.Resource = LOCAL_WAIT_RESOURCE;
    state.TimeoutSeconds = 2_000_000;
  });
  return { definition: copy, waits };
}

/** A callback Task's bounds, as the definition gives them (the local override enforces them). */
export interface CallbackSpec {
  HeartbeatSeconds?: number;
  TimeoutSeconds?: number;
  /** `$.field`: the Payload carries the same field (callbackProblems checks), and the override reads it there. */
  TimeoutSecondsPath?: string;
}

/**
 * Takes the timeouts of every callback Task (`.waitForTaskToken`) out of the engine's hands: it
 * ignores HeartbeatSeconds, and its own TimeoutSeconds would run in real seconds. The override of
 * task-tokens.ts enforces both, divided by the time scale; the state keeps a timeout under
 * setTimeout's ceiling, as localizeWaits does.
 */
export function localizeCallbacks(definition: AslDefinition): { definition: AslDefinition; callbacks: Map<string, CallbackSpec> } {
  const copy = structuredClone(definition);
  const callbacks = new Map<string, CallbackSpec>();
  forEachState(copy, (name, state) => {
    if (state.Type !== 'Task' || !String(state.Resource ?? '').endsWith('.waitForTaskToken')) return;
    callbacks.set(name, {
      HeartbeatSeconds: state.HeartbeatSeconds as number | undefined,
      TimeoutSeconds: state.TimeoutSeconds as number | undefined,
      TimeoutSecondsPath: state.TimeoutSecondsPath as string | undefined,
    });
    delete state.HeartbeatSeconds;
    delete state.TimeoutSecondsPath;
    state.TimeoutSeconds = 2_000_000;
  });
  return { definition: copy, callbacks };
}

/**
 * Retry delays at the simulator's pace: one interval per retrier of each Task state, in ms, for the
 * engine's `retryIntervalOverrides` (which replaces IntervalSeconds × BackoffRate^n by a constant).
 */
export function scaledRetryIntervals(definition: AslDefinition, timeScale: number): Record<string, number[]> {
  const overrides: Record<string, number[]> = {};
  forEachState(definition, (name, state) => {
    if (!Array.isArray(state.Retry)) return;
    overrides[name] = (state.Retry as Array<{ IntervalSeconds?: number }>).map((retrier) => ((retrier.IntervalSeconds ?? 1) * 1000) / timeScale);
  });
  return overrides;
}
