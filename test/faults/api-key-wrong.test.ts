/**
 * The API key the stack holds is one the API refuses (401). The handlers are pointed at a second
 * simulator that accepts only another key — to them, the key in the secret is simply wrong.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorRow } from '../../shared/jobs/finalize-job';
import { startSimulator, type SimulatorHandle } from '../../simulator/server';
import { ids, readJsonl, useLocalStack } from '../e2e/support';
import { expectEveryRowOnce, runJob, type JobRun } from './support';

describe('a wrong API key, on the local pipeline', () => {
  const under = useLocalStack({ settings: { maxRequestsPerChunk: 2 } });
  const customIds = ids('row', 4);
  let api: SimulatorHandle;
  let run: JobRun;

  beforeAll(async () => {
    api = await startSimulator({ timeScale: under.stack.timeScale, apiKeys: ['sk-ant-the-only-key-this-api-takes'] });
    // Read when a handler first builds its client, which no job has done yet.
    process.env.ANTHROPIC_BASE_URL = api.url;
    run = await runJob(under, 'wrong-key.jsonl', customIds);
  });
  afterAll(async () => {
    await api?.stop();
  });

  it("submits nothing, tries each chunk once, and gives every row the API's authentication error as its cause", async () => {
    const stats = api.stats();
    expect(stats.batchesCreated).toEqual([]);
    // One create per chunk, none retried: a 401 is not worth another try.
    expect(stats.calls.create).toBe(2);
    expectEveryRowOnce(run, customIds);
    const errors = await readJsonl<ErrorRow>(under.stack, run.outcome.keys.errors);
    expect(errors).toEqual(
      customIds.map((id) => ({
        custom_id: id,
        status: 'errored',
        error_type: 'chunk_failed',
        message: 'The chunk failed: ApiAuthError',
        attempts: 1,
        batch_id: null,
        cause: 'ApiAuthError: 401 authentication_error: Invalid authentication credentials',
      })),
    );
  });

  it('marks the job failed with the authentication error', () => {
    expect(run.outcome.status).toBe('failed');
    expect(run.outcome.job?.failure).toMatchObject({ error: 'ApiAuthError', cause: expect.stringContaining('401 authentication_error') });
  });
});
