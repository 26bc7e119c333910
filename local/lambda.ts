/**
 * The template's Lambda functions, run in this process the way Lambda runs them: the handler
 * imported from its source file (template metadata `batchline:entry`, export from `Handler`), the
 * event and the reply round-tripped through JSON, the function's timeout enforced, and a thrown
 * error reported as Lambda reports it — `errorType` becomes the Step Functions error name, so a
 * Retry or Catch on `ApiRetryable` matches exactly as in AWS — and a reply too large for a state
 * failing the execution past every Catch, as States.DataLimitExceeded does in AWS.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LocalNames, resourcesOfType, type CfnTemplate } from './template';
import { functionNameOf } from './asl';
import { ENTRY_METADATA } from '../infra/metadata';
import { UNCATCHABLE_ERRORS } from '../shared/jobs/contract';

/** Lambda's default when a function sets no Timeout. */
const DEFAULT_TIMEOUT_SECONDS = 3;
/** A state's input or output is capped at 256 KB in Step Functions; Lambda's own limit is higher. */
export const MAX_STATE_PAYLOAD_BYTES = 256 * 1024;

export interface LocalFunction {
  logicalId: string;
  name: string;
  arn: string;
  /** Source file of the handler, relative to the repository root (`functions/<name>.ts`). */
  entry: string;
  /** Export name of the handler in `entry`. */
  handlerExport: string;
  timeoutSeconds: number;
  memoryMb: number;
  environment: Record<string, string>;
}

export class FunctionNotRunnable extends Error {
  override readonly name = 'FunctionNotRunnable';
}

export class ConflictingEnvironment extends Error {
  override readonly name = 'ConflictingEnvironment';
}

/** Every function of the template that has a source entry, with its settings resolved to local names. */
export function localFunctions(template: CfnTemplate, names = new LocalNames(template)): LocalFunction[] {
  const functions: LocalFunction[] = [];
  for (const logicalId of resourcesOfType(template, 'AWS::Lambda::Function')) {
    const resource = names.resource(logicalId);
    const entry = resource.Metadata?.[ENTRY_METADATA];
    // CDK's own helper functions (custom resources, log retention) have no entry and never run locally.
    if (typeof entry !== 'string') continue;
    const props = resource.Properties ?? {};
    // Lambda's own `Handler` (`index.handler` in the bundle) names the export after its last dot.
    const handlerSetting = typeof props.Handler === 'string' ? props.Handler : 'index.handler';
    const variables = (names.resolve((props.Environment as { Variables?: unknown } | undefined)?.Variables) ?? {}) as Record<string, unknown>;
    const environment: Record<string, string> = {};
    for (const [key, value] of Object.entries(variables)) {
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
        throw new FunctionNotRunnable(`${logicalId}: environment variable ${key} did not resolve to a plain value`);
      }
      environment[key] = String(value);
    }
    functions.push({
      logicalId,
      name: names.name(logicalId),
      arn: names.getAtt(logicalId, 'Arn'),
      entry,
      handlerExport: handlerSetting.slice(handlerSetting.lastIndexOf('.') + 1),
      timeoutSeconds: typeof props.Timeout === 'number' ? props.Timeout : DEFAULT_TIMEOUT_SECONDS,
      memoryMb: typeof props.MemorySize === 'number' ? props.MemorySize : 128,
      environment,
    });
  }
  return functions;
}

/** The function a name or ARN refers to. */
export function findFunction(functions: LocalFunction[], ref: string): LocalFunction | undefined {
  const name = functionNameOf(ref);
  return functions.find((fn) => fn.name === name || fn.logicalId === name);
}

/**
 * All handlers share one process and so one process.env: the union of the functions' variables.
 * Two functions giving one variable different values cannot both be honoured, so that is refused.
 */
export function mergedEnvironment(functions: LocalFunction[]): Record<string, string> {
  const merged: Record<string, string> = {};
  const owner: Record<string, string> = {};
  const conflicts: string[] = [];
  for (const fn of functions) {
    for (const [key, value] of Object.entries(fn.environment)) {
      if (key in merged && merged[key] !== value) {
        conflicts.push(`${key} is "${merged[key]}" in ${owner[key]} but "${value}" in ${fn.logicalId}`);
        continue;
      }
      merged[key] = value;
      owner[key] = fn.logicalId;
    }
  }
  if (conflicts.length > 0) {
    throw new ConflictingEnvironment(`the functions cannot share one process environment:\n  - ${conflicts.join('\n  - ')}`);
  }
  return merged;
}

export type Handler = (event: unknown, context: LambdaContext) => unknown;

/** The subset of Lambda's context object handlers may use. */
export interface LambdaContext {
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  memoryLimitInMB: string;
  awsRequestId: string;
  logGroupName: string;
  logStreamName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}

/** Imports a function's handler from source. `root` is the repository root. */
export async function loadHandler(fn: LocalFunction, root: string): Promise<Handler> {
  const file = path.resolve(root, fn.entry);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw new FunctionNotRunnable(`${fn.logicalId}: cannot import ${fn.entry}: ${(error as Error).message}`);
  }
  const handler = module[fn.handlerExport];
  if (typeof handler !== 'function') throw new FunctionNotRunnable(`${fn.logicalId}: ${fn.entry} exports no function "${fn.handlerExport}"`);
  return handler as Handler;
}

/**
 * A function's failure as Step Functions sees it: `name` is Lambda's `errorType` (what Retry and
 * Catch match) and `message` is the error payload Lambda returns, which becomes the `Cause`.
 * A terminal States error (UNCATCHABLE_ERRORS) is matched by no Retry or Catch, as in AWS; the
 * local engine reads that from `isRetryable` and `isCatchable`.
 */
export class LambdaFunctionError extends Error {
  constructor(
    readonly errorType: string,
    readonly errorMessage: string,
    trace: string[] = [],
  ) {
    super(JSON.stringify({ errorType, errorMessage, trace }));
    this.name = errorType;
  }

  get isRetryable(): boolean {
    return !TERMINAL_ERRORS.has(this.errorType);
  }

  get isCatchable(): boolean {
    return !TERMINAL_ERRORS.has(this.errorType);
  }
}

const TERMINAL_ERRORS: ReadonlySet<string> = new Set(UNCATCHABLE_ERRORS);

/** A thrown value as Node's Lambda runtime client reports it: an Error by its name, anything else by its typeof and toString. */
function asFunctionError(error: unknown): LambdaFunctionError {
  if (error instanceof Error) {
    const trace = (error.stack ?? '').split('\n').map((line) => line.trimEnd());
    return new LambdaFunctionError(error.name || 'Error', error.message, trace);
  }
  return new LambdaFunctionError(typeof error, String(error));
}

/**
 * Runs a handler once, as a Lambda invocation. After its timeout the invocation is reported as
 * `Sandbox.Timedout`, as Lambda does; the handler's promise cannot be killed in-process, so a
 * handler must watch `getRemainingTimeInMillis()` and stop in time, as it must in AWS.
 */
export async function invokeLocal(fn: LocalFunction, handler: Handler, event: unknown): Promise<unknown> {
  const payload = JSON.parse(JSON.stringify(event ?? null)) as unknown;
  const deadline = Date.now() + fn.timeoutSeconds * 1000;
  const requestId = randomUUID();
  const context: LambdaContext = {
    functionName: fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: fn.arn,
    memoryLimitInMB: String(fn.memoryMb),
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: `local/${requestId}`,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new LambdaFunctionError('Sandbox.Timedout', `RequestId: ${requestId} Error: Task timed out after ${fn.timeoutSeconds.toFixed(2)} seconds`)),
      fn.timeoutSeconds * 1000,
    );
  });
  let result: unknown;
  try {
    result = await Promise.race([Promise.resolve().then(() => handler(payload, context)), timeout]);
  } catch (error) {
    throw error instanceof LambdaFunctionError ? error : asFunctionError(error);
  } finally {
    clearTimeout(timer);
  }
  const text = result === undefined ? 'null' : JSON.stringify(result);
  // Lambda returns it (up to 6 MB); Step Functions then fails the state, with nothing to retry or catch it.
  if (Buffer.byteLength(text) > MAX_STATE_PAYLOAD_BYTES) {
    throw new LambdaFunctionError(
      'States.DataLimitExceeded',
      `${fn.logicalId} returned ${Buffer.byteLength(text)} bytes; a state's output is capped at ${MAX_STATE_PAYLOAD_BYTES}`,
    );
  }
  return JSON.parse(text) as unknown;
}
