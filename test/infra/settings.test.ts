import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../infra/handler';
import { API_SETTING_ENV, PIPELINE_SETTING_ENV, readNagSetting, readSettings, SettingsError } from '../../infra/settings';
import { readPipelineSettings } from '../../shared/config';
import { synthesize } from './fixture';

const fromContext = (context: Record<string, unknown>) => readSettings((key) => context[key]);
const nightly = { name: 'nightly', cron: 'cron(0 23 * * ? *)', prefix: 'scheduled/nightly/' };

describe('readSettings', () => {
  it('defaults to no environment overrides, the default prefixes, 10 chunks at once, 30 days of work files and logs, 2,048 MiB for Prepare, AWS-owned keys, the default alarms, a new secret, no schedules', () => {
    expect(fromContext({})).toEqual({
      pipelineEnv: {},
      prefixes: { inbox: 'inbox/', work: 'work/', results: 'results/' },
      apiEnv: {},
      maxConcurrentChunks: 10,
      workRetentionDays: 30,
      logRetentionDays: 30,
      prepareMemoryMiB: 2048,
      encryptionKey: 'aws-owned',
      alarms: { erroredRowRateThreshold: 0.2, erroredRowAlarmMinRows: 100, jobDeadlineHours: 30, functionErrorThreshold: 1 },
      apiKeySecretName: undefined,
      schedules: [],
      poller: true,
    });
  });

  it('maps settings onto the variables the handlers read, split into pipeline and API ones', () => {
    const settings = fromContext({
      'batchline:settings': {
        maxRequestsPerChunk: 1000,
        maxBytesPerChunk: '2000000',
        maxAttempts: 3,
        retryBackoffSeconds: 5,
        validationMode: 'lenient',
        pollMinSeconds: 10,
        pollMaxSeconds: 600,
        pollFraction: 0.2,
        rowTtlDays: 0,
        pricesJson: { 'claude-x': { input: 1, output: 5 } },
        allowUnknownModels: true,
        primeCache: true,
        anthropicVersion: '2023-06-01',
        maxRetries: 4,
        timeoutMs: 30_000,
        maxConcurrentChunks: 25,
        workRetentionDays: 60,
        erroredRowRateThreshold: 0.05,
        erroredRowAlarmMinRows: '1000',
        jobDeadlineHours: 72,
        functionErrorThreshold: 5,
        logRetentionDays: '365',
        prepareMemoryMiB: '4096',
        encryptionKey: 'stack',
        inboxPrefix: 'team/batchline/in/',
        workPrefix: 'team/batchline/work/',
        resultsPrefix: 'team/results/',
      },
      'batchline:anthropicBaseUrl': 'http://127.0.0.1:4010',
      'batchline:apiKeySecretName': 'team/anthropic-key',
    });
    expect(settings).toEqual({
      pipelineEnv: {
        BATCHLINE_MAX_REQUESTS_PER_CHUNK: '1000',
        BATCHLINE_MAX_BYTES_PER_CHUNK: '2000000',
        BATCHLINE_MAX_ATTEMPTS: '3',
        BATCHLINE_RETRY_BACKOFF_SECONDS: '5',
        BATCHLINE_VALIDATION_MODE: 'lenient',
        BATCHLINE_POLL_MIN_SECONDS: '10',
        BATCHLINE_POLL_MAX_SECONDS: '600',
        BATCHLINE_POLL_FRACTION: '0.2',
        BATCHLINE_ROW_TTL_DAYS: '0',
        BATCHLINE_PRICES: '{"claude-x":{"input":1,"output":5}}',
        BATCHLINE_ALLOW_UNKNOWN_MODELS: 'true',
        BATCHLINE_PRIME_CACHE: 'true',
        BATCHLINE_INBOX_PREFIX: 'team/batchline/in/',
        BATCHLINE_WORK_PREFIX: 'team/batchline/work/',
        BATCHLINE_RESULTS_PREFIX: 'team/results/',
      },
      prefixes: { inbox: 'team/batchline/in/', work: 'team/batchline/work/', results: 'team/results/' },
      apiEnv: {
        ANTHROPIC_VERSION: '2023-06-01',
        BATCHLINE_API_MAX_RETRIES: '4',
        BATCHLINE_API_TIMEOUT_MS: '30000',
        ANTHROPIC_BASE_URL: 'http://127.0.0.1:4010',
      },
      maxConcurrentChunks: 25,
      workRetentionDays: 60,
      logRetentionDays: 365,
      prepareMemoryMiB: 4096,
      encryptionKey: 'stack',
      alarms: { erroredRowRateThreshold: 0.05, erroredRowAlarmMinRows: 1000, jobDeadlineHours: 72, functionErrorThreshold: 5 },
      apiKeySecretName: 'team/anthropic-key',
      schedules: [],
      poller: true,
    });
  });

  it('puts the three prefixes under rootPrefix, and sets only the variables of prefixes that are not the defaults', () => {
    expect(fromContext({ 'batchline:settings': { rootPrefix: 'teams/ml/batchline/' } })).toMatchObject({
      prefixes: { inbox: 'teams/ml/batchline/inbox/', work: 'teams/ml/batchline/work/', results: 'teams/ml/batchline/results/' },
      pipelineEnv: {
        BATCHLINE_INBOX_PREFIX: 'teams/ml/batchline/inbox/',
        BATCHLINE_WORK_PREFIX: 'teams/ml/batchline/work/',
        BATCHLINE_RESULTS_PREFIX: 'teams/ml/batchline/results/',
      },
    });
    expect(fromContext({ 'batchline:settings': { resultsPrefix: 'outputs/' } })).toMatchObject({
      prefixes: { inbox: 'inbox/', work: 'work/', results: 'outputs/' },
      pipelineEnv: { BATCHLINE_RESULTS_PREFIX: 'outputs/' },
    });
    expect(fromContext({ 'batchline:settings': { resultsPrefix: 'outputs/' } }).pipelineEnv).not.toHaveProperty('BATCHLINE_INBOX_PREFIX');
  });

  it.each([
    [{ inboxPrefix: '' }, 'batchline:settings.inboxPrefix must be a non-empty key prefix such as "batchline/inbox/", got ""'],
    [{ inboxPrefix: 'uploads' }, 'batchline:settings.inboxPrefix must end with "/", got "uploads"'],
    [{ workPrefix: '/work/' }, 'batchline:settings.workPrefix must not start with "/" (S3 keys have no leading slash), got "/work/"'],
    [{ resultsPrefix: 7 }, 'batchline:settings.resultsPrefix must be a non-empty key prefix such as "batchline/inbox/", got 7'],
    [{ resultsPrefix: 'a//b/' }, 'batchline:settings.resultsPrefix must not hold an empty folder ("//"), got "a//b/"'],
    [
      { resultsPrefix: 'inbox/results/' },
      'batchline:settings.resultsPrefix "inbox/results/" is inside the inbox prefix "inbox/": every object created there starts a job',
    ],
    [{ inboxPrefix: 'data/', workPrefix: 'data/work/' }, 'batchline:settings.workPrefix "data/work/" is inside the inbox prefix "data/"'],
    [{ workPrefix: 'b/', resultsPrefix: 'b/' }, 'batchline:settings.workPrefix is the same as the results prefix ("b/")'],
    [{ inboxPrefix: 'results/in/' }, 'batchline:settings.inboxPrefix "results/in/" is inside the results prefix "results/"'],
    [{ rootPrefix: 'team' }, 'batchline:settings.rootPrefix must end with "/", got "team"'],
    [
      { rootPrefix: 'team/', inboxPrefix: 'in/' },
      'batchline:settings.rootPrefix and batchline:settings.inboxPrefix cannot be combined: give the root, or each prefix in full',
    ],
  ])('rejects the prefixes %j, naming the setting', (setting, message) => {
    expect(() => fromContext({ 'batchline:settings': setting })).toThrow(new RegExp(`^${escapeRegExp(message)}`));
  });

  it('checks the schedules against the prefixes in use: a swept prefix overlaps none of them', () => {
    const settings = { inboxPrefix: 'team/in/', workPrefix: 'team/work/', resultsPrefix: 'team/out/' };
    // inbox/ is just another prefix once the inbox is elsewhere.
    expect(fromContext({ 'batchline:settings': settings, 'batchline:schedules': [{ ...nightly, prefix: 'inbox/' }] }).schedules).toHaveLength(1);
    expect(() => fromContext({ 'batchline:settings': settings, 'batchline:schedules': [{ ...nightly, prefix: 'team/' }] })).toThrow(
      'batchline:schedules "nightly": prefix "team/" overlaps team/in/ (every object there already starts a job',
    );
    expect(() => fromContext({ 'batchline:settings': settings, 'batchline:schedules': [{ ...nightly, prefix: 'team/out/daily/' }] })).toThrow(
      'batchline:schedules "nightly": prefix "team/out/daily/" overlaps team/out/',
    );
  });

  it('takes a KMS key ARN for encryptionKey', () => {
    const arn = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    expect(fromContext({ 'batchline:settings': { encryptionKey: arn } }).encryptionKey).toBe(arn);
    expect(fromContext({ 'batchline:settings': { encryptionKey: 'aws-owned' } }).encryptionKey).toBe('aws-owned');
  });

  it('has the poller on unless `poller` is false, and refuses anything but true or false', () => {
    expect(fromContext({}).poller).toBe(true);
    expect(fromContext({ 'batchline:settings': { poller: false } }).poller).toBe(false);
    expect(fromContext({ 'batchline:settings': { poller: 'false' } }).poller).toBe(false);
    expect(() => fromContext({ 'batchline:settings': { poller: 'off' } })).toThrow('batchline:settings.poller must be true or false, got "off"');
  });

  it('accepts context given as JSON strings, as `cdk synth -c key=value` passes it', () => {
    const settings = fromContext({
      'batchline:settings': '{"maxAttempts": 4}',
      'batchline:schedules': JSON.stringify([{ ...nightly, timezone: 'Europe/Paris' }]),
    });
    expect(settings.pipelineEnv).toEqual({ BATCHLINE_MAX_ATTEMPTS: '4' });
    expect(settings.schedules).toEqual([{ ...nightly, timezone: 'Europe/Paris' }]);
  });

  it.each([
    [
      { maxRequestsPerChunk: 100_001 },
      'batchline:settings.maxRequestsPerChunk: BATCHLINE_MAX_REQUESTS_PER_CHUNK must be a whole number from 1 to 100000, got "100001"',
    ],
    [{ validationMode: 'loose' }, 'batchline:settings.validationMode: BATCHLINE_VALIDATION_MODE must be one of strict, lenient, got "loose"'],
    [
      { pollMinSeconds: 60, pollMaxSeconds: 30 },
      'batchline:settings.pollMaxSeconds: BATCHLINE_POLL_MAX_SECONDS must be a whole number from 120 to 86400, got "30"',
    ],
    [{ timeoutMs: 10 }, 'batchline:settings.timeoutMs: BATCHLINE_API_TIMEOUT_MS must be a whole number from 1000 to 900000, got "10"'],
    [{ pricesJson: '{not json' }, 'batchline:settings.pricesJson must be a JSON object, got "{not json"'],
    [{ maxConcurrentChunks: 0 }, 'batchline:settings.maxConcurrentChunks must be a whole number from 1 to 1000, got 0'],
    [{ workRetentionDays: 1 }, 'batchline:settings.workRetentionDays must be a whole number from 7 to 3650, got 1'],
    [{ erroredRowRateThreshold: 1 }, 'batchline:settings.erroredRowRateThreshold must be a number from 0.01 to 0.99, got 1'],
    [{ erroredRowRateThreshold: '20%' }, 'batchline:settings.erroredRowRateThreshold must be a number from 0.01 to 0.99, got "20%"'],
    [{ erroredRowAlarmMinRows: 0 }, 'batchline:settings.erroredRowAlarmMinRows must be a whole number from 1 to 100000000, got 0'],
    [{ jobDeadlineHours: 1.5 }, 'batchline:settings.jobDeadlineHours must be a whole number from 1 to 8760, got 1.5'],
    [{ functionErrorThreshold: 0 }, 'batchline:settings.functionErrorThreshold must be a whole number from 1 to 100000, got 0'],
    [
      { logRetentionDays: 45 },
      "batchline:settings.logRetentionDays must be one of CloudWatch Logs' periods (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653), got 45",
    ],
    [{ logRetentionDays: 0 }, 'batchline:settings.logRetentionDays must be a whole number from 1 to 3653, got 0'],
    [{ prepareMemoryMiB: 64 }, 'batchline:settings.prepareMemoryMiB must be a whole number from 128 to 10240, got 64'],
    [{ prepareMemoryMiB: 10_241 }, 'batchline:settings.prepareMemoryMiB must be a whole number from 128 to 10240, got 10241'],
    [{ prepareMemoryMiB: '2 GB' }, 'batchline:settings.prepareMemoryMiB must be a whole number from 128 to 10240, got "2 GB"'],
    [
      { encryptionKey: 'alias/batchline' },
      'batchline:settings.encryptionKey must be "aws-owned", "stack" or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), got "alias/batchline"',
    ],
    [{ encryptionKey: true }, 'batchline:settings.encryptionKey must be "aws-owned", "stack" or a KMS key ARN'],
    [{ maxAtempts: 3 }, 'batchline:settings.maxAtempts is not a setting'],
    [{ maxAttempts: true }, 'batchline:settings.maxAttempts must be a string or a number, got true'],
    [{ allowUnknownModels: 'yes' }, 'batchline:settings.allowUnknownModels: BATCHLINE_ALLOW_UNKNOWN_MODELS must be true or false, got "yes"'],
  ])('rejects the setting %j, naming it', (setting, message) => {
    expect(() => fromContext({ 'batchline:settings': setting })).toThrow(new RegExp(`^${escapeRegExp(message)}`));
  });

  it.each([
    [{ ...nightly, name: 'night ly' }, 'batchline:schedules[0].name must be 1-40 letters, digits, - or _'],
    [{ ...nightly, cron: '0 23 * * ? *' }, 'batchline:schedules "nightly": cron must be cron(minutes hours day-of-month month day-of-week year)'],
    [{ ...nightly, cron: 'cron(0 23 * * *)' }, 'batchline:schedules "nightly": cron must be cron('],
    [{ ...nightly, cron: 'cron(0 23 * * 1 *)' }, 'batchline:schedules "nightly": cron must be cron('],
    [{ ...nightly, cron: 'rate(0 hours)' }, 'batchline:schedules "nightly": cron must be cron('],
    [
      { ...nightly, prefix: 'inbox/nightly/' },
      'batchline:schedules "nightly": prefix "inbox/nightly/" overlaps inbox/ (every object there already starts a job',
    ],
    [{ ...nightly, prefix: 'results/' }, 'batchline:schedules "nightly": prefix "results/" overlaps results/'],
    [{ ...nightly, prefix: 'scheduled/nightly' }, 'batchline:schedules "nightly": prefix must be a key prefix ending with "/"'],
    [{ ...nightly, timezone: 'Mars/Olympus' }, 'batchline:schedules "nightly": timezone must be an IANA time zone'],
    [{ ...nightly, hour: 3 }, 'batchline:schedules[0] has unknown field(s) hour'],
  ])('rejects the schedule %j, naming it', (schedule, message) => {
    expect(() => fromContext({ 'batchline:schedules': [schedule] })).toThrow(new RegExp(`^${escapeRegExp(message)}`));
  });

  it('rejects two schedules with one name', () => {
    expect(() => fromContext({ 'batchline:schedules': [nightly, { ...nightly, prefix: 'other/' }] })).toThrow(
      'batchline:schedules "nightly": the name is used twice',
    );
  });

  it('reads batchline:nag as off unless it is true or "true", and rejects anything else', () => {
    const nag = (value: unknown) => readNagSetting((key) => (key === 'batchline:nag' ? value : undefined));
    expect([nag(undefined), nag(false), nag('false'), nag(true), nag('true')]).toEqual([false, false, false, true, true]);
    expect(() => nag('yes')).toThrow('batchline:nag must be true or false, got "yes"');
  });

  it('rejects a base URL that is not http(s) and a secret name Secrets Manager would refuse', () => {
    expect(() => fromContext({ 'batchline:anthropicBaseUrl': 'ftp://example.com' })).toThrow(
      'batchline:anthropicBaseUrl must be an http(s) URL, got "ftp://example.com"',
    );
    expect(() => fromContext({ 'batchline:apiKeySecretName': 'has spaces' })).toThrow(
      'batchline:apiKeySecretName must be a Secrets Manager secret name, got "has spaces"',
    );
  });
});

describe('the settings', () => {
  it('cover every variable a config reader in shared/ reads, with the rest set by the stack itself', () => {
    const reader = /(?:requireString|optionalString|intSetting|numberSetting|enumSetting)\(\s*\w+,\s*'([A-Z0-9_]+)'/g;
    const sources = readdirSync(path.join(PROJECT_ROOT, 'shared'), { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => readFileSync(path.join(PROJECT_ROOT, 'shared', file), 'utf8'));
    const read = new Set(sources.flatMap((source) => [...source.matchAll(reader)].map((match) => match[1])));
    const setByStack = [
      'BATCHLINE_BUCKET',
      'BATCHLINE_TABLE',
      'BATCHLINE_API_KEY_SECRET',
      'BATCHLINE_TOPIC_ARN',
      'BATCHLINE_EVENT_BUS',
      'BATCHLINE_STATE_MACHINE_ARN',
      'ANTHROPIC_BASE_URL',
      // The poller's timing: its schedule's period, which the local runtime scales to its clock.
      'BATCHLINE_POLLER_PERIOD_SECONDS',
      'BATCHLINE_POLLER_STALE_SECONDS',
      // Lambda's own, from the function's MemorySize (prepareMemoryMiB for Prepare): the memory Prepare watches.
      'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
    ];
    // Settings are read through the name maps; only what the stack sets itself is read by a literal name.
    expect([...read].sort()).toEqual([...setByStack].sort());
    expect(Object.keys(PIPELINE_SETTING_ENV).sort()).toEqual(Object.keys(readPipelineSettings({})).sort());
    expect(Object.keys(API_SETTING_ENV).sort()).toEqual(['anthropicVersion', 'maxRetries', 'timeoutMs']);
  });
});

describe('synthesis', () => {
  it('fails on a bad schedule, naming it', () => {
    const context = { 'batchline:schedules': [{ ...nightly, prefix: 'inbox/' }] };
    expect(() => synthesize(context)).toThrow(SettingsError);
    expect(() => synthesize(context)).toThrow('batchline:schedules "nightly": prefix "inbox/" overlaps inbox/');
  });

  it('fails on prefixes nested in one another, naming the prop', () => {
    expect(() => synthesize({ 'batchline:settings': { inboxPrefix: 'shared/', resultsPrefix: 'shared/out/' } })).toThrow(
      'batchline:settings.resultsPrefix "shared/out/" is inside the inbox prefix "shared/": every object created there starts a job',
    );
  });

  it('fails on a bad setting, naming it', () => {
    const context = { 'batchline:settings': { maxAttempts: 11 } };
    expect(() => synthesize(context)).toThrow('batchline:settings.maxAttempts: BATCHLINE_MAX_ATTEMPTS must be a whole number from 1 to 10, got "11"');
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
