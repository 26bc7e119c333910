/**
 * The stack's settings, read from cdk.json context (or `-c key=value`) and checked at synth time,
 * so a bad value fails `cdk synth` naming the setting instead of failing a job days later.
 */
import {
  API_SETTING_ENV,
  ConfigError,
  DEFAULT_PREFIXES,
  keyPrefixProblem,
  PIPELINE_SETTING_ENV,
  PREFIX_ENV,
  prefixesProblem,
  readApiConfig,
  readPipelineConfig,
  type Prefixes,
} from '../shared/config';

export const CONTEXT_KEYS = {
  /** Object: pipeline and API client settings by their shared/config.ts names, plus the infra-only ones. */
  settings: 'batchline:settings',
  /** Array of `{name, cron, prefix, timezone?}`: EventBridge Scheduler sweeps of a prefix. */
  schedules: 'batchline:schedules',
  /** Use this existing Secrets Manager secret (by name) for the API key instead of creating one. */
  apiKeySecretName: 'batchline:apiKeySecretName',
  /** Point the API functions at another base URL (a proxy, or the simulator). */
  anthropicBaseUrl: 'batchline:anthropicBaseUrl',
  /** `true`: `cdk synth`/`deploy` run the cdk-nag AwsSolutions checks and stop on a finding (infra/app.ts). */
  nag: 'batchline:nag',
} as const;

/** Settings handed to the functions as environment variables: the names shared/config.ts reads. */
export { API_SETTING_ENV, PIPELINE_SETTING_ENV };

/** The prefix settings (the Batchline construct's props of the same names) and their variables. */
export const PREFIX_SETTING_ENV = {
  inboxPrefix: PREFIX_ENV.inbox,
  workPrefix: PREFIX_ENV.work,
  resultsPrefix: PREFIX_ENV.results,
} as const;
/** One root for all three: `<prefix>inbox/`, `<prefix>work/`, `<prefix>results/`. */
export const ROOT_PREFIX_SETTING = 'rootPrefix';

/** Settings the stack itself uses (no function reads them). */
export const STACK_SETTING_DEFAULTS = {
  /** The Map's MaxConcurrency: chunks of one job in flight at once. */
  maxConcurrentChunks: 10,
  /** Days before `work/` objects (chunk files, raw results) expire. */
  workRetentionDays: 30,
  /** The errored-rows alarm fires above this share of errored rows, errored / (succeeded + errored), in an hour. */
  erroredRowRateThreshold: 0.2,
  /** ...but only in an hour that saw at least this many succeeded + errored rows: a few rows prove nothing. */
  erroredRowAlarmMinRows: 100,
  /** The overdue-job alarm fires when an execution has taken longer than this (one batch alone may take 24 h). */
  jobDeadlineHours: 30,
  /** A function's error alarm fires at this many errors in five minutes. */
  functionErrorThreshold: 1,
  /** Days CloudWatch keeps the functions' and the state machine's logs (one of CloudWatch's periods). */
  logRetentionDays: 30,
  /** PrepareJob's memory in MiB: one invocation holds the custom_ids of the lines it reads (prepareLinesPerInvocation). */
  prepareMemoryMiB: 2048,
} as const;

/** The retention periods CloudWatch Logs accepts, in days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

/**
 * What encrypts the bucket, the table and the log groups: `aws-owned` (default) keys AWS owns and
 * manages (SSE-S3, DynamoDB's AWS-owned key, CloudWatch Logs' own encryption), free of KMS charges;
 * `stack`, a customer-managed KMS key the stack creates (rotated yearly, kept when the stack is
 * deleted); or the ARN of a KMS key of yours, whose policy must let CloudWatch Logs use it.
 */
export type EncryptionKeySetting = 'aws-owned' | 'stack' | `arn:${string}`;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

/** [min, max], and whether the value must be whole. */
const STACK_SETTING_LIMITS: Record<keyof typeof STACK_SETTING_DEFAULTS, readonly [number, number, 'whole' | 'fraction']> = {
  maxConcurrentChunks: [1, 1000, 'whole'],
  // A job can run for days (24 h per batch attempt, several attempts): work files must outlive it.
  workRetentionDays: [7, 3650, 'whole'],
  // A rate is above 1 never, and above 0 at the first errored row.
  erroredRowRateThreshold: [0.01, 0.99, 'fraction'],
  erroredRowAlarmMinRows: [1, 100_000_000, 'whole'],
  // A Standard execution may last a year. Below 24 h, a batch that is merely slow trips it.
  jobDeadlineHours: [1, 8760, 'whole'],
  functionErrorThreshold: [1, 100_000, 'whole'],
  logRetentionDays: [1, 3653, 'whole'],
  // Lambda's range of memory sizes.
  prepareMemoryMiB: [128, 10_240, 'whole'],
};

export type PipelineSettingName = keyof typeof PIPELINE_SETTING_ENV;
export type ApiSettingName = keyof typeof API_SETTING_ENV;
export type StackSettingName = keyof typeof STACK_SETTING_DEFAULTS;

export interface ScheduleSetting {
  /** Unique; passed to sweep-prefix as `schedule`. */
  name: string;
  /** `cron(...)` (six fields) or `rate(...)`, as EventBridge Scheduler takes them. */
  cron: string;
  /** Swept prefix: ends with `/`, and neither holds nor is under the inbox (already triggered), work or results prefix. */
  prefix: string;
  /** IANA time zone for the cron expression (default UTC). */
  timezone?: string;
}

/** The alarms' thresholds (infra/observability.ts). */
export interface AlarmSettings {
  erroredRowRateThreshold: number;
  erroredRowAlarmMinRows: number;
  jobDeadlineHours: number;
  functionErrorThreshold: number;
}

export interface BatchlineSettings {
  /** BATCHLINE_* variables every function gets (only the settings given; config.ts holds defaults). */
  pipelineEnv: Record<string, string>;
  /** Where in the bucket the inputs, work files and outputs are (their variables are in pipelineEnv unless the defaults). */
  prefixes: Prefixes;
  /** Variables the functions that call the API get (ANTHROPIC_BASE_URL, ANTHROPIC_VERSION, BATCHLINE_API_*). */
  apiEnv: Record<string, string>;
  maxConcurrentChunks: number;
  workRetentionDays: number;
  logRetentionDays: number;
  /** PrepareJob's memory in MiB (docs/performance.md §6). */
  prepareMemoryMiB: number;
  encryptionKey: EncryptionKeySetting;
  alarms: AlarmSettings;
  /** An existing secret to use; undefined creates one with a placeholder value. */
  apiKeySecretName: string | undefined;
  schedules: ScheduleSetting[];
  /**
   * `poller` (default true): chunks wait for the one-a-minute poller (AwaitBatch), with the adaptive
   * Wait loop as fallback while the poller is down; false: the Wait loop only, and no poller schedule.
   */
  poller: boolean;
}

export class SettingsError extends Error {
  override readonly name = 'SettingsError';
}

const {
  maxConcurrentChunks: DEFAULT_MAX_CONCURRENT_CHUNKS,
  workRetentionDays: DEFAULT_WORK_RETENTION_DAYS,
  logRetentionDays: DEFAULT_LOG_RETENTION_DAYS,
  prepareMemoryMiB: DEFAULT_PREPARE_MEMORY_MIB,
  ...DEFAULT_ALARMS
} = STACK_SETTING_DEFAULTS;

export const DEFAULT_SETTINGS: BatchlineSettings = {
  pipelineEnv: {},
  prefixes: { ...DEFAULT_PREFIXES },
  apiEnv: {},
  maxConcurrentChunks: DEFAULT_MAX_CONCURRENT_CHUNKS,
  workRetentionDays: DEFAULT_WORK_RETENTION_DAYS,
  logRetentionDays: DEFAULT_LOG_RETENTION_DAYS,
  prepareMemoryMiB: DEFAULT_PREPARE_MEMORY_MIB,
  encryptionKey: 'aws-owned',
  alarms: { ...DEFAULT_ALARMS },
  apiKeySecretName: undefined,
  schedules: [],
  poller: true,
};

type ContextReader = (key: string) => unknown;

/** Reads and checks every batchline context value; throws SettingsError naming the bad one. */
export function readSettings(tryGetContext: ContextReader): BatchlineSettings {
  const raw = readSettingsObject(tryGetContext);

  const pipelineEnv = envFor(raw, PIPELINE_SETTING_ENV);
  const prefixes = prefixSettings(raw);
  for (const [name, variable] of Object.entries(PREFIX_SETTING_ENV)) {
    const which = PREFIX_OF[name as keyof typeof PREFIX_SETTING_ENV];
    if (prefixes[which] !== DEFAULT_PREFIXES[which]) pipelineEnv[variable] = prefixes[which];
  }
  const apiEnv = envFor(raw, API_SETTING_ENV);
  const baseUrl = tryGetContext(CONTEXT_KEYS.anthropicBaseUrl);
  if (baseUrl !== undefined) apiEnv.ANTHROPIC_BASE_URL = baseUrlSetting(baseUrl);
  checkWithConfigReaders(pipelineEnv, apiEnv, raw);

  const stackSetting = (key: StackSettingName): number => {
    const value = raw[key];
    if (value === undefined) return STACK_SETTING_DEFAULTS[key];
    const [min, max, kind] = STACK_SETTING_LIMITS[key];
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || (kind === 'whole' && !Number.isInteger(n)) || n < min || n > max) {
      const what = kind === 'whole' ? 'a whole number' : 'a number';
      throw new SettingsError(`${CONTEXT_KEYS.settings}.${key} must be ${what} from ${min} to ${max}, got ${JSON.stringify(value)}`);
    }
    return n;
  };

  return {
    pipelineEnv,
    prefixes,
    apiEnv,
    maxConcurrentChunks: stackSetting('maxConcurrentChunks'),
    workRetentionDays: stackSetting('workRetentionDays'),
    logRetentionDays: logRetentionSetting(stackSetting('logRetentionDays')),
    prepareMemoryMiB: stackSetting('prepareMemoryMiB'),
    encryptionKey: encryptionKeySetting(raw.encryptionKey),
    alarms: {
      erroredRowRateThreshold: stackSetting('erroredRowRateThreshold'),
      erroredRowAlarmMinRows: stackSetting('erroredRowAlarmMinRows'),
      jobDeadlineHours: stackSetting('jobDeadlineHours'),
      functionErrorThreshold: stackSetting('functionErrorThreshold'),
    },
    apiKeySecretName: secretNameSetting(tryGetContext(CONTEXT_KEYS.apiKeySecretName)),
    schedules: readSchedules(parseIfString(CONTEXT_KEYS.schedules, tryGetContext(CONTEXT_KEYS.schedules)), prefixes),
    poller: pollerSetting(raw.poller),
  };
}

const PREFIX_OF = { inboxPrefix: 'inbox', workPrefix: 'work', resultsPrefix: 'results' } as const satisfies Record<
  keyof typeof PREFIX_SETTING_ENV,
  keyof Prefixes
>;
const SETTING_OF = { inbox: 'inboxPrefix', work: 'workPrefix', results: 'resultsPrefix' } as const satisfies Record<
  keyof Prefixes,
  keyof typeof PREFIX_SETTING_ENV
>;

/**
 * The three prefixes: each given, or `<prefix>inbox/` etc. under the root `prefix`, or the defaults.
 * The root and the three exclude each other: a prefix under the root or beside it would be ambiguous.
 */
function prefixSettings(raw: Record<string, unknown>): Prefixes {
  const at = (name: string) => `${CONTEXT_KEYS.settings}.${name}`;
  const root = raw[ROOT_PREFIX_SETTING];
  const given = Object.keys(PREFIX_SETTING_ENV).filter((name) => raw[name] !== undefined);
  if (root !== undefined) {
    if (given.length > 0) {
      throw new SettingsError(`${at(ROOT_PREFIX_SETTING)} and ${given.map(at).join(', ')} cannot be combined: give the root, or each prefix in full`);
    }
    const problem = keyPrefixProblem(root);
    if (problem) throw new SettingsError(`${at(ROOT_PREFIX_SETTING)} ${problem}`);
    return { inbox: `${root}${DEFAULT_PREFIXES.inbox}`, work: `${root}${DEFAULT_PREFIXES.work}`, results: `${root}${DEFAULT_PREFIXES.results}` };
  }
  const prefixes = {
    inbox: raw.inboxPrefix ?? DEFAULT_PREFIXES.inbox,
    work: raw.workPrefix ?? DEFAULT_PREFIXES.work,
    results: raw.resultsPrefix ?? DEFAULT_PREFIXES.results,
  };
  const found = prefixesProblem(prefixes);
  if (found) throw new SettingsError(`${at(SETTING_OF[found.which])} ${found.problem}`);
  return prefixes as Prefixes;
}

function pollerSetting(value: unknown): boolean {
  if (value === undefined || value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new SettingsError(`${CONTEXT_KEYS.settings}.poller must be true or false, got ${JSON.stringify(value)}`);
}

function logRetentionSetting(days: number): number {
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
    throw new SettingsError(
      `${CONTEXT_KEYS.settings}.logRetentionDays must be one of CloudWatch Logs' periods (${LOG_RETENTION_DAYS.join(', ')}), got ${days}`,
    );
  }
  return days;
}

function encryptionKeySetting(value: unknown): EncryptionKeySetting {
  if (value === undefined || value === 'aws-owned' || value === 'stack') return value ?? 'aws-owned';
  if (typeof value === 'string' && KMS_KEY_ARN.test(value)) return value as EncryptionKeySetting;
  throw new SettingsError(
    `${CONTEXT_KEYS.settings}.encryptionKey must be "aws-owned", "stack" or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), got ${JSON.stringify(value)}`,
  );
}

/**
 * The context values as the Batchline construct's props (cdk.json's settings object spread, plus the
 * keys of their own), parsed but not checked: the construct checks its props with readSettings.
 */
export function propsFromContext(tryGetContext: ContextReader): Record<string, unknown> {
  return {
    ...readSettingsObject(tryGetContext),
    schedules: parseIfString(CONTEXT_KEYS.schedules, tryGetContext(CONTEXT_KEYS.schedules)),
    apiKeySecretName: tryGetContext(CONTEXT_KEYS.apiKeySecretName),
    anthropicBaseUrl: tryGetContext(CONTEXT_KEYS.anthropicBaseUrl),
  };
}

/** The `batchline:settings` object, every key of it a setting. */
function readSettingsObject(tryGetContext: ContextReader): Record<string, unknown> {
  const raw = objectSetting(CONTEXT_KEYS.settings, parseIfString(CONTEXT_KEYS.settings, tryGetContext(CONTEXT_KEYS.settings)));
  const known = new Set<string>([
    ...Object.keys(PIPELINE_SETTING_ENV),
    ...Object.keys(API_SETTING_ENV),
    ...Object.keys(STACK_SETTING_DEFAULTS),
    ...Object.keys(PREFIX_SETTING_ENV),
    ROOT_PREFIX_SETTING,
    'encryptionKey',
    'poller',
  ]);
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) {
      throw new SettingsError(`${CONTEXT_KEYS.settings}.${key} is not a setting (known: ${[...known].join(', ')})`);
    }
  }
  return raw;
}

/** Whether `batchline:nag` asks for the cdk-nag checks at synth: true or "true" (as `-c` passes it). */
export function readNagSetting(tryGetContext: ContextReader): boolean {
  const value = tryGetContext(CONTEXT_KEYS.nag);
  if (value === undefined || value === false || value === 'false') return false;
  if (value === true || value === 'true') return true;
  throw new SettingsError(`${CONTEXT_KEYS.nag} must be true or false, got ${JSON.stringify(value)}`);
}

/** `-c key=value` on the command line arrives as a string; cdk.json gives objects. */
function parseIfString(key: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw new SettingsError(`${key} must be JSON, got ${JSON.stringify(value)}`);
  }
}

function objectSetting(key: string, value: unknown): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new SettingsError(`${key} must be an object of settings, got ${JSON.stringify(value)}`);
  }
  return value as Record<string, unknown>;
}

function envFor(raw: Record<string, unknown>, names: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, variable] of Object.entries(names)) {
    const value = raw[key];
    if (value === undefined) continue;
    if (key === 'pricesJson' && typeof value === 'object' && value !== null) {
      env[variable] = JSON.stringify(value);
    } else if (
      typeof value === 'string' ||
      typeof value === 'number' ||
      ((key === 'allowUnknownModels' || key === 'primeCache') && typeof value === 'boolean')
    ) {
      env[variable] = String(value);
    } else {
      throw new SettingsError(`${CONTEXT_KEYS.settings}.${key} must be a string or a number, got ${JSON.stringify(value)}`);
    }
  }
  return env;
}

/** Runs the handlers' own config readers over the environment they will get. */
function checkWithConfigReaders(pipelineEnv: Record<string, string>, apiEnv: Record<string, string>, raw: Record<string, unknown>) {
  const env = {
    BATCHLINE_BUCKET: 'synth-check',
    BATCHLINE_TABLE: 'synth-check',
    BATCHLINE_API_KEY_SECRET: 'synth-check',
    ...pipelineEnv,
    ...apiEnv,
  };
  try {
    readPipelineConfig(env);
    readApiConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const variables: Record<string, string> = { ...PIPELINE_SETTING_ENV, ...API_SETTING_ENV };
    // Longest first, so a variable that is a prefix of another cannot claim its message.
    const culprit = Object.entries(variables)
      .sort(([, a], [, b]) => b.length - a.length)
      .find(([, variable]) => error.message.includes(variable));
    const where = culprit ? `${CONTEXT_KEYS.settings}.${culprit[0]}` : CONTEXT_KEYS.settings;
    throw new SettingsError(`${where}: ${error.message}`);
  }
  const prices = pipelineEnv[PIPELINE_SETTING_ENV.pricesJson];
  if (prices !== undefined) {
    try {
      const parsed: unknown = JSON.parse(prices);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    } catch {
      throw new SettingsError(`${CONTEXT_KEYS.settings}.pricesJson must be a JSON object, got ${JSON.stringify(raw.pricesJson)}`);
    }
  }
}

function baseUrlSetting(value: unknown): string {
  const text = typeof value === 'string' ? value.trim() : '';
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new SettingsError(`${CONTEXT_KEYS.anthropicBaseUrl} must be an http(s) URL, got ${JSON.stringify(value)}`);
  }
  return text;
}

function secretNameSetting(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  // Secrets Manager names: 1-512 of letters, digits and /_+=.@-
  if (typeof value !== 'string' || !/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(value)) {
    throw new SettingsError(`${CONTEXT_KEYS.apiKeySecretName} must be a Secrets Manager secret name, got ${JSON.stringify(value)}`);
  }
  return value;
}

const SCHEDULE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/;
const RATE = /^rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\)$/;
const CRON = /^cron\((.+)\)$/;
const OVERLAP_WHY: Record<keyof Prefixes, string> = {
  inbox: 'every object there already starts a job, so a sweep would start it twice',
  work: "it holds the pipeline's own work files",
  results: "it holds the pipeline's outputs",
};

/** The schedules, checked against the stack's prefixes: a swept prefix overlaps none of them. */
export function readSchedules(value: unknown, prefixes: Prefixes = DEFAULT_PREFIXES): ScheduleSetting[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    throw new SettingsError(`${CONTEXT_KEYS.schedules} must be an array of {name, cron, prefix, timezone?}, got ${JSON.stringify(value)}`);
  }
  const seen = new Set<string>();
  return value.map((entry: unknown, index) => {
    const at = `${CONTEXT_KEYS.schedules}[${index}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new SettingsError(`${at} must be an object {name, cron, prefix, timezone?}, got ${JSON.stringify(entry)}`);
    }
    const { name, cron, prefix, timezone, ...rest } = entry as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0) throw new SettingsError(`${at} has unknown field(s) ${extra.join(', ')}`);

    if (typeof name !== 'string' || !SCHEDULE_NAME.test(name)) {
      throw new SettingsError(`${at}.name must be 1-40 letters, digits, - or _ (starting with a letter or digit), got ${JSON.stringify(name)}`);
    }
    const label = `${CONTEXT_KEYS.schedules} "${name}"`;
    if (seen.has(name)) throw new SettingsError(`${label}: the name is used twice`);
    seen.add(name);

    if (typeof cron !== 'string' || !validScheduleExpression(cron)) {
      throw new SettingsError(
        `${label}: cron must be cron(minutes hours day-of-month month day-of-week year) with ? in one of the day fields, or rate(n minutes|hours|days), got ${JSON.stringify(cron)}`,
      );
    }
    if (typeof prefix !== 'string' || prefix.length === 0 || !prefix.endsWith('/') || prefix.startsWith('/')) {
      throw new SettingsError(`${label}: prefix must be a key prefix ending with "/" (and not starting with one), got ${JSON.stringify(prefix)}`);
    }
    for (const [which, why] of Object.entries(OVERLAP_WHY)) {
      const forbidden = prefixes[which as keyof Prefixes];
      if (prefix.startsWith(forbidden) || forbidden.startsWith(prefix)) {
        throw new SettingsError(`${label}: prefix ${JSON.stringify(prefix)} overlaps ${forbidden} (${why})`);
      }
    }
    if (timezone !== undefined && (typeof timezone !== 'string' || !validTimeZone(timezone))) {
      throw new SettingsError(`${label}: timezone must be an IANA time zone such as "Europe/Paris", got ${JSON.stringify(timezone)}`);
    }
    return timezone === undefined ? { name, cron, prefix } : { name, cron, prefix, timezone: timezone as string };
  });
}

function validScheduleExpression(expression: string): boolean {
  if (RATE.test(expression)) return true;
  const fields = CRON.exec(expression)?.[1]?.split(' ');
  if (!fields || fields.length !== 6 || fields.some((field) => field === '')) return false;
  const [, , dayOfMonth, , dayOfWeek] = fields;
  // EventBridge cron: exactly one of day-of-month and day-of-week is "?".
  return (dayOfMonth === '?') !== (dayOfWeek === '?');
}

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
