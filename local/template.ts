/**
 * The synthesized CloudFormation template, read for the local runtime: every resource gets a local
 * name (a bucket name s3rver accepts, a table name, ARNs in account 000000000000), and the
 * intrinsic functions CDK emits (`Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, ...) resolve to them.
 * Anything it cannot resolve fails loudly: a half-resolved token in an environment variable or a
 * state machine definition would surface much later as a baffling runtime error.
 *
 * It stays free of aws-cdk-lib (seconds to load), which a start from a cached template never needs.
 */
import { LOCAL_REGION } from './emulators';

export const LOCAL_ACCOUNT = '000000000000';

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
  DependsOn?: unknown;
  Condition?: string;
}

export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Parameters?: Record<string, { Type: string; Default?: unknown }>;
  Mappings?: Record<string, Record<string, Record<string, unknown>>>;
  Outputs?: Record<string, unknown>;
}

export class UnresolvableToken extends Error {
  override readonly name = 'UnresolvableToken';
}

/** Marks `Ref: AWS::NoValue`: the property it sits in disappears. */
const NO_VALUE = Symbol('AWS::NoValue');

const PSEUDO: Record<string, string> = {
  'AWS::Region': LOCAL_REGION,
  'AWS::AccountId': LOCAL_ACCOUNT,
  'AWS::Partition': 'aws',
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::StackName': 'batchline-local',
  'AWS::StackId': `arn:aws:cloudformation:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stack/batchline-local/local`,
};

const arn = (service: string, resource: string, region = LOCAL_REGION, account = LOCAL_ACCOUNT) => `arn:aws:${service}:${region}:${account}:${resource}`;

/** An S3 bucket name s3rver (and S3) accepts: lowercase letters, digits and hyphens, 3–63 long. */
function bucketNameFor(logicalId: string): string {
  const name = logicalId
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return name.length >= 3 ? name : `${name}-bucket`;
}

export class LocalNames {
  constructor(readonly template: CfnTemplate) {}

  resource(logicalId: string): CfnResource {
    const resource = this.template.Resources[logicalId];
    if (!resource) throw new UnresolvableToken(`the template has no resource "${logicalId}"`);
    return resource;
  }

  /** The resource's own name: its explicit name property when the template sets one, else its logical id. */
  name(logicalId: string): string {
    const resource = this.resource(logicalId);
    const props = resource.Properties ?? {};
    const explicit = (property: string) => {
      const value = props[property] === undefined ? undefined : this.resolve(props[property]);
      return typeof value === 'string' ? value : undefined;
    };
    switch (resource.Type) {
      case 'AWS::S3::Bucket':
        return explicit('BucketName') ?? bucketNameFor(logicalId);
      case 'AWS::DynamoDB::Table':
      case 'AWS::DynamoDB::GlobalTable':
        return explicit('TableName') ?? logicalId;
      case 'AWS::Lambda::Function':
        return explicit('FunctionName') ?? logicalId;
      case 'AWS::SNS::Topic':
        return explicit('TopicName') ?? logicalId;
      case 'AWS::SQS::Queue':
        return explicit('QueueName') ?? logicalId;
      case 'AWS::SecretsManager::Secret':
        return explicit('Name') ?? logicalId;
      case 'AWS::StepFunctions::StateMachine':
        return explicit('StateMachineName') ?? logicalId;
      case 'AWS::Events::EventBus':
      case 'AWS::Events::Rule':
      case 'AWS::Scheduler::Schedule':
      case 'AWS::Scheduler::ScheduleGroup':
        return explicit('Name') ?? logicalId;
      case 'AWS::IAM::Role':
        return explicit('RoleName') ?? logicalId;
      case 'AWS::Logs::LogGroup':
        return explicit('LogGroupName') ?? logicalId;
      default:
        return logicalId;
    }
  }

  ref(logicalId: string): string {
    const pseudo = PSEUDO[logicalId];
    if (pseudo !== undefined) return pseudo;
    const parameter = this.template.Parameters?.[logicalId];
    if (parameter) {
      if (typeof parameter.Default === 'string' || typeof parameter.Default === 'number') return String(parameter.Default);
      throw new UnresolvableToken(`parameter "${logicalId}" has no default to use locally`);
    }
    const resource = this.resource(logicalId);
    const name = this.name(logicalId);
    switch (resource.Type) {
      case 'AWS::SNS::Topic':
        return arn('sns', name);
      case 'AWS::SecretsManager::Secret':
        return arn('secretsmanager', `secret:${name}`);
      case 'AWS::StepFunctions::StateMachine':
        return arn('states', `stateMachine:${name}`);
      case 'AWS::SQS::Queue':
        return `https://sqs.${LOCAL_REGION}.amazonaws.com/${LOCAL_ACCOUNT}/${name}`;
      default:
        return name;
    }
  }

  getAtt(logicalId: string, attribute: string): string {
    const resource = this.resource(logicalId);
    const name = this.name(logicalId);
    const key = `${resource.Type}.${attribute}`;
    switch (key) {
      case 'AWS::S3::Bucket.Arn':
        return `arn:aws:s3:::${name}`;
      case 'AWS::S3::Bucket.DomainName':
      case 'AWS::S3::Bucket.RegionalDomainName':
        return `${name}.s3.${LOCAL_REGION}.amazonaws.com`;
      case 'AWS::DynamoDB::Table.Arn':
      case 'AWS::DynamoDB::GlobalTable.Arn':
        return arn('dynamodb', `table/${name}`);
      case 'AWS::Lambda::Function.Arn':
        return arn('lambda', `function:${name}`);
      case 'AWS::SNS::Topic.TopicArn':
        return arn('sns', name);
      case 'AWS::SNS::Topic.TopicName':
        return name;
      case 'AWS::SQS::Queue.Arn':
        return arn('sqs', name);
      case 'AWS::SQS::Queue.QueueName':
        return name;
      case 'AWS::SQS::Queue.QueueUrl':
        return this.ref(logicalId);
      case 'AWS::SecretsManager::Secret.Id':
        return this.ref(logicalId);
      case 'AWS::StepFunctions::StateMachine.Arn':
        return arn('states', `stateMachine:${name}`);
      case 'AWS::StepFunctions::StateMachine.Name':
        return name;
      case 'AWS::Events::EventBus.Arn':
        return arn('events', `event-bus/${name}`);
      case 'AWS::Events::EventBus.Name':
        return name;
      case 'AWS::Events::Rule.Arn':
        return arn('events', `rule/${name}`);
      case 'AWS::IAM::Role.Arn':
        return `arn:aws:iam::${LOCAL_ACCOUNT}:role/${name}`;
      case 'AWS::Logs::LogGroup.Arn':
        return arn('logs', `log-group:${name}:*`);
      default:
        throw new UnresolvableToken(`Fn::GetAtt ${logicalId}.${attribute} (${resource.Type}) has no local value`);
    }
  }

  /** Resolves every intrinsic function in a value, recursively. */
  resolve(value: unknown): unknown {
    const resolved = this.resolveValue(value);
    return resolved === NO_VALUE ? undefined : resolved;
  }

  /** Resolves a value that must end up a string. */
  resolveString(value: unknown, what: string): string {
    const resolved = this.resolve(value);
    if (typeof resolved !== 'string') throw new UnresolvableToken(`${what} did not resolve to a string`);
    return resolved;
  }

  private resolveValue(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((item) => this.resolveValue(item)).filter((item) => item !== NO_VALUE);
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value);
    const [first] = entries;
    if (entries.length === 1 && first && (first[0] === 'Ref' || first[0].startsWith('Fn::'))) {
      return this.intrinsic(first[0], first[1]);
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of entries) {
      const resolved = this.resolveValue(item);
      if (resolved !== NO_VALUE) out[key] = resolved;
    }
    return out;
  }

  private intrinsic(fn: string, argument: unknown): unknown {
    switch (fn) {
      case 'Ref': {
        if (argument === 'AWS::NoValue') return NO_VALUE;
        return this.ref(this.expectString(argument, 'Ref'));
      }
      case 'Fn::GetAtt': {
        const [logicalId, ...attribute] = Array.isArray(argument)
          ? (argument.map((part) => this.expectString(this.resolveValue(part), 'Fn::GetAtt')) as string[])
          : this.expectString(argument, 'Fn::GetAtt').split('.');
        if (!logicalId || attribute.length === 0) throw new UnresolvableToken(`malformed Fn::GetAtt ${JSON.stringify(argument)}`);
        return this.getAtt(logicalId, attribute.join('.'));
      }
      case 'Fn::Join': {
        const [separator, parts] = this.expectArray(argument, 'Fn::Join', 2);
        const list = this.resolveValue(parts);
        if (!Array.isArray(list)) throw new UnresolvableToken('Fn::Join needs a list');
        return list.map((part) => this.scalar(part, 'Fn::Join')).join(this.expectString(separator, 'Fn::Join'));
      }
      case 'Fn::Select': {
        const [index, list] = this.expectArray(argument, 'Fn::Select', 2);
        const items = this.resolveValue(list);
        const i = Number(this.resolveValue(index));
        if (!Array.isArray(items) || !Number.isInteger(i) || i < 0 || i >= items.length) {
          throw new UnresolvableToken(`Fn::Select index ${String(index)} is out of range`);
        }
        return items[i];
      }
      case 'Fn::Split': {
        const [separator, source] = this.expectArray(argument, 'Fn::Split', 2);
        return this.scalar(this.resolveValue(source), 'Fn::Split').split(this.expectString(separator, 'Fn::Split'));
      }
      case 'Fn::Sub': {
        const [text, variables] = Array.isArray(argument) ? this.expectArray(argument, 'Fn::Sub', 2) : [argument, {}];
        const vars = (this.resolveValue(variables) ?? {}) as Record<string, unknown>;
        return this.expectString(text, 'Fn::Sub').replace(/\$\{([^}!][^}]*)\}/g, (_match, name: string) => {
          if (name in vars) return this.scalar(vars[name], 'Fn::Sub');
          const dot = name.indexOf('.');
          if (dot > 0 && !name.startsWith('AWS::')) return this.getAtt(name.slice(0, dot), name.slice(dot + 1));
          return this.ref(name);
        });
      }
      case 'Fn::FindInMap': {
        const [map, top, second] = this.expectArray(argument, 'Fn::FindInMap', 3).map((part) => this.scalar(this.resolveValue(part), 'Fn::FindInMap'));
        const found = this.template.Mappings?.[map!]?.[top!]?.[second!];
        if (found === undefined) throw new UnresolvableToken(`Fn::FindInMap ${map}.${top}.${second} is not in the template`);
        return found;
      }
      case 'Fn::Base64':
        return Buffer.from(this.scalar(this.resolveValue(argument), 'Fn::Base64')).toString('base64');
      case 'Fn::ToJsonString':
        return JSON.stringify(this.resolve(argument));
      default:
        throw new UnresolvableToken(`${fn} cannot be resolved locally`);
    }
  }

  private scalar(value: unknown, fn: string): string {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    throw new UnresolvableToken(`${fn} got a non-scalar part: ${JSON.stringify(value)}`);
  }

  private expectString(value: unknown, fn: string): string {
    if (typeof value !== 'string') throw new UnresolvableToken(`${fn} needs a string, got ${JSON.stringify(value)}`);
    return value;
  }

  private expectArray(value: unknown, fn: string, length: number): unknown[] {
    if (!Array.isArray(value) || value.length !== length) {
      throw new UnresolvableToken(`${fn} needs a list of ${length}, got ${JSON.stringify(value)}`);
    }
    return value;
  }
}

/** Logical ids of the template's resources of one type, in template order. */
export function resourcesOfType(template: CfnTemplate, type: string): string[] {
  return Object.entries(template.Resources)
    .filter(([, resource]) => resource.Type === type)
    .map(([logicalId]) => logicalId);
}
