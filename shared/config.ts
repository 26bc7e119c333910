/**
 * The one config reader. Every setting a handler uses is named here, with its environment
 * variable, its default and its check; a missing or malformed value fails fast naming the variable.
 * infra/ sets these variables on each function; the local runtime sets the same ones.
 */

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

export function requireString(env: Env, name: string): string {
  const value = raw(env, name);
  if (value === undefined) throw new ConfigError(`${name} is not set`);
  return value;
}

export function optionalString(env: Env, name: string): string | undefined {
  return raw(env, name);
}

export function intSetting(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

export function numberSetting(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be a number from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

export function booleanSetting(env: Env, name: string, fallback: boolean): boolean {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (value !== 'true' && value !== 'false') throw new ConfigError(`${name} must be true or false, got "${value}"`);
  return value === 'true';
}

export function enumSetting<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${value}"`);
  }
  return value as T;
}

/**
 * Where in the bucket the pipeline keeps things: jobs start from objects under `inbox`, work files
 * go under `work`, outputs under `results`. Each is a key prefix ending with `/`; none is inside
 * another (an output under the inbox would start a job). A bucket shared with other data places
 * batchline under prefixes of its own (infra/README.md, "Prefixes").
 */
export interface Prefixes {
  inbox: string;
  work: string;
  results: string;
}

export const DEFAULT_PREFIXES: Readonly<Prefixes> = Object.freeze({ inbox: 'inbox/', work: 'work/', results: 'results/' });

/** The prefixes' environment variables (infra/ sets them only when they are not the defaults). */
export const PREFIX_ENV = {
  inbox: 'BATCHLINE_INBOX_PREFIX',
  work: 'BATCHLINE_WORK_PREFIX',
  results: 'BATCHLINE_RESULTS_PREFIX',
} as const satisfies Record<keyof Prefixes, string>;

/**
 * What is wrong with a set of prefixes, by which one, or undefined when they are fine. One check
 * for the functions' config reader (below) and the construct's props (infra/settings.ts).
 */
export function prefixesProblem(prefixes: Record<keyof Prefixes, unknown>): { which: keyof Prefixes; problem: string } | undefined {
  const names = Object.keys(PREFIX_ENV) as (keyof Prefixes)[];
  for (const which of names) {
    const problem = keyPrefixProblem(prefixes[which]);
    if (problem) return { which, problem };
  }
  for (const which of names) {
    for (const other of names) {
      const a = prefixes[which] as string;
      const b = prefixes[other] as string;
      if (which === other) continue;
      if (a === b) return { which, problem: `is the same as the ${other} prefix (${JSON.stringify(b)})` };
      if (a.startsWith(b)) return { which, problem: `${JSON.stringify(a)} is inside the ${other} prefix ${JSON.stringify(b)}${NESTED_WHY[other]}` };
    }
  }
  return undefined;
}

const NESTED_WHY: Record<keyof Prefixes, string> = {
  inbox: ': every object created there starts a job',
  work: ": it holds the pipeline's work files, which expire",
  results: ": it holds the pipeline's outputs",
};

/** Why `value` is not a key prefix batchline can use, or undefined. */
export function keyPrefixProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return `must be a non-empty key prefix such as "batchline/inbox/", got ${JSON.stringify(value)}`;
  if (!value.endsWith('/')) return `must end with "/", got ${JSON.stringify(value)}`;
  if (value.startsWith('/')) return `must not start with "/" (S3 keys have no leading slash), got ${JSON.stringify(value)}`;
  if (value.includes('//')) return `must not hold an empty folder ("//"), got ${JSON.stringify(value)}`;
  if (value.trim() !== value) return `must not start or end with spaces, got ${JSON.stringify(value)}`;
  if (Buffer.byteLength(value) > 512) return `must be at most 512 bytes (S3 keys are at most 1,024), got ${Buffer.byteLength(value)}`;
  return undefined;
}

/** BATCHLINE_INBOX_PREFIX, BATCHLINE_WORK_PREFIX, BATCHLINE_RESULTS_PREFIX; unset: DEFAULT_PREFIXES. */
export function readPrefixes(env: Env = process.env): Prefixes {
  const prefixes: Prefixes = {
    inbox: raw(env, PREFIX_ENV.inbox) ?? DEFAULT_PREFIXES.inbox,
    work: raw(env, PREFIX_ENV.work) ?? DEFAULT_PREFIXES.work,
    results: raw(env, PREFIX_ENV.results) ?? DEFAULT_PREFIXES.results,
  };
  const found = prefixesProblem(prefixes);
  if (found) throw new ConfigError(`${PREFIX_ENV[found.which]} ${found.problem}`);
  return prefixes;
}

/** API limits (docs/api-reference.md §3). */
export const API_MAX_REQUESTS_PER_BATCH = 100_000;
export const API_MAX_BATCH_BYTES = 256_000_000;

export type ValidationMode = 'strict' | 'lenient';

/** The pipeline settings' environment variables, by setting name (infra/ sets them from cdk.json). */
export const PIPELINE_SETTING_ENV = {
  maxRequestsPerChunk: 'BATCHLINE_MAX_REQUESTS_PER_CHUNK',
  maxBytesPerChunk: 'BATCHLINE_MAX_BYTES_PER_CHUNK',
  maxAttempts: 'BATCHLINE_MAX_ATTEMPTS',
  retryBackoffSeconds: 'BATCHLINE_RETRY_BACKOFF_SECONDS',
  validationMode: 'BATCHLINE_VALIDATION_MODE',
  pollMinSeconds: 'BATCHLINE_POLL_MIN_SECONDS',
  pollMaxSeconds: 'BATCHLINE_POLL_MAX_SECONDS',
  pollFraction: 'BATCHLINE_POLL_FRACTION',
  rowTtlDays: 'BATCHLINE_ROW_TTL_DAYS',
  rowsPerShard: 'BATCHLINE_ROWS_PER_SHARD',
  pricesJson: 'BATCHLINE_PRICES',
  allowUnknownModels: 'BATCHLINE_ALLOW_UNKNOWN_MODELS',
  adoptGraceSeconds: 'BATCHLINE_ADOPT_GRACE_SECONDS',
  maxCostUsd: 'BATCHLINE_MAX_COST_USD',
  primeCache: 'BATCHLINE_PRIME_CACHE',
  deadlineMarginSeconds: 'BATCHLINE_DEADLINE_MARGIN_SECONDS',
  prepareLinesPerInvocation: 'BATCHLINE_PREPARE_LINES_PER_INVOCATION',
} as const satisfies Record<keyof PipelineSettings, string>;

/** The API client settings' environment variables (only the functions that call the Batches API get them). */
export const API_SETTING_ENV = {
  anthropicVersion: 'ANTHROPIC_VERSION',
  maxRetries: 'BATCHLINE_API_MAX_RETRIES',
  timeoutMs: 'BATCHLINE_API_TIMEOUT_MS',
} as const satisfies Partial<Record<keyof ApiConfig, string>>;

export interface PipelineConfig extends PipelineSettings {
  /** BATCHLINE_BUCKET: the one bucket (its inbox, work and results prefixes: readPrefixes). */
  bucket: string;
  /** BATCHLINE_TABLE: the one table. */
  table: string;
}

/** Everything a pipeline function is told but where its data lives (the CLI's estimate reads these too). */
export interface PipelineSettings {
  /** BATCHLINE_MAX_REQUESTS_PER_CHUNK: at most 100,000 (the API's limit). */
  maxRequestsPerChunk: number;
  /** BATCHLINE_MAX_BYTES_PER_CHUNK: request body bytes per batch; default leaves 6 MB headroom under 256 MB. */
  maxBytesPerChunk: number;
  /** BATCHLINE_MAX_ATTEMPTS: attempts per row in all, the first included (default 2). */
  maxAttempts: number;
  /** BATCHLINE_RETRY_BACKOFF_SECONDS: wait before a retry chunk is submitted, doubled per attempt. */
  retryBackoffSeconds: number;
  /** BATCHLINE_VALIDATION_MODE: default for files that do not say (object metadata `batchline-mode`). */
  validationMode: ValidationMode;
  /** BATCHLINE_POLL_MIN_SECONDS / _MAX_SECONDS / _FRACTION: wait = clamp(fraction × batch age, min, max). */
  pollMinSeconds: number;
  pollMaxSeconds: number;
  pollFraction: number;
  /** BATCHLINE_ROW_TTL_DAYS: row and chunk records expire this long after the job ends (0 = never). */
  rowTtlDays: number;
  /**
   * BATCHLINE_ROWS_PER_SHARD: about this many row records share a DynamoDB partition over a whole
   * job (shared/jobs/row-records.ts). Fewer: smaller items and cheaper lookups, more write units.
   */
  rowsPerShard: number;
  /** BATCHLINE_PRICES: optional JSON price table that overrides or extends the built-in one. */
  pricesJson: string | undefined;
  /**
   * BATCHLINE_ALLOW_UNKNOWN_MODELS: `true` lets a request name a model batchline does not know (not
   * in the price table, shared/validation/models.ts); by default such a line is invalid, with the
   * nearest known id, rather than errored by the API after the batch has run.
   */
  allowUnknownModels: boolean;
  /**
   * BATCHLINE_ADOPT_GRACE_SECONDS: after a create whose outcome is unknown, how long a retried Submit
   * keeps looking for the batch (it may not be listed yet) before it creates a new one. Counted from
   * the intent, which is recorded before the body is sent, so the default outlasts Submit's whole
   * run (900 s): no earlier create can still be in flight when a new one is made.
   */
  adoptGraceSeconds: number;
  /**
   * BATCHLINE_MAX_COST_USD: a job's budget when its file does not set one (object metadata
   * `batchline-max-cost`); unset, no budget. Prepare rejects a job whose estimate is over it
   * (BudgetExceeded), and Collect sends no retry that would take the paid cost past it.
   */
  maxCostUsd: number | undefined;
  /**
   * BATCHLINE_PRIME_CACHE: `true` primes the prompt cache before each batch, for files that do not
   * say (object metadata `batchline-prime-cache`; shared/jobs/prime-cache.ts).
   */
  primeCache: boolean;
  /**
   * BATCHLINE_DEADLINE_MARGIN_SECONDS: for a job with a deadline (object metadata
   * `batchline-deadline`), a batch still running this long before it is canceled and its unfinished
   * rows are sent as synchronous Messages calls (default 1800; shared/jobs/deadline.ts).
   */
  deadlineMarginSeconds: number;
  /**
   * BATCHLINE_PREPARE_LINES_PER_INVOCATION: Prepare reads at most this many lines of the input (or
   * PREPARE_BYTES_PER_INVOCATION bytes) in one invocation, then leaves a checkpoint and the workflow
   * invokes it again (default 2,000,000: about 45 s and a few hundred MB; docs/performance.md §6).
   */
  prepareLinesPerInvocation: number;
}

export function readPipelineConfig(env: Env = process.env): PipelineConfig {
  return { bucket: requireString(env, 'BATCHLINE_BUCKET'), table: requireString(env, 'BATCHLINE_TABLE'), ...readPipelineSettings(env) };
}

export function readPipelineSettings(env: Env = process.env): PipelineSettings {
  const e = PIPELINE_SETTING_ENV;
  const pollMinSeconds = intSetting(env, e.pollMinSeconds, 30, 1, 3600);
  return {
    maxRequestsPerChunk: intSetting(env, e.maxRequestsPerChunk, API_MAX_REQUESTS_PER_BATCH, 1, API_MAX_REQUESTS_PER_BATCH),
    maxBytesPerChunk: intSetting(env, e.maxBytesPerChunk, 250_000_000, 1024, API_MAX_BATCH_BYTES),
    maxAttempts: intSetting(env, e.maxAttempts, 2, 1, 10),
    retryBackoffSeconds: intSetting(env, e.retryBackoffSeconds, 60, 0, 86_400),
    validationMode: enumSetting(env, e.validationMode, 'strict', ['strict', 'lenient'] as const),
    pollMinSeconds,
    // At least 120 s: a 24-hour batch polled more often would near the 25,000-event history.
    pollMaxSeconds: intSetting(env, e.pollMaxSeconds, 900, Math.max(pollMinSeconds, 120), 86_400),
    pollFraction: numberSetting(env, e.pollFraction, 0.1, 0.001, 1),
    rowTtlDays: intSetting(env, e.rowTtlDays, 90, 0, 3650),
    rowsPerShard: intSetting(env, e.rowsPerShard, 1000, 1, 5000),
    pricesJson: optionalString(env, e.pricesJson),
    allowUnknownModels: booleanSetting(env, e.allowUnknownModels, false),
    adoptGraceSeconds: intSetting(env, e.adoptGraceSeconds, 960, 0, 3600),
    maxCostUsd: optionalString(env, e.maxCostUsd) === undefined ? undefined : numberSetting(env, e.maxCostUsd, 0, 0, 1e9),
    primeCache: booleanSetting(env, e.primeCache, false),
    deadlineMarginSeconds: intSetting(env, e.deadlineMarginSeconds, 1800, 0, 86_400),
    prepareLinesPerInvocation: intSetting(env, e.prepareLinesPerInvocation, 2_000_000, 1, 100_000_000),
  };
}

/** The poller's timing (shared/jobs/poller.ts), read by the poller, the arm and PollBatch. */
export interface PollerConfig {
  /**
   * BATCHLINE_POLLER_PERIOD_SECONDS: how often the poller ticks (its schedule's rate; 60 in AWS).
   * The local runtime divides it by its time scale. Heartbeats go every 5 periods.
   */
  periodSeconds: number;
  /**
   * BATCHLINE_POLLER_STALE_SECONDS: the poller's health record older than this means it is down,
   * and chunks wait on the adaptive Wait loop instead (default 180: three missed ticks).
   */
  staleSeconds: number;
}

export function readPollerConfig(env: Env = process.env): PollerConfig {
  return {
    periodSeconds: numberSetting(env, 'BATCHLINE_POLLER_PERIOD_SECONDS', 60, 0.001, 3600),
    staleSeconds: numberSetting(env, 'BATCHLINE_POLLER_STALE_SECONDS', 180, 0.001, 86_400),
  };
}

export interface ApiConfig {
  /** ANTHROPIC_BASE_URL: the real API, a proxy, or the simulator. */
  baseUrl: string;
  /** ANTHROPIC_VERSION: the `anthropic-version` header. */
  anthropicVersion: string;
  /** BATCHLINE_API_KEY_SECRET: the Secrets Manager secret (name or ARN) that holds the API key. */
  apiKeySecret: string;
  /** BATCHLINE_API_MAX_RETRIES: client retries per call (the official SDK's default is 2). */
  maxRetries: number;
  /** BATCHLINE_API_TIMEOUT_MS: per request. */
  timeoutMs: number;
}

export function readApiConfig(env: Env = process.env): ApiConfig {
  return {
    baseUrl: optionalString(env, 'ANTHROPIC_BASE_URL') ?? 'https://api.anthropic.com',
    anthropicVersion: optionalString(env, API_SETTING_ENV.anthropicVersion) ?? '2023-06-01',
    apiKeySecret: requireString(env, 'BATCHLINE_API_KEY_SECRET'),
    maxRetries: intSetting(env, API_SETTING_ENV.maxRetries, 2, 0, 10),
    timeoutMs: intSetting(env, API_SETTING_ENV.timeoutMs, 600_000, 1000, 900_000),
  };
}

export interface NotifyConfig {
  /** BATCHLINE_TOPIC_ARN: SNS topic told of every failed job. */
  topicArn: string | undefined;
  /** BATCHLINE_EVENT_BUS: EventBridge bus that gets a `Job Ended` event per job (default bus if unset). */
  eventBus: string;
}

export function readNotifyConfig(env: Env = process.env): NotifyConfig {
  return {
    topicArn: optionalString(env, 'BATCHLINE_TOPIC_ARN'),
    eventBus: optionalString(env, 'BATCHLINE_EVENT_BUS') ?? 'default',
  };
}
