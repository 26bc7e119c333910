/**
 * Who hears about jobs: an SNS topic told of every failed or rejected job, and the default
 * EventBridge bus, which gets one `Job Ended` event (source `batchline`) per job. The functions
 * publish to both themselves (shared/notify.ts), so no rule forwards anything.
 */
import * as events from 'aws-cdk-lib/aws-events';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

export interface NotificationsProps {
  /** Encrypt the topic with this key. Default: the AWS-managed key alias/aws/sns. */
  topicKey?: kms.IKey;
  /** Bus for `Job Ended` events. Default: the account's default bus. */
  eventBusName?: string;
}

export class Notifications extends Construct {
  readonly topic: sns.Topic;
  readonly eventBus: events.IEventBus;

  constructor(scope: Construct, id: string, props: NotificationsProps = {}) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'JobFailures', {
      displayName: 'batchline failed jobs',
      masterKey: props.topicKey ?? kms.Alias.fromAliasName(this, 'AwsManagedSnsKey', 'alias/aws/sns'),
      enforceSSL: true,
    });
    this.eventBus = events.EventBus.fromEventBusName(this, 'Bus', props.eventBusName ?? 'default');
  }

  /** Environment and permissions for a function that reports job outcomes. */
  grantNotify(grantee: IGrantable): Record<string, string> {
    this.topic.grantPublish(grantee);
    this.eventBus.grantPutEventsTo(grantee);
    return { BATCHLINE_TOPIC_ARN: this.topic.topicArn, BATCHLINE_EVENT_BUS: this.eventBus.eventBusName };
  }
}
