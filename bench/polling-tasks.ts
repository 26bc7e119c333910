/**
 * The poller measured on the local stack (run in a child process by ./polling.ts: one local stack
 * per process). Two measurements:
 *
 *  - Notice delay: one 1-row job per batch length, one after another. After the batch is created
 *    the simulator's clock jumps to a little before its end (`lead`, random), so a 24 h batch takes
 *    seconds, not a day; the poller's ticks keep running on the real timer, so where an end falls
 *    between two ticks is as random as in AWS. The delay is from the batch's `ended_at` to the start
 *    of the PollBatch that runs after it, both on the simulator's clock.
 *  - Scale: 1,000 batches in flight (half ended), one watch each, one tick: its list calls,
 *    retrieves, wakes, heartbeats and wall time.
 */
import { setMaxListeners } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { STATE } from '../shared/jobs/contract';

export interface NoticeInput {
  dir: string;
  timeScale: number;
  lengths: number[];
  reps: number;
  scaleBatches: number;
}

export interface NoticeRun {
  seconds: number;
  /** Simulated seconds from ended_at to the start of the PollBatch that saw it. */
  delays: number[];
  /** How the PollBatch that saw the end was reached: woken by the poller, or by a heartbeat timeout / the Wait loop. */
  woken: number;
  pollBatches: number;
}

export interface ScaleRun {
  batches: number;
  ended: number;
  listCalls: number;
  retrieves: number;
  woken: number;
  heartbeats: number;
  tickMs: number;
  openTokensAfter: number;
}

export interface NoticeResult {
  runs: NoticeRun[];
  ticks: number;
  tickPeriodMs: number;
  /** Batches API calls made while the jobs waited, by endpoint. */
  apiCalls: Record<string, number>;
  heartbeatTimeouts: number;
  /** Mean wall time of a tick with watches (the handler, its DynamoDB and API calls, locally). */
  busyTickMs: number;
  scale: ScaleRun;
}

interface PollStart {
  batchId: string;
  at: number;
  woken: boolean;
}

export async function measureNoticeDelays(input: NoticeInput): Promise<NoticeResult> {
  const { startLocalStack } = await import('../local/runtime');
  const stack = await startLocalStack({ timeScale: input.timeScale, settings: { maxRequestsPerChunk: 1 } });
  const simulator = stack.simulator!;
  const starts: PollStart[] = [];
  stack.stepFunctions.wrapTask(STATE.PollBatch, async (task, invoke) => {
    const ref = task as { batchId: string; wake?: unknown };
    starts.push({ batchId: ref.batchId, at: simulator.now(), woken: ref.wake !== undefined });
    return invoke(task);
  });
  // Wall time of the ticks that had watches (a job waiting), as the runtime invoked the handler.
  const busyTicks: number[] = [];
  stack.on((event) => {
    if (event.type === 'poller-ticked' && ((event.report as { watches?: number } | undefined)?.watches ?? 0) > 0) busyTicks.push(event.ms);
  });
  const runs: NoticeRun[] = [];
  const before = { ...simulator.stats().calls };
  try {
    let n = 0;
    for (const seconds of input.lengths) {
      const run: NoticeRun = { seconds, delays: [], woken: 0, pollBatches: 0 };
      for (let rep = 0; rep < input.reps; rep++) {
        n += 1;
        const file = path.join(input.dir, `notice-${n}.jsonl`);
        await writeFile(
          file,
          `${JSON.stringify({ custom_id: `n-${n}`, params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } })}\n`,
        );
        simulator.setBatchFaults({ processingSeconds: seconds });
        const submitted = new Promise<string>((resolve) => {
          const off = stack.on((event) => {
            if (event.type === 'batch-submitted' && event.batchId) {
              off();
              resolve(event.batchId);
            }
          });
        });
        const jobId = await stack.submitFile(file, { key: `inbox/notice-${n}.jsonl` });
        const batchId = await submitted;
        // Jump to `lead` simulated seconds before the end: the wait's uneventful middle is skipped.
        const lead = 90 + Math.random() * 120;
        const created = await retrieve(stack, batchId);
        const jump = Date.parse(created.created_at) + (seconds - lead) * 1000 - simulator.now();
        if (jump > 0) simulator.advance(jump / 1000);
        const outcome = await stack.waitForJob(jobId);
        if (outcome.status !== 'succeeded')
          throw new Error(`notice run ${n} ended ${outcome.status}: ${outcome.execution?.error ?? ''} ${outcome.execution?.cause ?? ''}`);
        const batch = await retrieve(stack, batchId);
        const endedAt = Date.parse(batch.ended_at!);
        const mine = starts.filter((start) => start.batchId === batchId);
        const seen = mine.find((start) => start.at >= endedAt);
        if (!seen) throw new Error(`no PollBatch after the end of ${batchId}`);
        run.delays.push((seen.at - endedAt) / 1000);
        run.woken += seen.woken ? 1 : 0;
        run.pollBatches += mine.length;
      }
      runs.push(run);
    }
    const apiCalls = Object.fromEntries(
      Object.entries(simulator.stats().calls).map(([endpoint, calls]) => [endpoint, calls - (before[endpoint as keyof typeof before] ?? 0)]),
    );
    const scale = await measureScale(stack, input.scaleBatches);
    return {
      runs,
      ticks: stack.poller!.ticks,
      tickPeriodMs: stack.poller!.periodMs,
      apiCalls,
      heartbeatTimeouts: stack.taskTokens.counts.heartbeatTimeouts,
      busyTickMs: busyTicks.reduce((sum, ms) => sum + ms, 0) / Math.max(1, busyTicks.length),
      scale,
    };
  } finally {
    await stack.stop();
  }
}

async function retrieve(stack: Awaited<ReturnType<typeof import('../local/runtime').startLocalStack>>, batchId: string) {
  const response = await fetch(`${stack.simulator!.url}/v1/messages/batches/${batchId}`, {
    headers: { 'x-api-key': (await import('../local/runtime')).LOCAL_API_KEY, 'anthropic-version': '2023-06-01' },
  });
  return (await response.json()) as { created_at: string; ended_at: string | null };
}

/** 1,000 batches in flight, half of them ended, each with a watch holding an open local token: one tick. */
async function measureScale(stack: Awaited<ReturnType<typeof import('../local/runtime').startLocalStack>>, count: number): Promise<ScaleRun> {
  const { createBatchesClientFromEnv } = await import('../shared/anthropic/from-env');
  const { pollerTick } = await import('../shared/jobs/poller');
  const { readPollerConfig } = await import('../shared/config');
  const { putItem } = await import('../shared/store/dynamo');
  const { WATCH_PK, watchSk } = await import('../shared/store/items');
  const api = createBatchesClientFromEnv();
  stack.poller!.pause();
  const controller = new AbortController();
  // One signal for the 1,000 waiting tasks (one execution's worth of listeners each, in the runtime).
  setMaxListeners(0, controller.signal);
  const ended = Math.floor(count / 2);
  try {
    const request = { custom_id: 'r', params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: 'hi' }] } };
    const batches = [];
    for (let i = 0; i < count; i += 25) {
      stack.simulator!.setBatchFaults({ processingSeconds: i < ended ? 1 : 10 * 86_400 });
      const wave = await Promise.all(Array.from({ length: Math.min(25, count - i) }, () => api.create([request])));
      batches.push(...wave);
    }
    stack.simulator!.advance(5);
    const tokens: string[] = [];
    for (const _batch of batches) {
      let token = '';
      void stack.taskTokens
        .run(
          'Scale',
          { TimeoutSeconds: 86_400 * 30 },
          { Payload: { taskToken: 'batchline-local-task-token' } },
          async (payload) => {
            token = (payload as { taskToken: string }).taskToken;
          },
          controller.signal,
        )
        .catch(() => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      tokens.push(token);
    }
    await Promise.all(
      batches.map((batch, i) =>
        putItem(stack.dynamo, stack.table, {
          pk: WATCH_PK,
          sk: watchSk(batch.expires_at, batch.id),
          type: 'watch',
          jobId: 'scale',
          chunk: i,
          attempt: 1,
          batchId: batch.id,
          taskToken: tokens[i],
          createdAt: batch.created_at,
          expiresAt: batch.expires_at,
          armedAt: new Date(Date.now() - 3_600_000).toISOString(),
          ttl: 0,
        }),
      ),
    );
    // A first job record read fails for "scale" (no such job): counted as an error, as a missing job would be.
    const started = performance.now();
    const report = await pollerTick({
      dynamo: stack.dynamo,
      api,
      callbacks: {
        success: async (token, output) => stack.taskTokens.success(token, output),
        heartbeat: async (token) => stack.taskTokens.heartbeat(token),
      },
      config: { table: stack.table, ...readPollerConfig() },
    });
    const tickMs = performance.now() - started;
    return {
      batches: count,
      ended,
      listCalls: report.listCalls,
      retrieves: report.retrieves,
      woken: report.woken,
      heartbeats: report.heartbeats,
      tickMs,
      openTokensAfter: stack.taskTokens.openTokens().filter((open) => open.state === 'Scale').length,
    };
  } finally {
    controller.abort();
  }
}
