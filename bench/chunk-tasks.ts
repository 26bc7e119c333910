/**
 * A job's life, step by step, on the pipeline's cores (shared/jobs/*) — the same calls the Lambda
 * handlers make — each group of steps in its own child process (bench/child.ts), with every S3
 * and DynamoDB request metered. The collect benchmark measures Collect on its own this way, and
 * the cost estimate takes each step's duration and requests from here.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SNSClient } from '@aws-sdk/client-sns';
import { BatchesClient } from '../shared/anthropic/client';
import { readNotifyConfig, readPipelineConfig, type PipelineConfig } from '../shared/config';
import { readChunk } from '../shared/jobs/chunk-state';
import { collectResults } from '../shared/jobs/collect-results';
import { finalizeJob } from '../shared/jobs/finalize-job';
import { finalizeChunk } from '../shared/jobs/finalize-chunk';
import { pollBatch } from '../shared/jobs/poll-batch';
import { prepareJob } from '../shared/jobs/prepare-job';
import { registerJob } from '../shared/jobs/register-job';
import { submitChunk } from '../shared/jobs/submit-chunk';
import { LOCAL_CREDENTIALS, LOCAL_REGION, localDynamoClient, localS3Client } from '../local/emulators';
import { addReadings, AwsMeter } from './aws-meter';
import type { StepMeasurement } from './context';
import type { AttemptRef } from '../shared/jobs/contract';

export interface LifecycleEnv {
  s3Endpoint: string;
  dynamoEndpoint: string;
  /** Answers EventBridge PutEvents and SNS Publish (local/aws-shim.ts). */
  notifyEndpoint: string;
  apiUrl: string;
  bucket: string;
  table: string;
  /** The simulator's clock speed: a wait of N seconds sleeps N / timeScale. */
  timeScale: number;
}

const API_KEY = 'sk-ant-bench-simulator';

function clients(env: LifecycleEnv) {
  const meter = new AwsMeter();
  const s3 = localS3Client(env.s3Endpoint);
  const dynamo = localDynamoClient(env.dynamoEndpoint);
  meter.attach(s3, 's3');
  meter.attach(dynamo, 'dynamodb');
  const api = new BatchesClient({ apiKey: API_KEY, baseUrl: env.apiUrl });
  const config: PipelineConfig = readPipelineConfig({
    BATCHLINE_BUCKET: env.bucket,
    BATCHLINE_TABLE: env.table,
    // To see Prepare go across invocations on a small file: BATCHLINE_PREPARE_LINES_PER_INVOCATION=100000 npm run bench -- scale ...
    BATCHLINE_PREPARE_LINES_PER_INVOCATION: process.env.BATCHLINE_PREPARE_LINES_PER_INVOCATION,
  });
  const close = async () => {
    s3.destroy();
    dynamo.destroy();
    await api.close();
  };
  return { meter, s3, dynamo, api, config, close };
}

/** Runs `work` with the meter zeroed and returns its duration and readings. */
async function step<T>(meter: AwsMeter, calls: number, work: () => Promise<T>): Promise<{ value: T; measured: StepMeasurement }> {
  meter.reset();
  const start = performance.now();
  const value = await work();
  return { value, measured: { calls, ms: performance.now() - start, aws: meter.reading() } };
}

export function addSteps(a: StepMeasurement, b: StepMeasurement): StepMeasurement {
  return { calls: a.calls + b.calls, ms: a.ms + b.ms, aws: addReadings(a.aws, b.aws) };
}

const NO_STEP: StepMeasurement = { calls: 0, ms: 0, aws: { requests: {}, readUnits: 0, writeUnits: 0 } };

export async function registerAndPrepare(input: LifecycleEnv & { key: string }) {
  const c = clients(input);
  try {
    const registered = await step(c.meter, 1, () => registerJob({ bucket: input.bucket, key: input.key }, c));
    const prepared = await step(c.meter, 1, () => prepareJob({ jobId: registered.value.jobId }, c));
    return {
      jobId: registered.value.jobId,
      /** `partial`: the file is read across invocations (prepareMore reads on); else its end. */
      outcome: prepared.value.outcome,
      chunks: prepared.value.chunks,
      validRows: prepared.value.validRows,
      register: registered.measured,
      prepare: prepared.measured,
    };
  } finally {
    await c.close();
  }
}

/** One more PrepareJob invocation of a file read across invocations (after registerAndPrepare's `partial`). */
export async function prepareMore(input: LifecycleEnv & { jobId: string }) {
  const c = clients(input);
  try {
    const prepared = await step(c.meter, 1, () => prepareJob({ jobId: input.jobId }, c));
    return { outcome: prepared.value.outcome, chunks: prepared.value.chunks, validRows: prepared.value.validRows, prepare: prepared.measured };
  } finally {
    await c.close();
  }
}

/** Submits each chunk's current attempt and polls it, on the simulator's clock, until it ended. */
export async function submitAndPoll(input: LifecycleEnv & { jobId: string; chunks: number[] }) {
  const c = clients(input);
  let submit = NO_STEP;
  let poll = NO_STEP;
  const attempts: AttemptRef<string | null>[] = [];
  try {
    for (const chunk of input.chunks) {
      const submitted = await step(c.meter, 1, () => submitChunk({ jobId: input.jobId, chunk }, c));
      submit = addSteps(submit, submitted.measured);
      const { attempt, batchId } = submitted.value;
      attempts.push({ jobId: input.jobId, chunk, attempt, batchId });
      if (batchId === null) continue;
      let wait = submitted.value.waitSeconds;
      for (;;) {
        await sleep((wait * 1000) / input.timeScale);
        const polled = await step(c.meter, 1, () => pollBatch({ jobId: input.jobId, chunk, attempt, batchId }, c));
        poll = addSteps(poll, polled.measured);
        if (polled.value.ended) break;
        wait = polled.value.waitSeconds;
      }
    }
    return { attempts, submit, poll };
  } finally {
    await c.close();
  }
}

/** Collects each attempt; reports the rows recorded and the rows sent to a next attempt. */
export async function collectAttempts(input: LifecycleEnv & { attempts: AttemptRef<string | null>[] }) {
  const c = clients(input);
  try {
    const collected = await step(c.meter, input.attempts.length, async () => {
      const outputs = [];
      for (const ref of input.attempts) outputs.push(await collectResults(ref, c));
      return outputs;
    });
    let rows = 0;
    let retryRows = 0;
    for (const ref of input.attempts) {
      const record = (await readChunk(c.dynamo, input.table, ref.jobId, ref.chunk)).attempts.find((a) => a.attempt === ref.attempt);
      const counts = record?.counts;
      rows += counts ? counts.succeeded + counts.errored + counts.expired + counts.canceled : 0;
      retryRows += record?.retryRows ?? 0;
    }
    const retried = collected.value.filter((out) => out.retry).map((out) => out.chunk);
    return { rows, retryRows, retried, collect: collected.measured };
  } finally {
    await c.close();
  }
}

/** Each chunk's rows in input order, as the FinalizeChunk state ends each chunk's iteration. */
export async function finalizeChunks(input: LifecycleEnv & { jobId: string; chunks: number[] }) {
  const c = clients(input);
  try {
    const done = await step(c.meter, input.chunks.length, async () => {
      let rows = 0;
      for (const chunk of input.chunks) rows += (await finalizeChunk({ jobId: input.jobId, chunk }, c)).rows;
      return rows;
    });
    return { rows: done.value, finalizeChunk: done.measured };
  } finally {
    await c.close();
  }
}

export async function finalize(input: LifecycleEnv & { jobId: string }) {
  const c = clients(input);
  const notifyClient = { endpoint: input.notifyEndpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS };
  const events = new EventBridgeClient(notifyClient);
  const sns = new SNSClient(notifyClient);
  try {
    const done = await step(c.meter, 1, () =>
      finalizeJob({ jobId: input.jobId }, { ...c, notify: { clients: { events, sns }, config: readNotifyConfig({}) } }),
    );
    return { status: done.value.status, counts: done.value.counts, finalize: done.measured };
  } finally {
    events.destroy();
    sns.destroy();
    await c.close();
  }
}
