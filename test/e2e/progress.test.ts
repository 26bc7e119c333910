/**
 * The progress line on the local pipeline: a retried step says when its next try comes (from the
 * synthesized state machine's Retry fields), Prepare's progress is read from the row indexes it
 * writes, and the batches' progress from the chunk records.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressView } from '../../cli/progress';
import { RetryClock } from '../../cli/retry-delay';
import { readLiveProgress, ValidationWatch } from '../../local/progress';
import { stat } from 'node:fs/promises';
import { ids, request, useLocalStack, writeRequests } from './support';

interface State {
  Retry?: Array<{ ErrorEquals: string[]; IntervalSeconds: number }>;
  ItemProcessor?: Machine;
  Iterator?: Machine;
  Branches?: Machine[];
}
interface Machine {
  States?: Record<string, State>;
}

/** A state of the definition by its name, wherever it is nested (a Map's processor, a Parallel's branches). */
function findState(machine: Machine, name: string): State | undefined {
  for (const [stateName, state] of Object.entries(machine.States ?? {})) {
    if (stateName === name) return state;
    for (const inner of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
      const found = inner && findState(inner, name);
      if (found) return found;
    }
  }
  return undefined;
}

/** A stream that keeps what is written to it. */
function sink(): { out: Writable; text: () => string } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { out, text: () => text };
}

describe('progress on the local pipeline', () => {
  // Three refusals (529) of the first create: more than the client's own two retries, so
  // SubmitChunk fails once with CreateRefused and the workflow retries it.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: '4' }, simulator: { httpFaults: [{ endpoint: 'create', status: 529, times: 3 }] } });

  it('says why a step is retried and when its next try comes, as the Retry field and the time scale make it', async () => {
    const { stack } = under;
    const screen = sink();
    const clock = new RetryClock(stack.stepFunctions.definition, stack.timeScale);
    const view = new ProgressView(screen.out, false, Date.now(), false, false, clock);
    const unwatch = stack.on((event) => view.event(event));
    try {
      const file = await writeRequests(under, 'refused.jsonl', ids('r', 10).map(request));
      const jobId = await stack.submitFile(file);
      const outcome = await stack.waitForJob(jobId);
      expect(outcome.status).toBe('succeeded');
    } finally {
      unwatch();
    }
    // CreateRefused's retrier: 60 s at first (infra/workflow.ts CREATE_REFUSED_RETRY), which the local
    // runtime waits as 60 s / time scale.
    const retrier = findState(stack.stepFunctions.definition as Machine, 'SubmitChunk')!.Retry!.find((r) => r.ErrorEquals.includes('CreateRefused'))!;
    const seconds = (retrier.IntervalSeconds / stack.timeScale).toFixed(1);
    expect(screen.text()).toMatch(
      new RegExp(`\\] SubmitChunk failed with CreateRefused \\([^)]*529[^)]*\\); the workflow retries it, next try in ${seconds.replace('.', '\\.')}s\\n`),
    );
  });

  it("reads Prepare's progress from the row indexes it writes, and the batches' from the chunk records", async () => {
    const { stack } = under;
    const file = await writeRequests(under, 'counted.jsonl', ids('c', 10).map(request));
    const jobId = await stack.submitFile(file);
    await stack.waitForJob(jobId);
    // After the fact the indexes are all there: every valid row, up to the input's last request.
    const watch = new ValidationWatch(stack.s3, stack.bucket, jobId, stack.prefixes);
    const job = { bucket: stack.bucket, key: 'inbox/counted.jsonl' };
    const size = (await stat(file)).size;
    expect(await watch.read(job)).toEqual({ rows: 10, bytes: size - 1, inputBytes: size });
    // A second read finds nothing new and counts nothing twice.
    expect(await watch.read(job)).toEqual({ rows: 10, bytes: size - 1, inputBytes: size });

    const live = await readLiveProgress(stack, jobId, watch);
    expect(live).toMatchObject({ ended: true, batches: 3, batchesEnded: 3, running: [], rowsSent: 10, rowsProcessed: 10 });
    // An ended job is not validating.
    expect(live.validating).toBeUndefined();
  });
});
