/**
 * What one row's result means for the pipeline: its status, whether that status is final, or
 * whether the row goes into the next attempt. Pure, so Collect and Finalize apply the same rules.
 */
import { TRANSIENT_ERROR_TYPES, type BatchResult, type Usage } from '../anthropic/types';
import { priceUsage, roundUsd } from '../cost/cost';
import { UnknownModel, type PriceTable } from '../cost/prices';
import type { TerminalRowStatus } from '../store/items';

/** A row the batch returned no result line for. */
export const MISSING_RESULT = 'missing_result';
/**
 * A row whose result line the API sent but that could not be read (cut, not a result, too long).
 * Final: the request was processed, and likely billed; another attempt would pay for it again.
 */
export const RESULT_UNREADABLE = 'result_unreadable';
/** A row whose chunk failed before the row had a final result. */
export const CHUNK_FAILED = 'chunk_failed';
/**
 * A row whose chunk's Collect could not finish, its batch's result waiting at the API: the
 * reconciler collects it and rewrites the outputs (shared/jobs/record-chunk-failure.ts). Not yet final.
 */
export const COLLECT_PENDING = 'collect_pending';
/**
 * A row whose batch create went unanswered and whose batch could not be found: not created again,
 * so as never to pay twice (shared/jobs/submit-chunk.ts).
 */
export const CREATE_UNKNOWN = 'create_unknown';
/**
 * A row Collect would have sent again, but the retry (its estimate) would have taken the job's paid
 * cost past its budget (ChunkAttempt.budgetStopped): final, nothing more is paid for it.
 */
export const BUDGET_EXCEEDED = 'budget_exceeded';

export type ResultStatus = Exclude<TerminalRowStatus, 'invalid'>;

export interface RowDecision {
  status: ResultStatus;
  /** False: the row is retried in the next attempt. */
  final: boolean;
  /** errored only: the API's `error.type`, or MISSING_RESULT / CHUNK_FAILED. */
  errorType?: string;
  /** The attempt's chunk failed before the row was decided: the failure is its fate (rowFate). */
  chunkFailed?: true;
}

export interface DecisionContext {
  /** The attempt the result belongs to (1-based). */
  attempt: number;
  /** Attempts per row in all, the first included. */
  maxAttempts: number;
  /** The job was asked to stop: nothing is retried any more. */
  cancelRequested: boolean;
}

/** Whether a row may still get another attempt. */
export function attemptsRemain(context: DecisionContext): boolean {
  return !context.cancelRequested && context.attempt < context.maxAttempts;
}

/**
 * succeeded → final. errored with a transient type (TRANSIENT_ERROR_TYPES) → retried while attempts
 * remain, else final. expired → retried while attempts remain, else final. canceled → final: a
 * cancel is the user's choice, never undone by a retry.
 */
export function decideRow(result: BatchResult, context: DecisionContext): RowDecision {
  switch (result.type) {
    case 'succeeded':
      return { status: 'succeeded', final: true };
    case 'errored': {
      const errorType = errorTypeOf(result);
      const transient = TRANSIENT_ERROR_TYPES.has(errorType);
      return { status: 'errored', final: !(transient && attemptsRemain(context)), errorType };
    }
    case 'expired':
      return { status: 'expired', final: !attemptsRemain(context) };
    case 'canceled':
      return { status: 'canceled', final: true };
    default:
      // An unknown result type (the API grew one): never retried blindly, reported as such.
      return { status: 'errored', final: true, errorType: unknownResultType((result as { type?: unknown }).type) };
  }
}

/**
 * The error type of a result whose type batchline does not know: `unknown_result_<type>`, any JSON
 * value named without calling into it (an object may carry its own `toString`), and kept short.
 */
export function unknownResultType(type: unknown): string {
  const name = typeof type === 'string' ? type : (JSON.stringify(type) ?? 'undefined');
  return `unknown_result_${name.slice(0, 100)}`;
}

/** The `error.type` of an errored result (`result.error.error.type`), tolerating a malformed envelope. */
export function errorTypeOf(result: Extract<BatchResult, { type: 'errored' }>): string {
  const type = result.error?.error?.type;
  return typeof type === 'string' && type !== '' ? type : 'api_error';
}

/** The `error.message` of an errored result, if it has one. */
export function errorMessageOf(result: Extract<BatchResult, { type: 'errored' }>): string | undefined {
  const message = result.error?.error?.message;
  return typeof message === 'string' ? message : undefined;
}

/** What is known of a row in an attempt: its result line, a line that could not be read, or none. */
export type RowEvidence = { kind: 'result'; result: BatchResult } | { kind: 'unreadable' } | { kind: 'none' };

export interface AttemptFacts extends DecisionContext {
  /** The attempt's batch was made (false: the job was canceled before it was submitted). */
  submitted: boolean;
  /** Collect recorded the attempt: its lines are its rows' last word. */
  collected: boolean;
  /** The errorType of a row the attempt's chunk failure leaves undecided (CHUNK_FAILED, CREATE_UNKNOWN). */
  failedAs: string;
  /** Collect made no next attempt, for the budget: a row that would be retried ends BUDGET_EXCEEDED. */
  budgetStopped?: boolean;
  /**
   * The attempt's batch was canceled for the job's deadline (shared/jobs/deadline.ts): its canceled,
   * expired and transiently errored rows go to the synchronous attempt, whatever attempts remain.
   */
  deadlineFallback?: boolean;
}

/**
 * A row's fate in an attempt: the one rule Collect applies as it reads an attempt's results, and
 * FinalizeChunk applies to each row's latest attempt afterwards.
 *
 * - A result line: `decideRow` (final, or retried while attempts remain). In an attempt that was
 *   never collected (its chunk failed first) a row to be retried cannot be: the chunk's failure
 *   (`failedAs`) is its fate.
 *   A row to be retried in an attempt whose retry the budget stopped ends errored BUDGET_EXCEEDED.
 * - A line that could not be read: errored result_unreadable, final — the request was processed,
 *   and likely billed; another attempt would pay for it again.
 * - No line, attempt collected: canceled if it was never submitted, else errored missing_result.
 * - No line, attempt never collected: the chunk's failure.
 */
export function rowFate(evidence: RowEvidence, facts: AttemptFacts): RowDecision {
  const failed: RowDecision = { status: 'errored', final: true, errorType: facts.failedAs, chunkFailed: true };
  switch (evidence.kind) {
    case 'result': {
      const decision = decideRow(evidence.result, facts);
      if (facts.deadlineFallback && facts.collected && toStraggle(evidence.result, decision)) return { ...decision, final: false };
      if (!decision.final && facts.collected && facts.budgetStopped) return { status: 'errored', final: true, errorType: BUDGET_EXCEEDED };
      return facts.collected || decision.final ? decision : failed;
    }
    case 'unreadable':
      return { status: 'errored', final: true, errorType: RESULT_UNREADABLE };
    case 'none':
      if (!facts.collected) return failed;
      return facts.submitted ? { status: 'errored', final: true, errorType: MISSING_RESULT } : { status: 'canceled', final: true };
  }
}

/** A row a deadline's synchronous attempt takes: one the batch did not finish, or finished with an error worth another try. */
function toStraggle(result: BatchResult, decision: RowDecision): boolean {
  if (result.type === 'canceled' || result.type === 'expired') return true;
  return decision.status === 'errored' && decision.errorType !== undefined && TRANSIENT_ERROR_TYPES.has(decision.errorType);
}

/**
 * Backoff before retry attempt `attempt + 1`: doubled per attempt already made, and at least 1 s,
 * since it is AwaitRetry's timeout (TimeoutSecondsPath), which must be a positive integer.
 */
export function retryWaitSeconds(attempt: number, retryBackoffSeconds: number): number {
  return Math.max(1, retryBackoffSeconds * 2 ** Math.max(0, attempt - 1));
}

/** A row's cost is kept to 1e-10 USD: a cheap model's short reply costs well under a micro-dollar. */
const ROW_COST_DECIMALS = 10;

/** What one succeeded row costs, at batch rates (or standard ones, for a synchronous call: `batch` false); undefined when its model has no price. */
export function rowCostUsd(usage: Usage, model: string, prices: PriceTable, batch = true): number | undefined {
  try {
    return roundUsd(priceUsage(usage, model, { prices, batch }).totalUsd, ROW_COST_DECIMALS);
  } catch (error) {
    if (error instanceof UnknownModel) return undefined;
    throw error;
  }
}
