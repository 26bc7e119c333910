/**
 * The one module that owns DynamoDB item shapes (single table, `pk` + `sk`, TTL attribute `ttl`).
 *
 * - Job:   pk `JOB#<jobId>`, sk `JOB`
 * - Chunk: pk `JOB#<jobId>`, sk `CHUNK#<00000>` (one per chunk, updated per attempt)
 * - Row page: pk `ROWS#<jobId>#<shard>`, sk `<chunk>#<attempt>#<writer><part>` — the records of
 *          one chunk attempt's rows whose custom_id hashes to `shard` (shared/jobs/row-records.ts).
 *          Packing rows costs about 0.1 write unit a row where an item each cost 1; the shard
 *          partitions spread the writes, and a row is found by one Query on its shard.
 * - Batch claim: pk `BATCH#<batchId>`, sk `BATCH` — which job/chunk/attempt owns a batch; written
 *          conditionally, so two chunks can never adopt the same batch.
 * - Create slot: pk `CREATE#<requests>`, sk `CREATE` — the one chunk attempt whose create of that
 *          many requests may be unanswered (shared/jobs/create-slot.ts).
 * - Watch: pk `WATCH`, sk `<expiresAt>#<batchId>` — a chunk attempt waiting in AwaitBatch: its task
 *          token, for the poller (shared/jobs/poller.ts). One partition, read whole by one Query,
 *          sorted by expiry so the oldest watched batch bounds the poller's list walk.
 * - Poller health: pk `POLLER`, sk `POLLER` — the poller's last tick (shared/jobs/poller.ts); the arm
 *          and PollBatch read it to choose between the poller and the adaptive Wait loop.
 * - Output history: pk `HISTORY`, sk `OUTPUT#<model>` — what past jobs' succeeded rows of a model
 *          used of their max_tokens (ADD at FinalizeJob, once per job), read by Prepare and
 *          `batchline estimate` for the expected cost (shared/jobs/output-history.ts).
 * - GSI `byStatus` (gsi1pk `JOBS`, gsi1sk `<createdAt>#<jobId>`) on job records: recent jobs.
 */

export const jobPk = (jobId: string) => `JOB#${jobId}`;
export const JOB_SK = 'JOB';
export const chunkSk = (chunk: number) => `CHUNK#${String(chunk).padStart(5, '0')}`;
export const CHUNK_SK_PREFIX = 'CHUNK#';
export const rowPagePk = (jobId: string, shard: number) => `ROWS#${jobId}#${String(shard).padStart(5, '0')}`;
/** `C`: written by Collect for the attempt it collected; `F`: by Finalize, for rows an uncollected attempt left. */
export type RowPageWriter = 'C' | 'F';
export const rowPageSk = (chunk: number, attempt: number, writer: RowPageWriter, part: number) =>
  `${String(chunk).padStart(5, '0')}#${String(attempt).padStart(3, '0')}#${writer}${String(part).padStart(3, '0')}`;
export const batchPk = (batchId: string) => `BATCH#${batchId}`;
export const BATCH_SK = 'BATCH';
export const createSlotPk = (requests: number) => `CREATE#${requests}`;
export const CREATE_SLOT_SK = 'CREATE';
export const WATCH_PK = 'WATCH';
/** Sorted by expiry; a re-arm of the same batch replaces its watch (the old token is spent). */
export const watchSk = (expiresAt: string, batchId: string) => `${expiresAt}#${batchId}`;
/** After every batch watch (an ISO time sorts before `r`); one per chunk, replaced by the next attempt's. */
export const retryWatchSk = (jobId: string, chunk: number) => `retry#${jobId}#${String(chunk).padStart(5, '0')}`;
export const POLLER_PK = 'POLLER';
export const POLLER_SK = 'POLLER';
export const HISTORY_PK = 'HISTORY';
export const OUTPUT_HISTORY_SK_PREFIX = 'OUTPUT#';
export const outputHistorySk = (model: string) => `${OUTPUT_HISTORY_SK_PREFIX}${model}`;
export const JOBS_GSI = 'byCreated';
export const JOBS_GSI_PK = 'JOBS';

/** The `ttl` attribute (epoch seconds) for an item written at `atMs` that should expire `days` later; 0 days: never. */
export function ttlAfter(atMs: number, days: number): number | undefined {
  return days > 0 ? Math.floor(atMs / 1000) + days * 86_400 : undefined;
}

export type JobStatus =
  | 'registered'
  | 'preparing'
  | 'running'
  | 'finalizing'
  | 'succeeded' // finished; rows may still have errored/expired/canceled
  | 'rejected' // strict validation failed; nothing submitted
  | 'canceled' // finished after a cancel request
  | 'failed'; // unhandled failure; see `failure`

export type RowStatus = 'pending' | 'succeeded' | 'errored' | 'expired' | 'canceled' | 'invalid';
export type TerminalRowStatus = Exclude<RowStatus, 'pending'>;

export interface RowCounts {
  succeeded: number;
  errored: number;
  expired: number;
  canceled: number;
  invalid: number;
}

export interface TokenTotals {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export interface JobItem {
  pk: string;
  sk: typeof JOB_SK;
  type: 'job';
  jobId: string;
  status: JobStatus;
  bucket: string;
  key: string;
  etag: string;
  versionId?: string;
  /** The S3 event sequencer or version, part of the job id. */
  sourceToken: string;
  validationMode: 'strict' | 'lenient';
  /** Prime the prompt cache before each batch (object metadata `batchline-prime-cache`, or the `primeCache` setting). */
  primeCache?: boolean;
  createdAt: string;
  updatedAt: string;
  /** Set by Prepare. */
  totalRows?: number;
  validRows?: number;
  invalidRows?: number;
  chunkCount?: number;
  /**
   * Set by a Prepare that reads the input across invocations, as each commits its checkpoint:
   * the invocations committed, and the lines and bytes of the input read so far.
   */
  preparedSegments?: number;
  /** The committed checkpoint's key (keys.prepareCheckpoint): the next invocation reads on from it. */
  preparedCheckpoint?: string;
  preparedLines?: number;
  preparedBytes?: number;
  /** Set by Prepare: how many shards the job's row records are spread over (shared/jobs/row-records.ts). */
  rowShards?: number;
  /** Progress, updated by Poll and Collect (ADD counters). */
  rowsSubmitted?: number;
  rowsFinal?: number;
  cancelRequested?: boolean;
  /** Chunk attempts that gave up on a create whose answer was lost (ADD): the reconciler looks for their batches. */
  lostCreates?: number;
  /** Batches those creates made after all, as the reconciler found them (shared/jobs/orphans.ts). */
  orphanBatches?: OrphanBatch[];
  /**
   * Since when a chunk of the job has results at the API that Collect could not finish reading
   * (ChunkItem.collectLater): the reconciler collects them and finalizes the job again.
   */
  collectLater?: string;
  endedAt?: string;
  failure?: { error: string; cause: string };
  /** When MarkJobFailed announced the failure (a re-run does not announce again); Finalize does not set it. */
  failureAnnouncedAt?: string;
  counts?: RowCounts;
  costUsd?: number;
  /**
   * Set by Register from `batchline-reuse` (and `batchline-reuse-only`): the finished job whose rows
   * this one takes over instead of sending them again (shared/jobs/reuse.ts).
   */
  reuse?: { fromJob: string; only?: string[] };
  /** Set by Prepare: valid rows taken over from `reuse.fromJob`, never sent by this job. */
  reusedRows?: number;
  /** The job's budget in USD (`batchline-max-cost`, else the stack's maxCostUsd); none: no budget. */
  maxCostUsd?: number;
  /**
   * The job's deadline (`batchline-deadline`), resolved at Register, and the stack's margin then: a
   * batch still running at `at − marginSeconds` (on the API's clock) is canceled and its unfinished
   * rows run synchronously (shared/jobs/deadline.ts).
   */
  deadline?: { at: string; marginSeconds: number };
  /** Set by Prepare when a budget is set: the cost estimate of the rows it sends, upper bound (output at max_tokens). */
  estimateUsd?: number;
  /**
   * Set by Prepare: per model, the rows it sends and their Σ max_tokens — what FinalizeJob adds to
   * the output history against the output the succeeded rows used.
   */
  sentOutput?: Record<string, { rows: number; maxTokens: number }>;
  /** Set by Prepare when a budget is set: the expected figure of the estimate (output from history). */
  expectedUsd?: number;
  /** When FinalizeJob added the job to the output history (at most once per job). */
  historyAddedAt?: string;
  /** What Collect has recorded as paid so far, at batch rates (ADD, once per collected attempt). */
  paidUsd?: number;
  /** Set by Prepare when it rejects the job for a reason other than validation (BudgetExceeded). */
  rejection?: { error: string; cause: string };
  executionArn?: string;
  gsi1pk: typeof JOBS_GSI_PK;
  gsi1sk: string;
  ttl?: number;
}

/** A batch no chunk attempt holds, made by a create whose answer was lost. */
export interface OrphanBatch {
  batchId: string;
  chunk: number;
  attempt: number;
  requests: number;
  createdAt: string;
  /**
   * collected: it ended, its results carry the attempt's nonce, and they are stored (user ids) in
   * `results/<jobId>/orphans/<batchId>.jsonl`; canceled: still running, of the attempt's size and
   * time, so stopped (its results are collected once it has ended).
   */
  outcome: 'collected' | 'canceled';
  resultsKey?: string;
  foundAt: string;
}

export type ChunkStatus = 'pending' | 'submitting' | 'in_progress' | 'collecting' | 'retry_wait' | 'done' | 'failed';

/** A synchronous attempt's progress: rows are claimed in slices, in requests-file order, before any is sent. */
export interface SyncProgress {
  /** Rows [0, claimed) of the attempt's requests file have been claimed: none of them is ever sent again. */
  claimed: number;
  /** Every claimed slice, by its start row (a slice ends where the next starts, the last at `claimed`). */
  slices?: number[];
  /** Claimed slices whose results were stored (`work/.../attempt-<n>/sync/<start>.jsonl`), by their start row. */
  stored: number[];
  /** RunStragglers invocations so far (bounded: MAX_INVOCATIONS in shared/jobs/stragglers.ts). */
  invocations: number;
  /** What the stored slices' answers cost at standard rates: the budget check counts it before the job's paidUsd does. */
  spentUsd?: number;
}

export interface ChunkAttempt {
  attempt: number;
  rows: number;
  bytes: number;
  /**
   * When Submit recorded its intent to create (ISO, local clock); bounds the search when adopting a
   * batch. '' until Submit first runs for the attempt.
   */
  intentAt: string;
  /**
   * The nonce of the create made under intentAt: the API sees the attempt's requests as
   * `<nonce>-<line>` (shared/jobs/wire-ids.ts). Absent on attempts submitted before wire ids.
   */
  nonce?: string;
  /** When the create under intentAt failed without an answer (ISO, local clock): no create of it can land later than this. */
  lostAt?: string;
  /** Looks for the batch of that create that found nothing (Submit gives up after a bounded number). */
  looks?: number;
  /** When Submit last sent a probe batch to show the list current past that create (shared/jobs/create-probe.ts). */
  probeAt?: string;
  batchId?: string;
  createdAt?: string;
  expiresAt?: string;
  endedAt?: string;
  counts?: { succeeded: number; errored: number; expired: number; canceled: number };
  /** Rows written to the next attempt's requests file. */
  retryRows?: number;
  polls?: number;
  /** The batch's state at the last poll (set by Poll). */
  processingStatus?: 'in_progress' | 'canceling' | 'ended';
  requestCounts?: { processing: number; succeeded: number; errored: number; canceled: number; expired: number };
  lastPolledAt?: string;
  /**
   * Since when the API has refused the key (401/403) on this attempt's polls, the batch running on
   * unseen; cleared by the first poll the key is taken again (shared/jobs/poll-batch.ts).
   */
  keyRefusedSince?: string;
  /**
   * When Poll, a chunk failure, MarkJobFailed, Reconcile or Submit had this batch stopped: the API
   * took the cancel, or found the batch ended, canceling or gone (shared/jobs/cancel.ts).
   */
  cancelSentAt?: string;
  /** Times AwaitBatch armed a watch for this attempt (shared/jobs/await-batch.ts); past a cap, the attempt stays on the Wait loop. */
  arms?: number;
  /** When Collect finished this attempt (ISO); set once, so a re-run never counts twice. */
  collectedAt?: string;
  /** Rows of the attempt the results file had no line for (recorded errored `missing_result`). */
  missingRows?: number;
  /** Results lines that could not be read nor told whose they were: the likely reason for missingRows. */
  unreadableLines?: number;
  /** Models of this attempt's results that have no price (their rows carry no costUsd). */
  unpricedModels?: string[];
  /**
   * Collect did not make the next attempt: sending its rows again (estimated at `estimateUsd`) would
   * have taken the job past its budget. Those rows end errored `budget_exceeded` (outcome.ts rowFate).
   */
  budgetStopped?: { rows: number; estimateUsd: number; paidUsd: number; budgetUsd: number };
  /** When Poll canceled this attempt's batch because the job's deadline was near (shared/jobs/deadline.ts). */
  deadlineCanceledAt?: string;
  /** Collect sent this attempt's unfinished rows to a synchronous attempt (the next), not to a batch retry. */
  straggled?: true;
  /** A synchronous attempt (shared/jobs/stragglers.ts): no batch; its rows are Messages calls, claimed slice by slice. */
  sync?: SyncProgress;
  /** The prompt-cache priming done before this attempt's create, once (shared/jobs/prime-cache.ts). */
  priming?: AttemptPriming;
}

export type CacheTtl = '5m' | '1h';

/** A `cache_control` prefix primed for an attempt: its model, TTL, input tokens, and how many of the attempt's rows use it. */
export interface PrimedPrefix {
  model: string;
  ttl: CacheTtl;
  tokens: number;
  rows: number;
}

/**
 * An attempt's priming: recorded with its prefixes before the first call; `endedAt`, the calls and
 * their usage (billable tokens by model) once they are done. Without `endedAt`, the Submit that
 * primed stopped part-way: the calls' usage is unknown.
 */
export interface AttemptPriming {
  startedAt: string;
  prefixes: PrimedPrefix[];
  endedAt?: string;
  calls?: number;
  failed?: number;
  usage?: Record<string, { input: number; output: number; cacheWrite5m: number; cacheWrite1h: number; cacheRead: number }>;
}

export interface ChunkItem {
  pk: string;
  sk: string;
  type: 'chunk';
  jobId: string;
  chunk: number;
  status: ChunkStatus;
  /** Rows of the first attempt (the chunk's share of the input). */
  rows: number;
  bytes: number;
  /** 1-based line numbers of the chunk's first and last rows in the input. */
  firstLine: number;
  lastLine: number;
  currentAttempt: number;
  attempts: ChunkAttempt[];
  failure?: { error: string; cause: string };
  /**
   * When the chunk failed in Collect for a reason a later run cures (killed, the API or storage
   * unavailable, the key refused) while its ended batch's results wait at the API: its rows are
   * `collect_pending` until the reconciler collects them (shared/jobs/record-chunk-failure.ts).
   */
  collectLater?: string;
  updatedAt: string;
  ttl?: number;
}

/** What is recorded of one row (a custom_id) for one attempt. */
export interface RowRecord {
  jobId: string;
  customId: string;
  chunk: number;
  /** 0-based position of the row among the chunk's rows (input order). */
  index: number;
  status: RowStatus;
  /**
   * True when the status is the row's last word; false when the row goes into the next attempt
   * (its status is then the attempt's transient outcome, e.g. errored overloaded_error).
   */
  final: boolean;
  attempt: number;
  batchId?: string;
  errorType?: string;
  usage?: TokenTotals;
  costUsd?: number;
  /** Where this row's result line for the attempt is: S3 key, byte offset and length. */
  result?: { key: string; offset: number; length: number };
  updatedAt: string;
}

/**
 * Row records packed into one item. `records` is JSON: an array of RowRecordTuple, encoded and
 * decoded only by shared/jobs/row-records.ts.
 */
export interface RowPageItem {
  pk: string;
  sk: string;
  type: 'rows';
  jobId: string;
  shard: number;
  chunk: number;
  attempt: number;
  writer: RowPageWriter;
  part: number;
  batchId?: string;
  rows: number;
  records: string;
  updatedAt: string;
  ttl?: number;
}

export interface BatchClaimItem {
  pk: string;
  sk: typeof BATCH_SK;
  type: 'batch';
  batchId: string;
  jobId: string;
  chunk: number;
  attempt: number;
  claimedAt: string;
  /** When the claiming attempt's create was sent (its intentAt, local clock): proves a list current past a lost create. */
  intentAt?: string;
  ttl?: number;
}

/**
 * The create slot of a request count: the one chunk attempt of this stack whose create of that many
 * requests may be unanswered. Held from the intent until the batch is recorded (or the create is
 * proven to have made none, or given up), so a batch found by request count while adopting can only
 * be the holder's: equal-size chunks never claim each other's batch.
 */
export interface CreateSlotItem {
  pk: string;
  sk: typeof CREATE_SLOT_SK;
  type: 'create-slot';
  requests: number;
  /** The holder; absent while the slot is free. */
  jobId?: string;
  chunk?: number;
  attempt?: number;
  /** Epoch ms (local clock) after which a holder that never came back loses the slot. */
  heldUntil: number;
  /**
   * When a holder last gave up on a create it could not find (ISO, local clock): a batch of this
   * size made before then may be that create's, and is never adopted by a later holder.
   */
  abandonedAt?: string;
  ttl?: number;
}

/** A chunk attempt waiting for its batch in AwaitBatch (shared/jobs/await-batch.ts writes it, the poller reads it). */
export interface WatchItem {
  pk: typeof WATCH_PK;
  sk: string;
  type: 'watch';
  jobId: string;
  chunk: number;
  attempt: number;
  batchId: string;
  /** The Step Functions task token: settled once, by the poller's SendTaskSuccess (or by a timeout). */
  taskToken: string;
  /** The batch's created_at and expires_at (API clock, RFC 3339). */
  createdAt: string;
  expiresAt: string;
  /** When the watch was armed (ISO, local clock): the poller heartbeats on this phase. */
  armedAt: string;
  /** The attempt's cancelSentAt when armed: a job cancel is forwarded (woken for) only while this is absent. */
  cancelSentAt?: string;
  ttl: number;
}

/**
 * A chunk waiting out its retry backoff in AwaitRetry (shared/jobs/await-batch.ts writes it): the task
 * ends by its own timeout when the backoff is over, and the poller wakes it early only to forward a
 * job's cancel, so a cancel never waits for the backoff.
 */
export interface RetryWatchItem {
  pk: typeof WATCH_PK;
  sk: string;
  type: 'watch';
  wait: 'retry';
  jobId: string;
  chunk: number;
  /** The attempt whose rows are to be retried (the next one is attempt + 1). */
  attempt: number;
  taskToken: string;
  armedAt: string;
  /** When the backoff ends (ISO, local clock): past it the task has ended by its timeout, and the poller drops the watch. */
  dueAt: string;
  ttl: number;
}

/** The poller's health record: its last tick and what it did (shared/jobs/poller.ts). */
export interface PollerHealthItem {
  pk: typeof POLLER_PK;
  sk: typeof POLLER_SK;
  type: 'poller';
  /** When the last tick ended (ISO, local clock). */
  lastTickAt: string;
  watches: number;
  listCalls: number;
  retrieves: number;
  woken: number;
  heartbeats: number;
  /** Watches dropped because their token was closed (TaskTimedOut, InvalidToken, TaskDoesNotExist). */
  dropped: number;
  errors: number;
}

/** What past jobs' succeeded rows of one model used of their max_tokens (ADD counters). */
export interface OutputHistoryItem {
  pk: typeof HISTORY_PK;
  sk: string;
  type: 'output-history';
  model: string;
  rows: number;
  outputTokens: number;
  maxTokens: number;
  jobs: number;
  updatedAt: string;
}
