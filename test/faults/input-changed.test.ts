/**
 * The input changes after Prepare, before its chunks are submitted. Attempt 1 of a chunk is a byte
 * range of the input (shared/jobs/chunk-files.ts): without versions (s3rver) the chunk fails with
 * SourceChanged rather than send another file's bytes. (With versions, as deployed, the job reads
 * the version it was made from: test/e2e/versioning.test.ts, run on moto by `npm run test:moto`.)
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import type { LocalEvent } from '../../local/runtime';
import { chunksOf, ids, nextEvent, readJsonl, request, useLocalStack, versionedBucket, writeRequests } from '../e2e/support';
import { interceptTask } from './support';

describe.runIf(!versionedBucket)('an unversioned input changed after Prepare', () => {
  const under = useLocalStack();

  /** Runs `rows` as a job, writing another file to its input key once, just before its first SubmitChunk. */
  async function runChangedBeforeSubmit(name: string, rows: string[], change: (key: string) => Promise<unknown>) {
    const key = `inbox/${name}`;
    const file = await writeRequests(under, name, rows.map(request));
    let changed = false;
    const undo = interceptTask(under.stack, 'SubmitChunk', async (input, invoke) => {
      if (!changed) {
        changed = true;
        await change(key);
      }
      return invoke(input);
    });
    let jobId: string | undefined;
    const replaced = nextEvent(
      under,
      (event): event is Extract<LocalEvent, { type: 'job-registered' }> =>
        event.type === 'job-registered' && !event.duplicate && jobId !== undefined && event.jobId !== jobId,
    );
    try {
      jobId = await under.stack.submitFile(file);
      const outcome = await under.stack.waitForJob(jobId);
      // The new upload is a job of its own; let it end before the stack stops.
      await under.stack.waitForJob((await replaced).jobId);
      expect(changed).toBe(true);
      return { jobId, outcome };
    } finally {
      undo();
    }
  }

  it('fails the chunk with SourceChanged, sending nothing, when an unversioned key is overwritten', async () => {
    const rows = ids('first', 3);
    const { jobId, outcome } = await runChangedBeforeSubmit('overwritten-late.jsonl', rows, (key) =>
      under.stack.s3.send(
        new PutObjectCommand({
          Bucket: under.stack.bucket,
          Key: key,
          Body: ids('other', 3)
            .map((id) => JSON.stringify(request(id)) + '\n')
            .join(''),
        }),
      ),
    );

    const [chunk] = await chunksOf(under.stack, jobId);
    expect(chunk?.failure?.error).toBe('SourceChanged');
    expect(chunk?.attempts.map((attempt) => attempt.batchId)).toEqual([undefined]);
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status])).toEqual(rows.map((id) => [id, 'errored']));
  });
});
