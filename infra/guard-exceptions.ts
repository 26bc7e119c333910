/**
 * The AWS Control Tower proactive controls (run by cfn-guard through @cdklabs/cdk-validator-cfnguard)
 * that the stack does not meet, each with its reason: the one list `npm run check:deploy` reads
 * (scripts/check-deploy.ts) and infra/README.md shows. A finding that no exception here explains
 * fails the check, and so does an exception that no finding needs any more.
 */
import type { BatchlineSettings } from './settings';

/** One resource that fails one control. */
export interface GuardFinding {
  /** The control's id, e.g. `CT.S3.PR.9`. */
  control: string;
  /** CloudFormation type of the resource. */
  type: string;
  /** Its construct path under the Batchline construct, e.g. `Storage/Bucket/Resource`. */
  path: string;
}

export interface GuardException {
  control: string;
  /** What the control asks, in a few words. */
  asks: string;
  /** Every resource of a type, or the constructs at these paths under the Batchline construct (and what they hold). */
  resources: { type: string } | { paths: string[] };
  reason: string;
  /** A setting that meets the control: while it does, the exception does not apply. */
  metBy?: { setting: string; met: (settings: BatchlineSettings) => boolean };
}

const DATA_BUCKET = 'Storage/Bucket';
const ACCESS_LOGS = 'Storage/AccessLogs';

export const GUARD_EXCEPTIONS: readonly GuardException[] = [
  {
    control: 'CT.CLOUDWATCH.PR.2',
    asks: 'log groups kept at least a year',
    resources: { type: 'AWS::Logs::LogGroup' },
    reason:
      'Retention is the logRetentionDays setting, 30 days by default: the logs hold ids, counts and errors (execution data is off, prompts and results never reach them), and a month covers investigating a job at a twelfth of the storage',
    metBy: { setting: 'logRetentionDays ≥ 365', met: (settings) => settings.logRetentionDays >= 365 },
  },
  {
    control: 'CT.CLOUDWATCH.PR.3',
    asks: 'log groups encrypted with a KMS key',
    resources: { type: 'AWS::Logs::LogGroup' },
    reason: 'CloudWatch Logs encrypts them with its own keys unless the encryptionKey setting names a KMS key, which costs a key and its requests',
    metBy: { setting: 'encryptionKey', met: (settings) => settings.encryptionKey !== 'aws-owned' },
  },
  {
    control: 'CT.DYNAMODB.PR.2',
    asks: 'the table encrypted with a KMS key',
    resources: { paths: ['Storage/Table'] },
    reason: "Encrypted with DynamoDB's AWS-owned key (no KMS charges) unless the encryptionKey setting names a KMS key",
    metBy: { setting: 'encryptionKey', met: (settings) => settings.encryptionKey !== 'aws-owned' },
  },
  {
    control: 'CT.S3.PR.10',
    asks: 'buckets encrypted with a KMS key',
    resources: { paths: [DATA_BUCKET] },
    reason: 'SSE-S3 (no KMS charges) unless the encryptionKey setting names a KMS key, which the bucket then uses with S3 Bucket Keys',
    metBy: { setting: 'encryptionKey', met: (settings) => settings.encryptionKey !== 'aws-owned' },
  },
  {
    control: 'CT.S3.PR.10',
    asks: 'buckets encrypted with a KMS key',
    resources: { paths: [ACCESS_LOGS] },
    reason:
      "The access-log bucket keeps SSE-S3 whatever the setting: S3's log delivery writes it, which under SSE-KMS needs the key to trust logging.s3.amazonaws.com, and it holds request records (who read which key), never prompts or results",
  },
  {
    control: 'CT.LAMBDA.PR.3',
    asks: 'functions in a customer-managed VPC',
    resources: { type: 'AWS::Lambda::Function' },
    reason:
      'The functions reach only AWS endpoints and the Anthropic API on the internet, nothing private: a VPC would add NAT gateways (about $32 a month each, plus data) or an egress proxy and protect no resource',
  },
  {
    control: 'CT.S3.PR.2',
    asks: 'server access logging on every bucket',
    resources: { paths: [ACCESS_LOGS] },
    reason: 'It is the server access log destination: S3 advises that a destination bucket not have logging on, which would log every log delivery',
  },
  {
    control: 'CT.S3.PR.4',
    asks: 'event notifications on every bucket',
    resources: { paths: [ACCESS_LOGS] },
    reason: 'Nothing acts on a log delivery; the data bucket sends its events to EventBridge',
  },
  {
    control: 'CT.S3.PR.9',
    asks: 'S3 Object Lock on every bucket',
    resources: { paths: [DATA_BUCKET] },
    reason:
      'Object Lock makes objects write-once and cannot be turned off: the pipeline expires work/ (workRetentionDays) and re-finalizing a job rewrites results/. Versioning keeps overwritten or deleted objects instead: inputs as long as work files live (a job reads its chunks from the very upload it was made from), work/ and results/ 7 days',
  },
  {
    control: 'CT.S3.PR.9',
    asks: 'S3 Object Lock on every bucket',
    resources: { paths: [ACCESS_LOGS] },
    reason: 'S3 does not deliver server access logs to a bucket with Object Lock enabled',
  },
  {
    control: 'CT.SQS.PR.1',
    asks: 'a dead-letter queue for every queue',
    resources: { paths: ['Triggers/DeadLetters'] },
    reason: "It is the stack's dead-letter queue; one behind it would have no consumer either (its alarm tells someone instead)",
  },
];

export interface GuardJudgement {
  /** Findings an exception explains, with it. */
  explained: Array<{ finding: GuardFinding; exception: GuardException }>;
  /** Findings no exception explains: the check fails. */
  unexplained: GuardFinding[];
  /** Exceptions (or paths of one) that apply to these settings yet match no finding: the check fails. */
  unused: Array<{ exception: GuardException; path?: string }>;
}

/** Sorts a template's findings against the exceptions that apply with its settings. */
export function judgeGuardFindings(
  findings: readonly GuardFinding[],
  settings: BatchlineSettings,
  exceptions: readonly GuardException[] = GUARD_EXCEPTIONS,
): GuardJudgement {
  const applying = exceptions.filter((exception) => !exception.metBy?.met(settings));
  const judgement: GuardJudgement = { explained: [], unexplained: [], unused: [] };
  for (const finding of findings) {
    const exception = applying.find((candidate) => candidate.control === finding.control && covers(candidate, finding));
    if (exception) judgement.explained.push({ finding, exception });
    else judgement.unexplained.push(finding);
  }
  for (const exception of applying) {
    const used = (path?: string) =>
      judgement.explained.some((entry) => entry.exception === exception && (path === undefined || under(entry.finding.path, path)));
    if ('paths' in exception.resources) {
      for (const path of exception.resources.paths) if (!used(path)) judgement.unused.push({ exception, path });
    } else if (!used()) {
      judgement.unused.push({ exception });
    }
  }
  return judgement;
}

function covers(exception: GuardException, finding: GuardFinding): boolean {
  const { resources } = exception;
  return 'type' in resources ? resources.type === finding.type : resources.paths.some((path) => under(finding.path, path));
}

function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}
