/**
 * The API key's secret cannot be read (here: the handlers name a secret Secrets Manager does not
 * have). Nothing may reach the API, and the cause must say which secret to fix.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { ErrorRow } from '../../shared/jobs/finalize-job';
import { ids, readJsonl, useLocalStack } from '../e2e/support';
import { expectEveryRowOnce, runJob, type JobRun } from './support';

const CAUSE = 'ApiKeyMissing: The API key secret "batchline/no-such-secret" was not found in Secrets Manager';

describe('a missing API key, on the local pipeline', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 2 } });
  const customIds = ids('row', 4);
  let run: JobRun;
  let callsDuringJob: number;

  beforeAll(async () => {
    // Read when a handler first builds its client, which no job has done yet.
    process.env.BATCHLINE_API_KEY_SECRET = 'batchline/no-such-secret';
    const total = () => Object.values(under.stack.simulator!.stats().calls).reduce((a, b) => a + b, 0);
    const before = total();
    run = await runJob(under, 'no-key.jsonl', customIds);
    callsDuringJob = total() - before;
  });

  it('never calls the API, and gives every row a cause naming the secret', async () => {
    expect(callsDuringJob).toBe(0);
    expectEveryRowOnce(run, customIds);
    const errors = await readJsonl<ErrorRow>(under.stack, run.outcome.keys.errors);
    expect(errors.map((row) => [row.custom_id, row.error_type, row.message, row.cause])).toEqual(
      customIds.map((id) => [id, 'chunk_failed', 'The chunk failed: ApiKeyMissing', CAUSE]),
    );
  });

  it('marks the job failed with ApiKeyMissing', () => {
    expect(run.outcome.status).toBe('failed');
    expect(run.outcome.job?.failure).toMatchObject({ error: 'ApiKeyMissing', cause: expect.stringContaining('batchline/no-such-secret') });
  });
});
