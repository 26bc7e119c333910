/**
 * CDK makes a Lambda function (and a state machine) `DependsOn` both its role and the role's
 * policy, so the policy exists before the first invocation. The role itself is already implied by
 * the `Fn::GetAtt` of its ARN in the resource's own properties, so cfn-lint flags that half
 * (W3005, aws/aws-cdk#24578). This aspect swaps the dependency on the role for one on the role's
 * default policy: the policy names the role (`Roles: [Ref]`), so CloudFormation still creates the
 * role, then the policy, then the resource, and deletes them in the reverse order.
 */
import { CfnResource, Stack, type IAspect } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { IConstruct } from 'constructs';

export class DependOnRolePolicyOnly implements IAspect {
  visit(node: IConstruct): void {
    if (!(node instanceof CfnResource)) return;
    const roleArn = roleArnOf(node);
    if (roleArn === undefined) return;
    const stack = Stack.of(node);
    const named = JSON.stringify(stack.resolve(roleArn));
    for (const dependency of node.node.dependencies) {
      if (!(dependency instanceof iam.Role) || JSON.stringify(stack.resolve(dependency.roleArn)) !== named) continue;
      node.node.removeDependency(dependency);
      const policy = dependency.node.tryFindChild('DefaultPolicy');
      if (policy) node.node.addDependency(policy);
    }
  }
}

/** The role a resource runs as, as its own properties name it (so the reference orders them already). */
function roleArnOf(resource: CfnResource): string | undefined {
  if (resource instanceof lambda.CfnFunction) return resource.role;
  if (resource instanceof sfn.CfnStateMachine) return resource.roleArn;
  return undefined;
}
