/**
 * Who hears about jobs: an SNS topic told of every failed or rejected job and of every alarm, and
 * the default EventBridge bus, which gets one `Job Ended` event (source `batchline`) per job. The
 * functions publish to both themselves (shared/notify.ts), so no rule forwards anything.
 */
import { ArnFormat, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { denyGrantsExceptForAwsResources } from './encryption';

const CLOUDWATCH = 'cloudwatch.amazonaws.com';

export interface NotificationsProps {
  /**
   * Encrypt the topic with this key. Default: a key of the stack's own, whose policy lets CloudWatch
   * alarms publish. A key you give must allow cloudwatch.amazonaws.com kms:Decrypt and
   * kms:GenerateDataKey* itself, or alarm notifications are dropped.
   */
  topicKey?: kms.IKey;
  /** Bus for `Job Ended` events. Default: the account's default bus. */
  eventBusName?: string;
  /**
   * Tell this topic instead of creating one (and its key). Its policy must let CloudWatch alarms
   * publish, and, when it is encrypted, its key must let them and the functions use it.
   */
  existingTopic?: sns.ITopic;
}

export class Notifications extends Construct {
  readonly topic: sns.ITopic;
  /** undefined when an existing topic is used. */
  readonly topicKey: kms.IKey | undefined;
  readonly eventBus: events.IEventBus;

  constructor(scope: Construct, id: string, props: NotificationsProps = {}) {
    super(scope, id);
    this.eventBus = events.EventBus.fromEventBusName(this, 'Bus', props.eventBusName ?? 'default');
    if (props.existingTopic) {
      this.topic = props.existingTopic;
      this.topicKey = undefined;
    } else {
      [this.topic, this.topicKey] = this.createTopic(props);
    }
  }

  private createTopic(props: NotificationsProps): [sns.Topic, kms.IKey] {
    // Not the AWS-managed alias/aws/sns: its policy cannot be changed, and CloudWatch alarms cannot
    // publish to a topic under it (the publish fails, and shows only in the alarm's history).
    const topicKey =
      props.topicKey ??
      new kms.Key(this, 'TopicKey', {
        description: 'batchline: encrypts the failed-jobs and alarms topic',
        enableKeyRotation: true,
        // It protects messages in flight only; a retained key would bill monthly for nothing.
        removalPolicy: RemovalPolicy.DESTROY,
      });
    if (topicKey instanceof kms.Key) denyGrantsExceptForAwsResources(topicKey);
    const stack = Stack.of(this);
    // Alarms of this account only: a confused deputy elsewhere cannot use the key through CloudWatch.
    topicKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [new iam.ServicePrincipal(CLOUDWATCH)],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
    );
    const topic = new sns.Topic(this, 'JobFailures', {
      displayName: 'batchline failed jobs and alarms',
      masterKey: topicKey,
      enforceSSL: true,
    });
    // The topic's own policy replaces SNS's default one, so alarms need a statement of their own.
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsOfThisAccount',
        principals: [new iam.ServicePrincipal(CLOUDWATCH)],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnLike: {
            'aws:SourceArn': stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
          },
        },
      }),
    );
    return [topic, topicKey];
  }

  /** Environment and permissions for a function that reports job outcomes. */
  grantNotify(grantee: iam.IGrantable): Record<string, string> {
    this.topic.grantPublish(grantee);
    this.eventBus.grantPutEventsTo(grantee);
    return { BATCHLINE_TOPIC_ARN: this.topic.topicArn, BATCHLINE_EVENT_BUS: this.eventBus.eventBusName };
  }
}
