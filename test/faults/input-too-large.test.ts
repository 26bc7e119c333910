/**
 * A file too large for one Prepare invocation: Prepare watches the function's memory (Lambda's
 * AWS_LAMBDA_FUNCTION_MEMORY_SIZE, which the local runtime does not set: set here, around the real
 * PrepareJob, to a size this process is well past) and stops with InputTooLarge before Lambda would
 * kill it. The workflow does not retry it: the job fails with that cause, nothing submitted.
 */
import { describe, expect, it } from 'vitest';
import { ids, request, useLocalStack, writeRequests } from '../e2e/support';
import { interceptTask } from './support';

describe('a file too large for Prepare', () => {
  const under = useLocalStack();

  it('fails the job with InputTooLarge from one PrepareJob run, recording the cause and submitting nothing', async () => {
    const file = await writeRequests(under, 'too-large.jsonl', ids('row', 5).map(request));
    let prepareRuns = 0;
    const undo = interceptTask(under.stack, 'PrepareJob', async (input, invoke) => {
      prepareRuns += 1;
      const before = process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
      process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE = '128';
      try {
        return await invoke(input);
      } finally {
        if (before === undefined) delete process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
        else process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE = before;
      }
    });
    try {
      const jobId = await under.stack.submitFile(file);
      const outcome = await under.stack.waitForJob(jobId);

      expect(prepareRuns).toBe(1);
      expect(outcome.status).toBe('failed');
      expect(outcome.execution).toMatchObject({ status: 'FAILED', error: 'InputTooLarge' });
      expect(outcome.job?.failure?.error).toBe('InputTooLarge');
      expect(outcome.job?.failure?.cause).toMatch(
        /^InputTooLarge: Prepare ran short of memory: at line 1 \(0 rows so far, \d+ bytes of \d+ bytes read\) it was using [\d,]+ MiB of the function's 128 MiB: .*prepareMemoryMiB$/,
      );

      expect(under.stack.simulator!.stats().batchesCreated).toEqual([]);
      // As for any job failed in Prepare: no rows counted, no chunk, no summary.json (status shows the failure).
      expect(outcome.job?.totalRows).toBeUndefined();
      expect(outcome.job?.chunkCount).toBeUndefined();
      expect(outcome.summary).toBeUndefined();
    } finally {
      undo();
    }
  });
});
