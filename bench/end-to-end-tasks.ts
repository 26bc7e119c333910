/**
 * The two sides of the end-to-end benchmark, each in its own child process:
 *   - the pipeline: the local stack (local/runtime.ts) takes a file from disk to results in S3;
 *   - the baseline a user would write by hand with the official SDK: read the file, create ONE
 *     batch, poll it, download its results to a file.
 * Both run the Batches API simulator in their own process with the same settings.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import Anthropic from '@anthropic-ai/sdk';
import type { BatchCreateParams } from '@anthropic-ai/sdk/resources/messages/batches';
import { startSimulator } from '../simulator/server';
import { STATE } from '../shared/jobs/contract';

export interface EndToEndInput {
  file: string;
  rows: number;
  timeScale: number;
  processingSeconds: number;
}

export interface PipelineRun {
  ms: number;
  status: string | undefined;
  rows: number;
  chunks: number;
  polls: number;
  batches: number;
  /** When each kind of step last finished, ms after the start: where the time went. */
  timeline: Array<{ step: string; atMs: number }>;
}

/** The events that mark a step's end, in workflow order, by the name the timeline shows. */
const STEPS: Array<[string, string]> = [
  ['execution-started', 'upload done, execution started'],
  ['job-registered', STATE.RegisterJob],
  ['job-prepared', STATE.PrepareJob],
  ['batch-submitted', STATE.SubmitChunk],
  ['batch-polled', 'PollBatch (last)'],
  ['chunk-collected', STATE.CollectResults],
  ['job-finalized', STATE.FinalizeJob],
];

export async function runPipeline(input: EndToEndInput): Promise<PipelineRun> {
  // Imported here: the runtime sets the handlers' environment before it loads them.
  const { startLocalStack } = await import('../local/runtime');
  const stack = await startLocalStack({ timeScale: input.timeScale, simulator: { processingSeconds: input.processingSeconds } });
  let polls = 0;
  let chunks = 0;
  let batches = 0;
  let start = 0;
  const finishedAt = new Map<string, number>();
  stack.on((event) => {
    finishedAt.set(event.type, performance.now() - start);
    if (event.type === 'batch-polled') polls += 1;
    if (event.type === 'job-prepared') chunks = event.chunks;
    if (event.type === 'batch-submitted' && event.batchId) batches += 1;
  });
  try {
    start = performance.now();
    const jobId = await stack.submitFile(input.file);
    const outcome = await stack.waitForJob(jobId);
    const ms = performance.now() - start;
    const counts = outcome.job?.counts;
    const rows = counts ? counts.succeeded + counts.errored + counts.expired + counts.canceled + counts.invalid : 0;
    if (outcome.status !== 'succeeded' || rows !== input.rows) {
      throw new Error(`the job ended ${outcome.status} with ${rows} rows (${outcome.execution?.error ?? ''} ${outcome.execution?.cause ?? ''})`);
    }
    const timeline = STEPS.filter(([type]) => finishedAt.has(type)).map(([type, step]) => ({ step, atMs: finishedAt.get(type)! }));
    return { ms, status: outcome.status, rows, chunks, polls, batches, timeline };
  } finally {
    await stack.stop();
  }
}

export interface BaselineRun {
  ms: number;
  rows: number;
  polls: number;
  resultBytes: number;
}

/** What a user would write: readline + JSON.parse, one create, a poll every minute, results to a file. */
export async function runBaseline(input: EndToEndInput & { output: string }): Promise<BaselineRun> {
  const simulator = await startSimulator({ timeScale: input.timeScale, processingSeconds: input.processingSeconds });
  const client = new Anthropic({ apiKey: 'sk-ant-bench', baseURL: simulator.url });
  const pollEveryMs = (60 * 1000) / input.timeScale;
  try {
    const start = performance.now();
    const requests: BatchCreateParams['requests'] = [];
    for await (const line of createInterface({ input: createReadStream(input.file), crlfDelay: Infinity })) {
      if (line.trim() !== '') requests.push(JSON.parse(line) as BatchCreateParams['requests'][number]);
    }
    let batch = await client.messages.batches.create({ requests });
    let polls = 0;
    while (batch.processing_status !== 'ended') {
      await sleep(pollEveryMs);
      batch = await client.messages.batches.retrieve(batch.id);
      polls += 1;
    }
    const out = createWriteStream(input.output);
    let rows = 0;
    for await (const result of await client.messages.batches.results(batch.id)) {
      rows += 1;
      if (!out.write(JSON.stringify(result) + '\n')) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const ms = performance.now() - start;
    if (rows !== input.rows) throw new Error(`the baseline downloaded ${rows} results, expected ${input.rows}`);
    return { ms, rows, polls, resultBytes: out.bytesWritten };
  } finally {
    await simulator.stop();
  }
}
