/**
 * Every handler in functions/, with its size, its environment and the least it may touch. Sizes
 * and access live in one table so a reviewer can check them at a glance.
 */
import { Duration, Size } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { INBOX_PREFIX, RESULTS_PREFIX, WORK_PREFIX } from '../shared/store/keys';
import type { ApiKey } from './api-key';
import { Handler, HANDLER_NAMES, type HandlerName } from './handler';
import type { Notifications } from './notifications';

/** Where in the bucket a handler reads or writes: job inputs, work files, outputs. */
type Area = 'input' | 'work' | 'results';

interface HandlerSpec {
  description: string;
  memorySize: number;
  timeout: Duration;
  ephemeralStorageSize?: Size;
  read: Area[];
  write: Area[];
  /** Reads and writes the table. */
  table: boolean;
  /** Calls the Batches API: gets the API settings and may read the key's secret. */
  callsApi: boolean;
  /** Publishes job outcomes to the topic and the event bus. */
  notifies: boolean;
}

export const HANDLER_SPECS: Record<HandlerName, HandlerSpec> = {
  'register-job': {
    description: 'Registers a job for an input object; a duplicate event ends quietly',
    memorySize: 512,
    timeout: Duration.seconds(60),
    read: ['input'],
    write: [],
    table: true,
    callsApi: false,
    notifies: false,
  },
  'prepare-job': {
    description: 'Stream-validates the input file and writes its chunk files',
    memorySize: 2048,
    timeout: Duration.seconds(900),
    read: ['input'],
    write: ['work'],
    table: true,
    callsApi: false,
    notifies: false,
  },
  'submit-chunk': {
    description: 'Submits one chunk attempt as a message batch, exactly once',
    // Streams up to 256 MB of request body to the API: network-bound, can take minutes.
    memorySize: 1024,
    timeout: Duration.seconds(900),
    read: ['work'],
    write: [],
    table: true,
    callsApi: true,
    notifies: false,
  },
  'poll-batch': {
    description: 'Polls a message batch and picks the next wait',
    memorySize: 256,
    timeout: Duration.seconds(60),
    read: [],
    write: [],
    table: true,
    callsApi: true,
    notifies: false,
  },
  'collect-results': {
    description: 'Streams a batch\'s results to S3 and records every row\'s status',
    // 1769 MB is one full vCPU: parsing and DynamoDB writes are CPU-bound.
    memorySize: 1769,
    timeout: Duration.seconds(900),
    read: ['work'],
    write: ['work'],
    table: true,
    callsApi: true,
    notifies: false,
  },
  'finalize-job': {
    description: 'Writes ordered results, the error report and the summary; ends the job',
    memorySize: 2048,
    timeout: Duration.seconds(900),
    // Ordering results spills to /tmp.
    ephemeralStorageSize: Size.gibibytes(4),
    // The input again, for a rejected job's rows in input order; work/invalid.jsonl is copied to results/.
    read: ['input', 'work'],
    write: ['results'],
    table: true,
    callsApi: false,
    notifies: true,
  },
  'record-chunk-failure': {
    description: 'Marks a failed chunk\'s unfinished rows errored (chunk_failed) and cancels its batch',
    memorySize: 1024,
    timeout: Duration.seconds(900),
    read: [],
    write: [],
    table: true,
    callsApi: true,
    notifies: false,
  },
  'fail-job': {
    description: 'Marks a job failed, cancels its batches in flight and tells the topic',
    memorySize: 512,
    timeout: Duration.seconds(300),
    read: [],
    write: [],
    table: true,
    callsApi: true,
    notifies: true,
  },
  'sweep-prefix': {
    description: 'Starts one job per object under a scheduled prefix',
    memorySize: 512,
    timeout: Duration.seconds(300),
    read: [],
    write: [],
    table: false,
    callsApi: false,
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
  /** Prefixes jobs may take input from besides inbox/ (the schedules'); sweep-prefix may list them. */
  scheduledPrefixes?: string[];
}

export class Functions extends Construct {
  readonly handlers: Record<HandlerName, Handler>;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const scheduled = props.scheduledPrefixes ?? [];
    const areaPrefixes: Record<Area, string[]> = {
      input: [INBOX_PREFIX, ...scheduled],
      work: [WORK_PREFIX],
      results: [RESULTS_PREFIX],
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
        memorySize: spec.memorySize,
        timeout: spec.timeout,
        ephemeralStorageSize: spec.ephemeralStorageSize,
        environment: baseEnv,
      });
      const fn = handler.fn;
      for (const area of spec.read) for (const prefix of areaPrefixes[area]) props.bucket.grantRead(fn, `${prefix}*`);
      for (const area of spec.write) for (const prefix of areaPrefixes[area]) props.bucket.grantPut(fn, `${prefix}*`);
      if (spec.table) props.table.grantReadWriteData(fn);
      if (spec.callsApi) {
        props.apiKey.grantRead(fn);
        addEnvironment(handler, { ...props.apiEnv, BATCHLINE_API_KEY_SECRET: props.apiKey.secretId });
      }
      if (spec.notifies) addEnvironment(handler, props.notifications.grantNotify(fn));
      return [name, handler] as const;
    });
    this.handlers = Object.fromEntries(entries) as Record<HandlerName, Handler>;

    // The sweep lists only the scheduled prefixes; it never touches inbox/, work/ or results/.
    for (const prefix of scheduled) props.bucket.grantRead(this.handlers['sweep-prefix'].fn, `${prefix}*`);
  }
}

function addEnvironment(handler: Handler, env: Record<string, string>) {
  for (const [key, value] of Object.entries(env)) handler.fn.addEnvironment(key, value);
}

function pascalCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, _dash: string, letter: string) => letter.toUpperCase());
}
