/**
 * Benchmark 2 — Collect on a 100,000-request batch (--full; 50,000 by default).
 *
 * The job is taken through its real steps on the pipeline's cores, each group in a fresh child
 * process against s3rver, dynalite and the Batches API simulator running in this process:
 * register + prepare, submit + poll (simulated clock at TIME_SCALE), then Collect — the measured
 * part: rows/s, DynamoDB and S3 requests (SDK middleware), peak RSS — then the retry attempt of the
 * rows that came back with a transient error, and Finalize. Every step's duration and requests
 * feed the cost estimate.
 */
import { headObject } from '../shared/store/s3';
import { jobKeys } from '../shared/store/keys';
import { describeRequests, requestsOf } from './aws-meter';
import type { AttemptRef } from '../shared/jobs/contract';
import { addSteps } from './chunk-tasks';
import type * as Tasks from './chunk-tasks';
import { cpuShare, runInChild } from './child';
import type { BenchContext, StepMeasurement } from './context';
import { startLifecycleStack } from './lifecycle-stack';
import { check, fmt, int, mb, mib, secs, type BenchReport } from './report';

export const COLLECT_TARGETS = { dynamoRequestsPer1000Rows: 41 };
const DEFAULT_ROWS = 50_000;
const FULL_ROWS = 100_000;
/** Simulated seconds per real second: a 60 s batch ends in 17 ms, the 30 s first wait takes 8 ms. */
const TIME_SCALE = 3_600;
const PROCESSING_SECONDS = 60;
/** A realistic batch: 1% of requests come back overloaded_error (transient: retried once). */
const OVERLOADED_RATE = 0.01;
const BUCKET = 'bench-collect';
const TABLE = 'bench-collect';
const KEY = 'inbox/bench-collect.jsonl';

type Result<K extends keyof typeof Tasks> = (typeof Tasks)[K] extends (...args: never[]) => infer R ? Awaited<R> : never;
const task = (fn: keyof typeof Tasks) => ({ module: './chunk-tasks', fn });

export async function benchCollect(ctx: BenchContext): Promise<BenchReport> {
  const rows = ctx.options.rows ?? (ctx.options.full ? FULL_ROWS : DEFAULT_ROWS);
  const stack = await startLifecycleStack({
    name: 'collect',
    workDir: ctx.options.workDir,
    rows,
    bucket: BUCKET,
    table: TABLE,
    key: KEY,
    simulator: { timeScale: TIME_SCALE, processingSeconds: PROCESSING_SECONDS, batchFaults: { errored: { overloaded_error: OVERLOADED_RATE } } },
    log: ctx.log,
  });
  const { env, simulator, s3, input } = stack;
  try {
    ctx.log('collect: register + prepare');
    const prepared = (await runInChild<Result<'registerAndPrepare'>>(task('registerAndPrepare'), { ...env, key: KEY })).value;
    if (prepared.outcome !== 'ready') throw new Error(`Prepare's outcome was ${prepared.outcome}, not ready (a file past prepareLinesPerInvocation)`);
    ctx.log(`collect: submit + poll ${prepared.chunks.length} chunk(s)`);
    const first = (await runInChild<Result<'submitAndPoll'>>(task('submitAndPoll'), { ...env, jobId: prepared.jobId, chunks: prepared.chunks })).value;

    ctx.log('collect: Collect (measured)');
    const callsBefore = simulator.stats().calls;
    const collected = await runInChild<Result<'collectAttempts'>>(task('collectAttempts'), { ...env, attempts: first.attempts });
    const callsAfter = simulator.stats().calls;
    const apiCalls = Object.fromEntries(
      Object.entries(callsAfter)
        .map(([endpoint, n]) => [endpoint, n - callsBefore[endpoint as keyof typeof callsBefore]] as const)
        .filter(([, n]) => n > 0),
    );
    const c = collected.value;
    if (c.rows !== rows) throw new Error(`Collect recorded ${c.rows} rows, expected ${rows}`);
    const resultsBytes = await resultBytes(s3.client, first.attempts);

    let attempts = first.attempts.length;
    let submit = first.submit;
    let poll = first.poll;
    let collect = c.collect;
    if (c.retried.length > 0) {
      ctx.log(`collect: retry attempt of ${int(c.retryRows)} rows`);
      const again = (await runInChild<Result<'submitAndPoll'>>(task('submitAndPoll'), { ...env, jobId: prepared.jobId, chunks: c.retried })).value;
      const recollected = (await runInChild<Result<'collectAttempts'>>(task('collectAttempts'), { ...env, attempts: again.attempts })).value;
      attempts += again.attempts.length;
      submit = addSteps(submit, again.submit);
      poll = addSteps(poll, again.poll);
      collect = addSteps(collect, recollected.collect);
    }
    ctx.log('collect: finalize each chunk');
    const chunksFinalized = (await runInChild<Result<'finalizeChunks'>>(task('finalizeChunks'), { ...env, jobId: prepared.jobId, chunks: prepared.chunks }))
      .value;
    if (chunksFinalized.rows !== rows) throw new Error(`FinalizeChunk ordered ${chunksFinalized.rows} rows, expected ${rows}`);
    ctx.log('collect: finalize the job');
    const finalized = (await runInChild<Result<'finalize'>>(task('finalize'), { ...env, jobId: prepared.jobId })).value;
    const total = Object.values(finalized.counts).reduce((sum, n) => sum + n, 0);
    if (total !== rows) throw new Error(`Finalize counted ${total} rows, expected ${rows}`);

    ctx.measured.collect = {
      rows,
      chunks: prepared.chunks.length,
      attempts,
      retryRows: c.retryRows,
      register: prepared.register,
      prepare: prepared.prepare,
      submit,
      poll,
      collect,
      finalizeChunk: chunksFinalized.finalizeChunk,
      finalize: finalized.finalize,
      apiCalls,
    };

    const dynamoRequests = requestsOf(c.collect.aws, 'dynamodb');
    const per1000 = (dynamoRequests / rows) * 1000;
    const seconds = c.collect.ms / 1000;
    const lifecycle: Array<[string, StepMeasurement]> = [
      ['register', prepared.register],
      ['prepare', prepared.prepare],
      ['submit', submit],
      ['poll', poll],
      ['collect', collect],
      ['finalize chunks', chunksFinalized.finalizeChunk],
      ['finalize job', finalized.finalize],
    ];
    return {
      name: 'collect',
      title: `collect — a ${int(rows)}-request batch (simulator, ${OVERLOADED_RATE * 100}% overloaded_error)`,
      tables: [
        {
          headers: ['Collect, attempt 1', 'value'],
          rows: [
            ['rows recorded', int(c.rows)],
            ['time', secs(c.collect.ms)],
            ['rows/s', int(c.rows / seconds)],
            ['results streamed to S3', `${fmt(mb(resultsBytes), 0)} MB (${fmt(mb(resultsBytes) / seconds)} MB/s)`],
            ['DynamoDB requests', `${int(dynamoRequests)} (${describeRequests(c.collect.aws, 'dynamodb')})`],
            ['DynamoDB requests per 1,000 rows', fmt(per1000, 2)],
            ['DynamoDB write units', fmt(c.collect.aws.writeUnits, 0)],
            ['S3 requests', `${int(requestsOf(c.collect.aws, 's3'))} (${describeRequests(c.collect.aws, 's3')})`],
            [
              'Batches API calls',
              Object.entries(apiCalls)
                .map(([k, n]) => `${k} ${n}`)
                .join(', '),
            ],
            ['rows sent to a retry attempt', int(c.retryRows)],
            [
              'CPU: Collect process / emulators process',
              `${cpuShare(collected.cpuMs, collected.wallMs)} / ${cpuShare(collected.parentCpuMs, collected.wallMs)} of a core`,
            ],
            ['peak RSS (child process)', `${mib(collected.peakRssBytes)} (${mib(collected.startRssBytes)} at start)`],
          ],
        },
        {
          title: 'the whole job, step by step (cores in child processes; all attempts)',
          headers: ['step', 'calls', 'time', 'S3 req', 'DynamoDB req', 'write units', 'read units'],
          rows: lifecycle.map(([name, s]) => [
            name,
            int(s.calls),
            secs(s.ms),
            int(requestsOf(s.aws, 's3')),
            int(requestsOf(s.aws, 'dynamodb')),
            fmt(s.aws.writeUnits, 0),
            fmt(s.aws.readUnits, 1),
          ]),
        },
      ],
      checks: [
        check(
          'collect: DynamoDB requests per 1,000 rows',
          `≤ ${COLLECT_TARGETS.dynamoRequestsPer1000Rows}`,
          fmt(per1000, 2),
          per1000 <= COLLECT_TARGETS.dynamoRequestsPer1000Rows,
        ),
      ],
      notes: [
        `Simulator: processingSeconds ${PROCESSING_SECONDS}, timeScale ${TIME_SCALE} (a batch ends in ${fmt((PROCESSING_SECONDS / TIME_SCALE) * 1000, 0)} ms). ` +
          `Input ${fmt(mb(input.bytes), 0)} MB.`,
        'Requests are counted by SDK middleware on the clients Collect is given (each HTTP attempt); capacity units are what dynalite reports for ReturnConsumedCapacity=TOTAL.',
        'dynalite, s3rver and the simulator run in this process, Collect in its own: the CPU row says which of the two was busy. ' +
          'A Collect process near 100% is bound by its own work (reading results, deciding and pricing rows, the S3 upload), not by the emulators. ' +
          'Row records are packed, about 1,000 rows of a job to a bucket, one item per bucket a chunk attempt touches.',
      ],
    };
  } finally {
    await stack.stop();
  }
}

async function resultBytes(client: Parameters<typeof headObject>[0], attempts: AttemptRef<string | null>[]): Promise<number> {
  let bytes = 0;
  for (const ref of attempts) {
    const head = await headObject(client, BUCKET, jobKeys(ref.jobId).chunkResults(ref.chunk, ref.attempt));
    bytes += head.ContentLength ?? 0;
  }
  return bytes;
}
