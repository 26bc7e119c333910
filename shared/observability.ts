/**
 * Structured logs and metrics for the handlers, with Powertools for AWS Lambda: one JSON line per
 * log entry, every line of an invocation carrying its jobId, chunk, attempt and batchId (those that
 * apply), and CloudWatch metrics in the Embedded Metric Format, namespace `Batchline`, whose only
 * dimension is `service=batchline` (per-job dimensions would make a metric per job).
 *
 * What may be logged: ids, counts, types, sizes. Never prompt or completion text, request params,
 * result lines or the API key. An error is logged by its name and message (our messages never carry
 * request text); a SyntaxError by name only, since V8 quotes the text a JSON.parse failed on.
 *
 * Each invocation gets a Logger and a Metrics of its own: the local runtime runs many invocations
 * of one handler at once in one process, where a shared logger's keys would leak between them
 * (in Lambda, a fresh logger per invocation is also what resets the keys of a reused container).
 *
 * Controls, Powertools' own variables, read when an invocation starts:
 *   POWERTOOLS_LOG_LEVEL=TRACE|DEBUG|INFO|WARN|ERROR|CRITICAL|SILENT   (default INFO)
 *   POWERTOOLS_METRICS_DISABLED=true                                    no EMF output
 *   POWERTOOLS_DEV=true   pretty, multi-line logs on the global console and no metrics: for eyes only.
 * In Lambda, a log level set by the function's advanced logging controls (AWS_LAMBDA_LOG_LEVEL) wins.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { RETRIED_HANDLER_ERRORS } from './jobs/contract';

export const SERVICE = 'batchline';
export const METRICS_NAMESPACE = 'Batchline';

export type MetricName =
  | 'RowsSubmitted'
  | 'RowsSucceeded'
  | 'RowsErrored'
  | 'RowsExpired'
  | 'RowsCanceled'
  | 'RowsRetried'
  | 'RowsInvalid'
  | 'CostUsd'
  | 'BatchWaitSeconds'
  | 'JobsEnded'
  | 'JobsFailed'
  /** A poll the API answered 401/403 while the batch runs on (shared/jobs/poll-batch.ts). */
  | 'ApiKeyRefused'
  /** The poller's ticks, the chunks it woke, and its calls that failed (shared/jobs/poller.ts). */
  | 'PollerTicks'
  | 'PollerWakes'
  | 'PollerErrors'
  | `RowsErrored_${string}`;

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];

/** Every metric counts rows or jobs, except these. */
const UNITS: Partial<Record<MetricName, Unit>> = { CostUsd: MetricUnit.NoUnit, BatchWaitSeconds: MetricUnit.Seconds };

/**
 * The metric of errored rows of one error type. The type comes from the API (or is ours, e.g.
 * missing_result); it is cut to a safe, short name so an odd value cannot make an odd metric.
 */
export function rowsErroredMetric(errorType: string): MetricName {
  return `RowsErrored_${errorType.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 64)}`;
}

/** The keys every later line of an invocation carries. */
export interface InvocationKeys {
  jobId?: string;
  chunk?: number;
  attempt?: number;
  batchId?: string;
}

/** A log line's fields beyond the message: ids, counts, types, sizes only. */
export type LogFields = Readonly<Record<string, unknown>>;

/** What the core reports through: its handler's invocation, or a standalone stand-in. */
export interface Observer {
  /** Adds keys to every later line of the invocation (e.g. batchId once the batch exists). */
  keys(keys: InvocationKeys): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** Records a metric value; the invocation publishes its metrics when it ends. */
  metric(name: MetricName, value: number): void;
}

/** The part of Lambda's context object the handlers use: the logs its request id, a long step its time left. */
export interface InvocationContext {
  awsRequestId?: string;
  getRemainingTimeInMillis?: () => number;
}

/**
 * Wraps a handler: a Logger and a Metrics for each invocation (and Lambda's context handed on), the invocation's keys taken from the
 * event (`jobId`, `chunk`, `attempt`, `batchId`, those present), a failure logged by name and
 * message and rethrown as it was, and the metrics published whether the handler returns or throws.
 */
export function instrument<E, R>(
  handler: string,
  run: (event: E, observer: Observer, context?: InvocationContext) => Promise<R>,
): (event: E, context?: InvocationContext) => Promise<R> {
  let coldStart = true;
  return async (event, context) => {
    const observer = new InvocationObserver(handler, context, coldStart);
    coldStart = false;
    observer.keys(keysOf(event));
    try {
      return await run(event, observer, context);
    } catch (error) {
      const fields = { error: errorFields(error) };
      // An error the workflow retries (docs/workflow-contract.md) is a warning, not yet an error.
      if (RETRIED_HANDLER_ERRORS.has(fields.error.name)) observer.warn('failed, to be retried', fields);
      else observer.error('failed', fields);
      throw error;
    } finally {
      observer.flush();
    }
  };
}

class InvocationObserver implements Observer {
  private readonly logger: Logger;
  private readonly metrics: Metrics;

  constructor(handler: string, context: InvocationContext | undefined, coldStart: boolean) {
    this.logger = new Logger({ serviceName: SERVICE, persistentKeys: { handler } });
    const lambda = { cold_start: coldStart, ...(context?.awsRequestId ? { function_request_id: context.awsRequestId } : {}) };
    this.logger.appendKeys(lambda);
    // Its own warnings (an empty flush, a bad metric) go through our logger, not straight to stderr.
    this.metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: SERVICE, logger: this.logger });
  }

  keys(keys: InvocationKeys): void {
    const defined = Object.fromEntries(Object.entries(keys).filter(([, value]) => value !== undefined));
    if (Object.keys(defined).length > 0) this.logger.appendKeys(defined);
  }

  info(message: string, fields: LogFields = {}): void {
    this.logger.info(message, fields);
  }

  warn(message: string, fields: LogFields = {}): void {
    this.logger.warn(message, fields);
  }

  error(message: string, fields: LogFields = {}): void {
    this.logger.error(message, fields);
  }

  metric(name: MetricName, value: number): void {
    this.metrics.addMetric(name, UNITS[name] ?? MetricUnit.Count, value);
  }

  /** Publishes the stored metrics; never throws (the handler's own outcome stands). */
  flush(): void {
    try {
      if (this.metrics.hasStoredMetrics()) this.metrics.publishStoredMetrics();
    } catch (error) {
      this.logger.warn('publishing metrics failed', { error: errorFields(error) });
    }
  }
}

/**
 * For the core run outside a handler (tests, benchmarks, tools): nothing is logged or measured.
 * A caller that wants the lines passes an observer of its own.
 */
export const quietObserver: Observer = {
  keys: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  metric: () => undefined,
};

/** A state input's ids: only these four fields, and only when they have the expected shape. */
export function keysOf(event: unknown): InvocationKeys {
  if (typeof event !== 'object' || event === null) return {};
  const { jobId, chunk, attempt, batchId } = event as Record<string, unknown>;
  const id = (value: unknown) => (typeof value === 'string' && value !== '' && value.length <= 128 ? value : undefined);
  const whole = (value: unknown, min: number) => (typeof value === 'number' && Number.isInteger(value) && value >= min ? value : undefined);
  return { jobId: id(jobId), chunk: whole(chunk, 0), attempt: whole(attempt, 1), batchId: id(batchId) };
}

/**
 * Error text with what it may quote of our data taken out: V8's JSON.parse messages quote the text
 * they failed on (a request, a result), raw — inner quotes unescaped, cut with `...` — so everything
 * from the first quote goes. The one scrubber for logs, Step Functions causes and notifications.
 */
export function scrubErrorText(text: string): string {
  return text
    .replace(/(?:\.\.\.)?"[\s\S]*"(?:\.\.\.)? is not valid JSON/g, '"…" is not valid JSON')
    .replace(/(Unexpected (?:token|character) )(?:'[^']*'|\S+)/g, '$1…');
}

/** `Name: message`, scrubbed: an error as one line of text. */
export function describeError(error: unknown): string {
  const { name, message } = errorFields(error);
  return message ? `${name}: ${message}` : name;
}

export interface ErrorFields {
  name: string;
  message?: string;
  /** HTTP status and the API's error type and request id, for the Batches client's errors. */
  status?: number;
  type?: string;
  requestId?: string;
}

/** An error as it may be logged: name and message, never its stack, cause or other properties. */
export function errorFields(error: unknown): ErrorFields {
  if (!(error instanceof Error)) return { name: 'NonError' };
  const fields: ErrorFields = { name: error.name || 'Error', message: scrubErrorText(error.message) };
  const { status, type, requestId } = error as { status?: unknown; type?: unknown; requestId?: unknown };
  if (typeof status === 'number') fields.status = status;
  if (typeof type === 'string') fields.type = type;
  if (typeof requestId === 'string') fields.requestId = requestId;
  return fields;
}
