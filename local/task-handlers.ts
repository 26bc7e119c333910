/**
 * The Task handlers of one execution, by state name: each Lambda task invokes its handler as
 * imported from source (and reports its result as a LocalEvent), each callback task runs through the
 * local task tokens, and each Wait state sleeps its time divided by the time scale.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CallbackSpec, TaskTarget, WaitSpec } from './asl';
import type { ExecutionDescription } from './aws-shim';
import { findFunction, invokeLocal, type Handler, type LocalFunction } from './lambda';
import { jobIdIn, retriedCause, type LocalEvent } from './stack-events';
import type { TaskHandlers } from './step-functions';
import type { LocalTaskTokens } from './task-tokens';
import { waitMs } from './waits';
import { STATE } from '../shared/jobs/contract';

export interface TaskHandlerContext {
  /** The Tasks of the definition as synthesized (the local wait tasks are not the stack's functions). */
  targets: TaskTarget[];
  functions: LocalFunction[];
  /** Imported handlers by function logical id. */
  handlers: Map<string, Handler>;
  callbacks: Map<string, CallbackSpec>;
  waits: Map<string, WaitSpec>;
  taskTokens: LocalTaskTokens;
  timeScale: number;
  /** The simulator's clock (epoch ms), or the real one. */
  clock: () => number;
  emit(event: LocalEvent): void;
  /** Told of every Lambda task's result. */
  observe(executionArn: string, state: string, input: unknown, output: unknown): void;
}

export function taskHandlersOf(context: TaskHandlerContext): (execution: ExecutionDescription, signal: AbortSignal) => TaskHandlers {
  const { targets, functions, handlers, callbacks, waits, taskTokens, timeScale, clock, emit, observe } = context;
  return (execution, signal) => {
    const taskHandlers: TaskHandlers = {};
    for (const target of targets) {
      const fn = findFunction(functions, target.functionRef)!;
      const handler = handlers.get(fn.logicalId)!;
      if (target.integration === 'callback') {
        taskHandlers[target.state] = async (input) => {
          const invoke = async (payload: unknown) => {
            try {
              return await invokeLocal(fn, handler, payload);
            } catch (error) {
              emit({ type: 'task-failed', state: target.state, error: (error as Error).name, jobId: jobIdIn(payload), cause: retriedCause(error) });
              throw error;
            }
          };
          const ref = ((input as { Payload?: unknown }).Payload ?? {}) as { jobId: string; chunk: number; attempt: number };
          const type = target.state === STATE.AwaitRetry ? 'backoff-ended' : 'batch-woken';
          try {
            const output = await taskTokens.run(target.state, callbacks.get(target.state) ?? {}, input, invoke, signal);
            emit({ type, jobId: ref.jobId, chunk: ref.chunk, attempt: ref.attempt, reason: (output as { reason?: string } | null)?.reason });
            return output;
          } catch (error) {
            emit({ type, jobId: ref.jobId, chunk: ref.chunk, attempt: ref.attempt, error: (error as Error).name });
            throw error;
          }
        };
        continue;
      }
      taskHandlers[target.state] = async (input) => {
        const payload = target.integration === 'invoke' ? (input as { Payload?: unknown }).Payload : input;
        let output: unknown;
        try {
          output = await invokeLocal(fn, handler, payload);
        } catch (error) {
          emit({ type: 'task-failed', state: target.state, error: (error as Error).name, jobId: jobIdIn(payload), cause: retriedCause(error) });
          throw error;
        }
        observe(execution.executionArn, target.state, payload, output);
        return target.integration === 'invoke' ? { Payload: output, StatusCode: 200, ExecutedVersion: '$LATEST' } : output;
      };
    }
    for (const [state, spec] of waits) {
      taskHandlers[state] = async (input) => {
        await sleep(waitMs(state, spec, input, timeScale, clock), undefined, { signal });
        return input;
      };
    }
    return taskHandlers;
  };
}
