/**
 * RunStragglers and the settling of a synchronous attempt (docs/architecture.md, "Deadline
 * fallback"), against s3rver, dynalite and the simulator over HTTP: each test takes a chunk through
 * Submit, Poll (the deadline's cancel) and Collect, as the workflow does, to its synchronous attempt.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { S3Client } from '@aws-sdk/client-s3';
import { collectResults } from '../../shared/jobs/collect-results';
import { pollBatch } from '../../shared/jobs/poll-batch';
import { finishStragglers, runStragglers } from '../../shared/jobs/stragglers';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import { updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk } from '../../shared/store/items';
import { localS3Client } from '../../local/emulators';
import { useLocalAws } from '../support/aws';
import { readChunkItem, readJobItem, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig } from '../support/pipeline';
import { requests } from '../support/requests';

describe('RunStragglers', () => {
  const aws = useLocalAws();
  let ctx: ApiContext;

  beforeAll(async () => {
    // Batches take a simulated hour: the deadline's cancel finds them still running.
    ctx = await startApi({ processingSeconds: 3600 });
  });
  afterAll(async () => stopApi(ctx));
  afterEach(() => ctx.sim.setHttpFaults([]));

  const config = () => pipelineConfig(aws, { maxAttempts: 2, retryBackoffSeconds: 60 });
  const deps = (extra: { s3?: S3Client } = {}) => ({ s3: aws.s3, dynamo: aws.dynamo, api: ctx.api, config: config(), ...extra });

  /** A job of `rows` rows whose batch the deadline canceled before it answered any: attempt 2 is synchronous, every row in it. */
  async function straggling(rows: number) {
    const job = await seedJob(aws, { chunks: [requests(rows, 'sync')] });
    // The deadline ten minutes away on the API's clock, the margin an hour: the cancel is due at once.
    const deadline = { at: new Date(ctx.sim.now() + 600_000).toISOString(), marginSeconds: 3600 };
    await updateItem(aws.dynamo, aws.table, { pk: jobPk(job.jobId), sk: JOB_SK }, { set: { deadline } });
    const ref = { jobId: job.jobId, chunk: 0 };
    const batchId = (await submitChunk(ref, deps())).batchId!;
    expect((await pollBatch({ ...ref, attempt: 1, batchId }, deps())).ended).toBe(false);
    ctx.sim.advance(10);
    expect((await pollBatch({ ...ref, attempt: 1, batchId }, deps())).ended).toBe(true);
    expect(await collectResults({ ...ref, attempt: 1, batchId }, deps())).toMatchObject({ retry: false, stragglers: true });
    return { job, sync: { ...ref, attempt: 2 } };
  }

  /** An S3 client with the reconcile and collect functions' grants: work/ and results/ only, never the input. */
  function workAndResultsOnly(): S3Client {
    const s3 = localS3Client(aws.s3Server.endpoint);
    s3.middlewareStack.add(
      (next) => async (args) => {
        const key = (args.input as { Key?: string }).Key;
        if (key !== undefined && !key.startsWith('work/') && !key.startsWith('results/')) throw new Error(`AccessDenied: ${key}`);
        return next(args);
      },
      { step: 'initialize' },
    );
    return s3;
  }

  it('settles the attempt from work/ alone, never reading the input the requests came from', async () => {
    const { job, sync } = await straggling(4);
    const s3 = workAndResultsOnly();

    // Attempt 2's requests live in work/: the calls are made and the attempt settled without the input.
    expect(await runStragglers(sync, deps({ s3 }))).toMatchObject({ done: true, remaining: 0 });

    const chunk = await readChunkItem(aws, job.jobId, 0);
    // Done, as Collect leaves a chunk with no attempt after it: Finalize and mark-job-failed count it finished.
    expect(chunk.status).toBe('done');
    expect(chunk.attempts[1]).toMatchObject({ counts: { succeeded: 4, errored: 0, expired: 0, canceled: 0 }, collectedAt: expect.any(String) });
  });

  it('the reconciler settles it from work/ alone as well', async () => {
    const { job, sync } = await straggling(3);

    await finishStragglers(sync, { s3: workAndResultsOnly(), dynamo: aws.dynamo, config: config() });

    const chunk = await readChunkItem(aws, job.jobId, 0);
    expect(chunk.status).toBe('done');
    expect(chunk.attempts[1]).toMatchObject({ counts: { succeeded: 0, errored: 0, expired: 3, canceled: 0 }, collectedAt: expect.any(String) });
    expect((await readJobItem(aws, job.jobId)).rowsFinal).toBe(3);
  });
});
