/**
 * The job state machine of docs/workflow-contract.md, state for state. It stays inside what the
 * local engine runs: JSONPath only, no variables, no ItemReader, every step a Lambda task.
 * State names are shared/jobs/contract.ts's STATE (keys for the local engine's overrides too).
 */
import { Arn, ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { PIPELINE_SETTING_ENV, readPipelineSettings } from '../shared/config';
import {
  API_RETRYABLE_ERRORS,
  CALLBACK_TIMEOUT_ERRORS,
  POLLER_UNAVAILABLE_ERRORS,
  LAMBDA_CRASH_ERRORS,
  LAMBDA_TRANSIENT_ERRORS,
  OUTCOME_UNKNOWN_ERRORS,
  CREATE_SLOT_BUSY_ERRORS,
  CREATE_REFUSED_ERRORS,
  KEY_REFUSED_ERRORS,
  QUEUE_FULL_ERRORS,
  STATE,
  STORAGE_THROTTLED_ERRORS,
} from '../shared/jobs/contract';
import type { PollSettings } from '../shared/jobs/poll-batch';
import type { HandlerName } from './handler';
import { checkHistoryBudget, type AslGraph } from './history-budget';
import { acceptFinding, acceptWildcardResources } from './nag';

/** The state machine's logical id in the template (fixed, so tools can find it). */
export const STATE_MACHINE_LOGICAL_ID = 'JobStateMachine';

// The error names of every Retry below are shared/jobs/contract.ts's, which the handlers' logs and
// the reconciler read too.

/** Transient Lambda service errors (CDK's own default retry leaves out ClientExecutionTimeout and TooManyRequests). */
export const LAMBDA_RETRY: sfn.RetryProps = {
  errors: [...LAMBDA_TRANSIENT_ERRORS],
  interval: Duration.seconds(2),
  backoffRate: 2,
  maxAttempts: 6,
  jitterStrategy: sfn.JitterType.FULL,
};

/**
 * The function was killed (timeout, crash, out of memory). Every task is safe to re-run — Submit
 * adopts, Collect and Finalize converge — so a killed run is retried rather than failing a chunk
 * whose results the API still holds.
 */
export const LAMBDA_CRASH_RETRY: sfn.RetryProps = {
  errors: [...LAMBDA_CRASH_ERRORS],
  interval: Duration.seconds(5),
  backoffRate: 2,
  maxAttempts: 2,
  jitterStrategy: sfn.JitterType.FULL,
};

/** The API stayed unavailable through the client's own retries: back off for minutes, not seconds. */
export const API_RETRYABLE_RETRY: sfn.RetryProps = {
  errors: [...API_RETRYABLE_ERRORS],
  interval: Duration.seconds(30),
  backoffRate: 2,
  maxAttempts: 5,
  maxDelay: Duration.minutes(10),
  jitterStrategy: sfn.JitterType.FULL,
};

/** Submit could not tell whether a batch was created; a rerun reconciles before creating again. */
export const OUTCOME_UNKNOWN_RETRY: sfn.RetryProps = {
  errors: [...OUTCOME_UNKNOWN_ERRORS],
  interval: Duration.seconds(15),
  backoffRate: 2,
  maxAttempts: 8,
  maxDelay: Duration.minutes(5),
  // No jitter, and more tries than Submit's GIVE_UP_LOOKS (7; the 7th about 18 minutes after the
  // lost create): Submit ends the attempt itself, with CreateOutcomeUnknown and how to find the batch.
  jitterStrategy: sfn.JitterType.NONE,
};

/**
 * Another chunk attempt of the same size has a create not yet answered (shared/jobs/create-slot.ts;
 * Submit has already waited 10 s in-process): wait for it, every 30 s for 40 minutes — longer than a
 * holder's looks for a lost create (about 18 minutes) and than a dead holder's lease (30 minutes).
 */
export const CREATE_SLOT_BUSY_RETRY: sfn.RetryProps = {
  errors: [...CREATE_SLOT_BUSY_ERRORS],
  interval: Duration.seconds(30),
  backoffRate: 1,
  maxAttempts: 80,
  jitterStrategy: sfn.JitterType.NONE,
};

/**
 * The API refused a create before making anything (529 overloaded): an outage, waited out — 16
 * tries, 1, 1.5, 2.25 … minutes apart, then every 10 (about 2 h; 1 h on average with the jitter
 * that spreads a job's chunks) — so that a long 529 storm does not fail the chunk. Nothing was
 * made, so nothing can be paid twice.
 */
export const CREATE_REFUSED_RETRY: sfn.RetryProps = {
  errors: [...CREATE_REFUSED_ERRORS],
  interval: Duration.seconds(60),
  backoffRate: 1.5,
  maxDelay: Duration.minutes(10),
  maxAttempts: 16,
  jitterStrategy: sfn.JitterType.FULL,
};

/**
 * The API refused the key while Collect read results: they stay at the API for 29 days, so wait
 * for a valid key — 10 minutes, backing off to an hour, about a day in all.
 */
export const KEY_REFUSED_RETRY: sfn.RetryProps = {
  errors: [...KEY_REFUSED_ERRORS],
  interval: Duration.minutes(10),
  backoffRate: 1.5,
  maxDelay: Duration.hours(1),
  maxAttempts: 30,
  jitterStrategy: sfn.JitterType.FULL,
};

/** The workspace's batch queue is full (429 on create): it drains as earlier batches end — wait up to ~8 h. */
export const QUEUE_FULL_RETRY: sfn.RetryProps = {
  errors: [...QUEUE_FULL_ERRORS],
  interval: Duration.minutes(5),
  backoffRate: 1,
  maxAttempts: 96,
  jitterStrategy: sfn.JitterType.NONE,
};

/** DynamoDB or S3 throttling that outlasted the SDK's retries: every task is safe to re-run. */
export const STORAGE_RETRY: sfn.RetryProps = {
  errors: [...STORAGE_THROTTLED_ERRORS],
  interval: Duration.seconds(10),
  backoffRate: 2,
  maxAttempts: 5,
  jitterStrategy: sfn.JitterType.FULL,
};

/**
 * FinalizeChunk's one retrier: a short one, since its failure costs nothing but time (FinalizeJob
 * orders a chunk without a current record itself), and each retry is history its chunk execution
 * must hold (infra/history-budget.ts).
 */
export const FINALIZE_CHUNK_RETRY: sfn.RetryProps = {
  errors: [...LAMBDA_TRANSIENT_ERRORS, ...LAMBDA_CRASH_ERRORS, ...STORAGE_THROTTLED_ERRORS],
  interval: Duration.seconds(5),
  backoffRate: 2,
  maxAttempts: 2,
  jitterStrategy: sfn.JitterType.FULL,
};

/** RecordChunkFailure must not fail: an uncaught error there would fail the Map and so the whole job. */
export const RECORD_FAILURE_RETRY: sfn.RetryProps = {
  errors: [sfn.Errors.ALL],
  interval: Duration.seconds(5),
  backoffRate: 2,
  maxAttempts: 4,
  jitterStrategy: sfn.JitterType.FULL,
};

/**
 * AwaitBatch (a chunk attempt waiting on the poller's callback): the poller heartbeats every 5
 * minutes, so 15 minutes without one means it is down and the chunk polls directly; a batch expires
 * 24 h after create, so no wait lasts past 25 h. Constants: the local engine would read a `*Path`
 * against the wrong input (docs/deploy-fidelity.md S14).
 */
export const AWAIT_HEARTBEAT_SECONDS = 900;
export const AWAIT_TIMEOUT_SECONDS = 90_000;

/** A task outlives its function by this much, so the function's own timeout is what surfaces. */
const TASK_TIMEOUT_MARGIN = Duration.seconds(60);

/** The handlers the job state machine's tasks run, in the order of docs/workflow-contract.md. */
export const WORKFLOW_HANDLERS = [
  'register-job',
  'prepare-job',
  'submit-chunk',
  'poll-batch',
  'collect-results',
  'finalize-chunk',
  'finalize-job',
  'record-chunk-failure',
  'mark-job-failed',
  'await-batch',
] as const satisfies readonly HandlerName[];
export type WorkflowHandler = (typeof WORKFLOW_HANDLERS)[number];

/** `arn:…:execution:<state machine name>`: append `:*` for its executions, `/*` for a Distributed Map's children. */
export function jobExecutionsArn(stateMachine: sfn.IStateMachine): string {
  const name = Arn.split(stateMachine.stateMachineArn, ArnFormat.COLON_RESOURCE_NAME).resourceName;
  return Stack.of(stateMachine).formatArn({ service: 'states', resource: 'execution', resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
}

export interface JobWorkflowProps {
  /** Starts the execution log group's name, unique in the account and region. Default: the stack's name. */
  namePrefix?: string;
  /** The state machine's logical id, unique in the stack. Default STATE_MACHINE_LOGICAL_ID. */
  logicalId?: string;
  functions: Record<WorkflowHandler, lambda.Function>;
  /** The Map's MaxConcurrency: chunks of one job in flight at once. Default 10. */
  maxConcurrentChunks?: number;
  /** Default one month. */
  logRetention?: logs.RetentionDays;
  /** Encrypt the execution logs with this key. Default: CloudWatch Logs' own encryption. */
  logKey?: kms.IKey;
  /**
   * Chunks wait for the poller (AwaitBatch) with the Wait loop as fallback; false: the Wait loop
   * only, as before the poller (the `poller` setting). Default true.
   */
  poller?: boolean;
}

export class JobWorkflow extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: JobWorkflowProps) {
    super(scope, id);
    const fns = props.functions;

    const task = (
      name: string,
      fn: lambda.Function,
      extraRetries: sfn.RetryProps[] = [],
      resultPath?: string,
      payload?: Record<string, unknown>,
      baseRetries: sfn.RetryProps[] = [LAMBDA_RETRY, LAMBDA_CRASH_RETRY, STORAGE_RETRY],
    ) => {
      const state = new tasks.LambdaInvoke(this, name, {
        lambdaFunction: fn,
        payload: payload ? sfn.TaskInput.fromObject(payload) : undefined,
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
        taskTimeout: sfn.Timeout.duration(functionTimeout(fn).plus(TASK_TIMEOUT_MARGIN)),
        resultPath,
      });
      for (const retry of [...baseRetries, ...extraRetries]) state.addRetry(retry);
      return state;
    };
    const caught = { errors: [sfn.Errors.ALL], resultPath: '$.error' };

    // Chunk lifecycle: one child execution per chunk in AWS. A child ends with {} (OutputPath null):
    // with no ResultWriter the Distributed Map's result is the array of every child's output, and
    // AWS promises no bound from ResultPath null (it drops the result from the state, not from the
    // Map) — past 256 KiB it fails the job with States.DataLimitExceeded, which no Catch takes. Of
    // {} even MAX_CHUNKS children make ~88 KiB. Chunks report through DynamoDB.
    const childEnd = (name: string) => new sfn.Pass(this, name, { outputPath: sfn.JsonPath.DISCARD });
    // Every iteration ends by ordering its chunk's rows into the chunk's share of the outputs, so
    // FinalizeJob has nothing left that grows with the job (shared/jobs/finalize-chunk.ts). If that
    // fails, the iteration still ends: FinalizeJob orders the chunk itself.
    const finalizeChunk = task(STATE.FinalizeChunk, fns['finalize-chunk'], [], undefined, undefined, [FINALIZE_CHUNK_RETRY]);
    finalizeChunk.addCatch(childEnd(STATE.ChunkLeftToFinalizeJob), caught);
    finalizeChunk.next(
      new sfn.Choice(this, STATE.ChunkOutcome)
        .when(sfn.Condition.booleanEquals('$.failed', true), childEnd(STATE.ChunkFailed))
        .otherwise(childEnd(STATE.ChunkDone)),
    );
    const recordChunkFailure = task(STATE.RecordChunkFailure, fns['record-chunk-failure'], [RECORD_FAILURE_RETRY]).next(finalizeChunk);
    const submitChunk = task(STATE.SubmitChunk, fns['submit-chunk'], [
      API_RETRYABLE_RETRY,
      OUTCOME_UNKNOWN_RETRY,
      CREATE_SLOT_BUSY_RETRY,
      CREATE_REFUSED_RETRY,
      QUEUE_FULL_RETRY,
    ]);
    const waitForBatch = new sfn.Wait(this, STATE.WaitForBatch, { time: sfn.WaitTime.secondsPath('$.waitSeconds') });
    const pollBatch = task(STATE.PollBatch, fns['poll-batch'], [API_RETRYABLE_RETRY]);
    const collectResults = task(STATE.CollectResults, fns['collect-results'], [API_RETRYABLE_RETRY, KEY_REFUSED_RETRY]);
    const waitBeforeRetry = new sfn.Wait(this, STATE.WaitBeforeRetry, {
      time: sfn.WaitTime.secondsPath('$.retryWaitSeconds'),
    });
    for (const state of [submitChunk, pollBatch, collectResults]) state.addCatch(recordChunkFailure, caught);

    // The wait: AwaitBatch (the poller's callback) while the poller is up, else the adaptive Wait
    // loop. Either way PollBatch decides whether the batch has ended (docs/architecture.md).
    const firstWait = this.awaitBatch(props.poller ?? true, fns['await-batch'], { pollBatch, waitForBatch, recordChunkFailure, caught });
    const chunkLifecycle = submitChunk.next(
      new sfn.Choice(this, STATE.SubmitCanceled).when(sfn.Condition.booleanEquals('$.canceled', true), collectResults).otherwise(firstWait),
    );
    const batchEnded = new sfn.Choice(this, STATE.BatchEnded).when(sfn.Condition.booleanEquals('$.ended', true), collectResults);
    if (firstWait !== waitForBatch) batchEnded.when(sfn.Condition.booleanEquals('$.watch', true), firstWait);
    waitForBatch.next(pollBatch).next(batchEnded.otherwise(waitForBatch));
    waitBeforeRetry.next(submitChunk);
    const backoff = this.awaitRetry(props.poller ?? true, fns['await-batch'], { submitChunk, waitBeforeRetry });
    // The deadline fallback: the rows a deadline's cancel left, sent synchronously a bounded number
    // per invocation, looping while rows remain and the deadline has not passed (shared/jobs/stragglers.ts).
    // It runs in Collect's function, which has the API, the attempts' files and the row records.
    const runStragglers = task(STATE.RunStragglers, fns['collect-results'], [API_RETRYABLE_RETRY], undefined, { run: 'stragglers', 'state.$': '$' });
    runStragglers.addCatch(recordChunkFailure, caught);
    runStragglers.next(new sfn.Choice(this, STATE.StragglersLeft).when(sfn.Condition.booleanEquals('$.done', false), runStragglers).otherwise(finalizeChunk));
    collectResults.next(
      new sfn.Choice(this, STATE.RetryNeeded)
        .when(sfn.Condition.booleanEquals('$.retry', true), backoff)
        .when(sfn.Condition.booleanEquals('$.stragglers', true), runStragglers)
        .otherwise(finalizeChunk),
    );

    // The job. MarkJobFailed's reply ({jobId}) is dropped, so the execution fails with the error
    // it caught, still at $.error.
    const failed = task(STATE.MarkJobFailed, fns['mark-job-failed'], [], sfn.JsonPath.DISCARD).next(
      new sfn.Fail(this, STATE.JobFailed, { errorPath: '$.error.Error', causePath: '$.error.Cause' }),
    );

    // The execution id lets a retried Register tell its own earlier write from a duplicate event.
    const registerJob = task(STATE.RegisterJob, fns['register-job'], [], undefined, {
      'event.$': '$',
      'executionArn.$': '$$.Execution.Id',
    });
    const prepareJob = task(STATE.PrepareJob, fns['prepare-job']);
    const finalizeJob = task(STATE.FinalizeJob, fns['finalize-job']);
    const forEachChunk = new sfn.DistributedMap(this, STATE.ForEachChunk, {
      itemsPath: '$.chunks',
      // Prepare lists bare chunk indexes, so a job of 40,000 chunks stays far under the 256 KB state
      // limit; each child gets its {jobId, chunk} here.
      itemSelector: { 'jobId.$': '$.jobId', 'chunk.$': '$$.Map.Item.Value' },
      maxConcurrency: props.maxConcurrentChunks ?? 10,
      mapExecutionType: sfn.StateMachineType.STANDARD,
      // The job's state goes on unchanged (the children's {} are dropped).
      resultPath: sfn.JsonPath.DISCARD,
    }).itemProcessor(chunkLifecycle);
    for (const state of [registerJob, prepareJob, forEachChunk, finalizeJob]) state.addCatch(failed, caught);
    // A chunk's longest life under the functions' settings must fit its child execution's history.
    const { ItemProcessor } = forEachChunk.toStateJson() as { ItemProcessor: AslGraph };
    checkHistoryBudget(ItemProcessor, {
      ...pollSettings(fns['poll-batch']),
      maxAttempts: readPipelineSettings(pipelineEnvironment(fns['collect-results'])).maxAttempts,
    });

    finalizeJob.next(
      new sfn.Choice(this, STATE.WasRejected)
        .when(
          sfn.Condition.stringEquals('$.status', 'rejected'),
          // ValidationFailed (invalid lines under strict validation) or EmptyInput, with its cause.
          new sfn.Fail(this, STATE.JobRejected, { errorPath: '$.rejection.Error', causePath: '$.rejection.Cause' }),
        )
        .otherwise(new sfn.Succeed(this, STATE.JobDone)),
    );
    const definition = registerJob.next(
      new sfn.Choice(this, STATE.IsDuplicate).when(sfn.Condition.booleanEquals('$.duplicate', true), new sfn.Succeed(this, STATE.DuplicateEvent)).otherwise(
        prepareJob.next(
          // A file read across invocations: each leaves a checkpoint and says `partial` until the file's end.
          new sfn.Choice(this, STATE.InputLeft)
            .when(sfn.Condition.stringEquals('$.outcome', 'partial'), prepareJob)
            .otherwise(
              new sfn.Choice(this, STATE.HasChunks)
                .when(sfn.Condition.stringEquals('$.outcome', 'ready'), forEachChunk.next(finalizeJob))
                .otherwise(finalizeJob),
            ),
        ),
      ),
    );

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      // The vendedlogs prefix keeps Step Functions from growing the account's log resource policy.
      logGroupName: `/aws/vendedlogs/states/${props.namePrefix ?? Stack.of(this).stackName}-jobs`,
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      encryptionKey: props.logKey,
      // A named group left behind would block the next deploy of the same stack.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      comment: 'batchline: one execution per input file (docs/workflow-contract.md)',
      tracingEnabled: true,
      // Execution data holds only ids and counts, but leave it out of logs all the same.
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    (this.stateMachine.node.defaultChild as sfn.CfnStateMachine).overrideLogicalId(props.logicalId ?? STATE_MACHINE_LOGICAL_ID);
    this.grantChildExecutions();

    acceptWildcardResources(
      this.stateMachine.role,
      WORKFLOW_HANDLERS.map((name) => `${fns[name].functionArn}:*`),
      "CDK's LambdaInvoke grant covers the versions and aliases of each task's own function (<arn>:*), nothing else",
    );
    acceptFinding(
      this.stateMachine.role,
      'IAM5[Resource::*]',
      'X-Ray tracing (xray:PutTraceSegments, GetSamplingRules, ...) and CloudWatch Logs delivery (logs:CreateLogDelivery, ...) take no resource-level permissions',
    );
  }

  /**
   * AwaitBatch: a callback Task whose Lambda stores the token in a watch item (shared/jobs/await-batch.ts)
   * and the poller settles it. A missed heartbeat or the 25 h bound polls directly; a stale poller
   * (PollerUnavailable) sends the chunk to the Wait loop. Without the poller, the Wait loop itself.
   */
  private awaitBatch(
    enabled: boolean,
    fn: lambda.Function,
    next: { pollBatch: sfn.State; waitForBatch: sfn.Wait; recordChunkFailure: sfn.IChainable; caught: sfn.CatchProps },
  ): sfn.State {
    if (!enabled) return next.waitForBatch;
    const state = new tasks.LambdaInvoke(this, STATE.AwaitBatch, {
      lambdaFunction: fn,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      // Ids and the token only: the callback carries the batch's state, never rows.
      payload: sfn.TaskInput.fromObject({
        'jobId.$': '$.jobId',
        'chunk.$': '$.chunk',
        'attempt.$': '$.attempt',
        'batchId.$': '$.batchId',
        taskToken: sfn.JsonPath.taskToken,
      }),
      retryOnServiceExceptions: false,
      heartbeatTimeout: sfn.Timeout.duration(Duration.seconds(AWAIT_HEARTBEAT_SECONDS)),
      taskTimeout: sfn.Timeout.duration(Duration.seconds(AWAIT_TIMEOUT_SECONDS)),
      resultPath: '$.wake',
    });
    state.addRetry(LAMBDA_RETRY);
    state.addRetry(LAMBDA_CRASH_RETRY);
    state.addRetry(STORAGE_RETRY);
    state.addCatch(next.pollBatch, { errors: [...CALLBACK_TIMEOUT_ERRORS], resultPath: '$.wakeError' });
    state.addCatch(next.waitForBatch, { errors: [...POLLER_UNAVAILABLE_ERRORS], resultPath: '$.wakeError' });
    state.addCatch(next.recordChunkFailure, next.caught);
    state.next(next.pollBatch);
    return state;
  }

  /**
   * AwaitRetry: the retry backoff as a callback Task whose own timeout is the backoff
   * (TimeoutSecondsPath `$.retryWaitSeconds`), so it ends on time with or without the poller; the
   * poller settles it early only to forward a job's cancel (shared/jobs/await-batch.ts). The timeout is the
   * normal way on (→ SubmitChunk); an arm that failed waits on the plain Wait. Per retry it takes 4
   * history events more than the Wait alone. Without the poller, the Wait itself.
   */
  private awaitRetry(enabled: boolean, fn: lambda.Function, next: { submitChunk: sfn.State; waitBeforeRetry: sfn.Wait }): sfn.State {
    if (!enabled) return next.waitBeforeRetry;
    const state = new tasks.LambdaInvoke(this, STATE.AwaitRetry, {
      lambdaFunction: fn,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      // The backoff rides in the Payload too: the local engine reads the timeout from there (local/asl.ts).
      payload: sfn.TaskInput.fromObject({
        wait: 'retry',
        'jobId.$': '$.jobId',
        'chunk.$': '$.chunk',
        'attempt.$': '$.attempt',
        'retryWaitSeconds.$': '$.retryWaitSeconds',
        taskToken: sfn.JsonPath.taskToken,
      }),
      retryOnServiceExceptions: false,
      taskTimeout: sfn.Timeout.at('$.retryWaitSeconds'),
      resultPath: '$.wake',
    });
    // No Retry: an arm that failed costs only the early cancel (the plain Wait still ends the
    // backoff on time), and retries would take history events a chunk's longest life needs.
    state.addCatch(next.submitChunk, { errors: [...CALLBACK_TIMEOUT_ERRORS], resultPath: '$.wakeError' });
    state.addCatch(next.waitBeforeRetry, { errors: [sfn.Errors.ALL], resultPath: '$.wakeError' });
    state.next(next.submitChunk);
    return state;
  }

  /**
   * CDK grants Describe/StopExecution on `execution:<name>:*`; a Distributed Map's children are
   * `execution:<name>/<map run label>:<id>`, which that pattern does not match.
   */
  private grantChildExecutions() {
    const policy = this.stateMachine.node.tryFindChild('DistributedMapPolicy');
    if (!(policy instanceof iam.Policy)) throw new Error('expected CDK to create the DistributedMapPolicy');
    const executions = jobExecutionsArn(this.stateMachine);
    policy.addStatements(
      new iam.PolicyStatement({
        actions: ['states:DescribeExecution', 'states:StopExecution'],
        resources: [`${executions}/*`],
      }),
    );
    acceptWildcardResources(
      policy,
      [`${executions}:*`, `${executions}/*:*`, `${executions}/*`],
      "A Distributed Map starts, describes and stops its own child executions, whose names exist only at run time; all are this state machine's",
    );
  }
}

/** The poll settings the function runs with (shared/config.ts reads and defaults them). */
function pollSettings(fn: lambda.Function): PollSettings {
  const { pollMinSeconds, pollMaxSeconds, pollFraction } = readPipelineSettings(pipelineEnvironment(fn));
  return { pollMinSeconds, pollMaxSeconds, pollFraction };
}

/** A function's BATCHLINE_* settings variables, as its environment will hold them. */
function pipelineEnvironment(fn: lambda.Function): Record<string, string> {
  const cfn = fn.node.defaultChild as lambda.CfnFunction;
  const variables = (Stack.of(fn).resolve(cfn.environment) as { variables?: Record<string, unknown> } | undefined)?.variables ?? {};
  const env: Record<string, string> = {};
  for (const name of Object.values(PIPELINE_SETTING_ENV)) {
    const value = variables[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new Error(`${fn.node.path}: ${name} is not a plain value, so the history budget cannot be checked`);
    env[name] = value;
  }
  return env;
}

function functionTimeout(fn: lambda.Function): Duration {
  const timeout = fn.timeout;
  if (!timeout) throw new Error(`function ${fn.node.path} has no explicit timeout`);
  return timeout;
}
