/**
 * Every handler in functions/, with its size, its environment and the least it may touch. Sizes
 * and access live in one table so a reviewer can check them at a glance.
 */
import { Duration, Size } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DEFAULT_PREFIXES, type Prefixes } from '../shared/store/keys';
import type { ApiKey } from './api-key';
import { Handler, HANDLER_NAMES, type HandlerName } from './handler';
import { acceptWildcardActions, acceptWildcardResources } from './nag';
import type { Notifications } from './notifications';
import { STACK_SETTING_DEFAULTS } from './settings';
import { jobExecutionsArn } from './workflow';

/** Where in the bucket a handler reads or writes: job inputs, work files, outputs. */
type Area = 'input' | 'work' | 'results';

/**
 * What a handler may do with the table. Every caller gets the calls shared/store/dynamo.ts makes
 * (no Scan, BatchGetItem, TransactWriteItems or streams); only Prepare deletes, the chunk records
 * an interrupted, longer run left behind (shared/jobs/prepare-job.ts).
 */
type TableAccess = 'none' | 'readWrite' | 'readWriteDelete';
const TABLE_ACTIONS = ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:BatchWriteItem'];
const TABLE_DELETE_ACTIONS = ['dynamodb:DeleteItem'];
/** What CDK's grantReadWriteData grants on a table's customer-managed key. */
const TABLE_KEY_ACTIONS = ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*'];

interface HandlerSpec {
  description: string;
  memorySize: number;
  timeout: Duration;
  ephemeralStorageSize?: Size;
  read: Area[];
  write: Area[];
  /** Deletes its own leftovers there (Collect's segments and checkpoint once the attempt is collected). */
  deletes?: Area[];
  table: TableAccess;
  /** Calls the Batches API: gets the API settings and may read the key's secret. */
  callsApi: boolean;
  /** Publishes job outcomes to the topic and the event bus. */
  notifies: boolean;
  /** What it may do with the job state machine's executions (it gets BATCHLINE_STATE_MACHINE_ARN). */
  jobExecutions?: 'start' | 'describe';
}

export const HANDLER_SPECS: Record<HandlerName, HandlerSpec> = {
  'register-job': {
    description: 'Registers a job for an input object; a duplicate event ends quietly',
    memorySize: 512,
    timeout: Duration.seconds(60),
    read: ['input'],
    write: [],
    table: 'readWrite',
    callsApi: false,
    notifies: false,
  },
  'prepare-job': {
    description: "Stream-validates the input file and writes its chunks' row indexes",
    // The prepareMemoryMiB setting's default; the setting overrides it.
    memorySize: STACK_SETTING_DEFAULTS.prepareMemoryMiB,
    timeout: Duration.seconds(900),
    // results/: a job that reuses another's rows reads that job's results.jsonl (shared/jobs/reuse.ts).
    // work/: a file read across invocations: the last checkpoint, the earlier invocations' custom_ids,
    // and their pieces of the reports, joined at the file's end (GetObject on UploadPartCopy's sources).
    read: ['input', 'results', 'work'],
    write: ['work'],
    table: 'readWriteDelete',
    callsApi: false,
    notifies: false,
  },
  'submit-chunk': {
    description: 'Submits one chunk attempt as a message batch, exactly once',
    // Streams up to 256 MB of request body to the API: network-bound, can take minutes.
    memorySize: 1024,
    timeout: Duration.seconds(900),
    // Attempt 1's requests are a byte range of the input, named by a row index in work/ (chunk-files.ts).
    read: ['work', 'input'],
    write: [],
    table: 'readWrite',
    callsApi: true,
    notifies: false,
  },
  'poll-batch': {
    description: 'Polls a message batch and picks the next wait',
    memorySize: 256,
    timeout: Duration.seconds(60),
    read: [],
    write: [],
    table: 'readWrite',
    callsApi: true,
    notifies: false,
  },
  'collect-results': {
    description: "Streams a batch's results to S3 and records every row's status",
    // 1769 MB is one full vCPU: parsing and DynamoDB writes are CPU-bound.
    memorySize: 1769,
    timeout: Duration.seconds(900),
    // A retry file copies attempt 1's requests from the input's byte range (chunk-files.ts).
    read: ['work', 'input'],
    write: ['work'],
    deletes: ['work'],
    table: 'readWrite',
    callsApi: true,
    notifies: false,
  },
  'finalize-chunk': {
    description: "Writes one chunk's rows in input order with their final state, and its tally",
    memorySize: 2048,
    timeout: Duration.seconds(900),
    // Ordering a chunk's results spills to /tmp: up to its results' size (a 100,000-row chunk of long replies is GBs).
    ephemeralStorageSize: Size.gibibytes(4),
    read: ['work'],
    write: ['work'],
    table: 'readWrite',
    callsApi: false,
    notifies: false,
  },
  'finalize-job': {
    description: "Joins the chunks' ordered results inside S3, writes the error report and the summary; ends the job",
    memorySize: 2048,
    timeout: Duration.seconds(900),
    // A chunk whose FinalizeChunk did not run is ordered here: that spills to /tmp.
    ephemeralStorageSize: Size.gibibytes(4),
    // Never the input: a rejected job's rows come from what Prepare kept in work/; work/invalid.jsonl is copied to results/.
    // Writes work/ only for a chunk it finalizes itself (its final files and record).
    // Reads results/ when the job reuses another's rows: their lines are copied from its results.jsonl.
    read: ['work', 'results'],
    write: ['work', 'results'],
    table: 'readWrite',
    callsApi: false,
    notifies: true,
  },
  'record-chunk-failure': {
    description: "Marks a failed chunk's unfinished rows errored (chunk_failed) and cancels its batch",
    memorySize: 1024,
    timeout: Duration.seconds(900),
    read: [],
    write: [],
    table: 'readWrite',
    callsApi: true,
    notifies: false,
  },
  'mark-job-failed': {
    description: 'Marks a job failed, cancels its batches in flight and tells the topic',
    memorySize: 512,
    timeout: Duration.seconds(300),
    read: [],
    write: [],
    table: 'readWrite',
    callsApi: true,
    notifies: true,
  },
  'sweep-prefix': {
    description: 'Starts one job per object under a scheduled prefix',
    memorySize: 512,
    timeout: Duration.seconds(300),
    read: [],
    write: [],
    table: 'none',
    callsApi: false,
    notifies: false,
    jobExecutions: 'start',
  },
  'reconcile-jobs': {
    description: 'Daily: collects, cancels and finalizes what jobs whose workflow died left behind',
    memorySize: 2048,
    timeout: Duration.seconds(900),
    // It may finalize a job, which spills to /tmp as finalize-job does.
    ephemeralStorageSize: Size.gibibytes(4),
    // Finalizing reads work/ only, as finalize-job does (never the input).
    read: ['work', 'results'],
    write: ['work', 'results'],
    deletes: ['work'],
    table: 'readWrite',
    callsApi: true,
    notifies: true,
    jobExecutions: 'describe',
  },
  'execution-ended': {
    description: 'Marks a job failed when its execution failed, timed out or was aborted, and cancels its batches',
    memorySize: 512,
    timeout: Duration.seconds(300),
    read: [],
    write: [],
    table: 'readWrite',
    callsApi: true,
    notifies: true,
  },
  'await-batch': {
    description: "Stores a waiting chunk attempt's task token for the poller, or sends it to the Wait loop",
    memorySize: 256,
    timeout: Duration.seconds(30),
    read: [],
    write: [],
    table: 'readWrite',
    callsApi: false,
    notifies: false,
  },
  'poll-batches': {
    description: 'Every minute: wakes the chunks whose batch ended, heartbeats the others',
    // It runs 43,200 times a month, mostly waiting on the network: the smallest size halves its cost
    // (one tick over 1,000 watches takes about a second locally).
    memorySize: 128,
    // Shorter than the one-minute period: ticks never overlap (reserved concurrency 1 besides).
    timeout: Duration.seconds(50),
    read: [],
    write: [],
    // Deletes the watches it settled.
    table: 'readWriteDelete',
    callsApi: true,
    notifies: false,
  },
};

export interface FunctionsProps {
  bucket: s3.IBucket;
  table: dynamodb.ITable;
  apiKey: ApiKey;
  notifications: Notifications;
  /** BATCHLINE_* settings every function gets. */
  pipelineEnv?: Record<string, string>;
  /** ANTHROPIC_* / BATCHLINE_API_* settings the API-calling functions get. */
  apiEnv?: Record<string, string>;
  /** Where in the bucket the inputs, work files and outputs are: each function's grants follow them. Default DEFAULT_PREFIXES. */
  prefixes?: Prefixes;
  /** Prefixes jobs may take input from besides the inbox (the schedules'); sweep-prefix may list them. */
  scheduledPrefixes?: string[];
  /** Days the functions' logs are kept. Default 30. */
  logRetentionDays?: number;
  /** PrepareJob's memory in MiB, instead of its HANDLER_SPECS size (the prepareMemoryMiB setting). */
  prepareMemoryMiB?: number;
  /** Encrypt the functions' logs with this key. Default: CloudWatch Logs' own encryption. */
  logKey?: kms.IKey;
}

export class Functions extends Construct {
  readonly handlers: Record<HandlerName, Handler>;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const scheduled = props.scheduledPrefixes ?? [];
    const prefixes = props.prefixes ?? DEFAULT_PREFIXES;
    const areaPrefixes: Record<Area, string[]> = {
      input: [prefixes.inbox, ...scheduled],
      work: [prefixes.work],
      results: [prefixes.results],
    };
    const baseEnv = {
      BATCHLINE_BUCKET: props.bucket.bucketName,
      BATCHLINE_TABLE: props.table.tableName,
      ...props.pipelineEnv,
    };

    const entries = HANDLER_NAMES.map((name) => {
      const spec = HANDLER_SPECS[name];
      const handler = new Handler(this, pascalCase(name), {
        name,
        description: spec.description,
        memorySize: name === 'prepare-job' ? (props.prepareMemoryMiB ?? spec.memorySize) : spec.memorySize,
        timeout: spec.timeout,
        ephemeralStorageSize: spec.ephemeralStorageSize,
        environment: baseEnv,
        logRetentionDays: props.logRetentionDays,
        logKey: props.logKey,
      });
      const fn = handler.fn;
      grantObjects(
        props.bucket,
        handler,
        'read',
        spec.read.flatMap((area) => areaPrefixes[area]),
      );
      grantObjects(
        props.bucket,
        handler,
        'write',
        spec.write.flatMap((area) => areaPrefixes[area]),
      );
      for (const area of spec.deletes ?? []) {
        for (const prefix of areaPrefixes[area]) {
          const objects = props.bucket.arnForObjects(`${prefix}*`);
          iam.Grant.addToPrincipal({ grantee: handler.fn, actions: ['s3:DeleteObject'], resourceArns: [objects] });
          acceptWildcardResources(
            handler.role,
            [objects],
            `Deletes only its own leftovers under ${prefix} (Collect's segments and checkpoint), where keys are per job`,
          );
        }
      }
      if (spec.table !== 'none') {
        props.table.grant(fn, ...TABLE_ACTIONS, ...(spec.table === 'readWriteDelete' ? TABLE_DELETE_ACTIONS : []));
        acceptWildcardResources(
          handler.role,
          [`${props.table.tableArn}/index/*`],
          "The table's own global secondary indexes (byCreated), which table.grant adds beside the table",
        );
        // A table under a customer-managed key (the encryptionKey setting): DynamoDB uses the key as its caller.
        if (props.table.encryptionKey) {
          props.table.encryptionKey.grant(fn, ...TABLE_KEY_ACTIONS);
          acceptWildcardActions(
            handler.role,
            ['kms:ReEncrypt*', 'kms:GenerateDataKey*'],
            "The data key of the encryptionKey setting, which reading and writing the table (and the bucket) under it needs: the key actions of CDK's table and bucket grants",
          );
        }
      }
      if (spec.callsApi) {
        props.apiKey.grantRead(fn);
        addEnvironment(handler, { ...props.apiEnv, BATCHLINE_API_KEY_SECRET: props.apiKey.secretId });
      }
      if (spec.notifies) {
        addEnvironment(handler, props.notifications.grantNotify(fn));
        acceptWildcardActions(
          handler.role,
          ['kms:GenerateDataKey*'],
          "Data keys of the topic's own KMS key, which publishing to the encrypted topic needs (the action set of topic.grantPublish)",
        );
      }
      return [name, handler] as const;
    });
    this.handlers = Object.fromEntries(entries) as Record<HandlerName, Handler>;

    // The sweep lists the scheduled prefixes, and nothing else: it reads no object (Register does).
    if (scheduled.length > 0) {
      iam.Grant.addToPrincipal({
        grantee: this.handlers['sweep-prefix'].fn,
        actions: ['s3:ListBucket'],
        resourceArns: [props.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': scheduled.map((prefix) => `${prefix}*`) } },
      });
    }
  }

  /** The state machine exists only after the functions (its tasks run them): wire it in afterwards. */
  grantJobExecutions(stateMachine: sfn.IStateMachine): void {
    for (const name of HANDLER_NAMES) {
      const access = HANDLER_SPECS[name].jobExecutions;
      if (access === undefined) continue;
      const handler = this.handlers[name];
      handler.fn.addEnvironment('BATCHLINE_STATE_MACHINE_ARN', stateMachine.stateMachineArn);
      if (access === 'start') {
        stateMachine.grantStartExecution(handler.fn);
      } else {
        stateMachine.grantExecution(handler.fn, 'states:DescribeExecution');
        acceptWildcardResources(
          handler.role,
          [`${jobExecutionsArn(stateMachine)}:*`],
          'Executions of the job state machine only; their names are derived from each input object at run time',
        );
      }
    }
  }
}

/**
 * Reads or writes objects under the prefixes; S3 keys there are per job, known only at run time.
 * A reader also gets s3:ListBucket on the bucket, unconditioned: it is what makes S3 answer 404
 * (NoSuchKey) for a missing key instead of 403, and the core tells the two apart (isS3NotFound:
 * Register, Prepare, Finalize and Reconcile branch on a missing object). It stays unconditioned: a
 * GetObject or HeadObject request carries no s3:prefix, so an s3:prefix condition would most likely
 * turn those 404s back into 403s (s3rver, locally, answers 404 whatever IAM says).
 */
function grantObjects(bucket: s3.IBucket, handler: Handler, access: 'read' | 'write', prefixes: readonly string[]) {
  if (prefixes.length === 0) return;
  const grants = s3.BucketGrants.fromBucket(bucket);
  for (const prefix of prefixes) {
    // kms:Decrypt lands on the bucket's own key, when it has one (the encryptionKey setting).
    if (access === 'read') grants.actionsOnObjectKeys(handler.fn, `${prefix}*`, 's3:GetObject*', 'kms:Decrypt');
    else grants.put(handler.fn, `${prefix}*`);
  }
  if (access === 'read') iam.Grant.addToPrincipal({ grantee: handler.fn, actions: ['s3:ListBucket'], resourceArns: [bucket.bucketArn] });
  acceptWildcardResources(
    handler.role,
    prefixes.map((prefix) => bucket.arnForObjects(`${prefix}*`)),
    `Objects under ${prefixes.join(', ')} only: the part of the bucket this function ${access === 'read' ? 'reads' : 'writes'}, where keys are per job`,
  );
  acceptWildcardActions(
    handler.role,
    access === 'read' ? ['s3:GetObject*'] : ['s3:Abort*'],
    access === 'read'
      ? "Object reads (GetObject, and GetObjectVersion for a versioned input) on the prefixes above only, the object action set of CDK's bucket.grantRead"
      : "The action set of CDK's bucket.grantPut: s3:AbortMultipartUpload, which streamed multipart uploads need, on the prefixes above only",
  );
}

function addEnvironment(handler: Handler, env: Record<string, string>) {
  for (const [key, value] of Object.entries(env)) handler.fn.addEnvironment(key, value);
}

function pascalCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, _dash: string, letter: string) => letter.toUpperCase());
}
