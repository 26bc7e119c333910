/**
 * The one bucket (its inbox, work and results prefixes), its access-log bucket, and the one table. All three
 * outlive the stack unless told otherwise. An existing bucket can stand in for the first two.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { DEFAULT_PREFIXES, type Prefixes } from '../shared/store/keys';
import { TABLE_GSIS, TABLE_KEY, TABLE_TTL_ATTRIBUTE } from '../shared/store/table';

/** Where in the access-log bucket the data bucket's server access logs go. */
export const ACCESS_LOG_PREFIX = 'data-bucket/';

export interface StorageProps {
  /** Where in the bucket the inputs, work files and outputs are: the lifecycle rules follow them. Default DEFAULT_PREFIXES. */
  prefixes?: Prefixes;
  /** Days before objects under the work prefix (chunk files, raw batch results) expire. Default 30. */
  workRetentionDays?: number;
  /**
   * Days before overwritten or deleted versions under the work and results prefixes are removed. Default 7.
   * Other versions (the inputs) are kept at least workRetentionDays: see the bucket's rules.
   */
  noncurrentVersionDays?: number;
  /** Days before an unfinished multipart upload is aborted. Default 2. */
  incompleteUploadDays?: number;
  /** Days the data bucket's server access logs are kept. Default 90. */
  accessLogRetentionDays?: number;
  /**
   * Encrypt the bucket (with S3 Bucket Keys, so KMS is called per object, not per request) and the
   * table with this key. Default: SSE-S3 and DynamoDB's AWS-owned key. The access-log bucket keeps
   * SSE-S3 either way: S3's log delivery writes it, and it holds request records, not data.
   */
  encryptionKey?: kms.IKey;
  /**
   * Use this bucket instead of creating one (and its access-log bucket). Its lifecycle, versioning,
   * encryption and event notifications stay yours: it must send its events to EventBridge.
   */
  existingBucket?: s3.IBucket;
  /** What deleting the stack does to the buckets and the table. Default RETAIN. */
  removalPolicy?: RemovalPolicy;
}

export class Storage extends Construct {
  readonly bucket: s3.IBucket;
  /** undefined when an existing bucket is used. */
  readonly accessLogs: s3.Bucket | undefined;
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: StorageProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    if (props.existingBucket) {
      this.bucket = props.existingBucket;
      this.accessLogs = undefined;
    } else {
      const created = this.createBuckets(props, removalPolicy);
      this.bucket = created.bucket;
      this.accessLogs = created.accessLogs;
    }

    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE_KEY.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE_KEY.sortKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      ...(props.encryptionKey ? { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: props.encryptionKey } : {}),
      timeToLiveAttribute: TABLE_TTL_ATTRIBUTE,
      removalPolicy,
    });
    for (const gsi of TABLE_GSIS) {
      this.table.addGlobalSecondaryIndex({
        indexName: gsi.indexName,
        partitionKey: { name: gsi.partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: { name: gsi.sortKey, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.ALL,
      });
    }
  }

  private createBuckets(props: StorageProps, removalPolicy: RemovalPolicy): { bucket: s3.Bucket; accessLogs: s3.Bucket } {
    // Log delivery allowed by a bucket policy (logging.s3.amazonaws.com, from this bucket only),
    // instead of the legacy log-delivery ACL, which needs ACLs enabled on the log bucket.
    this.node.setContext(cxapi.S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);

    // Who read or wrote which object, for audits and for tracing a surprise in results/. It logs
    // nothing itself (each log delivery would be logged, without end); cdk-nag knows a log bucket.
    // Versioned, so a log deleted or overwritten before its time can still be read for a while.
    const noncurrentVersionDays = props.noncurrentVersionDays ?? 7;
    const workRetentionDays = props.workRetentionDays ?? 30;
    const { work, results } = props.prefixes ?? DEFAULT_PREFIXES;
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [
        { id: 'expire-access-logs', expiration: Duration.days(props.accessLogRetentionDays ?? 90) },
        { id: 'tidy-versions', noncurrentVersionExpiration: Duration.days(noncurrentVersionDays), expiredObjectDeleteMarker: true },
      ],
      removalPolicy,
    });

    const bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      ...(props.encryptionKey
        ? { encryption: s3.BucketEncryption.KMS, encryptionKey: props.encryptionKey, bucketKeyEnabled: true }
        : { encryption: s3.BucketEncryption.S3_MANAGED }),
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: ACCESS_LOG_PREFIX,
      lifecycleRules: [
        { id: 'expire-work-files', prefix: work, expiration: Duration.days(workRetentionDays) },
        {
          id: 'tidy-versions-and-uploads',
          // A job's first attempts are byte ranges of the input version it was made from
          // (shared/jobs/chunk-files.ts), so an input overwritten or deleted mid-job must stay
          // readable as long as the job's work files do.
          noncurrentVersionExpiration: Duration.days(Math.max(noncurrentVersionDays, workRetentionDays)),
          abortIncompleteMultipartUploadAfter: Duration.days(props.incompleteUploadDays ?? 2),
          // Expiring work files in a versioned bucket leaves delete markers behind; clear them once alone.
          expiredObjectDeleteMarker: true,
        },
        // No input lives under the work or results prefix: their old versions go sooner (where expirations
        // overlap, S3 applies the shorter).
        { id: 'tidy-work-versions', prefix: work, noncurrentVersionExpiration: Duration.days(noncurrentVersionDays) },
        { id: 'tidy-results-versions', prefix: results, noncurrentVersionExpiration: Duration.days(noncurrentVersionDays) },
      ],
      removalPolicy,
    });
    // Object Created events reach the default bus; the trigger rule picks the inbox's out of them. Set on
    // the bucket itself: CDK's eventBridgeEnabled would add a custom resource and a Lambda function
    // of its own to call PutBucketNotification, which CloudFormation does natively.
    (bucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = { eventBridgeConfiguration: { eventBridgeEnabled: true } };
    return { bucket, accessLogs };
  }
}
