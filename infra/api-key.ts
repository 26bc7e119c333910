/**
 * The Anthropic API key, kept in Secrets Manager and read by the functions at run time: the
 * functions get only the secret's id (BATCHLINE_API_KEY_SECRET), never the key itself.
 */
import { SecretValue } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { acceptFinding } from './nag';
import { API_KEY_PLACEHOLDER } from '../shared/anthropic/secret';

/** What a new secret holds until the user puts the real key in (see infra/README.md). */
export { API_KEY_PLACEHOLDER };

export interface ApiKeyProps {
  /** Use this existing secret (its SecretString is the key) instead of creating one. */
  existingSecretName?: string;
}

export class ApiKey extends Construct {
  readonly secret: secretsmanager.ISecret;
  /** What BATCHLINE_API_KEY_SECRET holds: the new secret's full ARN, or the existing secret's name. */
  readonly secretId: string;

  constructor(scope: Construct, id: string, props: ApiKeyProps = {}) {
    super(scope, id);
    if (props.existingSecretName !== undefined) {
      this.secret = secretsmanager.Secret.fromSecretNameV2(this, 'Secret', props.existingSecretName);
      // Its full ARN (with the random suffix) is unknown here; GetSecretValue takes the name.
      this.secretId = props.existingSecretName;
    } else {
      this.secret = new secretsmanager.Secret(this, 'Secret', {
        description:
          'Anthropic API key for batchline. Replace the placeholder: aws secretsmanager put-secret-value --secret-id <ApiKeySecretName> --secret-string <key>',
        // A placeholder, not a secret: the real key never passes through CloudFormation.
        secretStringValue: SecretValue.unsafePlainText(API_KEY_PLACEHOLDER),
      });
      this.secretId = this.secret.secretArn;
      acceptFinding(
        this.secret,
        'SMG4',
        'It holds an Anthropic API key, which only the Anthropic Console issues: no rotation function could mint one. Rotate by putting a new key in the secret',
      );
    }
  }

  grantRead(grantee: IGrantable) {
    return this.secret.grantRead(grantee);
  }
}
