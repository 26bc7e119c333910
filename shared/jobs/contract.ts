/**
 * The workflow's vocabulary (docs/workflow-contract.md), in one place: its error names, its states,
 * and each Task state's input and output with their parsers.
 *
 * The error names: the job
 * state machine builds its Retry fields from these lists (infra/workflow.ts), a handler's failure
 * the workflow will retry is logged as a warning (shared/observability.ts), and the reconciler
 * re-runs a Finalize that failed with one a re-run cures (shared/jobs/reconcile-jobs.ts).
 *
 * Plain names only: shared/ never imports CDK. An error class's `name` is its Step Functions error.
 */
import type { MessageBatch } from '../anthropic/types';
import type { JobStatus, RowCounts } from '../store/items';

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
 * the list shows it made none (shared/jobs/submit-chunk.ts). Its give-up, CreateOutcomeUnknown, is final.
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

/** The arm refused to store a watch: the poller's health record is stale, so the chunk waits on the Wait loop (shared/jobs/await-batch.ts). */
export const POLLER_UNAVAILABLE_ERRORS = ['PollerUnavailable'] as const;

/**
 * A callback wait ended without a callback: no heartbeat in HeartbeatSeconds, or TimeoutSeconds
 * passed. AWS may report a missed heartbeat as States.Timeout too, so a Catch names both.
 */
export const CALLBACK_TIMEOUT_ERRORS = ['States.HeartbeatTimeout', 'States.Timeout'] as const;

// ---------------------------------------------------------------------------------------------
// The states, and what each Task state takes and gives (docs/workflow-contract.md). infra/workflow.ts
// names its states from STATE; each handler parses its input with the parser here and answers the
// output type here. Plain data only: no step's internals.
// ---------------------------------------------------------------------------------------------

function stateNames<const T extends readonly string[]>(...names: T): { readonly [K in T[number]]: K } {
  return Object.fromEntries(names.map((name) => [name, name])) as { readonly [K in T[number]]: K };
}

/** Every state of the job state machine and of its chunk lifecycle (the Distributed Map's item processor). */
export const STATE = stateNames(
  // The job
  'RegisterJob',
  'IsDuplicate',
  'DuplicateEvent',
  'PrepareJob',
  'InputLeft',
  'HasChunks',
  'ForEachChunk',
  'FinalizeJob',
  'WasRejected',
  'JobRejected',
  'JobDone',
  'MarkJobFailed',
  'JobFailed',
  // A chunk
  'SubmitChunk',
  'SubmitCanceled',
  'AwaitBatch',
  'WaitForBatch',
  'PollBatch',
  'BatchEnded',
  'CollectResults',
  'RetryNeeded',
  'RunStragglers',
  'StragglersLeft',
  'AwaitRetry',
  'WaitBeforeRetry',
  'RecordChunkFailure',
  'FinalizeChunk',
  'ChunkOutcome',
  'ChunkDone',
  'ChunkFailed',
  'ChunkLeftToFinalizeJob',
);
export type StateName = keyof typeof STATE;

/** The state's input is not what the workflow sends (a wiring mistake, never retried). */
export class InvalidStateInput extends Error {
  override readonly name = 'InvalidStateInput';
}

export interface JobRef {
  jobId: string;
}

export interface ChunkRef extends JobRef {
  chunk: number;
}

/** Which attempt of which chunk of which job. */
export interface AttemptKey extends ChunkRef {
  attempt: number;
}

/** An attempt and its batch, as the chunk states pass it on. */
export interface AttemptRef<B extends string | null = string> extends AttemptKey {
  batchId: B;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `{jobId}` from a state's input (extra fields are the workflow's, and ignored). */
export function parseJobRef(input: unknown): JobRef & Record<string, unknown> {
  if (!isRecord(input)) throw new InvalidStateInput('the state input must be an object');
  const { jobId } = input;
  if (typeof jobId !== 'string' || jobId === '') throw new InvalidStateInput('jobId must be a non-empty string');
  return { ...input, jobId };
}

/** `{jobId, chunk}` from a state's input (extra fields are the workflow's, and ignored). */
export function parseChunkRef(input: unknown): ChunkRef & Record<string, unknown> {
  const ref = parseJobRef(input);
  const { chunk } = ref;
  if (typeof chunk !== 'number' || !Number.isInteger(chunk) || chunk < 0) throw new InvalidStateInput('chunk must be a whole number ≥ 0');
  return { ...ref, chunk };
}

/** `{jobId, chunk, attempt, batchId}` from a state's input; `batchId` may be null only where `allowNullBatch`. */
export function parseAttemptRef(input: unknown, allowNullBatch: true): AttemptRef<string | null>;
export function parseAttemptRef(input: unknown, allowNullBatch?: false): AttemptRef;
export function parseAttemptRef(input: unknown, allowNullBatch = false): AttemptRef<string | null> {
  const ref = parseChunkRef(input);
  const { attempt, batchId } = ref;
  if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1) throw new InvalidStateInput('attempt must be a whole number ≥ 1');
  if (batchId === null && allowNullBatch) return { jobId: ref.jobId, chunk: ref.chunk, attempt, batchId: null };
  if (typeof batchId !== 'string' || batchId === '') throw new InvalidStateInput('batchId must be a non-empty string');
  return { jobId: ref.jobId, chunk: ref.chunk, attempt, batchId };
}

/** RegisterJob → `{jobId, duplicate}`. Its input, an S3 event in any of its shapes, is read by shared/jobs/events.ts parseRegisterEvent. */
export interface RegisterOutput extends JobRef {
  duplicate: boolean;
}

/**
 * `partial`: this invocation read its share of the input and left a checkpoint; the workflow invokes
 * PrepareJob again (InputLeft), which goes on from there. The others are the file's end.
 */
export type PrepareOutcome = 'ready' | 'rejected' | 'empty' | 'partial';
const PREPARE_OUTCOMES: readonly PrepareOutcome[] = ['ready', 'rejected', 'empty', 'partial'];

/** PrepareJob: `{jobId}` → this. */
export interface PrepareOutput extends JobRef {
  outcome: PrepareOutcome;
  /** The chunk indexes, 0 to n−1: the Map's ItemSelector pairs each with the jobId (none while `partial`). */
  chunks: number[];
  validRows: number;
  invalidRows: number;
}

/** SubmitChunk: ChunkRef → this. */
export interface SubmitOutput extends ChunkRef {
  attempt: number;
  batchId: string | null;
  /** True when the job was canceled before this attempt was submitted: Collect marks its rows canceled. */
  canceled: boolean;
  /** Seconds until the first poll. */
  waitSeconds: number;
}

/** AwaitBatch's arm: its Payload. */
export interface AwaitBatchInput extends AttemptRef {
  taskToken: string;
}

/** AwaitRetry's arm: its Payload. */
export interface AwaitRetryInput extends ChunkRef {
  wait: 'retry';
  /** The attempt whose rows go to the next one. */
  attempt: number;
  retryWaitSeconds: number;
  taskToken: string;
}

/** The Payload of either callback wait (one function arms both). */
export function parseArmInput(input: unknown): AwaitBatchInput | AwaitRetryInput {
  const taskToken = isRecord(input) ? input.taskToken : undefined;
  if (typeof taskToken !== 'string' || taskToken === '') throw new InvalidStateInput('taskToken must be a non-empty string');
  if (isRecord(input) && input.wait === 'retry') {
    const { jobId, chunk, attempt, retryWaitSeconds } = parseChunkRef(input);
    if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1) throw new InvalidStateInput('attempt must be a whole number ≥ 1');
    if (typeof retryWaitSeconds !== 'number' || !(retryWaitSeconds >= 0)) throw new InvalidStateInput('retryWaitSeconds must be a number ≥ 0');
    return { wait: 'retry', jobId, chunk, attempt, retryWaitSeconds, taskToken };
  }
  return { ...parseAttemptRef(input), taskToken };
}

/** The arm's reply (not the state's output: the callback's is). */
export interface ArmOutput {
  armed: true;
  arms: number;
}

/** The output a poller's wake carries: why, and the batch as the list saw it (no row data). */
export interface WakeOutput {
  /** ended; cancel: the job asked to stop; deadline: the job's deadline cancel is due (shared/jobs/deadline.ts). */
  reason: 'ended' | 'cancel' | 'deadline';
  batch?: Pick<MessageBatch, 'id' | 'processing_status' | 'request_counts' | 'created_at' | 'expires_at' | 'ended_at'>;
}

/** PollBatch's input: the attempt, and what woke AwaitBatch (the poller's SendTaskSuccess output at `$.wake`), when it did. */
export interface PollInput extends AttemptRef {
  wake?: WakeOutput;
}

export function parsePollInput(input: unknown): PollInput {
  const ref = parseAttemptRef(input);
  // A hint only: PollBatch reads the API when it is not an ended batch.
  const wake = isRecord(input) && isRecord(input.wake) ? (input.wake as unknown as WakeOutput) : undefined;
  return wake ? { ...ref, wake } : ref;
}

export interface PollOutput extends AttemptRef {
  ended: boolean;
  waitSeconds: number;
  /** Wait next in AwaitBatch (the poller is up, the attempt under its arms cap), else on the Wait loop. */
  watch: boolean;
}

/** CollectResults: the attempt (batchId null: the job was canceled before it was submitted) → this. */
export type CollectInput = AttemptRef<string | null>;

export interface CollectOutput extends ChunkRef {
  attempt: number;
  retry: boolean;
  retryWaitSeconds: number;
  /** The rows the deadline's cancel left unfinished are the next attempt's, sent synchronously by RunStragglers (never a batch retry). */
  stragglers: boolean;
}

/** RunStragglers: the synchronous attempt (Collect's attempt + 1, or RunStragglers' own output again) → this. */
export interface StragglersInput extends AttemptKey {}

/**
 * RunStragglers' input: its state, Collect's output (`stragglers: true`, naming the attempt it
 * collected: the synchronous attempt is the next) or its own (`done: false`, naming the synchronous attempt).
 */
export function parseStragglersInput(input: unknown): StragglersInput {
  const { jobId, chunk, attempt, stragglers, done } = parseChunkRef(input);
  if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1) throw new InvalidStateInput('attempt must be a whole number ≥ 1');
  if (stragglers === true) return { jobId, chunk, attempt: attempt + 1 };
  if (done === false) return { jobId, chunk, attempt };
  throw new InvalidStateInput("RunStragglers' state must be Collect's output with stragglers true, or its own with done false");
}

export interface StragglersOutput extends AttemptKey {
  /** Every row of the attempt is answered, or ended expired at the deadline: on to FinalizeChunk. */
  done: boolean;
  /** Rows still to send (0 when done). */
  remaining: number;
}

/** RecordChunkFailure: the Catch's input, with the error at `$.error`. */
export interface ChunkFailureInput extends ChunkRef {
  error: Required<CaughtError>;
}

export function parseChunkFailureInput(input: unknown): ChunkFailureInput {
  const ref = parseChunkRef(input);
  const error = ref.error as CaughtError | undefined;
  if (typeof error !== 'object' || error === null) throw new InvalidStateInput('error must be an object with Error and Cause');
  return {
    jobId: ref.jobId,
    chunk: ref.chunk,
    error: { Error: typeof error.Error === 'string' ? error.Error : 'Unknown', Cause: typeof error.Cause === 'string' ? error.Cause : '' },
  };
}

export interface ChunkFailureOutput extends ChunkRef {
  ok: false;
}

/** FinalizeChunk: ChunkRef (Collect's or RecordChunkFailure's output) → this. */
export interface FinalizeChunkOutput extends ChunkRef {
  rows: number;
  /** The chunk failed (the iteration ends in ChunkFailed rather than ChunkDone). */
  failed: boolean;
}

export interface FinalizeJobInput extends JobRef {
  /** Prepare's outcome, when the workflow passes it on. */
  outcome?: PrepareOutcome;
  /** The reconciler finalizes a job whose FinalizeJob failed (its status is `failed`); never from state input. */
  recovering?: boolean;
  /** The reconciler finalizes an ended job again after collecting these chunks late (ChunkItem.collectLater); never from state input. */
  collectedLate?: number[];
}

/** `{jobId, outcome?}` from FinalizeJob's input (Prepare's output, or the Map's input passed on). */
export function parseFinalizeJobInput(input: unknown): FinalizeJobInput {
  const { jobId, outcome } = parseJobRef(input);
  return PREPARE_OUTCOMES.includes(outcome as PrepareOutcome) ? { jobId, outcome: outcome as PrepareOutcome } : { jobId };
}

export interface FinalizeJobOutput extends JobRef {
  status: JobStatus;
  counts: RowCounts;
  /** A rejected job's reason, as the workflow's JobRejected state fails with it. */
  rejection?: { Error: string; Cause: string };
}

/** MarkJobFailed: the Catch's input (a job step's, so jobId may be missing when Register failed), with the error at `$.error`. */
export interface MarkJobFailedInput {
  jobId?: string;
  error?: CaughtError;
  [field: string]: unknown;
}

export function parseMarkJobFailedInput(input: unknown): MarkJobFailedInput {
  if (!isRecord(input)) throw new InvalidStateInput('the state input must be an object');
  const { jobId, error } = input;
  return {
    ...input,
    jobId: typeof jobId === 'string' && jobId !== '' ? jobId : undefined,
    error: isRecord(error)
      ? { Error: typeof error.Error === 'string' ? error.Error : undefined, Cause: typeof error.Cause === 'string' ? error.Cause : undefined }
      : undefined,
  };
}

/** The Task states, each with the input its handler parses and the output it answers. */
export interface TaskStates {
  RegisterJob: { input: unknown; output: RegisterOutput };
  PrepareJob: { input: JobRef; output: PrepareOutput };
  SubmitChunk: { input: ChunkRef; output: SubmitOutput };
  AwaitBatch: { input: AwaitBatchInput; output: WakeOutput };
  PollBatch: { input: PollInput; output: PollOutput };
  CollectResults: { input: CollectInput; output: CollectOutput };
  RunStragglers: { input: StragglersInput; output: StragglersOutput };
  AwaitRetry: { input: AwaitRetryInput; output: WakeOutput };
  RecordChunkFailure: { input: ChunkFailureInput; output: ChunkFailureOutput };
  FinalizeChunk: { input: ChunkRef; output: FinalizeChunkOutput };
  FinalizeJob: { input: FinalizeJobInput; output: FinalizeJobOutput };
  MarkJobFailed: { input: MarkJobFailedInput; output: { jobId: string | null } };
}
