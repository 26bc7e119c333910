/** The one way the infra tests build the stack: in-process, bundling off, a known context. */
import { Template } from 'aws-cdk-lib/assertions';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildApp, type SynthesizedTemplate } from '../../infra/app';

export const TEST_CONTEXT = {
  'batchline:settings': {
    maxRequestsPerChunk: 50_000,
    validationMode: 'lenient',
    pollFraction: 0.05,
    timeoutMs: 120_000,
    maxConcurrentChunks: 4,
    workRetentionDays: 14,
  },
  'batchline:schedules': [
    { name: 'nightly', cron: 'cron(0 23 * * ? *)', prefix: 'scheduled/nightly/' },
    { name: 'eu-hourly', cron: 'rate(1 hour)', prefix: 'drops/eu/', timezone: 'Europe/Paris' },
  ],
  'batchline:anthropicBaseUrl': 'https://anthropic-proxy.example.com',
};

export function synthesize(context: Record<string, unknown> = TEST_CONTEXT): { template: Template; json: SynthesizedTemplate } {
  const outdir = mkdtempSync(path.join(tmpdir(), 'batchline-infra-test-'));
  try {
    const { stack } = buildApp({ context, bundling: false, outdir });
    const template = Template.fromStack(stack);
    return { template, json: template.toJSON() as SynthesizedTemplate };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** Logical ids of the resources of a type. */
export function logicalIds(json: SynthesizedTemplate, type: string): string[] {
  return Object.entries(json.Resources)
    .filter(([, resource]) => resource.Type === type)
    .map(([id]) => id);
}

/** The logical id of the Lambda function that runs functions/<name>.ts. */
export function functionId(json: SynthesizedTemplate, name: string): string {
  const [id, ...more] = logicalIds(json, 'AWS::Lambda::Function').filter((candidate) => json.Resources[candidate]?.Metadata?.['batchline:handler'] === name);
  if (id === undefined || more.length > 0) throw new Error(`expected exactly one function for ${name}`);
  return id;
}

/** The handler name of each functions/ function whose role gets a policy statement matching `match`. */
export function handlersGranted(json: SynthesizedTemplate, match: (statement: PolicyStatement) => boolean): string[] {
  const roles = new Set<string>();
  for (const id of logicalIds(json, 'AWS::IAM::Policy')) {
    const properties = json.Resources[id]?.Properties as { PolicyDocument: { Statement: PolicyStatement[] }; Roles?: Array<{ Ref: string }> };
    if (!properties.PolicyDocument.Statement.some(match)) continue;
    for (const role of properties.Roles ?? []) roles.add(role.Ref);
  }
  return logicalIds(json, 'AWS::Lambda::Function')
    .filter((id) => {
      const role = (json.Resources[id]?.Properties as { Role: { 'Fn::GetAtt': [string, string] } }).Role['Fn::GetAtt'][0];
      return roles.has(role) && json.Resources[id]?.Metadata?.['batchline:handler'] !== undefined;
    })
    .map((id) => String(json.Resources[id]?.Metadata?.['batchline:handler']))
    .sort();
}

export interface PolicyStatement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
}

export const actionsOf = (statement: PolicyStatement): string[] => (Array.isArray(statement.Action) ? statement.Action : [statement.Action]);

/** The data bucket (inbox/, work/, results/): the one the BucketName output names. */
export function dataBucketId(json: SynthesizedTemplate): string {
  const id = (json.Outputs?.BucketName?.Value as { Ref?: string } | undefined)?.Ref;
  if (id === undefined) throw new Error('the BucketName output does not Ref a bucket');
  return id;
}

/** Every statement of the IAM policies attached to the role `roleId`. */
export function statementsOfRole(json: SynthesizedTemplate, roleId: string): PolicyStatement[] {
  return logicalIds(json, 'AWS::IAM::Policy').flatMap((id) => {
    const properties = json.Resources[id]?.Properties as { PolicyDocument: { Statement: PolicyStatement[] }; Roles?: Array<{ Ref: string }> };
    return (properties.Roles ?? []).some((role) => role.Ref === roleId) ? properties.PolicyDocument.Statement : [];
  });
}

/** The role a function runs as. */
export function roleOf(json: SynthesizedTemplate, functionLogicalId: string): string {
  return (json.Resources[functionLogicalId]?.Properties as { Role: { 'Fn::GetAtt': [string, string] } }).Role['Fn::GetAtt'][0];
}
