/**
 * cdk-nag findings (AwsSolutions pack) this stack accepts. Each is acknowledged on the construct it
 * concerns, with the reason a reviewer reads; anything not acknowledged fails test/infra/nag.test.ts
 * and, with `-c batchline:nag=true`, `cdk synth` itself. Uses CDK's own acknowledgements
 * (`Validations`), so the app does not import cdk-nag.
 *
 * cdk-nag names an IAM5 finding by the wildcard itself, `AwsSolutions-IAM5[Resource::<Bucket.Arn>/inbox/*]`,
 * and accepts only that exact id: the helpers below build it from the same token the grant used.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

const PACK = 'AwsSolutions';

/** Accepts a finding of `rule` (e.g. `L1`, `IAM4[Policy::...]`) on `scope` and everything under it. */
export function acceptFinding(scope: IConstruct, rule: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `${PACK}-${rule}`, reason });
}

/** Accepts IAM5 findings for wildcard actions (`s3:GetObject*`) in the policies under `scope`. */
export function acceptWildcardActions(scope: IConstruct, actions: readonly string[], reason: string): void {
  for (const action of actions) acceptFinding(scope, `IAM5[Action::${action}]`, reason);
}

/** Accepts IAM5 findings for wildcard resources (strings or tokens, as granted) in the policies under `scope`. */
export function acceptWildcardResources(scope: IConstruct, resources: readonly string[], reason: string): void {
  const stack = Stack.of(scope);
  for (const resource of resources) acceptFinding(scope, `IAM5[Resource::${flatten(stack.resolve(resource))}]`, reason);
}

/** A CloudFormation value as cdk-nag prints it: `<Id>` for a Ref, `<Id.Attr>` for a GetAtt, joins joined. */
function flatten(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const node = value as Record<string, unknown>;
  if (node['Fn::Join']) {
    const [separator, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map(flatten).join(separator);
  }
  if (node['Fn::Sub']) return flatten(node['Fn::Sub']);
  if (node['Fn::GetAtt']) {
    const [id, attribute] = node['Fn::GetAtt'] as [unknown, unknown];
    return `<${flatten(id)}.${flatten(attribute)}>`;
  }
  if (node['Fn::ImportValue']) return flatten(node['Fn::ImportValue']);
  if (node.Ref) return `<${flatten(node.Ref)}>`;
  return JSON.stringify(value);
}
