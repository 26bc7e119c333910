/**
 * Task tokens for aws-local-stepfunctions, which has none: a callback Task
 * (`lambda:invoke.waitForTaskToken`) is run through the engine's per-state override. The override
 * mints a token per attempt, puts it where the definition asked for `$$.Task.Token` (the run's
 * context carries a placeholder, which the engine resolves into the Payload), invokes the handler,
 * then waits until SendTaskSuccess / SendTaskFailure settles the token, or its heartbeat or timeout
 * runs out, or its execution is stopped. SendTask* answer with AWS's error codes; a token settles
 * once. Timeouts are in simulated seconds, divided by the time scale.
 */
import { randomUUID } from 'node:crypto';
import { AwsShimError } from './aws-shim';
import type { CallbackSpec } from './asl';

/** What the run's context holds at Task.Token; the override replaces it by the attempt's token. */
export const TOKEN_PLACEHOLDER = 'batchline-local-task-token';
const TOKEN = /^local-[0-9a-f-]{36}$/;

interface OpenTask {
  state: string;
  resolve(output: unknown): void;
  reject(error: Error): void;
  /** Restarts the heartbeat timer. */
  beat(): void;
}

/**
 * A callback Task's timeout in seconds: its TimeoutSeconds, or its TimeoutSecondsPath read from the
 * Payload, which carries the same field under the same name (local/asl.ts checks that it does). As
 * in AWS, a path to anything but a positive whole number fails the task (States.Runtime).
 */
function timeoutOf(state: string, spec: CallbackSpec, payload: unknown): number | undefined {
  if (spec.TimeoutSecondsPath === undefined) return spec.TimeoutSeconds;
  const field = spec.TimeoutSecondsPath.slice(2);
  const seconds = (payload as Record<string, unknown> | null)?.[field];
  if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 1) {
    throw taskError(
      'States.Runtime',
      `${state}: TimeoutSecondsPath ${spec.TimeoutSecondsPath} is ${JSON.stringify(seconds)}, not a positive whole number of seconds`,
    );
  }
  return seconds;
}

/** An error the task fails with, named as Step Functions names it (Catch and Retry match the name). */
export function taskError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

export class LocalTaskTokens {
  private readonly open = new Map<string, OpenTask>();
  private readonly closed = new Set<string>();
  /** Every token issued, and how each ended (for tests and the bench). */
  readonly counts = { issued: 0, succeeded: 0, failed: 0, heartbeatTimeouts: 0, timeouts: 0, aborted: 0 };

  /**
   * `minHeartbeatMs`: a heartbeat timeout never shorter than this in real ms — the poller's ticks have
   * a floor in real time (runtime.ts), and at a high time scale 900 s would be shorter than its beat.
   */
  constructor(
    private readonly timeScale: number,
    private readonly options: { minHeartbeatMs?: number } = {},
  ) {}

  /**
   * Runs one attempt of a callback Task: `input` is its effective input (after Parameters),
   * `invoke` calls the handler with the Payload. Resolves with the SendTaskSuccess output.
   */
  async run(state: string, spec: CallbackSpec, input: unknown, invoke: (payload: unknown) => Promise<unknown>, signal: AbortSignal): Promise<unknown> {
    // Before the token and the invocation: a timeout that cannot be read fails the state as it enters.
    const timeoutSeconds = timeoutOf(state, spec, (input as { Payload?: unknown } | null)?.Payload ?? input);
    const token = `local-${randomUUID()}`;
    this.counts.issued += 1;
    const payload = replaceToken((input as { Payload?: unknown } | null)?.Payload ?? input, token);
    let settle!: OpenTask;
    const settled = new Promise<unknown>((resolve, reject) => {
      const timers: NodeJS.Timeout[] = [];
      let heartbeat: NodeJS.Timeout | undefined;
      const done = () => {
        for (const timer of timers) clearTimeout(timer);
        clearTimeout(heartbeat);
        signal.removeEventListener('abort', onAbort);
        this.open.delete(token);
        this.closed.add(token);
      };
      const fail = (error: Error) => {
        done();
        reject(error);
      };
      const onAbort = () => {
        this.counts.aborted += 1;
        fail(taskError('States.Aborted', 'the execution was stopped'));
      };
      const beat = () => {
        if (spec.HeartbeatSeconds === undefined) return;
        clearTimeout(heartbeat);
        heartbeat = setTimeout(
          () => {
            this.counts.heartbeatTimeouts += 1;
            fail(taskError('States.HeartbeatTimeout', `no heartbeat for ${spec.HeartbeatSeconds} s`));
          },
          Math.max((spec.HeartbeatSeconds * 1000) / this.timeScale, this.options.minHeartbeatMs ?? 0),
        );
      };
      if (timeoutSeconds !== undefined) {
        timers.push(
          setTimeout(
            () => {
              this.counts.timeouts += 1;
              fail(taskError('States.Timeout', `the task ran past its ${timeoutSeconds} s`));
            },
            (timeoutSeconds * 1000) / this.timeScale,
          ),
        );
      }
      signal.addEventListener('abort', onAbort, { once: true });
      beat();
      settle = {
        state,
        resolve: (output) => {
          done();
          resolve(output);
        },
        reject: fail,
        beat,
      };
      this.open.set(token, settle);
    });
    settled.catch(() => undefined);
    if (signal.aborted) settle.reject(taskError('States.Aborted', 'the execution was stopped'));
    try {
      // As in AWS, the function's reply is not the task's output; its failure fails the task.
      await invoke(payload);
    } catch (error) {
      if (this.open.has(token)) settle.reject(error as Error);
      throw error;
    }
    return settled;
  }

  /** SendTaskSuccess: `output` is the JSON text the caller sent. */
  success(token: string, output: string): void {
    const task = this.take(token);
    let parsed: unknown;
    try {
      parsed = JSON.parse(output);
    } catch {
      this.open.set(token, task);
      throw new AwsShimError('InvalidOutput', 'Invalid State Machine Execution Output: not JSON');
    }
    this.counts.succeeded += 1;
    task.resolve(parsed);
  }

  /** SendTaskFailure: the task fails with `error` (what Catch matches), `cause` its message. */
  failure(token: string, error = '', cause = ''): void {
    const task = this.take(token);
    this.counts.failed += 1;
    task.reject(taskError(error, cause));
  }

  /** SendTaskHeartbeat. */
  heartbeat(token: string): void {
    this.lookUp(token).beat();
  }

  /** Tokens not yet settled, by state. */
  openTokens(): Array<{ token: string; state: string }> {
    return [...this.open].map(([token, task]) => ({ token, state: task.state }));
  }

  private take(token: string): OpenTask {
    const task = this.lookUp(token);
    this.open.delete(token);
    return task;
  }

  private lookUp(token: string): OpenTask {
    if (typeof token !== 'string' || token.length === 0 || token.length > 2048) throw new AwsShimError('InvalidToken', 'Invalid Token');
    const task = this.open.get(token);
    if (task) return task;
    if (this.closed.has(token))
      throw new AwsShimError('TaskTimedOut', 'Task Timed Out: the task token has either expired or the task associated with the token has already been closed');
    if (!TOKEN.test(token)) throw new AwsShimError('InvalidToken', `Invalid Token: '${token.slice(0, 64)}'`);
    throw new AwsShimError('TaskDoesNotExist', 'Task Does Not Exist');
  }
}

function replaceToken(value: unknown, token: string): unknown {
  if (value === TOKEN_PLACEHOLDER) return token;
  if (Array.isArray(value)) return value.map((item) => replaceToken(item, token));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, replaceToken(item, token)]));
  }
  return value;
}
