/**
 * What a benchmark that takes a job through its steps one by one (bench/chunk-tasks.ts) runs
 * against, in this process: s3rver, dynalite, the Batches API simulator and the AWS shim (topic and
 * event bus), the pipeline's table, and an input file of `rows` generated and uploaded. The steps
 * themselves run in child processes, pointed here by `env`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { AwsShimError, startAwsShim } from '../local/aws-shim';
import { createPipelineTable, startDynamo, startS3, type LocalS3 } from '../local/emulators';
import { uploadFile } from '../shared/store/s3';
import { startSimulator, type SimulatorHandle } from '../simulator/server';
import type { SimulatorOptions } from '../simulator/options';
import type { LifecycleEnv } from './chunk-tasks';
import { writeInputFile, type InputFile } from './input-file';

export interface LifecycleStack {
  env: LifecycleEnv;
  s3: LocalS3;
  simulator: SimulatorHandle;
  /** The input as generated (its local copy is removed once uploaded: it is read from S3). */
  input: Omit<InputFile, 'path'>;
  /** Stops every server and removes the scratch folder (input, s3rver's objects). */
  stop(): Promise<void>;
}

export interface LifecycleStackOptions {
  /** The benchmark's name: its scratch folder and messages. */
  name: string;
  workDir: string;
  rows: number;
  bucket: string;
  table: string;
  key: string;
  simulator: Pick<SimulatorOptions, 'timeScale' | 'processingSeconds' | 'batchFaults'> & { timeScale: number };
  log(line: string): void;
}

export async function startLifecycleStack(options: LifecycleStackOptions): Promise<LifecycleStack> {
  const dir = await mkdtemp(path.join(options.workDir, `${options.name}-`));
  const s3 = await startS3({ buckets: [options.bucket], directory: path.join(dir, 's3') });
  const dynamo = await startDynamo();
  const simulator = await startSimulator(options.simulator);
  const shim = await startAwsShim({
    secret: () => undefined,
    startExecution: () => {
      throw new AwsShimError('StateMachineDoesNotExist', `the ${options.name} benchmark runs no state machine`);
    },
    describeExecution: () => undefined,
    listExecutions: () => [],
  });
  const stop = async () => {
    await shim.stop();
    await simulator.stop();
    await dynamo.stop();
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await createPipelineTable(dynamo.client, options.table);
    const file = path.join(dir, 'input.jsonl');
    options.log(`${options.name}: writing ${options.rows.toLocaleString('en-US')} rows and uploading them`);
    const { path: _written, ...input } = await writeInputFile(file, options.rows);
    await uploadFile(s3.client, options.bucket, options.key, file);
    // Read from S3 from here on: the local copy would only take disk (11 GB at 10M rows).
    await rm(file);
    const env: LifecycleEnv = {
      s3Endpoint: s3.endpoint,
      dynamoEndpoint: dynamo.endpoint,
      notifyEndpoint: shim.endpoint,
      apiUrl: simulator.url,
      bucket: options.bucket,
      table: options.table,
      timeScale: options.simulator.timeScale,
    };
    return { env, s3, simulator, input, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
