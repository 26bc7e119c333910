/**
 * The whole pipeline on one machine, with no AWS account and no API key: the CDK app synthesized
 * in-process, its job state machine run by aws-local-stepfunctions, the handlers imported from
 * source, against s3rver, dynalite, a loopback shim for Secrets Manager / SNS / EventBridge / Step
 * Functions, and the Batches API simulator (or the real API with --live).
 *
 *   const stack = await startLocalStack();
 *   const jobId = await stack.submitFile('examples/classification.jsonl');
 *   const outcome = await stack.waitForJob(jobId);
 *   await stack.stop();
 *
 * Handlers create their AWS clients once, at import, from process.env — so the environment is set
 * before any handler is imported, and one process hosts one local stack in its lifetime.
 */
import './polyfills';
import { createServer } from 'node:net';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { MODE_METADATA } from '../shared/jobs/register-job';
import { PRIME_CACHE_METADATA } from '../shared/jobs/prime-cache';
import { DEADLINE_METADATA, resolveDeadline } from '../shared/jobs/deadline';
import { JSONL_CONTENT_TYPE, uploadFile } from '../shared/store/s3';
import { inboxKey, type Prefixes } from '../shared/store/keys';
import { PREFIX_ENV, readPrefixes } from '../shared/config';
import type { SimulatorHandle, SimulatorOptions } from '../simulator/options';
import { startSimulator } from '../simulator/server';
import { assertRunnableLocally, findJobStateMachine, localizeCallbacks, localizeWaits, resolveDefinition, scaledRetryIntervals, taskTargets } from './asl';
import { startAwsShim, type AwsShim, type ExecutionDescription } from './aws-shim';
import { BACKEND_VARIABLE, createPipelineTable, localAwsEnv, localBackend, startDynamo, startS3, type LocalDynamo, type LocalS3 } from './emulators';
import {
  busName,
  eventRuleTargets,
  executionStatusEvent,
  matchesPattern,
  objectCreatedEvent,
  putEventAsBusEvent,
  schedulesOf,
  type BusEvent,
  type LocalSchedule,
} from './events';
import { findFunction, invokeLocal, loadHandler, localFunctions, mergedEnvironment, type Handler } from './lambda';
import { readJobProgress, type JobProgress } from './progress';
import { LocalStepFunctions, type LocalExecution } from './step-functions';
import { LocalTaskTokens } from './task-tokens';
import { synthesizeTemplate } from './synth';
import { LocalNames, resourcesOfType } from './template';
import { LocalStackError, PortInUse } from './errors';
import { LocalState } from './state';
import { POLLER_ENTRY, POLLER_MIN_TICK_MS, scheduleSeconds, startPoller, type LocalPoller } from './poller';
import { taskEvent, type LocalEvent } from './stack-events';
import { taskHandlersOf } from './task-handlers';
import { jobOutcome, untilJobEnded, type JobOutcome } from './job-outcome';

export { LocalStackError, PortInUse } from './errors';
export type { LocalPoller } from './poller';
export { scheduleSeconds } from './poller';
export type { LocalEvent } from './stack-events';
export type { JobOutcome } from './job-outcome';
export { readPath, waitMs } from './waits';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The key the simulator accepts and the local Secrets Manager hands out. Not a secret. */
export const LOCAL_API_KEY = 'sk-ant-local-simulator-key';

/**
 * Simulated seconds per real second. At 600 a 60-second batch ends in 0.1 s, the shortest poll
 * wait (30 s) takes 50 ms, and a 24-hour expiry takes 2.4 minutes.
 */
export const DEFAULT_TIME_SCALE = 600;

export interface LocalStackOptions {
  /** The repository root (where cdk.json is). Default: this checkout. */
  root?: string;
  /** The simulator's clock speed; waits and retry delays are divided by it. Default 600. */
  timeScale?: number;
  /** Use the real Batches API instead of the simulator; waits are then real. */
  live?: { apiKey: string; baseUrl?: string };
  /** Simulator settings and faults (ignored when live). */
  simulator?: Omit<SimulatorOptions, 'timeScale' | 'apiKeys' | 'port' | 'host'>;
  /** Stack settings by name (cdk.json `batchline:settings`), e.g. `{ maxRequestsPerChunk: 50 }`. */
  settings?: Record<string, string | number>;
  /** More CDK context for the synth. */
  context?: Record<string, unknown>;
  /** Reuse a cached template when nothing it depends on changed. Default true. */
  cacheTemplate?: boolean;
  /**
   * Keep S3, DynamoDB and a journal of executions in this folder across processes, for `resume`
   * (local/state.ts; the CLI's `.batchline/state/` with --live). Default: temporary, deleted at stop.
   */
  stateDir?: string;
  /** Fixed ports (default: any free one), e.g. local S3 for uploads from other tools. */
  ports?: { s3?: number };
  /** Told of slow steps as they start (the CLI prints them). */
  log?: (message: string) => void;
  /**
   * The handlers' own log lines (Powertools, JSON on stdout, as in Lambda): TRACE … CRITICAL, or
   * SILENT. Default: POWERTOOLS_LOG_LEVEL from the environment, else SILENT.
   */
  handlerLogLevel?: string;
}

export interface ScheduleRun {
  schedule: LocalSchedule;
  output: unknown;
}

export interface LocalStack {
  bucket: string;
  table: string;
  /** Where in the bucket the inputs, work files and outputs are (the stack's settings; defaults unless set). */
  prefixes: Prefixes;
  s3: S3Client;
  s3Endpoint: string;
  dynamo: DynamoDBClient;
  /** undefined when live. */
  simulator: SimulatorHandle | undefined;
  stepFunctions: LocalStepFunctions;
  shim: AwsShim;
  timeScale: number;
  /** The environment the handlers run with (endpoints, names, settings; never an API key). */
  env: Record<string, string>;
  /**
   * Uploads a file to the inbox (object metadata `batchline-mode`, and `batchline-prime-cache` when
   * primeCache is given) and resolves with its job id once registered.
   */
  /**
   * `deadline`: the job's deadline (object metadata batchline-deadline); a duration (`6h`) is
   * resolved here on the API's clock (the simulator's, whose time runs fast), an ISO time passed as is.
   */
  submitFile(file: string, options?: { lenient?: boolean; primeCache?: boolean; key?: string; deadline?: string }): Promise<string>;
  /** Starts a job execution with this input, as EventBridge or the sweep would (e.g. an event delivered twice). */
  startExecution(input: unknown, name?: string): LocalExecution;
  /** Resolves once the job has ended, whatever the outcome. */
  waitForJob(jobId: string): Promise<JobOutcome>;
  progress(jobId: string): Promise<JobProgress>;
  on(listener: (event: LocalEvent) => void): () => void;
  /** Runs every schedule of the stack once, now (not the poller's, which ticks on its own: see `poller`). */
  runSchedules(): Promise<ScheduleRun[]>;
  schedules: LocalSchedule[];
  /** The poller's schedule, ticking every `rate` / time scale while the stack runs; undefined when the stack has none. */
  poller: LocalPoller | undefined;
  /** The callback Tasks' tokens (AwaitBatch). */
  taskTokens: LocalTaskTokens;
  /**
   * With a state folder: starts again, under its own name and input, every execution journaled
   * there that never ended; each settles with its job id once registered (or the reason it could not).
   */
  resume(): Promise<ResumedExecution[]>;
  stop(): Promise<void>;
}

export interface ResumedExecution {
  executionArn: string;
  startedAt: string;
  jobId?: string;
  error?: Error;
}

interface TrackedExecution {
  executionArn: string;
  /** The object key as stored, for executions S3 started. */
  key?: string;
  etag?: string;
  /** Taken by one submitFile call. */
  claimed: boolean;
  jobId?: string;
  duplicate?: boolean;
  registered: Deferred<string>;
  done: Promise<ExecutionDescription>;
}

let started = false;

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  if (started) {
    throw new LocalStackError('one local stack per process: the handlers keep the AWS clients they created at import');
  }
  started = true;
  // The SDK's notice about Node 20 support would interleave with the CLI's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const root = options.root ?? REPO_ROOT;
  const timeScale = options.live ? 1 : (options.timeScale ?? DEFAULT_TIME_SCALE);
  if (!(timeScale > 0)) throw new LocalStackError(`the time scale must be a positive number, got ${timeScale}`);

  // Before the synth: a port in use should be said at once.
  if (options.ports?.s3) await assertPortFree(options.ports.s3);
  const context: Record<string, unknown> = { ...options.context };
  if (options.settings) context['batchline:settings'] = options.settings;
  const template = await synthesizeTemplate({
    root,
    context,
    cache: options.cacheTemplate,
    onSynth: () => options.log?.('Synthesizing the CDK app (once; the template is cached in .batchline/cache/)…'),
  });
  const names = new LocalNames(template);
  const machineId = findJobStateMachine(template, names);
  const stateMachineArn = names.ref(machineId);
  const functions = localFunctions(template, names);
  const resolved = resolveDefinition(names, machineId);
  assertRunnableLocally(resolved, (ref) => findFunction(functions, ref) !== undefined);
  const functionEnv = mergedEnvironment(functions);
  const bucket = requireVariable(functionEnv, 'BATCHLINE_BUCKET');
  const table = requireVariable(functionEnv, 'BATCHLINE_TABLE');
  // The functions' own reader: the prefixes they were given, the defaults when none.
  const prefixes = readPrefixes(functionEnv);
  const secretIds = new Set<string>(resourcesOfType(template, 'AWS::SecretsManager::Secret').flatMap((id) => [names.ref(id), names.name(id)]));
  if (functionEnv.BATCHLINE_API_KEY_SECRET) secretIds.add(functionEnv.BATCHLINE_API_KEY_SECRET);
  // Rules deliver to the job state machine or to a function; other targets (queues, topics) have no local meaning.
  const rules = eventRuleTargets(template, names).filter((rule) => rule.targetArn === stateMachineArn || findFunction(functions, rule.targetArn) !== undefined);
  const triggers = rules.filter((rule) => rule.targetArn === stateMachineArn);
  if (triggers.length === 0) throw new LocalStackError('no EventBridge rule of the stack starts the job state machine');
  const allSchedules = schedulesOf(template, names);
  const isPollerSchedule = (schedule: LocalSchedule) => findFunction(functions, schedule.targetArn)?.entry === POLLER_ENTRY;
  const schedules = allSchedules.filter((schedule) => !isPollerSchedule(schedule));
  const pollerSchedule = allSchedules.find(isPollerSchedule);
  // The poller's tick in real ms: its rate divided by the time scale, but not under POLLER_MIN_TICK_MS
  // (at 3,600× a tick every 17 ms would take a core); a heartbeat timeout then outlasts 10 ticks.
  const pollerTickMs = pollerSchedule ? Math.max((scheduleSeconds(pollerSchedule.expression) * 1000) / timeScale, POLLER_MIN_TICK_MS) : 0;
  const taskTokens = new LocalTaskTokens(timeScale, { minHeartbeatMs: 10 * pollerTickMs });
  let poller: (LocalPoller & { stop(): Promise<void> }) | undefined;

  const listeners = new Set<(event: LocalEvent) => void>();
  const emit = (event: LocalEvent) => {
    for (const listener of listeners) listener(event);
  };
  const tracked = new Map<string, TrackedExecution>();
  /** Wakes submitFile calls waiting for EventBridge to deliver their object's event. */
  const deliveryWaiters: Array<() => void> = [];
  const failedDeliveries: Array<{ key: string; etag: string; error: Error }> = [];

  let s3: LocalS3 | undefined;
  let dynamo: LocalDynamo | undefined;
  let simulator: SimulatorHandle | undefined;
  let shim: AwsShim | undefined;
  let stepFunctions: LocalStepFunctions | undefined;
  const handlers = new Map<string, Handler>();
  let handlerEnv: Record<string, string> = {};
  let stopping: Promise<void> | undefined;
  if (options.stateDir && localBackend() === 'moto') {
    throw new LocalStackError(`moto keeps S3 and DynamoDB in memory: no durable state in ${options.stateDir} (unset ${BACKEND_VARIABLE})`);
  }
  // Opened first: a second process on the same folder is refused before anything starts.
  const state = options.stateDir ? LocalState.open(options.stateDir) : undefined;
  state?.recordSettings(options.settings ?? {});
  const stopAll = () =>
    (stopping ??= (async () => {
      await poller?.stop();
      await stepFunctions?.stopAll();
      await simulator?.stop();
      await shim?.stop();
      await s3?.stop();
      await dynamo?.stop();
      state?.release();
    })());

  try {
    s3 = await startS3({ buckets: [bucket], port: options.ports?.s3, directory: state?.s3Directory });
    dynamo = await startDynamo({ directory: state?.dynamoDirectory });
    await createPipelineTable(dynamo.client, table, { existing: 'keep' });
    if (!options.live) {
      simulator = await startSimulator({ ...options.simulator, timeScale, apiKeys: [LOCAL_API_KEY] });
    }
    const apiKey = options.live?.apiKey ?? LOCAL_API_KEY;
    shim = await startAwsShim({
      secret: (id) => (secretIds.has(id) ? apiKey : undefined),
      startExecution: (request) => start(request),
      describeExecution: (arn) => stepFunctions?.describe(arn),
      listExecutions: (arn) => stepFunctions?.list(arn) ?? [],
      stopExecution: (arn, reason) => stepFunctions!.stop(arn, reason),
      taskTokens,
    });

    const env: Record<string, string> = {
      ...functionEnv,
      ...localAwsEnv({ s3: s3.endpoint, dynamodb: dynamo.endpoint }),
      ...shim.env,
      // On a laptop the handlers' logs would bury the progress, and their CloudWatch metrics (EMF) mean nothing.
      POWERTOOLS_LOG_LEVEL: options.handlerLogLevel ?? process.env.POWERTOOLS_LOG_LEVEL ?? 'SILENT',
      POWERTOOLS_METRICS_DISABLED: 'true',
    };
    // Submit's adoption grace is real time that the workflow's OutcomeUnknown retries must outlast
    // (shared/jobs/submit-chunk.ts). Here those retries are divided by the time scale and lose their
    // backoff (a fraction of a second in all), and the simulator lists a batch the moment it is
    // created: no grace is needed, and any would outlast the retries.
    if (timeScale > 1) env.BATCHLINE_ADOPT_GRACE_SECONDS = '0';
    // The poller's period and staleness bound are simulated time, like the workflow's waits. Stale
    // after 3 periods, but never under 1 real second: a busy machine's late timer is not an outage.
    if (pollerSchedule) {
      env.BATCHLINE_POLLER_PERIOD_SECONDS = String(pollerTickMs / 1000);
      env.BATCHLINE_POLLER_STALE_SECONDS = String(Math.max((3 * pollerTickMs) / 1000, 1));
    }
    if (simulator) env.ANTHROPIC_BASE_URL = simulator.url;
    else if (options.live?.baseUrl) env.ANTHROPIC_BASE_URL = options.live.baseUrl;
    // Nothing may reach a real AWS account: no profile, no session, no global endpoint override.
    for (const variable of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL', 'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS']) {
      delete process.env[variable];
    }
    if (!simulator && !options.live?.baseUrl && !functionEnv.ANTHROPIC_BASE_URL) delete process.env.ANTHROPIC_BASE_URL;
    // The prefixes are the template's (its trigger rule filters on the inbox): none from elsewhere.
    for (const variable of Object.values(PREFIX_ENV)) if (env[variable] === undefined) delete process.env[variable];
    Object.assign(process.env, env);
    handlerEnv = env;

    for (const fn of functions) handlers.set(fn.logicalId, await loadHandler(fn, root));

    const localized = localizeWaits(resolved);
    const waits = localized.waits;
    const { definition, callbacks } = localizeCallbacks(localized.definition);
    if (typeof definition.TimeoutSeconds === 'number') {
      definition.TimeoutSeconds = Math.max(1, Math.ceil(definition.TimeoutSeconds / timeScale));
    }
    const clock = () => simulator?.now() ?? Date.now();
    // From the definition as synthesized: the local wait tasks are not the stack's functions.
    const targets = taskTargets(resolved);
    stepFunctions = new LocalStepFunctions({
      definition,
      stateMachineArn,
      retryIntervals: timeScale === 1 ? undefined : scaledRetryIntervals(definition, timeScale),
      taskHandlers: taskHandlersOf({ targets, functions, handlers, callbacks, waits, taskTokens, timeScale, clock, emit, observe }),
    });
    stepFunctions.onExecutionEnded((execution) => {
      // An execution aborted because this process stops has not ended: resume starts it again.
      if (!stopping) state?.ended(execution.name, execution.status);
      const entry = tracked.get(execution.executionArn);
      if (entry && entry.jobId === undefined) {
        entry.registered.reject(
          new LocalStackError(`the execution ended before registering a job: ${execution.error ?? execution.status} ${execution.cause ?? ''}`.trim()),
        );
      }
      emit({
        type: 'execution-ended',
        executionArn: execution.executionArn,
        status: execution.status,
        error: execution.error,
        cause: execution.cause,
        jobId: entry?.jobId,
      });
      publish('default', executionStatusEvent(execution));
    });
    shim.onPublish((message) => emit({ type: 'notification', message }));
    shim.onEvent((event) => {
      emit({ type: 'event-published', event });
      publish(busName(event.eventBusName), putEventAsBusEvent(event));
    });
    s3.onObjectCreated((record) => {
      const event = objectCreatedEvent(record);
      // Filed under the key as stored, the form submitFile looks it up by, whatever the event's form.
      publish('default', event, { key: record.s3.object.key, etag: event.detail.object.etag });
    });
    if (pollerSchedule) {
      poller = startPoller(pollerSchedule, findFunction(functions, pollerSchedule.targetArn)!, pollerTickMs, emit, (fn, input) =>
        invokeLocal(fn, handlers.get(fn.logicalId)!, input),
      );
      // Ticked once before any job: the arm finds the poller healthy from the first chunk on.
      await poller.tick();
    }
  } catch (error) {
    await stopAll();
    throw error;
  }

  /**
   * EventBridge: the event goes to every rule of its bus whose pattern matches, after the call that
   * caused it has returned (delivery is asynchronous). A function target is invoked as Lambda
   * invokes asynchronously, once here; its failure is reported as an event.
   */
  function publish(bus: string, event: BusEvent, object?: { key: string; etag: string }): void {
    setImmediate(() => {
      if (stopping) return;
      for (const rule of rules) {
        if (rule.eventBus !== bus || !matchesPattern(rule.pattern, event)) continue;
        const input = rule.input(event);
        if (rule.targetArn === stateMachineArn) {
          try {
            start({ input: JSON.stringify(input) }, object);
          } catch (error) {
            if (object) failedDeliveries.push({ ...object, error: error as Error });
            for (const wake of deliveryWaiters.splice(0)) wake();
          }
          continue;
        }
        const fn = findFunction(functions, rule.targetArn)!;
        invokeLocal(fn, handlers.get(fn.logicalId)!, input).catch((error: Error) =>
          emit({ type: 'delivery-failed', rule: rule.rule, target: fn.name, error: error.name }),
        );
      }
    });
  }

  function start(request: { stateMachineArn?: string; name?: string; input?: string }, object?: { key: string; etag: string }): LocalExecution {
    const execution = stepFunctions!.start(request);
    if (!tracked.has(execution.executionArn)) {
      // In the same tick as the start, so before its first step runs.
      state?.started(execution.name, execution.input ?? '{}');
      publish('default', executionStatusEvent(execution));
      const entry: TrackedExecution = {
        executionArn: execution.executionArn,
        ...object,
        claimed: false,
        registered: deferred<string>(),
        done: execution.done,
      };
      entry.registered.promise.catch(() => undefined);
      tracked.set(execution.executionArn, entry);
      emit({ type: 'execution-started', executionArn: execution.executionArn, key: object?.key });
      for (const wake of deliveryWaiters.splice(0)) wake();
    }
    return execution;
  }

  function observe(executionArn: string, state: string, input: unknown, output: unknown): void {
    const event = taskEvent(executionArn, state, input, output);
    if (event?.type === 'job-registered') {
      const entry = tracked.get(executionArn);
      const out = output as { jobId?: unknown } | null;
      if (entry && typeof out?.jobId === 'string') {
        entry.jobId = out.jobId;
        entry.duplicate = event.duplicate;
        entry.registered.resolve(out.jobId);
      }
    }
    if (event) emit(event);
  }

  /** The execution S3 started for this object (the first not yet taken), once EventBridge has delivered. */
  async function executionFor(key: string, etag: string): Promise<TrackedExecution> {
    for (;;) {
      const entry = [...tracked.values()].find((e) => !e.claimed && e.key === key && e.etag === etag);
      if (entry) {
        entry.claimed = true;
        return entry;
      }
      const failed = failedDeliveries.find((f) => f.key === key && f.etag === etag);
      if (failed) throw new LocalStackError(`no execution could start for ${key}: ${failed.error.message}`);
      await new Promise<void>((resolve) => deliveryWaiters.push(resolve));
    }
  }

  const handle: LocalStack = {
    bucket,
    table,
    prefixes,
    s3: s3.client,
    s3Endpoint: s3.endpoint,
    dynamo: dynamo.client,
    simulator,
    stepFunctions,
    shim,
    timeScale,
    env: handlerEnv,
    schedules,
    poller,
    taskTokens,

    async submitFile(file, submitOptions = {}) {
      const size = await stat(file).then(
        (s) => (s.isFile() ? s.size : undefined),
        () => undefined,
      );
      if (size === undefined) throw new LocalStackError(`no such file: ${file}`);
      const key = submitOptions.key ?? inboxKey(path.basename(file), prefixes);
      // Only an object some rule matches starts a job: anywhere else, waiting for one would never end.
      const probe = objectCreatedEvent({ eventName: 'ObjectCreated:Put', s3: { bucket: { name: bucket }, object: { key, size, eTag: '', sequencer: '' } } });
      if (!triggers.some((trigger) => matchesPattern(trigger.pattern, probe))) {
        throw new LocalStackError(`no rule of the stack starts a job for s3://${bucket}/${key} (upload under ${prefixes.inbox})`);
      }
      const uploaded = await uploadFile(s3!.client, bucket, key, file, {
        metadata: {
          [MODE_METADATA]: submitOptions.lenient ? 'lenient' : 'strict',
          ...(submitOptions.primeCache !== undefined ? { [PRIME_CACHE_METADATA]: String(submitOptions.primeCache) } : {}),
          ...(submitOptions.deadline !== undefined
            ? { [DEADLINE_METADATA]: new Date(resolveDeadline(submitOptions.deadline, simulator?.now() ?? Date.now(), '--deadline')).toISOString() }
            : {}),
        },
        contentType: JSONL_CONTENT_TYPE,
      });
      const etag = uploaded.etag.replace(/"/g, '');
      const execution = await executionFor(key, etag);
      return execution.registered.promise;
    },

    async waitForJob(jobId) {
      const primary = [...tracked.values()].find((e) => e.jobId === jobId && !e.duplicate);
      // Started elsewhere (or its event delivered twice): follow the job record instead.
      const ended = primary ? await primary.done : await untilJobEnded(dynamo!.client, table, jobId);
      return jobOutcome({ s3: s3!.client, bucket, dynamo: dynamo!.client, table, prefixes }, jobId, ended);
    },

    startExecution: (input, name) => start({ input: JSON.stringify(input), name }),

    progress: (jobId) => readJobProgress(dynamo!.client, table, jobId),

    on(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async runSchedules() {
      const runs: ScheduleRun[] = [];
      for (const schedule of schedules) {
        const fn = findFunction(functions, schedule.targetArn);
        if (!fn) throw new LocalStackError(`schedule ${schedule.name} targets ${schedule.targetArn}, which is no local function`);
        runs.push({ schedule, output: await invokeLocal(fn, handlers.get(fn.logicalId)!, schedule.input) });
      }
      return runs;
    },

    async resume() {
      if (!state) throw new LocalStackError('this stack keeps no state to resume from (start it with a state folder)');
      return Promise.all(
        state.unfinished().map(async (journaled): Promise<ResumedExecution> => {
          const execution = start({ name: journaled.name, input: journaled.input });
          const entry = tracked.get(execution.executionArn)!;
          entry.claimed = true;
          try {
            return { executionArn: execution.executionArn, startedAt: journaled.startedAt, jobId: await entry.registered.promise };
          } catch (error) {
            return { executionArn: execution.executionArn, startedAt: journaled.startedAt, error: error as Error };
          }
        }),
      );
    },

    async stop() {
      listeners.clear();
      await stopAll();
    },
  };
  return handle;
}

/**
 * s3rver does not report a port in use: its server's 'error' event goes unhandled and ends the
 * process. So the port is tried first (a start racing another process for it is still possible).
 */
async function assertPortFree(port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (error: NodeJS.ErrnoException) => reject(error.code === 'EADDRINUSE' ? new PortInUse(port) : error));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

function requireVariable(env: Record<string, string>, name: string): string {
  const value = env[name];
  if (!value) throw new LocalStackError(`the stack's functions get no ${name}`);
  return value;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
