/**
 * Benchmark 3 — waiting for batches. Chunks wait on the poller (AwaitBatch, woken by one tick a
 * minute for every batch in flight); the adaptive Wait → Poll loop is the fallback while the poller
 * is down. Measured:
 *
 *  - notice delay with the poller, on the local stack (bench/polling-tasks.ts, in a child process):
 *    for each batch length, from the batch's ended_at to the start of the PollBatch that saw it,
 *    on the simulator's clock;
 *  - the poller at 1,000 batches in flight: one tick's list calls, retrieves, wakes and wall time;
 *  - the fallback's schedule, replayed with Poll's own code (simulatePolling, default settings);
 *  - transitions per attempt and history events per chunk execution, by walking the synthesized
 *    definition (bench/definition.ts), healthy and in the worst fallback (infra/history-budget.ts).
 */
import { mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { chunkHistory, type AslGraph } from '../infra/history-budget';
import { readPipelineConfig } from '../shared/config';
import { simulatePolling } from '../shared/jobs/poll-batch';
import { runInChild } from './child';
import type { BenchContext } from './context';
import { loadJobMachine, totalTransitions, walkJob } from './definition';
import type { NoticeResult } from './polling-tasks';
import { check, fmt, human, int, type BenchReport } from './report';

export const POLLING_TARGETS = { noticeSeconds: 65, historyHealthy: 100, historyWorst: 5_000, apiRpmAt1000: 50 };

/** Batch lengths: each its own check line. 24 h is a batch ending a minute before its expiry. */
export const NOTICE_LENGTHS = [
  { label: '1 min', seconds: 60 },
  { label: '5 min', seconds: 300 },
  { label: '15 min', seconds: 900 },
  { label: '1 h', seconds: 3_600 },
  { label: '3 h', seconds: 10_800 },
  { label: '6 h', seconds: 21_600 },
  { label: '12 h', seconds: 43_200 },
  { label: '24 h', seconds: 86_340 },
];
/** Slow enough that a tick (1 s real apart) and a PollBatch take few simulated seconds on a loaded machine; each wait's middle is jumped over. */
const TIME_SCALE = 60;
const REPS = 3;
const SCALE_BATCHES = 1_000;

export async function benchPolling(ctx: BenchContext): Promise<BenchReport> {
  // Only the poll settings are read; the bucket and table are required by the reader, not used here.
  const config = readPipelineConfig({ BATCHLINE_BUCKET: 'unused', BATCHLINE_TABLE: 'unused' });
  const settings = { pollMinSeconds: config.pollMinSeconds, pollMaxSeconds: config.pollMaxSeconds, pollFraction: config.pollFraction };

  ctx.log(
    `polling: ${NOTICE_LENGTHS.length} batch lengths × ${REPS} on the local stack (time scale ${TIME_SCALE}), then ${int(SCALE_BATCHES)} batches in flight`,
  );
  const dir = await mkdtemp(path.join(ctx.options.workDir, 'polling-'));
  const measured = (
    await runInChild<NoticeResult>(
      { module: './polling-tasks', fn: 'measureNoticeDelays' },
      { dir, timeScale: TIME_SCALE, lengths: NOTICE_LENGTHS.map((l) => l.seconds), reps: REPS, scaleBatches: SCALE_BATCHES },
    )
  ).value;
  const fallback = NOTICE_LENGTHS.map((l) => ({ ...l, ...simulatePolling(l.seconds, settings) }));
  const rows = NOTICE_LENGTHS.map((l, i) => {
    const run = measured.runs[i]!;
    const sorted = [...run.delays].sort((a, b) => a - b);
    return { ...l, p50: sorted[Math.floor(sorted.length / 2)]!, max: sorted.at(-1)!, woken: run.woken, polls: run.pollBatches / REPS, fallback: fallback[i]! };
  });

  const { definition } = await loadJobMachine();
  const processor = (definition.States.ForEachChunk as unknown as { ItemProcessor: AslGraph }).ItemProcessor;
  const child = (attempts: number, polls: number, wait: 'poller' | 'fallback') =>
    walkJob(definition, { chunks: 1, attemptsPerChunk: attempts, pollsPerAttempt: polls, wait });
  const perAttempt = (polls: number) => totalTransitions(child(2, polls, 'poller')) - totalTransitions(child(1, polls, 'poller'));
  // Measured polls per attempt at each length (1: woken once, as its batch ended).
  const transitionsByLength = rows.map((r) => perAttempt(Math.max(1, Math.round(r.polls))));
  const healthyHistory = child(config.maxAttempts, 1, 'poller').children[0]!.events;
  const worstHistory = chunkHistory(processor, { ...settings, maxAttempts: config.maxAttempts }).events;
  const day = fallback.at(-1)!;
  const scale = measured.scale;
  // Waiting's API calls a minute with 1,000 batches in flight: one tick's list calls and retrieves,
  // plus the woken PollBatches' retrieves (none: a wake carries the ended batch).
  const rpm = scale.listCalls + scale.retrieves;
  const fallbackRpm = (SCALE_BATCHES * simulatePolling(3_600, settings).polls) / 60;

  ctx.measured.polling = {
    byDuration: fallback.map((r) => ({ seconds: r.seconds, polls: r.polls, noticeDelaySeconds: r.noticeDelaySeconds })),
    poller: {
      bySeconds: rows.map((r) => ({ seconds: r.seconds, pollsPerAttempt: Math.max(1, r.polls), maxNoticeSeconds: r.max })),
      tickMsAt1000: scale.tickMs,
      busyTickMs: measured.busyTickMs,
    },
  };

  const checks = [
    ...rows.map((r) =>
      check(
        `polling: notice delay, ${r.label} batch (poller)`,
        `≤ ${POLLING_TARGETS.noticeSeconds} s`,
        `${fmt(r.max, 0)} s`,
        r.max <= POLLING_TARGETS.noticeSeconds,
      ),
    ),
    check(
      'polling: transitions per chunk attempt, independent of batch length',
      'same at every length',
      `${int(Math.min(...transitionsByLength))}–${int(Math.max(...transitionsByLength))}`,
      Math.min(...transitionsByLength) === Math.max(...transitionsByLength),
    ),
    check(
      `polling: history events per chunk execution, healthy (${config.maxAttempts} × 24 h)`,
      `≤ ${POLLING_TARGETS.historyHealthy}`,
      int(healthyHistory),
      healthyHistory <= POLLING_TARGETS.historyHealthy,
    ),
    check(
      `polling: history events per chunk execution, worst fallback (${config.maxAttempts} × 24 h, retries at worst)`,
      `≤ ${int(POLLING_TARGETS.historyWorst)}`,
      int(worstHistory),
      worstHistory <= POLLING_TARGETS.historyWorst,
    ),
    check(
      `polling: Batches API requests/minute, ${int(SCALE_BATCHES)} batches in flight`,
      `≤ ${POLLING_TARGETS.apiRpmAt1000}`,
      int(rpm),
      rpm <= POLLING_TARGETS.apiRpmAt1000,
    ),
  ];

  return {
    name: 'polling',
    title: 'polling — one poller tick a minute for every batch in flight; the adaptive Wait loop as fallback',
    tables: [
      {
        title: `notice delay on the local stack (simulator clock, ${REPS} runs per length; time scale ${TIME_SCALE}, a tick every ${fmt(measured.tickPeriodMs, 0)} ms real)`,
        headers: ['batch lasts', 'poller p50', 'poller max', 'woken by the poller', 'PollBatch per attempt', 'fallback (adaptive) notice', 'fallback polls'],
        rows: rows.map((r) => [
          r.label,
          `${fmt(r.p50, 0)} s`,
          `${fmt(r.max, 0)} s`,
          `${r.woken}/${REPS}`,
          fmt(r.polls, 1),
          human(r.fallback.noticeDelaySeconds),
          int(r.fallback.polls),
        ]),
      },
      {
        title: `the poller with ${int(SCALE_BATCHES)} batches in flight (${int(scale.ended)} ended), one tick`,
        headers: ['list calls', 'retrieves', 'woken', 'heartbeats', 'tick wall time', 'tokens left open', 'fallback loop, same batches (1 h each)'],
        rows: [
          [
            int(scale.listCalls),
            int(scale.retrieves),
            int(scale.woken),
            int(scale.heartbeats),
            `${fmt(scale.tickMs, 0)} ms`,
            int(scale.openTokensAfter - (scale.batches - scale.ended)),
            `${int(fallbackRpm)} requests/min`,
          ],
        ],
      },
      {
        title: 'the synthesized definition, walked',
        headers: ['figure', 'value'],
        rows: [
          ['transitions per chunk attempt (healthy), by length', transitionsByLength.map(int).join(' / ')],
          [`history events per chunk execution, healthy, ${config.maxAttempts} attempts`, int(healthyHistory)],
          [`history events, poller down all day: ${config.maxAttempts} × (arms cap + ${int(day.polls)} polls), retries at worst`, int(worstHistory)],
        ],
      },
    ],
    checks,
    notes: [
      "Each run is a 1-row job; after its batch is created the simulator's clock jumps to 1.5–3.5 simulated minutes before the end, so a 24 h wait takes seconds. " +
        "The poller ticks on a real timer the whole time, so where an end falls between ticks is as random as in AWS. The delay counts the tick's own run and the PollBatch start, scaled by the time scale.",
      `Jobs waited with the poller: ${int(measured.ticks)} ticks (a tick with watches took ${fmt(measured.busyTickMs, 0)} ms locally); Batches API calls while they ran: ${Object.entries(
        measured.apiCalls,
      )
        .map(([e, n]) => `${e} ${int(n)}`)
        .join(', ')}; heartbeat timeouts ${int(measured.heartbeatTimeouts)}.`,
      "Not measurable locally (docs/deploy-fidelity.md S14): EventBridge Scheduler's delivery lag and Step Functions' resume after SendTaskSuccess; both add to the delay in AWS.",
      `The fallback columns replay Poll's schedule (clamp(${settings.pollFraction} × age, ${settings.pollMinSeconds} s, ${settings.pollMaxSeconds} s)) for a batch ending at that length: what chunks get while the poller is down.`,
    ],
  };
}
