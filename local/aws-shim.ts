/**
 * The AWS calls the handlers make beyond S3 and DynamoDB, answered on loopback: Secrets Manager
 * GetSecretValue, SNS Publish, EventBridge PutEvents, Step Functions StartExecution /
 * DescribeExecution / ListExecutions / StopExecution. The handlers keep their real SDK clients; the SDK reaches
 * this server through its own AWS_ENDPOINT_URL_<SERVICE> variables (see `shimEnv`). One port
 * serves all four: JSON-protocol calls name their operation in `X-Amz-Target`, SNS (query
 * protocol) in the form body's `Action`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An AWS error the shim answers with (JSON `__type`, or SNS's XML error). */
export class AwsShimError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = code;
  }
}

export interface PublishedMessage {
  messageId: string;
  topicArn: string;
  subject?: string;
  message: string;
  attributes: Record<string, string>;
  at: string;
}

export interface PutEvent {
  eventId: string;
  eventBusName: string;
  source: string;
  detailType: string;
  detail: unknown;
  resources: string[];
  time: string;
}

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface ExecutionDescription {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: Date;
  stopDate?: Date;
  input: string;
  output?: string;
  error?: string;
  cause?: string;
}

/** What the shim delegates: secrets and the local Step Functions. */
export interface AwsShimBackend {
  /** The secret's string by name or ARN; undefined when there is no such secret. */
  secret(secretId: string): string | undefined;
  /** Throws AwsShimError (ExecutionAlreadyExists, StateMachineDoesNotExist, InvalidName, ...). */
  startExecution(request: { stateMachineArn: string; name?: string; input?: string }): ExecutionDescription;
  describeExecution(executionArn: string): ExecutionDescription | undefined;
  listExecutions(stateMachineArn: string): ExecutionDescription[];
  /** Throws AwsShimError ExecutionDoesNotExist. Resolves once the execution has stopped. Optional: without it, StopExecution is not offered. */
  stopExecution?(executionArn: string, reason: { error?: string; cause?: string }): Promise<ExecutionDescription>;
  /**
   * The local task tokens (task-tokens.ts): each throws AwsShimError with AWS's codes (InvalidToken,
   * TaskDoesNotExist, TaskTimedOut, InvalidOutput). Optional: without it, SendTask* are not offered.
   */
  taskTokens?: {
    success(token: string, output: string): void;
    failure(token: string, error?: string, cause?: string): void;
    heartbeat(token: string): void;
  };
}

export interface AwsShim {
  endpoint: string;
  /** The SDK's endpoint variables for the four services. */
  env: Record<string, string>;
  published: PublishedMessage[];
  events: PutEvent[];
  onPublish(listener: (message: PublishedMessage) => void): void;
  onEvent(listener: (event: PutEvent) => void): void;
  stop(): Promise<void>;
}

export function shimEnv(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
    AWS_ENDPOINT_URL_SNS: endpoint,
    AWS_ENDPOINT_URL_EVENTBRIDGE: endpoint,
    AWS_ENDPOINT_URL_SFN: endpoint,
  };
}

const MAX_BODY_BYTES = 1024 * 1024;
/** PutEvents: at most 10 entries and 256 KB per call. */
const MAX_PUT_EVENTS_ENTRIES = 10;
const MAX_PUT_EVENTS_BYTES = 256 * 1024;
// biome-ignore lint/suspicious/noControlCharactersInRegex: AWS's rule for execution names excludes exactly these control characters
const EXECUTION_NAME = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]{1,80}$/;

const epochSeconds = (date: Date) => date.getTime() / 1000;
const xmlEscape = (text: string) => text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);

export async function startAwsShim(backend: AwsShimBackend, options: { port?: number } = {}): Promise<AwsShim> {
  const published: PublishedMessage[] = [];
  const events: PutEvent[] = [];
  const publishListeners: Array<(message: PublishedMessage) => void> = [];
  const eventListeners: Array<(event: PutEvent) => void> = [];

  const jsonOperations: Record<string, (body: Record<string, unknown>) => unknown | Promise<unknown>> = {
    'secretsmanager.GetSecretValue': (body) => {
      const secretId = String(body.SecretId ?? '');
      const value = backend.secret(secretId);
      if (value === undefined) throw new AwsShimError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
      const name = secretId.startsWith('arn:') ? (secretId.split(':secret:')[1] ?? secretId) : secretId;
      return {
        ARN: secretId.startsWith('arn:') ? secretId : `arn:aws:secretsmanager:us-east-1:000000000000:secret:${secretId}`,
        Name: name,
        SecretString: value,
        VersionId: 'local',
        VersionStages: ['AWSCURRENT'],
        CreatedDate: 0,
      };
    },
    'AWSEvents.PutEvents': (body) => {
      const entries = Array.isArray(body.Entries) ? (body.Entries as Array<Record<string, unknown>>) : [];
      if (entries.length === 0 || entries.length > MAX_PUT_EVENTS_ENTRIES) {
        throw new AwsShimError('ValidationException', `Entries must hold 1 to ${MAX_PUT_EVENTS_ENTRIES} events`);
      }
      if (Buffer.byteLength(JSON.stringify(entries)) > MAX_PUT_EVENTS_BYTES) {
        throw new AwsShimError('ValidationException', 'Total size of the entries in the request is over the limit.');
      }
      let failed = 0;
      const results = entries.map((entry) => {
        let detail: unknown;
        try {
          detail = JSON.parse(String(entry.Detail ?? ''));
        } catch {
          detail = undefined;
        }
        if (typeof entry.Source !== 'string' || typeof entry.DetailType !== 'string' || detail === null || typeof detail !== 'object') {
          failed += 1;
          return { ErrorCode: 'InvalidArgument', ErrorMessage: 'Source, DetailType and a JSON object Detail are required.' };
        }
        const event: PutEvent = {
          eventId: randomUUID(),
          eventBusName: typeof entry.EventBusName === 'string' ? entry.EventBusName : 'default',
          source: entry.Source,
          detailType: entry.DetailType,
          detail,
          resources: Array.isArray(entry.Resources) ? entry.Resources.map(String) : [],
          time: new Date().toISOString(),
        };
        events.push(event);
        for (const listener of eventListeners) listener(event);
        return { EventId: event.eventId };
      });
      return { FailedEntryCount: failed, Entries: results };
    },
    'AWSStepFunctions.StartExecution': (body) => {
      const name = body.name === undefined ? undefined : String(body.name);
      if (name !== undefined && !EXECUTION_NAME.test(name)) throw new AwsShimError('InvalidName', `Invalid Name: '${name}'`);
      const execution = backend.startExecution({
        stateMachineArn: String(body.stateMachineArn ?? ''),
        name,
        input: body.input === undefined ? undefined : String(body.input),
      });
      return { executionArn: execution.executionArn, startDate: epochSeconds(execution.startDate) };
    },
    'AWSStepFunctions.DescribeExecution': (body) => {
      const execution = backend.describeExecution(String(body.executionArn ?? ''));
      if (!execution) throw new AwsShimError('ExecutionDoesNotExist', `Execution Does Not Exist: '${String(body.executionArn)}'`);
      return describe(execution);
    },
    'AWSStepFunctions.StopExecution': async (body) => {
      if (!backend.stopExecution) throw new AwsShimError('UnknownOperationException', 'this local AWS shim does not stop executions');
      const stopped = await backend.stopExecution(String(body.executionArn ?? ''), {
        error: body.error === undefined ? undefined : String(body.error),
        cause: body.cause === undefined ? undefined : String(body.cause),
      });
      return { stopDate: epochSeconds(stopped.stopDate ?? new Date()) };
    },
    'AWSStepFunctions.SendTaskSuccess': (body) => {
      tokens().success(String(body.taskToken ?? ''), String(body.output ?? ''));
      return {};
    },
    'AWSStepFunctions.SendTaskFailure': (body) => {
      tokens().failure(
        String(body.taskToken ?? ''),
        body.error === undefined ? undefined : String(body.error),
        body.cause === undefined ? undefined : String(body.cause),
      );
      return {};
    },
    'AWSStepFunctions.SendTaskHeartbeat': (body) => {
      tokens().heartbeat(String(body.taskToken ?? ''));
      return {};
    },
    'AWSStepFunctions.ListExecutions': (body) => {
      const filter = body.statusFilter === undefined ? undefined : String(body.statusFilter);
      const executions = backend
        .listExecutions(String(body.stateMachineArn ?? ''))
        .filter((execution) => filter === undefined || execution.status === filter)
        .sort((a, b) => b.startDate.getTime() - a.startDate.getTime());
      return {
        executions: executions.map((execution) => ({
          executionArn: execution.executionArn,
          stateMachineArn: execution.stateMachineArn,
          name: execution.name,
          status: execution.status,
          startDate: epochSeconds(execution.startDate),
          ...(execution.stopDate ? { stopDate: epochSeconds(execution.stopDate) } : {}),
        })),
      };
    },
  };

  function tokens(): NonNullable<AwsShimBackend['taskTokens']> {
    if (!backend.taskTokens) throw new AwsShimError('UnknownOperationException', 'this local AWS shim has no task tokens');
    return backend.taskTokens;
  }

  function publish(form: URLSearchParams): string {
    const topicArn = form.get('TopicArn') ?? form.get('TargetArn');
    const message = form.get('Message');
    if (!topicArn) throw new AwsShimError('InvalidParameter', 'Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter');
    if (message === null || message === '') throw new AwsShimError('InvalidParameter', 'Invalid parameter: Message Reason: Empty message');
    const attributes: Record<string, string> = {};
    for (let i = 1; form.has(`MessageAttributes.entry.${i}.Name`); i++) {
      const value = form.get(`MessageAttributes.entry.${i}.Value.StringValue`) ?? form.get(`MessageAttributes.entry.${i}.Value.BinaryValue`) ?? '';
      attributes[form.get(`MessageAttributes.entry.${i}.Name`)!] = value;
    }
    const record: PublishedMessage = {
      messageId: randomUUID(),
      topicArn,
      ...(form.get('Subject') ? { subject: form.get('Subject')! } : {}),
      message,
      attributes,
      at: new Date().toISOString(),
    };
    published.push(record);
    for (const listener of publishListeners) listener(record);
    return (
      `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>${record.messageId}</MessageId>` +
      `</PublishResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></PublishResponse>`
    );
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    const target = request.headers['x-amz-target'];
    if (typeof target === 'string') {
      const operation = jsonOperations[target];
      const contentType = target.startsWith('AWSStepFunctions.') ? 'application/x-amz-json-1.0' : 'application/x-amz-json-1.1';
      try {
        if (!operation) throw new AwsShimError('UnknownOperationException', `the local AWS shim does not implement ${target}`);
        const reply = await operation(body.length > 0 ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {});
        send(response, 200, contentType, JSON.stringify(reply));
      } catch (error) {
        const shimError = error instanceof AwsShimError ? error : new AwsShimError('InternalFailure', (error as Error).message, 500);
        response.setHeader('x-amzn-ErrorType', shimError.code);
        send(response, shimError.status, contentType, JSON.stringify({ __type: shimError.code, message: shimError.message }));
      }
      return;
    }
    const form = new URLSearchParams(body.toString('utf8'));
    const action = form.get('Action');
    try {
      if (action !== 'Publish') throw new AwsShimError('InvalidAction', `the local AWS shim does not implement ${action ?? 'this request'}`);
      send(response, 200, 'text/xml', publish(form));
    } catch (error) {
      const shimError = error instanceof AwsShimError ? error : new AwsShimError('InternalFailure', (error as Error).message, 500);
      send(
        response,
        shimError.status,
        'text/xml',
        `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>${xmlEscape(shimError.code)}</Code>` +
          `<Message>${xmlEscape(shimError.message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
      );
    }
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) send(response, 500, 'text/plain', (error as Error).message);
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    env: shimEnv(endpoint),
    published,
    events,
    onPublish: (listener) => publishListeners.push(listener),
    onEvent: (listener) => eventListeners.push(listener),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function describe(execution: ExecutionDescription): Record<string, unknown> {
  return {
    executionArn: execution.executionArn,
    stateMachineArn: execution.stateMachineArn,
    name: execution.name,
    status: execution.status,
    startDate: epochSeconds(execution.startDate),
    input: execution.input,
    ...(execution.stopDate ? { stopDate: epochSeconds(execution.stopDate) } : {}),
    ...(execution.output !== undefined ? { output: execution.output } : {}),
    ...(execution.error !== undefined ? { error: execution.error } : {}),
    ...(execution.cause !== undefined ? { cause: execution.cause } : {}),
  };
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of request as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > MAX_BODY_BYTES) throw new AwsShimError('RequestEntityTooLarge', 'request body too large', 413);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

function send(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'x-amzn-RequestId': randomUUID() });
  response.end(body);
}
