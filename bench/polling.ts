/**
 * Benchmark 3 — adaptive polling, replayed with Poll's own schedule (simulatePolling and
 * nextPollDelay of shared/jobs/poll.ts) and the default settings of shared/config.ts.
 *
 * For batches of several lengths: how many polls, and how long after the batch ended the
 * pipeline noticed. The Step Functions history of one chunk's child execution is estimated from
 * the loop's shape (a service limit of 25,000 events; our target is 5,000).
 */
import { readPipelineConfig } from '../shared/config';
import { EXPIRY_SLACK_SECONDS, simulatePolling } from '../shared/jobs/poll';
import type { BenchContext } from './context';
import { check, human, int, type BenchReport } from './report';

export const POLLING_TARGETS = { polls24h: 200, minNoticeSeconds: 60, noticeFraction: 0.1, historyEvents: 5_000 };

/**
 * History events, an estimate. Per poll iteration: Wait (entered, exited) 2 + Lambda Task
 * (entered, scheduled, started, succeeded, exited) 5 + Choice (entered, exited) 2 = 9.
 * One attempt's fixed part: ExecutionStarted 1 + SubmitChunk 5 + SubmitCanceled 2 +
 * CollectResults 5 + RetryNeeded 2 + ChunkDone 2 + ExecutionSucceeded 1 = 18. Each further
 * attempt: WaitBeforeRetry 2 + SubmitChunk 5 + SubmitCanceled 2 + CollectResults 5 + RetryNeeded 2 = 16.
 * Lambda retries (throttling, ApiRetryable) add about 4 events each and are not counted.
 */
export const HISTORY = { perPoll: 9, firstAttempt: 18, furtherAttempt: 16 } as const;

export function historyEvents(pollsPerAttempt: number[]): number {
  const polls = pollsPerAttempt.reduce((sum, n) => sum + n, 0);
  return HISTORY.firstAttempt + HISTORY.furtherAttempt * (pollsPerAttempt.length - 1) + HISTORY.perPoll * polls;
}

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
  // Worst case: every attempt runs the full 24 h (expired rows are retried).
  const worstHistory = historyEvents(Array.from({ length: config.maxAttempts }, () => day.polls));
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
      `polling: history events per chunk execution (est., ${config.maxAttempts} × 24 h)`,
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
        headers: ['batch lasts', 'polls', 'noticed after', 'allowed', 'history events (est.)'],
        rows: runs.map((r) => [r.label, int(r.polls), human(r.noticeDelaySeconds), human(allowed(r.seconds)), int(historyEvents([r.polls]))]),
      },
    ],
    checks,
    notes: [
      `History is an estimate, not a count: ${HISTORY.perPoll} events per poll iteration (Wait 2 + Lambda Task 5 + Choice 2), ` +
        `${HISTORY.firstAttempt} fixed for the first attempt, ${HISTORY.furtherAttempt} per retry attempt; Lambda retries not included. ` +
        `Worst case shown in the check: ${config.maxAttempts} attempts (BATCHLINE_MAX_ATTEMPTS default) of 24 h each.`,
      `A batch cannot outlive its 24 h expiry; Poll looks again ${EXPIRY_SLACK_SECONDS} s after expires_at, so a 24 h batch is noticed within seconds.`,
      'Figures come from the schedule itself (simulatePolling), not a clock: the same in every run.',
    ],
  };
}
