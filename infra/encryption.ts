/**
 * KMS keys of the stack: the data key the `encryptionKey` setting asks for (bucket, table, log
 * groups), and the hardening every key of the stack's gets.
 */
import { ArnFormat, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';
import type { EncryptionKeySetting } from './settings';

/**
 * Only AWS services may create grants on the key, for the AWS resources they run (DynamoDB does, for
 * a table under the key): a principal that may use the key cannot hand that use on to another
 * (Control Tower CT.KMS.PR.3).
 */
export function denyGrantsExceptForAwsResources(key: kms.Key): void {
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'DenyGrantsExceptForAwsResources',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['kms:CreateGrant'],
      resources: ['*'],
      conditions: { BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' } },
    }),
  );
}

/**
 * The key for the bucket, the table and the log groups, or none (`aws-owned`). A key of the
 * stack's is kept when the stack is deleted, as the bucket and the table it protects are.
 */
export function dataKey(scope: Construct, id: string, setting: EncryptionKeySetting): kms.IKey | undefined {
  if (setting === 'aws-owned') return undefined;
  if (setting !== 'stack') return kms.Key.fromKeyArn(scope, id, setting);
  const key = new kms.Key(scope, id, {
    description: 'batchline: encrypts the bucket, the table and the logs',
    enableKeyRotation: true,
    removalPolicy: RemovalPolicy.RETAIN,
  });
  denyGrantsExceptForAwsResources(key);
  // CloudWatch Logs encrypts a group's events with the key, for log groups of this account and region.
  const stack = Stack.of(scope);
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudWatchLogsOfThisAccount',
      principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: {
        ArnLike: {
          'kms:EncryptionContext:aws:logs:arn': stack.formatArn({
            service: 'logs',
            resource: 'log-group',
            resourceName: '*',
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        },
      },
    }),
  );
  return key;
}
