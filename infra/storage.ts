/** The one bucket (inbox/, work/, results/) and the one table. Both outlive the stack. */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { WORK_PREFIX } from '../shared/store/keys';
import { TABLE_GSIS, TABLE_KEY, TABLE_TTL_ATTRIBUTE } from '../shared/store/table';

export interface StorageProps {
  /** Days before `work/` objects (chunk files, raw batch results) expire. Default 30. */
  workRetentionDays?: number;
  /** Days before overwritten or deleted object versions are removed. Default 7. */
  noncurrentVersionDays?: number;
  /** Days before an unfinished multipart upload is aborted. Default 2. */
  incompleteUploadDays?: number;
}

export class Storage extends Construct {
  readonly bucket: s3.Bucket;
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: StorageProps = {}) {
    super(scope, id);

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      // Object Created events reach the default bus; the trigger rule picks inbox/ out of them.
      eventBridgeEnabled: true,
      lifecycleRules: [
        { id: 'expire-work-files', prefix: WORK_PREFIX, expiration: Duration.days(props.workRetentionDays ?? 30) },
        {
          id: 'tidy-versions-and-uploads',
          noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays ?? 7),
          abortIncompleteMultipartUploadAfter: Duration.days(props.incompleteUploadDays ?? 2),
          // Expiring work/ in a versioned bucket leaves delete markers behind; clear them once alone.
          expiredObjectDeleteMarker: true,
        },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE_KEY.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE_KEY.sortKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TABLE_TTL_ATTRIBUTE,
      removalPolicy: RemovalPolicy.RETAIN,
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
}
