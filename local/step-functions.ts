/**
 * Step Functions for one state machine, in this process: aws-local-stepfunctions runs the ASL, this
 * keeps what the service keeps — executions by name (a repeated name is ExecutionAlreadyExists,
 * which the schedule sweep relies on), their status, output and error — and answers
 * StartExecution / DescribeExecution / ListExecutions for the AWS shim.
 */
import './polyfills';
import { randomUUID } from 'node:crypto';
import { ExecutionAbortedError, ExecutionError, ExecutionTimeoutError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import type { AslDefinition } from './asl';
import { AwsShimError, type ExecutionDescription } from './aws-shim';
import { LOCAL_REGION } from './emulators';
import { TOKEN_PLACEHOLDER } from './task-tokens';
import { LOCAL_ACCOUNT } from './template';

export type TaskHandlers = Record<string, (input: unknown) => Promise<unknown>>;

export interface LocalExecution extends ExecutionDescription {
  /** Settles when the execution ends (never rejects). */
  done: Promise<ExecutionDescription>;
}

export interface LocalStepFunctionsOptions {
  /** The definition to run, already made local (see asl.ts). */
  definition: AslDefinition;
  stateMachineArn: string;
  /** The Task handlers of one execution, keyed by state name; built per execution so they know it. */
  taskHandlers(execution: ExecutionDescription, signal: AbortSignal): TaskHandlers;
  /** Retry delays in ms per state and retrier (the engine's retryIntervalOverrides). */
  retryIntervals?: Record<string, number[]>;
}

/** Runs around a Task's handler: gets the input and the handler itself, and the execution it is in. */
export type TaskWrapper = (input: unknown, invoke: (input: unknown) => Promise<unknown>, execution: ExecutionDescription) => Promise<unknown>;

/** setTimeout's ceiling: a longer execution timeout would fire at once. */
const MAX_TIMEOUT_SECONDS = 2_000_000;

export class LocalStepFunctions {
  readonly stateMachineArn: string;
  private readonly machine: StateMachine;
  private readonly executions = new Map<string, LocalExecution>();
  private readonly aborts = new Map<string, () => void>();
  private readonly stopReasons = new Map<string, { error?: string; cause?: string }>();
  private readonly endListeners: Array<(execution: ExecutionDescription) => void> = [];

  constructor(private readonly options: LocalStepFunctionsOptions) {
    this.stateMachineArn = options.stateMachineArn;
    const definition = structuredClone(options.definition);
    if (typeof definition.TimeoutSeconds === 'number' && definition.TimeoutSeconds > MAX_TIMEOUT_SECONDS) {
      definition.TimeoutSeconds = MAX_TIMEOUT_SECONDS;
    }
    // Building validates the definition and costs 60–300 ms: once per stack, not per execution.
    this.machine = new StateMachine(definition as unknown as StateMachineDefinition);
  }

  /** The definition it runs (made local: asl.ts), e.g. for the CLI to tell when a retried state tries next. */
  get definition(): AslDefinition {
    return this.options.definition;
  }

  private get machineName(): string {
    return this.stateMachineArn.slice(this.stateMachineArn.lastIndexOf(':') + 1);
  }

  /**
   * Wraps one Task state's handler for every execution started from now on (fault tests put a
   * crash or a delay around a step). Returns the undo.
   */
  wrapTask(state: string, wrapper: TaskWrapper): () => void {
    const original = this.options.taskHandlers;
    this.options.taskHandlers = (execution, signal) => {
      const handlers = original(execution, signal);
      const invoke = handlers[state];
      if (!invoke) throw new Error(`no task handler for state ${state}`);
      return { ...handlers, [state]: (input: unknown) => wrapper(input, invoke, execution) };
    };
    return () => {
      this.options.taskHandlers = original;
    };
  }

  onExecutionEnded(listener: (execution: ExecutionDescription) => void): void {
    this.endListeners.push(listener);
  }

  /** StartExecution, with the service's rules for names: idempotent for the same running input, else ExecutionAlreadyExists. */
  start(request: { stateMachineArn?: string; name?: string; input?: string }): LocalExecution {
    if (request.stateMachineArn !== undefined && request.stateMachineArn !== this.stateMachineArn) {
      throw new AwsShimError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${request.stateMachineArn}'`);
    }
    const name = request.name ?? randomUUID();
    const inputText = request.input ?? '{}';
    let input: unknown;
    try {
      input = JSON.parse(inputText);
    } catch {
      throw new AwsShimError('InvalidExecutionInput', 'Invalid State Machine Execution Input: not JSON');
    }
    const executionArn = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:execution:${this.machineName}:${name}`;
    const existing = this.executions.get(executionArn);
    if (existing) {
      if (existing.status === 'RUNNING' && existing.input === inputText) return existing;
      throw new AwsShimError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }
    const startDate = new Date();
    const execution = { executionArn, stateMachineArn: this.stateMachineArn, name, status: 'RUNNING', startDate, input: inputText } as LocalExecution;
    const controller = new AbortController();
    const run = this.machine.run(input as never, {
      overrides: {
        taskResourceLocalHandlers: this.options.taskHandlers(execution, controller.signal) as never,
        retryIntervalOverrides: this.options.retryIntervals ?? {},
      },
      context: {
        Execution: {
          Id: executionArn,
          Name: name,
          StartTime: startDate.toISOString(),
          Input: input as never,
          RoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/local`,
        },
        StateMachine: { Id: this.stateMachineArn, Name: this.machineName },
        // The engine has no task tokens: `$$.Task.Token` resolves to this, and the callback
        // override (task-tokens.ts) swaps in each attempt's own token.
        Task: { Token: TOKEN_PLACEHOLDER },
      } as never,
    });
    this.aborts.set(executionArn, () => {
      controller.abort();
      run.abort();
    });
    // The engine's event log is a generator that buffers every event until read: drain it.
    void (async () => {
      for await (const _event of run.eventLogs);
    })();
    execution.done = run.result.then(
      (output) => this.end(execution, { status: 'SUCCEEDED', output: JSON.stringify(output) }),
      (error: unknown) => this.end(execution, { ...failure(error), ...this.stopReasons.get(executionArn) }),
    );
    this.executions.set(executionArn, execution);
    return execution;
  }

  /** StopExecution: aborts a running execution, which ends ABORTED with the given error and cause. */
  async stop(executionArn: string, reason: { error?: string; cause?: string } = {}): Promise<ExecutionDescription> {
    const execution = this.executions.get(executionArn);
    if (!execution) throw new AwsShimError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    if (execution.status === 'RUNNING') {
      this.stopReasons.set(executionArn, reason);
      this.aborts.get(executionArn)?.();
    }
    return execution.done;
  }

  private end(execution: LocalExecution, outcome: Partial<ExecutionDescription>): ExecutionDescription {
    Object.assign(execution, outcome, { stopDate: new Date() });
    this.aborts.delete(execution.executionArn);
    for (const listener of this.endListeners) listener(execution);
    return execution;
  }

  describe(executionArn: string): LocalExecution | undefined {
    return this.executions.get(executionArn);
  }

  list(stateMachineArn: string = this.stateMachineArn): LocalExecution[] {
    return stateMachineArn === this.stateMachineArn ? [...this.executions.values()] : [];
  }

  running(): LocalExecution[] {
    return [...this.executions.values()].filter((execution) => execution.status === 'RUNNING');
  }

  /** Aborts every running execution (StopExecution) and waits for them to settle. */
  async stopAll(): Promise<void> {
    const running = this.running();
    for (const execution of running) this.aborts.get(execution.executionArn)?.();
    await Promise.all(running.map((execution) => execution.done));
  }
}

function failure(error: unknown): Partial<ExecutionDescription> {
  if (error instanceof ExecutionAbortedError) return { status: 'ABORTED' };
  if (error instanceof ExecutionTimeoutError) return { status: 'TIMED_OUT', error: 'States.Timeout', cause: 'The execution timed out' };
  const cause = error instanceof ExecutionError ? (error.cause as Error | undefined) : (error as Error | undefined);
  return { status: 'FAILED', error: cause?.name ?? 'Error', cause: cause?.message ?? String(error) };
}
