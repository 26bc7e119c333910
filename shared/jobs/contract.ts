/**
 * The error names of the workflow contract (docs/workflow-contract.md), in one place: the job
 * state machine builds its Retry fields from these lists (infra/workflow.ts), a handler's failure
 * the workflow will retry is logged as a warning (shared/observability.ts), and the reconciler
 * re-runs a Finalize that failed with one a re-run cures (shared/jobs/reconcile.ts).
 *
 * Plain names only: shared/ never imports CDK. An error class's `name` is its Step Functions error.
 */

/**
 * What every Catch of the workflow puts at ResultPath `$.error`: the Step Functions error name and
 * its cause (both may be missing from an input that did not come through a Catch).
 */
export interface CaughtError {
  Error?: string;
  Cause?: string;
}

/**
 * Transient Lambda service errors: AWS recommends retrying all but the last ("Handle Lambda service
 * exceptions"); CDK's own default retry leaves out ClientExecutionTimeout and TooManyRequests.
 */
export const LAMBDA_TRANSIENT_ERRORS = [
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
] as const;

/**
 * The function was killed: it timed out, ran out of memory or its runtime crashed. Lambda reports
 * these as its `errorType` (Sandbox.Timedout, Runtime.OutOfMemory, Runtime.ExitError, ...), and
 * Step Functions reports an unhandled function error it cannot name, out-of-memory errors and
 * timeouts included, as Lambda.Unknown. Every task is safe to re-run, so all are retried.
 */
export const LAMBDA_CRASH_ERRORS = ['Sandbox.Timedout', 'Runtime.ExitError', 'Runtime.OutOfMemory', 'Runtime.Unknown', 'Lambda.Unknown'] as const;

/** DynamoDB or S3 throttling that outlasted the SDK's own retries (UnprocessedWrites is ours: BatchWriteItem leftovers). */
export const STORAGE_THROTTLED_ERRORS = [
  'UnprocessedWrites',
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'SlowDown',
] as const;

/** The Batches API stayed unavailable (429, 5xx, network) through the client's own retries. */
export const API_RETRYABLE_ERRORS = ['ApiRetryable'] as const;

/**
 * Submit could not tell whether its create made a batch; a re-run adopts it, or creates again once
 * the list shows it made none (shared/jobs/submit.ts). Its give-up, CreateOutcomeUnknown, is final.
 */
export const OUTCOME_UNKNOWN_ERRORS = ['OutcomeUnknown'] as const;

/** Another chunk attempt of the same size has a create not yet answered (shared/jobs/create-slot.ts). */
export const CREATE_SLOT_BUSY_ERRORS = ['CreateSlotBusy'] as const;

/** A create was refused with 429: the workspace's batch queue is full until earlier batches end. */
export const QUEUE_FULL_ERRORS = ['BatchQueueFull'] as const;

/** The API refused the key while Collect read results (which it keeps 29 days): waited for, not a failed chunk. */
export const KEY_REFUSED_ERRORS = ['ApiKeyRefused'] as const;

/** A create was refused before any batch was made (529 overloaded, or its body never sent): an API outage. */
export const CREATE_REFUSED_ERRORS = ['CreateRefused'] as const;

/**
 * Errors a handler throws that a Retry of the workflow takes: its failure is not yet the chunk's
 * or the job's, so it is logged as a warning. (Lambda's own errors never reach a handler's log.)
 */
export const RETRIED_HANDLER_ERRORS: ReadonlySet<string> = new Set<string>([
  ...API_RETRYABLE_ERRORS,
  ...OUTCOME_UNKNOWN_ERRORS,
  ...CREATE_SLOT_BUSY_ERRORS,
  ...CREATE_REFUSED_ERRORS,
  ...KEY_REFUSED_ERRORS,
  ...QUEUE_FULL_ERRORS,
  ...STORAGE_THROTTLED_ERRORS,
]);

/**
 * Terminal errors no Catch takes (`States.ALL` does not match them): the execution fails, and only
 * the ExecutionEnded rule and the reconciler see it. States.DataLimitExceeded: a state's input or
 * output over the payload quota; States.Runtime: e.g. a path that matches nothing.
 */
export const UNCATCHABLE_ERRORS = ['States.DataLimitExceeded', 'States.Runtime'] as const;

/** The arm refused to store a watch: the poller's health record is stale, so the chunk waits on the Wait loop (shared/jobs/await.ts). */
export const POLLER_UNAVAILABLE_ERRORS = ['PollerUnavailable'] as const;

/**
 * A callback wait ended without a callback: no heartbeat in HeartbeatSeconds, or TimeoutSeconds
 * passed. AWS may report a missed heartbeat as States.Timeout too, so a Catch names both.
 */
export const CALLBACK_TIMEOUT_ERRORS = ['States.HeartbeatTimeout', 'States.Timeout'] as const;
