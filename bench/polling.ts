/**
 * Benchmark 3 — adaptive polling, replayed with Poll's own schedule (simulatePolling and
 * nextPollDelay of shared/jobs/poll.ts) and the default settings of shared/config.ts.
 *
 * For batches of several lengths: how many polls, and how long after the batch ended the
 * pipeline noticed. The Step Functions history of one chunk's child execution is counted by walking
 * the synthesized definition (bench/definition.ts; a service limit of 25,000 events, our target 5,000).
 */
import { readPipelineConfig } from '../shared/config';
import { EXPIRY_SLACK_SECONDS, simulatePolling } from '../shared/jobs/poll';
import type { BenchContext } from './context';
import { loadJobMachine, walkJob } from './definition';
import { check, human, int, type BenchReport } from './report';

export const POLLING_TARGETS = { polls24h: 200, minNoticeSeconds: 60, noticeFraction: 0.1, historyEvents: 5_000 };


const DURATIONS = [
  { label: '1 min', seconds: 60, checked: false },
  { label: '5 min', seconds: 300, checked: true },
  { label: '1 h', seconds: 3_600, checked: true },
  { label: '6 h', seconds: 21_600, checked: false },
  { label: '24 h', seconds: 86_400, checked: true },
];

export async function benchPolling(ctx: BenchContext): Promise<BenchReport> {
  // Only the poll settings are read; the bucket and table are required by the reader, not used here.
  const config = readPipelineConfig({ BATCHLINE_BUCKET: 'unused', BATCHLINE_TABLE: 'unused' });
  const settings = { pollMinSeconds: config.pollMinSeconds, pollMaxSeconds: config.pollMaxSeconds, pollFraction: config.pollFraction };
  const allowed = (seconds: number) => Math.max(POLLING_TARGETS.minNoticeSeconds, POLLING_TARGETS.noticeFraction * seconds);

  const runs = DURATIONS.map((d) => ({ ...d, ...simulatePolling(d.seconds, settings) }));
  ctx.measured.polling = { byDuration: runs.map((r) => ({ seconds: r.seconds, polls: r.polls, noticeDelaySeconds: r.noticeDelaySeconds })) };

  const day = runs.find((r) => r.seconds === 86_400)!;
  const { definition } = await loadJobMachine();
  // One chunk's child execution, from the synthesized definition (Lambda retries would add more).
  const historyEvents = (attempts: number, polls: number) =>
    walkJob(definition, { chunks: 1, attemptsPerChunk: attempts, pollsPerAttempt: polls }).children[0]!.events;
  // Worst case: every attempt runs the full 24 h (expired rows are retried).
  const worstHistory = historyEvents(config.maxAttempts, day.polls);
  const checks = [
    check('polling: polls for a 24 h batch', `≤ ${POLLING_TARGETS.polls24h}`, int(day.polls), day.polls <= POLLING_TARGETS.polls24h),
    ...runs
      .filter((r) => r.checked)
      .map((r) =>
        check(
          `polling: notice delay, ${r.label} batch`,
          `≤ ${human(allowed(r.seconds))}`,
          human(r.noticeDelaySeconds),
          r.noticeDelaySeconds <= allowed(r.seconds),
        ),
      ),
    check(
      `polling: history events per chunk execution (${config.maxAttempts} × 24 h)`,
      `≤ ${int(POLLING_TARGETS.historyEvents)}`,
      int(worstHistory),
      worstHistory <= POLLING_TARGETS.historyEvents,
    ),
  ];

  return {
    name: 'polling',
    title: `polling — wait = clamp(${settings.pollFraction} × batch age, ${settings.pollMinSeconds} s, ${settings.pollMaxSeconds} s) (defaults)`,
    tables: [
      {
        headers: ['batch lasts', 'polls', 'noticed after', 'allowed', 'history events (1 attempt)'],
        rows: runs.map((r) => [r.label, int(r.polls), human(r.noticeDelaySeconds), human(allowed(r.seconds)), int(historyEvents(1, r.polls))]),
      },
    ],
    checks,
    notes: [
      'History events are counted by walking the synthesized definition with each state\'s event count (Task 5, Wait and Choice 2: bench/definition.ts); ' +
        `Lambda retries are not included. Worst case shown in the check: ${config.maxAttempts} attempts (BATCHLINE_MAX_ATTEMPTS default) of 24 h each.`,
      `A batch cannot outlive its 24 h expiry; Poll looks again ${EXPIRY_SLACK_SECONDS} s after expires_at, so a 24 h batch is noticed within seconds.`,
      'Figures come from the schedule itself (simulatePolling), not a clock: the same in every run.',
    ],
  };
}
