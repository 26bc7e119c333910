/**
 * Benchmark 4 — the whole pipeline beside the script a user would write by hand.
 *
 * The same N-row file goes (a) through the local stack — upload, the synthesized state machine,
 * every Lambda handler, s3rver, dynalite — to results in S3, and (b) through a plain script on the
 * official @anthropic-ai/sdk that creates one batch, polls it and downloads its results to a file.
 * Each runs in its own child process with its own simulator, set identically (processingSeconds,
 * timeScale), so batch processing is not the bottleneck. Times run from the file on disk to the
 * results written; the local stack's start-up (synth, emulators) is not counted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { cpuShare, runInChild } from './child';
import type { BenchContext } from './context';
import type { BaselineRun, EndToEndInput, PipelineRun } from './end-to-end-tasks';
import { writeInputFile } from './input-file';
import { check, fmt, int, mb, mib, secs, type BenchReport } from './report';

export const END_TO_END_TARGETS = { ratio: 2 };
const DEFAULT_ROWS = 20_000;
const FULL_ROWS = 100_000;
/** A 60-second batch ends in 17 ms; the pipeline's first 30 s wait takes 8 ms; the script polls every 17 ms. */
const TIME_SCALE = 3_600;
const PROCESSING_SECONDS = 60;

export async function benchEndToEnd(ctx: BenchContext): Promise<BenchReport> {
  const rows = ctx.options.rows ?? (ctx.options.full ? FULL_ROWS : DEFAULT_ROWS);
  const dir = await mkdtemp(path.join(ctx.options.workDir, 'e2e-'));
  try {
    const file = path.join(dir, 'requests.jsonl');
    ctx.log(`end-to-end: writing ${int(rows)} rows`);
    const input = await writeInputFile(file, rows);
    const common: EndToEndInput = { file, rows, timeScale: TIME_SCALE, processingSeconds: PROCESSING_SECONDS };

    ctx.log('end-to-end: baseline script (official SDK, one batch)');
    const baseline = await runInChild<BaselineRun>({ module: './end-to-end-tasks', fn: 'runBaseline' }, { ...common, output: path.join(dir, 'results.jsonl') });
    ctx.log('end-to-end: the pipeline on the local stack');
    const pipeline = await runInChild<PipelineRun>({ module: './end-to-end-tasks', fn: 'runPipeline' }, common);

    const ratio = pipeline.value.ms / baseline.value.ms;
    const steps = pipeline.value.timeline.map((entry, i, all) => ({ step: entry.step, ms: entry.atMs - (i > 0 ? all[i - 1]!.atMs : 0) }));
    const slowest = steps.reduce((a, b) => (b.ms > a.ms ? b : a), steps[0] ?? { step: 'n/a', ms: 0 });
    return {
      name: 'end-to-end',
      title: `end-to-end — ${int(rows)} rows, ${fmt(mb(input.bytes), 0)} MB, file on disk → results written`,
      tables: [
        {
          headers: ['run', 'wall time', 'rows/s', 'batches', 'polls', 'CPU', 'peak RSS'],
          rows: [
            [
              'baseline: one SDK script (readline, 1 create, poll, results → file)',
              secs(baseline.value.ms),
              int(rows / (baseline.value.ms / 1000)),
              '1',
              int(baseline.value.polls),
              cpuShare(baseline.cpuMs, baseline.wallMs),
              mib(baseline.peakRssBytes),
            ],
            [
              `batchline on the local stack (${pipeline.value.chunks} chunk(s))`,
              secs(pipeline.value.ms),
              int(rows / (pipeline.value.ms / 1000)),
              int(pipeline.value.batches),
              int(pipeline.value.polls),
              cpuShare(pipeline.cpuMs, pipeline.wallMs),
              mib(pipeline.peakRssBytes),
            ],
          ],
        },
        {
          title: "where the pipeline's time went (each step's last end, after the start)",
          headers: ['step', 'ended at', 'took'],
          rows: pipeline.value.timeline.map((entry, i) => [entry.step, secs(entry.atMs), secs(steps[i]!.ms)]),
        },
      ],
      checks: [
        check('end-to-end: pipeline time ÷ SDK script time', `≤ ${fmt(END_TO_END_TARGETS.ratio, 1)}×`, `${fmt(ratio, 2)}×`, ratio <= END_TO_END_TARGETS.ratio),
      ],
      notes: [
        `Both simulators: processingSeconds ${PROCESSING_SECONDS}, timeScale ${TIME_SCALE} — identical, and short enough that batch processing is not what is measured.`,
        'The pipeline does more than the script: strict validation, chunk files, a DynamoDB record per row (packed by bucket), ordered results, errors and summary files. Its RSS includes s3rver, dynalite and the simulator, which run in the same process.',
        `The slowest step was ${slowest.step} (${secs(slowest.ms)} of ${secs(pipeline.value.ms)}). Locally every handler, s3rver, dynalite and the simulator ` +
          'share one Node process, so one thread does all of it; the script has only the SDK and its simulator.',
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
