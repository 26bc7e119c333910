/**
 * The API starts refusing the key (401) while batches run — revoked, or rotated in the console
 * before the secret. The batches run on (and bill) at the API whatever the pipeline does, so Poll
 * must not fail the chunk: it says the key is refused and waits for a valid one.
 */
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../cli/ops/status';
import { jobProgress } from '../../shared/jobs/queries';
import { ids, useLocalStack } from '../e2e/support';
import { chunkRecords, comparable, expectEveryRowOnce, expectOneBatchPerAttempt, interceptTask, ownAnswerStatus, runJob } from './support';

describe('a key the API refuses while batches run', () => {
  // The Wait loop's polls, as chunks run them without the poller, or once the poller has handed
  // them over on a refused key (test/faults/poller.test.ts): the poller's wake would spare the retrieve refused here.
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 4, poller: 'false' } });
  const customIds = ids('row', 8);

  it('keeps the chunks waiting, says so, and finishes once the key is taken again', async () => {
    const reference = await runJob(under, 'reference.jsonl', customIds);
    // The next two polls are refused (each chunk polls at least once), then the key is good again.
    under.stack.simulator!.setHttpFaults([{ endpoint: 'retrieve', status: 401, times: 2 }]);
    const refusedSeen: string[] = [];
    const undo = interceptTask(under.stack, 'PollBatch', async (input, invoke) => {
      const output = await invoke(input);
      type Ref = { jobId: string; chunk: number };
      const { jobId, chunk } = (input as { Payload?: Ref }).Payload ?? (input as Ref);
      const record = (await chunkRecords(under.stack, jobId)).find((c) => c.chunk === chunk)!;
      if (record.attempts[0]!.keyRefusedSince) refusedSeen.push(`${chunk}`);
      return output;
    });
    const run = await runJob(under, 'refused.jsonl', customIds);
    undo();
    // Every refusal was answered during the job; with the faults still set, the next retrieve is the API's own answer.
    expect(await ownAnswerStatus(under.stack, 'retrieve')).toBe(404);
    under.stack.simulator!.setHttpFaults([]);

    // Polls saw the refusal, and carried on.
    expect(refusedSeen.length).toBeGreaterThanOrEqual(1);
    expect(under.events.filter((event) => event.type === 'task-failed' && event.state === 'PollBatch')).toEqual([]);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
    // No chunk failed on the refused key; the refusal was cleared by the first poll that was answered.
    for (const chunk of await chunkRecords(under.stack, run.jobId)) {
      expect(chunk.status).toBe('done');
      expect(chunk.attempts[0]!.keyRefusedSince).toBeUndefined();
    }
  });

  it('waits for a valid key when the API refuses it while Collect reads results: the results stay at the API', async () => {
    const reference = await runJob(under, 'reference-results.jsonl', customIds);
    const refusedBefore = under.events.filter((event) => event.type === 'task-failed' && (event as { error: string }).error === 'ApiKeyRefused').length;
    under.stack.simulator!.setHttpFaults([{ endpoint: 'results', status: 401, times: 2 }]);
    const run = await runJob(under, 'refused-results.jsonl', customIds);
    expect(await ownAnswerStatus(under.stack, 'results')).toBe(404);
    under.stack.simulator!.setHttpFaults([]);

    const refused = under.events.filter((event) => event.type === 'task-failed' && (event as { error: string }).error === 'ApiKeyRefused').length;
    expect(refused - refusedBefore).toBe(2);
    expect(run.outcome.status).toBe('succeeded');
    expectEveryRowOnce(run, customIds);
    await expectOneBatchPerAttempt(under.stack, run);
    expect(comparable(run.results)).toEqual(comparable(reference.results));
  });

  it('shows the refusal in `batchline status` while it lasts', async () => {
    const report = await jobProgress({ dynamo: under.stack.dynamo, table: under.stack.table }, (await runJob(under, 'plain.jsonl', ids('s', 2))).jobId);
    const chunk = report.chunks[0]!;
    chunk.attempts[0]!.keyRefusedSince = '2026-01-02T03:04:05.000Z';
    const text = formatStatus(report);
    expect(text).toContain('API KEY   refused by the API since');
    expect(text).toContain('API KEY REFUSED since');
  });
});
