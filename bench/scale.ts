/**
 * Benchmark 6 — how the pipeline grows with the job: 100,000 and 1,000,000 rows (and 10,000,000
 * with --scale-10m, an hour or more and ~40 GB of disk on this machine), each taken through every
 * step of its life as the workflow runs it: Register + Prepare once, then per chunk Submit (+ its
 * polls), Collect and FinalizeChunk, then FinalizeJob. Every invocation runs in its own child
 * process (bench/child.ts), so its time and peak RSS are its own, as a Lambda invocation's would
 * be. The figures that matter: no single invocation grows with the job but Prepare's (which reads
 * the input once), every per-chunk step's time and memory stay flat, and the AWS cost per 1M
 * requests stays flat as the job grows.
 *
 *   npm run bench -- scale                 100,000 and 1,000,000 rows
 *   npm run bench -- scale --scale-10m     and 10,000,000
 *   npm run bench -- scale --rows 300000   one size
 *   npm run bench -- scale --rows 10000000 --prepare-only   Register + Prepare's invocations only
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { readPipelineConfig } from '../shared/config';
import { jobKeys } from '../shared/store/keys';
import { simulatePolling } from '../shared/jobs/poll-batch';
import { addReadings, s3Classes, type MeterReading } from './aws-meter';
import type * as Tasks from './chunk-tasks';
import { runInChild } from './child';
import type { BenchContext } from './context';
import { loadJobMachine, totalTransitions, walkJob } from './definition';
import { startLifecycleStack } from './lifecycle-stack';
import { AWS_PRICES } from './prices';
import { fmt, int, mb, mib, secs, usd, type BenchReport } from './report';
import { STATE } from '../shared/jobs/contract';

const SIZES = [100_000, 1_000_000];
const LARGEST = 10_000_000;
const TIME_SCALE = 3_600;
const PROCESSING_SECONDS = 60;
const BUCKET = 'bench-scale';
const TABLE = 'bench-scale';
const KEY = 'inbox/bench-scale.jsonl';
/** Lambda's limit on one invocation. */
const LAMBDA_LIMIT_MS = 900_000;
/** Polls per attempt priced: a 1 h batch under the default settings. */
const TYPICAL_BATCH_SECONDS = 3_600;

type Result<K extends keyof typeof Tasks> = (typeof Tasks)[K] extends (...args: never[]) => infer R ? Awaited<R> : never;
const task = (fn: keyof typeof Tasks) => ({ module: './chunk-tasks', fn });

/** One step of the job at one size: its invocations, their summed and longest time, the highest peak RSS. */
interface StepFigures {
  step: string;
  state: string;
  invocations: number;
  totalMs: number;
  longestMs: number;
  peakRssBytes: number;
  aws: MeterReading;
}

interface SizeRun {
  rows: number;
  bytes: number;
  chunks: number;
  steps: StepFigures[];
  wallMs: number;
}

export async function benchScale(ctx: BenchContext): Promise<BenchReport> {
  const sizes = ctx.options.rows ? [ctx.options.rows] : ctx.options.scale10m ? [...SIZES, LARGEST] : SIZES;
  const runs: SizeRun[] = [];
  for (const rows of sizes) {
    const run = await runSize(ctx, rows);
    runs.push(run);
    // Each size's figures as soon as it ends: a long run (10M rows) stopped later keeps what it measured.
    for (const s of run.steps) {
      ctx.log(`scale ${int(rows)} done: ${s.step} ${int(s.invocations)} × ≤ ${secs(s.longestMs)}, ${mib(s.peakRssBytes)} (${secs(s.totalMs)} in all)`);
    }
  }

  const machine = await loadJobMachine();
  const config = readPipelineConfig({ BATCHLINE_BUCKET: 'unused', BATCHLINE_TABLE: 'unused' });
  const pollsPerAttempt = simulatePolling(TYPICAL_BATCH_SECONDS, config).polls;
  const memoryOf = (state: string) => machine.taskMemoryMb[state] ?? 0;
  const costPerMillion = (run: SizeRun) => {
    const scale = 1_000_000 / run.rows;
    const gbSeconds = run.steps.reduce((sum, s) => sum + (memoryOf(s.state) / 1024) * (s.totalMs / 1000), 0);
    const invocations = run.steps.reduce((sum, s) => sum + s.invocations, 0) + run.chunks * (pollsPerAttempt - 1);
    const transitions = totalTransitions(walkJob(machine.definition, { chunks: run.chunks, attemptsPerChunk: 1, pollsPerAttempt }));
    const aws = addReadings(...run.steps.map((s) => s.aws));
    const s3 = s3Classes(aws);
    const total =
      gbSeconds * AWS_PRICES.lambdaArmPerGbSecond +
      invocations * AWS_PRICES.lambdaPerRequest +
      transitions * AWS_PRICES.stepFunctionsPerTransition +
      aws.writeUnits * AWS_PRICES.dynamoPerWriteUnit +
      aws.readUnits * AWS_PRICES.dynamoPerReadUnit +
      s3.tier1 * AWS_PRICES.s3PerTier1Request +
      s3.tier2 * AWS_PRICES.s3PerTier2Request;
    return total * scale;
  };

  const stepNames = runs[0]!.steps.map((s) => s.step);
  return {
    name: 'scale',
    title: `scale — one job at ${sizes.map(int).join(', ')} rows, every invocation in its own process`,
    tables: [
      {
        title: 'each step: invocations, longest invocation, peak RSS of any invocation (time summed over the invocations in brackets)',
        headers: ['step', ...runs.map((run) => `${int(run.rows)} rows (${run.chunks} chunks)`)],
        rows: stepNames.map((name) => [
          name,
          ...runs.map((run) => {
            const s = run.steps.find((step) => step.step === name)!;
            return `${int(s.invocations)} × ≤ ${secs(s.longestMs)}, ${mib(s.peakRssBytes)} (${secs(s.totalMs)})`;
          }),
        ]),
      },
      {
        title: 'per 1M rows',
        headers: ['figure', ...runs.map((run) => `${int(run.rows)} rows`)],
        rows: [
          ['input', ...runs.map((run) => `${fmt(mb(run.bytes), 0)} MB`)],
          ['wall time of the run (all steps one after another)', ...runs.map((run) => secs(run.wallMs))],
          [
            'Lambda seconds per 1M rows',
            ...runs.map((run) => `${fmt((run.steps.reduce((sum, s) => sum + s.totalMs, 0) / 1000) * (1_000_000 / run.rows), 0)} s`),
          ],
          ['AWS cost per 1M requests (1 h batches)', ...runs.map((run) => usd(costPerMillion(run), 3))],
          [
            "longest invocation ÷ Lambda's 900 s",
            ...runs.map((run) => {
              const longest = run.steps.reduce((a, b) => (b.longestMs > a.longestMs ? b : a));
              return `${fmt((longest.longestMs / LAMBDA_LIMIT_MS) * 100, 1)}% (${longest.step})`;
            }),
          ],
        ],
      },
    ],
    checks: [],
    notes: [
      ...(ctx.options.prepareOnly
        ? ['--prepare-only: the chunks were not run; read the Prepare row only (the cost per 1M rows prices the rest of the workflow as if nothing else ran).']
        : []),
      "Every step but Prepare runs per chunk (≤ 100,000 rows) or per job in a few requests per chunk (FinalizeJob joins the chunks' files inside S3): " +
        'their longest invocation should not grow with the job. Prepare reads the input once, in invocations of at most prepareLinesPerInvocation lines (2,000,000 by default: ' +
        'set BATCHLINE_PREPARE_LINES_PER_INVOCATION to see a small file go across several); see docs/performance.md for a 50M-row file on paper.',
      "Cost per 1M requests is priced as the cost benchmark prices it (bench/prices.ts), from this run's own durations and requests, with a 1 h batch's polls " +
        `(${pollsPerAttempt} per attempt, Lambda requests only: their time is not measured here). It should be flat as the job grows.`,
      "Durations are this machine's against local emulators in the parent process; Lambda's vCPU share and real S3/DynamoDB latency will differ.",
    ],
  };
}

async function runSize(ctx: BenchContext, rows: number): Promise<SizeRun> {
  const stack = await startLifecycleStack({
    name: `scale-${rows}`,
    workDir: ctx.options.workDir,
    rows,
    bucket: BUCKET,
    table: TABLE,
    key: KEY,
    simulator: { timeScale: TIME_SCALE, processingSeconds: PROCESSING_SECONDS },
    log: ctx.log,
  });
  const { env, input } = stack;
  try {
    const started = Date.now();
    const figures = new Map<string, StepFigures>();
    const add = (step: string, state: string, ms: number, peakRssBytes: number, aws: MeterReading) => {
      const f = figures.get(step) ?? {
        step,
        state,
        invocations: 0,
        totalMs: 0,
        longestMs: 0,
        peakRssBytes: 0,
        aws: { requests: {}, readUnits: 0, writeUnits: 0 },
      };
      f.invocations += 1;
      f.totalMs += ms;
      f.longestMs = Math.max(f.longestMs, ms);
      f.peakRssBytes = Math.max(f.peakRssBytes, peakRssBytes);
      f.aws = addReadings(f.aws, aws);
      figures.set(step, f);
    };

    ctx.log(`scale ${int(rows)}: register + prepare`);
    const prepared = await runInChild<Result<'registerAndPrepare'>>(task('registerAndPrepare'), { ...env, key: KEY });
    const { jobId } = prepared.value;
    add(
      'register + prepare',
      STATE.PrepareJob,
      prepared.value.register.ms + prepared.value.prepare.ms,
      prepared.peakRssBytes,
      addReadings(prepared.value.register.aws, prepared.value.prepare.aws),
    );
    // A file read across invocations (prepareLinesPerInvocation): each invocation in its own process, as the workflow's InputLeft loop runs them.
    let { outcome, chunks } = prepared.value;
    while (outcome === 'partial') {
      ctx.log(`scale ${int(rows)}: prepare, invocation ${int(figures.get('register + prepare')!.invocations + 1)}`);
      const more = await runInChild<Result<'prepareMore'>>(task('prepareMore'), { ...env, jobId });
      add('register + prepare', STATE.PrepareJob, more.value.prepare.ms, more.peakRssBytes, more.value.prepare.aws);
      ({ outcome, chunks } = more.value);
    }
    if (outcome !== 'ready') throw new Error(`Prepare's outcome was ${outcome}, not ready`);
    if (ctx.options.prepareOnly) return { rows, bytes: input.bytes, chunks: chunks.length, steps: [...figures.values()], wallMs: Date.now() - started };
    let finalized = 0;
    for (const chunk of chunks) {
      ctx.log(`scale ${int(rows)}: chunk ${chunk + 1} of ${chunks.length}`);
      const submitted = await runInChild<Result<'submitAndPoll'>>(task('submitAndPoll'), { ...env, jobId, chunks: [chunk] });
      add(
        'submit (and its polls)',
        STATE.SubmitChunk,
        submitted.value.submit.ms + submitted.value.poll.ms,
        submitted.peakRssBytes,
        addReadings(submitted.value.submit.aws, submitted.value.poll.aws),
      );
      const collected = await runInChild<Result<'collectAttempts'>>(task('collectAttempts'), { ...env, attempts: submitted.value.attempts });
      if (collected.value.retried.length > 0) throw new Error(`chunk ${chunk} needs a retry: the scale benchmark's simulator injects no errors`);
      add('collect', STATE.CollectResults, collected.value.collect.ms, collected.peakRssBytes, collected.value.collect.aws);
      const ordered = await runInChild<Result<'finalizeChunks'>>(task('finalizeChunks'), { ...env, jobId, chunks: [chunk] });
      add('finalize chunk', STATE.FinalizeChunk, ordered.value.finalizeChunk.ms, ordered.peakRssBytes, ordered.value.finalizeChunk.aws);
      // Outside any measured step: the raw batch results go now rather than with work/'s lifecycle,
      // so 10M rows fit this disk (11 GB less). FinalizeChunk has read them; row records point into
      // them for lookups by custom_id, which the bench makes none of.
      await stack.s3.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: jobKeys(jobId).chunkResults(chunk, 1) }));
      finalized += ordered.value.rows;
    }
    ctx.log(`scale ${int(rows)}: finalize the job`);
    const done = await runInChild<Result<'finalize'>>(task('finalize'), { ...env, jobId });
    add('finalize job (join + summary)', STATE.FinalizeJob, done.value.finalize.ms, done.peakRssBytes, done.value.finalize.aws);
    const total = Object.values(done.value.counts).reduce((sum, n) => sum + n, 0);
    if (total !== rows || finalized !== rows || done.value.status !== 'succeeded') {
      throw new Error(`the job ended ${done.value.status} with ${total} rows (${finalized} ordered), expected ${rows}`);
    }
    return { rows, bytes: input.bytes, chunks: chunks.length, steps: [...figures.values()], wallMs: Date.now() - started };
  } finally {
    await stack.stop();
  }
}
