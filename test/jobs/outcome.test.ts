import { describe, expect, it } from 'vitest';
import type { BatchResult } from '../../shared/anthropic/types';
import { BUILT_IN_PRICES } from '../../shared/cost/prices';
import { decideRow, errorMessageOf, retryWaitSeconds, rowCostUsd, rowFate, type AttemptFacts, type DecisionContext } from '../../shared/jobs/outcome';

const succeeded: BatchResult = {
  type: 'succeeded',
  message: {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude-haiku-4-5',
    content: [],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 1, output_tokens: 1 },
  },
};
const errored = (type: string): BatchResult => ({
  type: 'errored',
  error: { type: 'error', error: { type, message: `${type} happened` }, request_id: null },
});
const expired: BatchResult = { type: 'expired' };
const canceled: BatchResult = { type: 'canceled' };

const first: DecisionContext = { attempt: 1, maxAttempts: 3, cancelRequested: false };
const last: DecisionContext = { attempt: 3, maxAttempts: 3, cancelRequested: false };
const canceling: DecisionContext = { attempt: 1, maxAttempts: 3, cancelRequested: true };

describe('decideRow', () => {
  it.each([
    ['succeeded', succeeded, first, { status: 'succeeded', final: true }],
    ['succeeded on the last attempt', succeeded, last, { status: 'succeeded', final: true }],
    ['a transient error with attempts left is retried', errored('overloaded_error'), first, { status: 'errored', final: false, errorType: 'overloaded_error' }],
    ['api_error is transient', errored('api_error'), first, { status: 'errored', final: false, errorType: 'api_error' }],
    ['rate_limit_error is transient', errored('rate_limit_error'), first, { status: 'errored', final: false, errorType: 'rate_limit_error' }],
    ['timeout_error is transient', errored('timeout_error'), first, { status: 'errored', final: false, errorType: 'timeout_error' }],
    ['a transient error on the last attempt is final', errored('overloaded_error'), last, { status: 'errored', final: true, errorType: 'overloaded_error' }],
    ['a transient error after a cancel request is final', errored('api_error'), canceling, { status: 'errored', final: true, errorType: 'api_error' }],
    ['invalid_request_error is never retried', errored('invalid_request_error'), first, { status: 'errored', final: true, errorType: 'invalid_request_error' }],
    ['authentication_error is never retried', errored('authentication_error'), first, { status: 'errored', final: true, errorType: 'authentication_error' }],
    ['expired with attempts left is retried', expired, first, { status: 'expired', final: false }],
    ['expired on the last attempt is final', expired, last, { status: 'expired', final: true }],
    ['expired after a cancel request is final', expired, canceling, { status: 'expired', final: true }],
    ['canceled is final even with attempts left', canceled, first, { status: 'canceled', final: true }],
  ] as const)('%s', (_name, result, context, expected) => {
    expect(decideRow(result, context)).toEqual(expected);
  });

  it('treats an errored result without an error type as api_error (transient)', () => {
    const bare = { type: 'errored', error: { type: 'error', error: {}, request_id: null } } as unknown as BatchResult;
    expect(decideRow(bare, first)).toEqual({ status: 'errored', final: false, errorType: 'api_error' });
  });

  it('never retries a result type it does not know', () => {
    expect(decideRow({ type: 'paused' } as unknown as BatchResult, first)).toEqual({
      status: 'errored',
      final: true,
      errorType: 'unknown_result_paused',
    });
  });

  it('names a result type of any JSON value without calling into it, and keeps the name short', () => {
    const decide = (type: unknown) => decideRow({ type } as unknown as BatchResult, first).errorType;
    expect(decide({ toString: 1, valueOf: 2 })).toBe('unknown_result_{"toString":1,"valueOf":2}');
    expect([decide(undefined), decide(null), decide(7), decide(['a'])]).toEqual([
      'unknown_result_undefined',
      'unknown_result_null',
      'unknown_result_7',
      'unknown_result_["a"]',
    ]);
    expect(decide('x'.repeat(500))).toBe(`unknown_result_${'x'.repeat(100)}`);
  });

  it('reads the error message of an errored result', () => {
    expect(errorMessageOf(errored('api_error') as Extract<BatchResult, { type: 'errored' }>)).toBe('api_error happened');
  });
});

describe('rowFate: the one rule Collect and FinalizeChunk apply', () => {
  const facts = (over: Partial<AttemptFacts> = {}): AttemptFacts => ({
    attempt: 1,
    maxAttempts: 3,
    cancelRequested: false,
    submitted: true,
    collected: true,
    failedAs: 'chunk_failed',
    ...over,
  });
  const overloaded = errored('overloaded_error');

  it('a collected attempt: its line decides, retried rows included', () => {
    expect(rowFate({ kind: 'result', result: succeeded }, facts())).toEqual({ status: 'succeeded', final: true });
    expect(rowFate({ kind: 'result', result: overloaded }, facts())).toEqual({ status: 'errored', final: false, errorType: 'overloaded_error' });
  });

  it('an attempt never collected: a row that would be retried takes the chunk failure; a final line stands', () => {
    expect(rowFate({ kind: 'result', result: overloaded }, facts({ collected: false, failedAs: 'create_unknown' }))).toEqual({
      status: 'errored',
      final: true,
      errorType: 'create_unknown',
      chunkFailed: true,
    });
    expect(rowFate({ kind: 'result', result: succeeded }, facts({ collected: false }))).toEqual({ status: 'succeeded', final: true });
  });

  it('an unreadable line is final result_unreadable, collected or not', () => {
    for (const collected of [true, false]) {
      expect(rowFate({ kind: 'unreadable' }, facts({ collected }))).toEqual({ status: 'errored', final: true, errorType: 'result_unreadable' });
    }
  });

  it('no line: missing_result when submitted, canceled when never submitted, the chunk failure when never collected', () => {
    expect(rowFate({ kind: 'none' }, facts())).toEqual({ status: 'errored', final: true, errorType: 'missing_result' });
    expect(rowFate({ kind: 'none' }, facts({ submitted: false }))).toEqual({ status: 'canceled', final: true });
    expect(rowFate({ kind: 'none' }, facts({ collected: false }))).toEqual({ status: 'errored', final: true, errorType: 'chunk_failed', chunkFailed: true });
  });
});

describe('retryWaitSeconds', () => {
  it('doubles the backoff per attempt already made', () => {
    expect([1, 2, 3, 4].map((attempt) => retryWaitSeconds(attempt, 60))).toEqual([60, 120, 240, 480]);
    // At least 1 s: it is AwaitRetry's timeout, which must be a positive integer.
    expect(retryWaitSeconds(3, 0)).toBe(1);
  });
});

describe('rowCostUsd', () => {
  it('prices a row at batch rates, to 1e-10 USD', () => {
    // claude-haiku-4-5: $1 / $5 per million tokens standard, half in a batch.
    expect(rowCostUsd({ input_tokens: 1000, output_tokens: 200 }, 'claude-haiku-4-5', BUILT_IN_PRICES)).toBe(0.001);
    expect(rowCostUsd({ input_tokens: 3, output_tokens: 1 }, 'claude-haiku-4-5', BUILT_IN_PRICES)).toBe(0.000004);
  });

  it('gives no cost for a model without a price, instead of failing', () => {
    expect(rowCostUsd({ input_tokens: 10, output_tokens: 10 }, 'claude-nonesuch-9', BUILT_IN_PRICES)).toBeUndefined();
  });
});
