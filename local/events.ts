/**
 * What EventBridge and EventBridge Scheduler do for the deployed stack, done locally from the same
 * template: an object created in the bucket becomes the `Object Created` event S3 sends to
 * EventBridge, the stack's own rules (their event patterns) decide whether it starts the job state
 * machine, and the stack's schedules say which function to invoke with which input.
 */
import { randomUUID } from 'node:crypto';
import type { ExecutionDescription } from './aws-shim';
import type { S3EventRecord } from './emulators';
import { LOCAL_REGION } from './emulators';
import type { S3ObjectCreatedEvent as RegisterS3Event } from '../shared/jobs/events';
import { LOCAL_ACCOUNT, type LocalNames, resourcesOfType, type CfnTemplate } from './template';

/** What S3 sends EventBridge for a created object: the shape Register accepts, with every field S3 fills. */
export type S3ObjectCreatedEvent = RegisterS3Event & {
  version: '0';
  id: string;
  'detail-type': 'Object Created';
  source: 'aws.s3';
  time: string;
  resources: string[];
  account: string;
  region: string;
  detail: {
    object: { key: string; size: number; etag: string; sequencer: string; 'version-id'?: string };
    reason: 'PutObject' | 'CopyObject' | 'CompleteMultipartUpload';
    'request-id': string;
    requester: string;
    'source-ip-address': string;
  };
};

/** EventBridge times have whole seconds. */
const eventTime = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

const REASONS: Record<string, S3ObjectCreatedEvent['detail']['reason']> = {
  'ObjectCreated:Put': 'PutObject',
  'ObjectCreated:Copy': 'CopyObject',
  'ObjectCreated:Post': 'CompleteMultipartUpload',
  'ObjectCreated:CompleteMultipartUpload': 'CompleteMultipartUpload',
};

/** The EventBridge event S3 sends for one created object (s3rver's notification record). */
export function objectCreatedEvent(record: S3EventRecord, now = new Date()): S3ObjectCreatedEvent {
  const { bucket, object } = record.s3;
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Object Created',
    source: 'aws.s3',
    account: LOCAL_ACCOUNT,
    time: eventTime(now),
    region: LOCAL_REGION,
    resources: [`arn:aws:s3:::${bucket.name}`],
    detail: {
      version: '0',
      bucket: { name: bucket.name },
      // As stored: S3's EventBridge events, unlike its SQS/SNS/Lambda notifications, do not URL-encode the key.
      object: {
        key: object.key,
        size: object.size,
        etag: (object.eTag ?? '').replace(/"/g, ''),
        // Present when the bucket versions its objects (the deployed one does; s3rver cannot).
        ...(object.versionId ? { 'version-id': object.versionId } : {}),
        sequencer: object.sequencer,
      },
      'request-id': randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase(),
      requester: LOCAL_ACCOUNT,
      'source-ip-address': '127.0.0.1',
      reason: REASONS[record.eventName] ?? 'PutObject',
    },
  };
}

export class UnsupportedPattern extends Error {
  override readonly name = 'UnsupportedPattern';
}

/**
 * EventBridge event-pattern matching, for the operators a stack like this one uses: exact values,
 * `prefix`, `suffix`, `anything-but`, `exists`, `equals-ignore-case`, `wildcard` and `numeric`.
 * An operator it does not know throws rather than guessing.
 */
export function matchesPattern(pattern: Record<string, unknown>, event: unknown): boolean {
  return Object.entries(pattern).every(([field, rule]) => {
    const value = event !== null && typeof event === 'object' ? (event as Record<string, unknown>)[field] : undefined;
    if (Array.isArray(rule)) return matchesAny(rule, value);
    if (rule !== null && typeof rule === 'object')
      return value !== null && typeof value === 'object' && !Array.isArray(value) && matchesPattern(rule as Record<string, unknown>, value);
    throw new UnsupportedPattern(`pattern field "${field}" must be a list or an object, got ${JSON.stringify(rule)}`);
  });
}

function matchesAny(rules: unknown[], value: unknown): boolean {
  const existsRule = rules.find((rule) => rule !== null && typeof rule === 'object' && 'exists' in rule) as { exists: boolean } | undefined;
  if (existsRule) return existsRule.exists === (value !== undefined);
  if (value === undefined) return false;
  const values = Array.isArray(value) ? value : [value];
  return values.some((v) => rules.some((rule) => matchesRule(rule, v)));
}

function matchesRule(rule: unknown, value: unknown): boolean {
  if (rule === null || typeof rule !== 'object') return rule === value;
  const [operator, argument] = Object.entries(rule)[0] ?? [];
  switch (operator) {
    case 'prefix':
      return typeof value === 'string' && stringTest(argument, value, (a, v) => v.startsWith(a));
    case 'suffix':
      return typeof value === 'string' && stringTest(argument, value, (a, v) => v.endsWith(a));
    case 'equals-ignore-case':
      return typeof value === 'string' && typeof argument === 'string' && value.toLowerCase() === argument.toLowerCase();
    case 'wildcard':
      return typeof value === 'string' && typeof argument === 'string' && wildcardRegex(argument).test(value);
    case 'anything-but': {
      if (Array.isArray(argument)) return !argument.includes(value);
      if (argument !== null && typeof argument === 'object') return !matchesRule(argument, value);
      return argument !== value;
    }
    case 'numeric':
      return typeof value === 'number' && Array.isArray(argument) && numericTest(argument, value);
    default:
      throw new UnsupportedPattern(`event pattern operator ${JSON.stringify(rule)} is not supported locally`);
  }
}

function stringTest(argument: unknown, value: string, test: (argument: string, value: string) => boolean): boolean {
  if (typeof argument === 'string') return test(argument, value);
  const ignoreCase = (argument as { 'equals-ignore-case'?: unknown } | null)?.['equals-ignore-case'];
  if (typeof ignoreCase === 'string') return test(ignoreCase.toLowerCase(), value.toLowerCase());
  throw new UnsupportedPattern(`string operator argument ${JSON.stringify(argument)} is not supported locally`);
}

function wildcardRegex(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split('*')
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

function numericTest(conditions: unknown[], value: number): boolean {
  for (let i = 0; i + 1 < conditions.length; i += 2) {
    const bound = Number(conditions[i + 1]);
    const ok = { '=': value === bound, '<': value < bound, '<=': value <= bound, '>': value > bound, '>=': value >= bound }[String(conditions[i])];
    if (ok === undefined) throw new UnsupportedPattern(`numeric operator ${String(conditions[i])} is not supported locally`);
    if (!ok) return false;
  }
  return true;
}

/** A rule of the template that sends events to a target, with what the target receives. */
export interface EventRuleTarget {
  rule: string;
  /** The bus the rule listens on (by name). */
  eventBus: string;
  pattern: Record<string, unknown>;
  targetArn: string;
  /** The target's input for an event: the event itself unless the target sets `Input`. */
  input(event: unknown): unknown;
}

/**
 * Every target of the template's enabled event-pattern rules. Only what decides delivery is
 * resolved: dead-letter queues, retry policies and roles have no local meaning.
 */
export function eventRuleTargets(template: CfnTemplate, names: LocalNames): EventRuleTarget[] {
  const found: EventRuleTarget[] = [];
  for (const logicalId of resourcesOfType(template, 'AWS::Events::Rule')) {
    const props = names.resource(logicalId).Properties ?? {};
    if (props.State === 'DISABLED' || !props.EventPattern) continue;
    const rawPattern = names.resolve(props.EventPattern);
    const pattern = (typeof rawPattern === 'string' ? JSON.parse(rawPattern) : rawPattern) as Record<string, unknown>;
    const eventBus = busName(props.EventBusName === undefined ? 'default' : names.resolveString(props.EventBusName, `the bus of rule ${logicalId}`));
    for (const target of (props.Targets ?? []) as Array<Record<string, unknown>>) {
      if (target.InputPath !== undefined || target.InputTransformer !== undefined) {
        throw new UnsupportedPattern(`rule ${logicalId}: InputPath and InputTransformer targets are not supported locally`);
      }
      const input = names.resolve(target.Input);
      const fixed = typeof input === 'string' ? (JSON.parse(input) as unknown) : undefined;
      const targetArn = names.resolveString(target.Arn, `a target of rule ${logicalId}`);
      found.push({ rule: logicalId, eventBus, pattern, targetArn, input: (event) => fixed ?? event });
    }
  }
  return found;
}

/** A bus named by name or ARN → its name. */
export const busName = (nameOrArn: string): string => nameOrArn.slice(nameOrArn.lastIndexOf('/') + 1);

/** An event as EventBridge delivers it to targets. */
export interface BusEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: unknown;
}

/** What a PutEvents entry becomes on the bus. */
export function putEventAsBusEvent(entry: {
  eventId: string;
  source: string;
  detailType: string;
  detail: unknown;
  resources: string[];
  time: string;
}): BusEvent {
  return {
    version: '0',
    id: entry.eventId,
    'detail-type': entry.detailType,
    source: entry.source,
    account: LOCAL_ACCOUNT,
    time: eventTime(new Date(entry.time)),
    region: LOCAL_REGION,
    resources: entry.resources,
    detail: entry.detail,
  };
}

/** The `Step Functions Execution Status Change` event Step Functions sends when an execution starts or ends. */
export function executionStatusEvent(execution: Omit<ExecutionDescription, 'status'> & { status: string }): BusEvent {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account: LOCAL_ACCOUNT,
    time: eventTime(execution.stopDate ?? execution.startDate),
    region: LOCAL_REGION,
    resources: [execution.executionArn],
    detail: {
      executionArn: execution.executionArn,
      stateMachineArn: execution.stateMachineArn,
      name: execution.name,
      status: execution.status,
      startDate: execution.startDate.getTime(),
      stopDate: execution.stopDate?.getTime() ?? null,
      input: execution.input,
      output: execution.output ?? null,
      inputDetails: { included: true },
      outputDetails: { included: execution.output !== undefined },
      error: execution.error ?? null,
      cause: execution.cause ?? null,
    },
  };
}

/** A schedule of the template: which function it invokes, with what input. */
export interface LocalSchedule {
  /** The schedule's resource name (logical id unless named). */
  name: string;
  expression: string;
  targetArn: string;
  input: unknown;
}

/** EventBridge Scheduler schedules, and EventBridge rules with a ScheduleExpression. */
export function schedulesOf(template: CfnTemplate, names: LocalNames): LocalSchedule[] {
  const schedules: LocalSchedule[] = [];
  const parse = (input: unknown) => (typeof input === 'string' ? (JSON.parse(input) as unknown) : (input ?? {}));
  for (const logicalId of resourcesOfType(template, 'AWS::Scheduler::Schedule')) {
    const props = names.resource(logicalId).Properties ?? {};
    if (props.State === 'DISABLED') continue;
    const target = (props.Target ?? {}) as Record<string, unknown>;
    schedules.push({
      name: names.name(logicalId),
      expression: String(names.resolve(props.ScheduleExpression)),
      targetArn: names.resolveString(target.Arn, `the target of schedule ${logicalId}`),
      input: parse(names.resolve(target.Input)),
    });
  }
  for (const logicalId of resourcesOfType(template, 'AWS::Events::Rule')) {
    const props = names.resource(logicalId).Properties ?? {};
    const expression = names.resolve(props.ScheduleExpression);
    if (props.State === 'DISABLED' || typeof expression !== 'string') continue;
    for (const target of (props.Targets ?? []) as Array<Record<string, unknown>>) {
      schedules.push({
        name: names.name(logicalId),
        expression,
        targetArn: names.resolveString(target.Arn, `a target of rule ${logicalId}`),
        input: parse(names.resolve(target.Input)),
      });
    }
  }
  return schedules;
}
