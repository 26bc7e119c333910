/**
 * Benchmark 5 — what the AWS side costs per 1,000,000 requests, built from the figures the other
 * benchmarks measured, scaled, at the list prices of ./prices.ts. The Anthropic API's own charge
 * (the tokens, at the batch discount) is separate and not included.
 *
 *   Lambda        memory (from the synthesized template) × each step's measured duration, scaled:
 *                 Prepare by bytes, Submit/Collect/Finalize by rows, Poll per call × polls.
 *   Step Functions transitions: the synthesized definition walked for a 1M-row job (its chunks,
 *                 attempts, and polls per attempt as the polling benchmark measured them with the
 *                 poller); the local engine cannot count them.
 *   Poller        its ticks while the job waits (one a minute: Scheduler, Lambda, DynamoDB), as
 *                 their own line, as if the job were the only one in flight (the worst case).
 *   DynamoDB      write and read units as dynalite reported them (ReturnConsumedCapacity), scaled.
 *   S3            requests counted by SDK middleware, by price class, scaled.
 */
import { readPipelineConfig } from '../shared/config';
import { addReadings, s3Classes, type MeterReading } from './aws-meter';
import type { BenchContext, StepMeasurement } from './context';
import { EVENTS, loadJobMachine, totalTransitions, walkJob, type JobScenario } from './definition';
import { AWS_PRICES, PRICES_AS_OF } from './prices';
import { check, fmt, human, int, usd, type BenchReport } from './report';
import { STATE } from '../shared/jobs/contract';

export const COST_TARGETS = { usdPerMillion: 0.5, waitingPerMillion: 0.01, totalPerMillion1h: 0.06, totalPerMillion24h: 0.07 };
/**
 * The poller's tick and the arm, per call, for the cost model. A busy tick is its local wall time
 * (measured by the polling benchmark) plus a round trip to the real API for its list call, which the
 * loopback simulator does not have (an assumption, [U]); an idle tick (no watches: a Query and the
 * health record) is taken at 0.05 s. DynamoDB
 * units from what each call does — tick: Query of the watches, the health record read and written, a
 * job read; arm: chunk and health reads, the chunk's arms count and the watch written, the watch
 * deleted by the poller.
 */
export const POLLER_TICK = { apiRoundTripSeconds: 0.25, idleSeconds: 0.05, readUnits: 3, writeUnits: 1, idleReadUnits: 2, idleWriteUnits: 1 };
export const ARM_CALL = { seconds: 0.05, readUnits: 2, writeUnits: 4 };
/** The states of the wait: their transitions, with Poll, the arm and the ticks, are "waiting". */
const WAIT_STATES = [STATE.AwaitBatch, STATE.PollBatch, STATE.BatchEnded, STATE.WaitForBatch];
const MILLION = 1_000_000;
/** Most batches end within an hour (the API's own guidance); 24 h is the ceiling. */
const TYPICAL_BATCH_SECONDS = 3_600;
/** A batch that ends a minute before its 24 h expiry (the polling benchmark's longest). */
const WORST_BATCH_SECONDS = 86_340;

interface StepCost {
  step: string;
  state: string;
  invocations: number;
  seconds: number;
  aws: MeterReading;
}

function scaled(reading: MeterReading, factor: number): MeterReading {
  return {
    requests: Object.fromEntries(Object.entries(reading.requests).map(([key, n]) => [key, n * factor])),
    readUnits: reading.readUnits * factor,
    writeUnits: reading.writeUnits * factor,
  };
}

const perCall = (s: StepMeasurement, calls: number): StepCost['aws'] => scaled(s.aws, calls / Math.max(1, s.calls));

export async function benchCost(ctx: BenchContext): Promise<BenchReport> {
  const { prepare, collect, polling } = ctx.measured;
  if (!prepare || !collect || !polling) throw new Error('cost needs the prepare, polling and collect figures of this run');
  const config = readPipelineConfig({ BATCHLINE_BUCKET: 'unused', BATCHLINE_TABLE: 'unused' });
  ctx.log('cost: loading the synthesized state machine');
  const machine = await loadJobMachine();

  const bytesPerRow = prepare.bytes / prepare.rows;
  const rowsPerChunk = Math.min(config.maxRequestsPerChunk, Math.floor(config.maxBytesPerChunk / bytesPerRow));
  const chunks = Math.ceil(MILLION / rowsPerChunk);
  const attemptsPerChunk = collect.attempts / collect.chunks;
  const rowScale = MILLION / collect.rows;
  const pollsFor = (seconds: number) => {
    const run = polling.poller.bySeconds.find((r) => r.seconds === seconds);
    if (!run) throw new Error(`the polling benchmark has no ${seconds} s batch`);
    return Math.max(1, Math.round(run.pollsPerAttempt));
  };
  const pollerMemoryGb = machine.functionMemoryMb['poll-batches']! / 1024;
  const busyTickSeconds = polling.poller.busyTickMs / 1000 + POLLER_TICK.apiRoundTripSeconds;
  const tickUsd = (busy: boolean) =>
    AWS_PRICES.schedulerPerInvocation +
    AWS_PRICES.lambdaPerRequest +
    pollerMemoryGb * (busy ? busyTickSeconds : POLLER_TICK.idleSeconds) * AWS_PRICES.lambdaArmPerGbSecond +
    (busy ? POLLER_TICK.readUnits : POLLER_TICK.idleReadUnits) * AWS_PRICES.dynamoPerReadUnit +
    (busy ? POLLER_TICK.writeUnits : POLLER_TICK.idleWriteUnits) * AWS_PRICES.dynamoPerWriteUnit;

  const estimate = (batchSeconds: number) => {
    const pollsPerAttempt = pollsFor(batchSeconds);
    const attempts = chunks * attemptsPerChunk;
    const polls = attempts * pollsPerAttempt;
    const steps: StepCost[] = [
      { step: 'register', state: STATE.RegisterJob, invocations: 1, seconds: collect.register.ms / 1000, aws: collect.register.aws },
      {
        step: 'prepare',
        state: STATE.PrepareJob,
        invocations: 1,
        seconds: (prepare.ms / 1000) * (MILLION / prepare.rows),
        aws: scaled(prepare.aws, MILLION / prepare.rows),
      },
      {
        step: 'submit',
        state: STATE.SubmitChunk,
        invocations: attempts,
        seconds: (collect.submit.ms / 1000) * rowScale,
        aws: perCall(collect.submit, attempts),
      },
      {
        step: 'arm',
        state: STATE.AwaitBatch,
        invocations: attempts,
        seconds: ARM_CALL.seconds * attempts,
        aws: { requests: {}, readUnits: ARM_CALL.readUnits * attempts, writeUnits: ARM_CALL.writeUnits * attempts },
      },
      {
        step: 'poll',
        state: STATE.PollBatch,
        invocations: polls,
        seconds: (collect.poll.ms / 1000 / Math.max(1, collect.poll.calls)) * polls,
        aws: perCall(collect.poll, polls),
      },
      {
        step: 'collect',
        state: STATE.CollectResults,
        invocations: attempts,
        seconds: (collect.collect.ms / 1000) * rowScale,
        aws: scaled(collect.collect.aws, rowScale),
      },
    ];
    steps.push({
      step: 'finalize chunks',
      state: STATE.FinalizeChunk,
      invocations: chunks,
      seconds: (collect.finalizeChunk.ms / 1000) * rowScale,
      aws: scaled(collect.finalizeChunk.aws, rowScale),
    });
    if (collect.finalize) {
      // FinalizeJob's work grows with the chunks (a join request or two each), not the rows: scaled by chunks.
      const chunkScale = chunks / Math.max(1, collect.chunks);
      steps.push({
        step: 'finalize job',
        state: STATE.FinalizeJob,
        invocations: 1,
        seconds: (collect.finalize.ms / 1000) * chunkScale,
        aws: scaled(collect.finalize.aws, chunkScale),
      });
    }
    const scenario: JobScenario = { chunks, attemptsPerChunk: Math.max(1, Math.round(attemptsPerChunk)), pollsPerAttempt };
    const walked = walkJob(machine.definition, scenario);
    const transitions = totalTransitions(walked);

    const gbSeconds = steps.reduce((sum, s) => sum + (memoryOf(s.state) / 1024) * s.seconds, 0);
    const invocations = steps.reduce((sum, s) => sum + s.invocations, 0);
    const aws = addReadings(...steps.map((s) => s.aws));
    const s3 = s3Classes(aws);
    const lines = [
      { item: 'Lambda compute (arm64)', quantity: `${fmt(gbSeconds, 0)} GB-s`, usd: gbSeconds * AWS_PRICES.lambdaArmPerGbSecond },
      { item: 'Lambda requests', quantity: int(invocations), usd: invocations * AWS_PRICES.lambdaPerRequest },
      { item: 'Step Functions state transitions', quantity: int(transitions), usd: transitions * AWS_PRICES.stepFunctionsPerTransition },
      { item: 'DynamoDB write request units', quantity: int(aws.writeUnits), usd: aws.writeUnits * AWS_PRICES.dynamoPerWriteUnit },
      { item: 'DynamoDB read request units', quantity: int(aws.readUnits), usd: aws.readUnits * AWS_PRICES.dynamoPerReadUnit },
      { item: 'S3 PUT/POST/LIST requests', quantity: int(s3.tier1), usd: s3.tier1 * AWS_PRICES.s3PerTier1Request },
      { item: 'S3 GET/HEAD requests', quantity: int(s3.tier2), usd: s3.tier2 * AWS_PRICES.s3PerTier2Request },
    ];
    // The poller ticks while any attempt waits: the Map's waves of chunks, each attempt about as long as its batch.
    const waves = Math.ceil(chunks / (machine.maxConcurrency ?? 10));
    const ticks = Math.ceil((waves * scenario.attemptsPerChunk * batchSeconds) / 60);
    lines.push({ item: 'Poller ticks (Scheduler + Lambda + DynamoDB)', quantity: int(ticks), usd: ticks * tickUsd(true) });
    const total = lines.reduce((sum, line) => sum + line.usd, 0);
    const waitTransitions = walked.children.reduce((sum, child) => sum + WAIT_STATES.reduce((n, state) => n + (child.states[state] ?? 0), 0), 0);
    const waitSteps = steps.filter((s) => s.step === 'poll' || s.step === 'arm');
    const waiting =
      waitTransitions * AWS_PRICES.stepFunctionsPerTransition +
      waitSteps.reduce(
        (sum, s) =>
          sum +
          (memoryOf(s.state) / 1024) * s.seconds * AWS_PRICES.lambdaArmPerGbSecond +
          s.invocations * AWS_PRICES.lambdaPerRequest +
          s.aws.writeUnits * AWS_PRICES.dynamoPerWriteUnit +
          s.aws.readUnits * AWS_PRICES.dynamoPerReadUnit,
        0,
      ) +
      ticks * tickUsd(true);
    return { pollsPerAttempt, polls, steps, walked, transitions, lines, total, writeUnits: aws.writeUnits, waiting, ticks, waitTransitions };
  };

  function memoryOf(state: string): number {
    const mb = machine.taskMemoryMb[state];
    if (mb === undefined) throw new Error(`no Lambda function found for state ${state}`);
    return mb;
  }

  const typical = estimate(TYPICAL_BATCH_SECONDS);
  const worst = estimate(WORST_BATCH_SECONDS);
  const byLength = polling.poller.bySeconds.map((r) => ({ seconds: r.seconds, ...estimate(r.seconds) }));
  const idleMonth = 43_200 * tickUsd(false);
  // The loop's cost, read off the definition: one more poll per attempt, everything else equal.
  const onePollMore = walkJob(machine.definition, { chunks: 1, attemptsPerChunk: 1, pollsPerAttempt: 2 });
  const onePoll = walkJob(machine.definition, { chunks: 1, attemptsPerChunk: 1, pollsPerAttempt: 1 });
  const perPollTransitions = totalTransitions(onePollMore) - totalTransitions(onePoll);
  const perPollEvents = onePollMore.children[0]!.events - onePoll.children[0]!.events;
  const worstChildEvents = Math.max(...worst.walked.children.map((child) => child.events));
  const dynamoShare = typical.lines.filter((line) => line.item.startsWith('DynamoDB')).reduce((sum, line) => sum + line.usd, 0) / typical.total;
  // A step that takes the whole job in one invocation: Lambda's 15 minutes bound the job's size.
  const wholeJob = typical.steps.filter((s) => s.invocations === 1 && s.seconds > 1);
  const longest = wholeJob.reduce((a, b) => (b.seconds > a.seconds ? b : a), wholeJob[0]!);

  return {
    name: 'cost',
    title: `cost — AWS per 1,000,000 requests (us-east-1 list prices of ${PRICES_AS_OF}; Anthropic API not included)`,
    tables: [
      {
        title: `a 1M-row job: ${chunks} chunks of ${int(rowsPerChunk)}, ${fmt(attemptsPerChunk, 1)} attempts per chunk (as measured), batches of 1 h (typical) or 24 h (ceiling)`,
        headers: ['item', 'quantity (1 h)', 'USD (1 h)', 'quantity (24 h)', 'USD (24 h)'],
        rows: [
          ...typical.lines.map((line, i) => [line.item, line.quantity, usd(line.usd), worst.lines[i]!.quantity, usd(worst.lines[i]!.usd)]),
          ['total', '', usd(typical.total), '', usd(worst.total)],
        ],
      },
      {
        title: 'Lambda by step (1 h batches; durations measured locally, scaled to 1M rows)',
        headers: ['step', 'memory', 'invocations', 'duration', 'per invocation', 'GB-s', 'USD'],
        rows: typical.steps.map((s) => {
          const gbs = (memoryOf(s.state) / 1024) * s.seconds;
          return [
            s.step,
            `${memoryOf(s.state)} MB`,
            int(s.invocations),
            `${fmt(s.seconds, 1)} s`,
            `${fmt(s.seconds / s.invocations, s.seconds / s.invocations < 1 ? 2 : 1)} s`,
            fmt(gbs, 1),
            usd(gbs * AWS_PRICES.lambdaArmPerGbSecond + s.invocations * AWS_PRICES.lambdaPerRequest),
          ];
        }),
      },
      {
        title:
          "waiting, per 1M requests, at every batch length the polling benchmark measured (wait states' transitions, arm and Poll Lambdas and their DynamoDB units, poller ticks)",
        headers: ['batch lasts', 'PollBatch per attempt', 'wait transitions', 'poller ticks', 'waiting USD', 'total USD'],
        rows: byLength.map((r) => [human(r.seconds), int(r.pollsPerAttempt), int(r.waitTransitions), int(r.ticks), usd(r.waiting), usd(r.total, 3)]),
      },
      {
        title: 'Step Functions, from the synthesized definition',
        headers: ['figure', 'value'],
        rows: [
          ['transitions per extra poll (a spurious wake: AwaitBatch → PollBatch → BatchEnded)', int(perPollTransitions)],
          ['history events per extra poll', int(perPollEvents)],
          ['polls per attempt, 1 h / 24 h batch', `${int(typical.pollsPerAttempt)} / ${int(worst.pollsPerAttempt)}`],
          ['transitions of the job, 1 h / 24 h', `${int(typical.transitions)} / ${int(worst.transitions)}`],
          ['history events of the longest chunk execution, 24 h', int(worstChildEvents)],
        ],
      },
    ],
    checks: [
      ...byLength.map((r) =>
        check(
          `cost: waiting per 1M requests, ${human(r.seconds)} batches`,
          `≤ ${usd(COST_TARGETS.waitingPerMillion, 3)}`,
          usd(r.waiting),
          r.waiting <= COST_TARGETS.waitingPerMillion,
        ),
      ),
      check(
        'cost: AWS per 1M requests, 1 h batches (with the poller)',
        `≤ ${usd(COST_TARGETS.totalPerMillion1h, 3)}`,
        usd(typical.total, 3),
        typical.total <= COST_TARGETS.totalPerMillion1h,
      ),
      check(
        'cost: AWS per 1M requests, 24 h batches (with the poller)',
        `≤ ${usd(COST_TARGETS.totalPerMillion24h, 3)}`,
        usd(worst.total, 3),
        worst.total <= COST_TARGETS.totalPerMillion24h,
      ),
      check(
        'cost: AWS per 1M requests, 1 h batches',
        `≤ ${usd(COST_TARGETS.usdPerMillion, 2)}`,
        usd(typical.total, 3),
        typical.total <= COST_TARGETS.usdPerMillion,
      ),
      check(
        'cost: AWS per 1M requests, 24 h batches',
        `≤ ${usd(COST_TARGETS.usdPerMillion, 2)}`,
        usd(worst.total, 3),
        worst.total <= COST_TARGETS.usdPerMillion,
      ),
    ],
    notes: [
      `The poller when nothing is in flight: 43,200 idle ticks a month (Scheduler, Lambda ${POLLER_TICK.idleSeconds} s, the Query and the health record) ≈ ${usd(idleMonth, 3)} a month at list prices ` +
        `(Scheduler's free 14M invocations a month would cover its share). A busy tick costs ${usd(tickUsd(true) * 1e6, 2)} per million; ticks are priced as if this job were the only one in flight.`,
      `Arm and tick figures are modelled: a busy tick ${fmt(busyTickSeconds, 2)} s × ${machine.functionMemoryMb['poll-batches']} MB (${fmt(polling.poller.busyTickMs, 0)} ms measured locally + ${POLLER_TICK.apiRoundTripSeconds} s assumed for the list call's round trip to the API), ` +
        `${POLLER_TICK.readUnits} RRU + ${POLLER_TICK.writeUnits} WRU; arm ${ARM_CALL.seconds} s, ${ARM_CALL.readUnits} RRU + ${ARM_CALL.writeUnits} WRU.`,
      `DynamoDB is ${fmt(dynamoShare * 100, 0)}% of the total: ${fmt(typical.writeUnits / MILLION, 3)} write units per request, mostly row records packed ` +
        `about 1,000 rows of a job to a bucket (an item per row would be 1 write unit each, $${AWS_PRICES.dynamoPerWriteUnit * MILLION} per million requests).`,
      `${longest.step} handles the whole job in one invocation and took ${fmt(longest.seconds, 0)} s per 1M rows here: at this rate Lambda's ` +
        `900 s limit is reached near ${fmt(900 / longest.seconds, 1)}M rows` +
        (longest.step === 'prepare' ? ' (Prepare reads the input once; see docs/performance.md for the arithmetic of a larger file).' : '.'),
      `Scaling: Prepare from the prepare benchmark (${int(prepare.rows)} rows); the rest from the collect benchmark's job (${int(collect.rows)} rows, ${collect.chunks} chunk(s), ${collect.attempts} attempt(s)). ` +
        "Durations are this machine's, run against local emulators: Lambda's vCPU share and real DynamoDB/S3 latency will differ.",
      `Transitions are counted by walking the definition (${EVENTS.Task} history events per Task, ${EVENTS.Wait} per Wait or Choice); Lambda retries would add more. ` +
        'Not included: the Anthropic API, S3 storage (GB-month), uploading the input, CloudWatch Logs and X-Ray, Secrets Manager, EventBridge events, data transfer.',
      'Prices: aws.amazon.com/lambda/pricing, /step-functions/pricing, /dynamodb/pricing/on-demand, /s3/pricing (see bench/prices.ts for the figures and date).',
    ],
  };
}
