/**
 * One Lambda function per file in functions/: Node 22 on arm64, bundled by esbuild (no Docker),
 * with its own log group and a role that may write to that group alone. The template records the
 * entry file so the local runtime can import the handler from source instead of running the bundle.
 */
import { RemovalPolicy, type Duration, type Size } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { acceptFinding } from './nag';
import { ENTRY_METADATA, HANDLER_METADATA } from './metadata';

/** The repository root; in an installed package, its dist/ (scripts/build.ts keeps dist/ in the repository's shape). */
export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
const LOCKFILE = path.join(PROJECT_ROOT, 'package-lock.json');

/** A handler's source, relative to PROJECT_ROOT: TypeScript in a clone, the built JavaScript in a package. */
export function handlerEntry(name: HandlerName): string {
  const source = `functions/${name}.ts`;
  return existsSync(path.join(PROJECT_ROOT, source)) ? source : `functions/${name}.js`;
}

export const HANDLER_NAMES = [
  'register-job',
  'prepare-job',
  'submit-chunk',
  'poll-batch',
  'collect-results',
  'finalize-chunk',
  'finalize-job',
  'record-chunk-failure',
  'mark-job-failed',
  'sweep-prefix',
  'reconcile-jobs',
  'execution-ended',
  'await-batch',
  'poll-batches',
] as const;
export type HandlerName = (typeof HANDLER_NAMES)[number];

export interface HandlerProps {
  /** The file functions/<name>.ts (.js in a package); its export is `handler`. */
  name: HandlerName;
  description: string;
  memorySize: number;
  timeout: Duration;
  /** /tmp size, for handlers that spill to disk. Default 512 MiB. */
  ephemeralStorageSize?: Size;
  environment?: Record<string, string>;
  /** Days the function's logs are kept, one of CloudWatch's periods. Default 30. */
  logRetentionDays?: number;
  /** Encrypt the function's logs with this key. Default: CloudWatch Logs' own encryption. */
  logKey?: kms.IKey;
}

export class Handler extends Construct {
  readonly fn: nodejs.NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly entry: string;

  constructor(scope: Construct, id: string, props: HandlerProps) {
    super(scope, id);
    this.entry = handlerEntry(props.name);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      // RetentionDays' values are the day counts (settings.ts checks the setting is one of them).
      retention: (props.logRetentionDays ?? logs.RetentionDays.ONE_MONTH) as logs.RetentionDays,
      encryptionKey: props.logKey,
      // A retained group would outlive the stack forever; its logs expire on their own.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Not AWSLambdaBasicExecutionRole, which may create and write to any log group in the account.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `batchline ${props.name}`,
    });
    this.logGroup.grantWrite(this.role);
    this.fn = new nodejs.NodejsFunction(this, 'Function', {
      entry: path.join(PROJECT_ROOT, this.entry),
      handler: 'handler',
      // In a package (no lockfile of ours), the app's own: CDK finds it from the working directory up.
      ...(existsSync(LOCKFILE) ? { projectRoot: PROJECT_ROOT, depsLockFilePath: LOCKFILE } : {}),
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      description: props.description,
      role: this.role,
      memorySize: props.memorySize,
      timeout: props.timeout,
      ephemeralStorageSize: props.ephemeralStorageSize,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
      bundling: {
        format: nodejs.OutputFormat.CJS,
        target: 'node22',
        sourceMap: true,
        // Stack traces map back through the mappings alone; the sources would double the zip.
        sourcesContent: false,
        minify: true,
        keepNames: true,
        // The runtime's SDK version drifts; ship the versions the code was tested with.
        bundleAwsSDK: true,
        externalModules: [],
      },
    });
    const cfn = this.fn.node.defaultChild as lambda.CfnFunction;
    cfn.addMetadata(ENTRY_METADATA, this.entry);
    cfn.addMetadata(HANDLER_METADATA, props.name);

    acceptFinding(
      this.fn,
      'L1',
      'Node 22 is the runtime the handlers are bundled for (esbuild target node22) and tested on; a newer runtime is a deliberate upgrade, not a lint fix',
    );
    acceptFinding(
      this.role,
      'IAM5[Resource::*]',
      'Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords take no resource-level permissions',
    );
  }
}
