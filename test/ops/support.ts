/**
 * For the operating commands' tests: an in-memory Io, a local-stack state file that points at the
 * test's emulators (so the commands run exactly as `--local DIR` does), job records with known
 * values, and the real pipeline core run over an inbox upload.
 */
import { DEFAULT_PREFIXES } from '../../shared/store/keys';
import { mkdtempSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll } from 'vitest';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { putItem } from '../../shared/store/dynamo';
import { chunkSk, JOB_SK, JOBS_GSI_PK, jobPk, type ChunkItem, type JobItem } from '../../shared/store/items';
import { registerJob } from '../../shared/jobs/register-job';
import { prepareJob } from '../../shared/jobs/prepare-job';
import { finalizeJob } from '../../shared/jobs/finalize-job';
import type { Io } from '../../cli/io';
import { createPipelineTable } from '../../local/emulators';
import { writeLocalState } from '../../cli/ops/local-state';
import type { LocalAws } from '../support/aws';
import { driveChunk, type ChunkContext } from '../support/chunks';
import { objectCreated, pipelineConfig, type RecordingEndpoint } from '../support/pipeline';

export interface MemoryIo {
  io: Io;
  out(): string;
  err(): string;
}

/** An Io whose stdout and stderr are strings (not a terminal unless `tty`). */
export function memoryIo(options: { env?: Record<string, string | undefined>; cwd?: string; tty?: boolean } = {}): MemoryIo {
  const sink = () => {
    let text = '';
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        text += chunk.toString('utf8');
        callback();
      },
    }) as Writable & { isTTY?: boolean; columns?: number };
    stream.isTTY = options.tty ?? false;
    stream.columns = 200;
    return { stream: stream as unknown as NodeJS.WriteStream, text: () => text };
  };
  const stdout = sink();
  const stderr = sink();
  return {
    // Never the checkout itself: what a developer's or CI's earlier runs left there (./batchline-out/,
    // .batchline/) must not change what a command under test finds.
    io: { stdout: stdout.stream, stderr: stderr.stream, env: options.env ?? {}, cwd: options.cwd ?? emptyCwd() },
    out: stdout.text,
    err: stderr.text,
  };
}

const tempDirs: string[] = [];

let emptyFolder: string | undefined;
/** An empty folder of this test file's own, the working directory of a memoryIo given none. */
function emptyCwd(): string {
  if (emptyFolder === undefined) {
    emptyFolder = mkdtempSync(path.join(tmpdir(), 'batchline-cwd-'));
    tempDirs.push(emptyFolder);
  }
  return emptyFolder;
}
// Registered when a test file imports this module (collection time): each file cleans up its own.
afterAll(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A fresh folder under the OS temp dir, removed after the importing test file's tests. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A folder whose `.batchline/local.json` names the test's emulators, as `batchline serve` would write it. */
export async function localStateFor(aws: LocalAws): Promise<string> {
  const dir = await tempDir('batchline-ops-');
  await writeLocalState(dir, { s3Endpoint: aws.s3Server.endpoint, bucket: aws.bucket, table: aws.table, prefixes: DEFAULT_PREFIXES, env: aws.env });
  return dir;
}

/** A job record with known values: a finished job of 5 rows unless `overrides` say otherwise. */
export async function putJob(aws: LocalAws, jobId: string, overrides: Partial<JobItem> = {}): Promise<JobItem> {
  const createdAt = overrides.createdAt ?? '2026-01-02T03:04:05.000Z';
  const job: JobItem = {
    pk: jobPk(jobId),
    sk: JOB_SK,
    type: 'job',
    jobId,
    status: 'succeeded',
    bucket: aws.bucket,
    key: `inbox/${jobId}.jsonl`,
    etag: 'etag-1',
    sourceToken: 'etag-1',
    validationMode: 'strict',
    createdAt,
    updatedAt: createdAt,
    totalRows: 5,
    validRows: 5,
    invalidRows: 0,
    chunkCount: 1,
    gsi1pk: JOBS_GSI_PK,
    gsi1sk: `${createdAt}#${jobId}`,
    ...overrides,
  };
  await putItem(aws.dynamo, aws.table, job);
  return job;
}

export async function putChunk(aws: LocalAws, jobId: string, chunk: number, fields: Omit<ChunkItem, 'pk' | 'sk' | 'type' | 'jobId' | 'chunk'>): Promise<void> {
  const item: ChunkItem = { pk: jobPk(jobId), sk: chunkSk(chunk), type: 'chunk', jobId, chunk, ...fields };
  await putItem(aws.dynamo, aws.table, item);
}

export interface PipelineContext extends ChunkContext {
  recorder: RecordingEndpoint;
}

/**
 * What the workflow does for one uploaded object, with the real core: Register (from an S3 event),
 * Prepare, every chunk's lifecycle against the simulator, Finalize.
 */
export async function runPipeline(ctx: PipelineContext, object: { key: string; etag: string; sequencer?: string }): Promise<string> {
  const { aws, recorder } = ctx;
  const config = pipelineConfig(aws);
  const deps = { s3: aws.s3, dynamo: aws.dynamo, config };
  const { jobId, duplicate } = await registerJob(objectCreated({ bucket: aws.bucket, ...object }), deps);
  if (duplicate) return jobId;
  let prepared = await prepareJob({ jobId }, deps);
  // The workflow's InputLeft loop: a file read across invocations.
  while (prepared.outcome === 'partial') prepared = await prepareJob({ jobId }, deps);
  for (const chunk of prepared.chunks) await driveChunk(ctx, jobId, chunk);
  await finalizeJob(
    { jobId, outcome: prepared.outcome },
    {
      ...deps,
      notify: {
        clients: { events: recorder.events, sns: recorder.sns },
        config: { topicArn: 'arn:aws:sns:us-east-1:123456789012:batchline', eventBus: 'default' },
      },
    },
  );
  return jobId;
}

let tables = 0;

/** The same emulators with a table of their own, so a test sees only the jobs it made. */
export async function freshTable(aws: LocalAws): Promise<LocalAws> {
  const table = `ops-${++tables}-${process.pid}`;
  await createPipelineTable(aws.dynamo, table);
  return { ...aws, table, env: { ...aws.env, BATCHLINE_TABLE: table } };
}
