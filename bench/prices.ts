/**
 * AWS list prices the cost estimate uses: us-east-1, on-demand, no free tier, as of the date below.
 * Prices change; check the pages named here before quoting a figure.
 */

export const PRICES_AS_OF = '2026-11-24';

export const AWS_PRICES = {
  /**
   * Lambda, arm64: $0.0000133334 per GB-second (first 7.5 billion GB-s a month), $0.20 per million
   * requests. https://aws.amazon.com/lambda/pricing/ (cross-checked: artillery's Lambda price table
   * `arm64: 1333340` ×1e-10, and cloudchipr.com's Lambda pricing breakdown).
   */
  lambdaArmPerGbSecond: 0.0000133334,
  lambdaPerRequest: 0.2 / 1_000_000,
  /**
   * Step Functions Standard: $0.025 per 1,000 state transitions; retries count as transitions.
   * https://aws.amazon.com/step-functions/pricing/
   */
  stepFunctionsPerTransition: 0.025 / 1_000,
  /**
   * DynamoDB on-demand (after the November 2024 cut): $0.625 per million write request units,
   * $0.125 per million read request units. https://aws.amazon.com/dynamodb/pricing/on-demand/
   * (units: 1 KB per write, 4 KB per strongly consistent read, half for eventually consistent).
   */
  dynamoPerWriteUnit: 0.625 / 1_000_000,
  dynamoPerReadUnit: 0.125 / 1_000_000,
  /**
   * S3 Standard: $0.005 per 1,000 PUT, COPY, POST, LIST requests (multipart create, part and
   * complete included); $0.0004 per 1,000 GET, HEAD and other requests; DELETE and abort are free.
   * https://aws.amazon.com/s3/pricing/
   */
  s3PerTier1Request: 0.005 / 1_000,
  s3PerTier2Request: 0.0004 / 1_000,
  /**
   * EventBridge Scheduler: $1.00 per million invocations after 14 million free a month (the free
   * tier is left out, as everywhere here). Secondary sources only (unverified).
   */
  schedulerPerInvocation: 1 / 1_000_000,
} as const;
