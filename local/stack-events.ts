/**
 * What the local stack tells its listeners (the CLI's progress, serve's lines, the tests): events
 * read off the workflow's Task results, as the console's execution history would show them.
 */
import type { PublishedMessage, PutEvent } from './aws-shim';
import { RETRIED_HANDLER_ERRORS, STATE } from '../shared/jobs/contract';

export type LocalEvent =
  | { type: 'execution-started'; executionArn: string; key?: string }
  | { type: 'job-registered'; jobId: string; duplicate: boolean; executionArn: string }
  | { type: 'job-prepared'; jobId: string; outcome: string; chunks: number; validRows: number; invalidRows: number }
  | { type: 'batch-submitted'; jobId: string; chunk: number; attempt: number; batchId: string | null; canceled: boolean }
  | { type: 'batch-polled'; jobId: string; chunk: number; attempt: number; ended: boolean; watch?: boolean }
  /** A callback wait (AwaitBatch) ended: woken by the poller (`reason` its wake's), or timed out / refused (`error`). */
  | { type: 'batch-woken'; jobId: string; chunk: number; attempt: number; reason?: string; error?: string }
  /** A retry backoff (AwaitRetry) ended: by its timeout (`error` States.Timeout, the normal way), or woken by the poller to forward a cancel (`reason`). */
  | { type: 'backoff-ended'; jobId: string; chunk: number; attempt: number; reason?: string; error?: string }
  /** One run of the poller's schedule (`report` its reply, or `error`). */
  | { type: 'poller-ticked'; report?: unknown; error?: string; ms: number }
  | { type: 'chunk-collected'; jobId: string; chunk: number; attempt: number; retry: boolean; stragglers?: boolean }
  | { type: 'stragglers-ran'; jobId: string; chunk: number; attempt: number; done: boolean; remaining: number }
  | { type: 'chunk-failed'; jobId: string; chunk: number; error: string }
  | { type: 'job-finalized'; jobId: string; status: string }
  | { type: 'job-failed'; jobId?: string; error: string }
  /** One failed run of a Task (it may still be retried or caught). */
  | {
      type: 'task-failed';
      state: string;
      error: string;
      jobId?: string;
      /** The error's message, first line and at most 200 characters (for the errors a Retry takes: codes, not request text). */
      cause?: string;
    }
  | { type: 'execution-ended'; executionArn: string; status: string; error?: string; cause?: string; jobId?: string }
  /** An event rule's function target failed on an event. */
  | { type: 'delivery-failed'; rule: string; target: string; error: string }
  | { type: 'notification'; message: PublishedMessage }
  | { type: 'event-published'; event: PutEvent };

export function jobIdIn(value: unknown): string | undefined {
  const jobId = (value as { jobId?: unknown } | null)?.jobId;
  return typeof jobId === 'string' ? jobId : undefined;
}

/**
 * The message of an error the workflow retries (contract.ts RETRIED_HANDLER_ERRORS: status codes,
 * network codes, throttling), first line and at most 200 characters; undefined for any other,
 * whose message might quote a request.
 */
export function retriedCause(error: unknown): string | undefined {
  if (!(error instanceof Error) || !RETRIED_HANDLER_ERRORS.has(error.name)) return undefined;
  const line = error.message.split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

/** The event a Task's result stands for, by state name (undefined for states nobody follows). */
export function taskEvent(executionArn: string, state: string, input: unknown, output: unknown): LocalEvent | undefined {
  const out = (output ?? {}) as Record<string, unknown>;
  const jobId = String(out.jobId ?? jobIdIn(input) ?? '');
  switch (state) {
    case STATE.RegisterJob:
      return { type: 'job-registered', jobId, duplicate: out.duplicate === true, executionArn };
    case STATE.PrepareJob:
      // A file read across invocations: only the last one (the file's end) has prepared the job.
      if (out.outcome === 'partial') return undefined;
      return {
        type: 'job-prepared',
        jobId,
        outcome: String(out.outcome),
        chunks: Array.isArray(out.chunks) ? out.chunks.length : 0,
        validRows: Number(out.validRows ?? 0),
        invalidRows: Number(out.invalidRows ?? 0),
      };
    case STATE.SubmitChunk:
      return {
        type: 'batch-submitted',
        jobId,
        chunk: Number(out.chunk),
        attempt: Number(out.attempt),
        batchId: typeof out.batchId === 'string' ? out.batchId : null,
        canceled: out.canceled === true,
      };
    case STATE.PollBatch:
      return { type: 'batch-polled', jobId, chunk: Number(out.chunk), attempt: Number(out.attempt), ended: out.ended === true, watch: out.watch === true };
    case STATE.CollectResults:
      return {
        type: 'chunk-collected',
        jobId,
        chunk: Number(out.chunk),
        attempt: Number(out.attempt),
        retry: out.retry === true,
        ...(out.stragglers === true ? { stragglers: true } : {}),
      };
    case STATE.RunStragglers:
      return {
        type: 'stragglers-ran',
        jobId,
        chunk: Number(out.chunk),
        attempt: Number(out.attempt),
        done: out.done === true,
        remaining: Number(out.remaining ?? 0),
      };
    case STATE.RecordChunkFailure: {
      const error = (input as { error?: { Error?: string } } | null)?.error?.Error ?? 'unknown';
      return { type: 'chunk-failed', jobId, chunk: Number(out.chunk ?? (input as { chunk?: number }).chunk), error };
    }
    case STATE.FinalizeJob:
      return { type: 'job-finalized', jobId, status: String(out.status) };
    case STATE.MarkJobFailed: {
      const error = (input as { error?: { Error?: string } } | null)?.error?.Error ?? 'unknown';
      return { type: 'job-failed', jobId: jobId || undefined, error };
    }
    default:
      return undefined;
  }
}
