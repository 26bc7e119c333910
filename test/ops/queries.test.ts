import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { jobIdFor } from '../../shared/jobs/job-id';
import {
  getRow,
  jobForUpload,
  jobIdsForKey,
  jobProgress,
  JobNotFound,
  listRecentJobs,
  requestCancel,
  RowNotFound,
  type QueryDeps,
} from '../../shared/jobs/queries';
import { registerJob } from '../../shared/jobs/register-job';
import { submitChunk } from '../../shared/jobs/submit-chunk';
import type { BatchResultLine } from '../../shared/anthropic/types';
import type { JobStatus } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { useLocalAws, type LocalAws } from '../support/aws';
import { readChunkItem, readJobItem, readText, seedJob, startApi, stopApi, type ApiContext } from '../support/chunks';
import { objectCreated, pipelineConfig, putInput, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { jsonl, request, requests } from '../support/requests';
import { freshTable, putChunk, putJob, runPipeline } from './support';

const depsOf = (aws: LocalAws): QueryDeps => ({ s3: aws.s3, dynamo: aws.dynamo, bucket: aws.bucket, table: aws.table });

describe('job queries', () => {
  const aws = useLocalAws();
  let api: ApiContext;
  let recorder: RecordingEndpoint;
  beforeAll(async () => {
    api = await startApi();
    recorder = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await stopApi(api);
    await recorder.stop();
  });
  const pipeline = (own: ApiContext = api) => ({ aws, sim: own.sim, api: own.api, config: pipelineConfig(aws), recorder });

  describe('listRecentJobs', () => {
    it('lists jobs newest first, at most `limit`, and only those created since `since`', async () => {
      const own = await freshTable(aws);
      for (const [jobId, createdAt] of [
        ['old', '2026-01-01T00:00:00.000Z'],
        ['newest', '2026-03-01T00:00:00.000Z'],
        ['middle', '2026-02-01T00:00:00.000Z'],
      ] as const) {
        await putJob(own, jobId, { createdAt });
      }
      const ids = async (options: { limit?: number; since?: string }) => (await listRecentJobs(depsOf(own), options)).map((job) => job.jobId);

      expect(await ids({})).toEqual(['newest', 'middle', 'old']);
      expect(await ids({ limit: 2 })).toEqual(['newest', 'middle']);
      expect(await ids({ since: '2026-02-01T00:00:00.000Z' })).toEqual(['newest', 'middle']);
      expect(await ids({ since: '2027-01-01T00:00:00.000Z' })).toEqual([]);
    });
  });

  describe('jobProgress', () => {
    it('returns the job, its chunks in order, and their attempts summed', async () => {
      const own = await freshTable(aws);
      await putJob(own, 'progress', { status: 'running', chunkCount: 2, rowsFinal: 3, validRows: 5, totalRows: 6, invalidRows: 1 });
      await putChunk(own, 'progress', 1, {
        status: 'in_progress',
        rows: 2,
        bytes: 100,
        firstLine: 4,
        lastLine: 6,
        currentAttempt: 1,
        attempts: [{ attempt: 1, rows: 2, bytes: 100, intentAt: 't', batchId: 'msgbatch_c', polls: 2 }],
        updatedAt: 't',
      });
      await putChunk(own, 'progress', 0, {
        status: 'done',
        rows: 3,
        bytes: 150,
        firstLine: 1,
        lastLine: 3,
        currentAttempt: 2,
        attempts: [
          {
            attempt: 1,
            rows: 3,
            bytes: 150,
            intentAt: 't',
            batchId: 'msgbatch_a',
            polls: 3,
            counts: { succeeded: 2, errored: 1, expired: 0, canceled: 0 },
            retryRows: 1,
          },
          { attempt: 2, rows: 1, bytes: 50, intentAt: 't', batchId: 'msgbatch_b', polls: 1, counts: { succeeded: 1, errored: 0, expired: 0, canceled: 0 } },
        ],
        updatedAt: 't',
      });

      const report = await jobProgress(depsOf(own), 'progress');

      expect(report.job.jobId).toBe('progress');
      expect(report.chunks.map((c) => c.chunk)).toEqual([0, 1]);
      expect(report.totals).toEqual({
        jobId: 'progress',
        status: 'running',
        totalRows: 6,
        validRows: 5,
        invalidRows: 1,
        chunks: 2,
        chunksDone: 1,
        chunksFailed: 0,
        batches: 3,
        retries: 1,
        polls: 6,
        attemptOutcomes: { succeeded: 3, errored: 1, expired: 0, canceled: 0 },
        rowsFinal: 3,
        counts: undefined,
        costUsd: undefined,
      });
    });

    it('throws JobNotFound for a job with no record', async () => {
      await expect(jobProgress(depsOf(aws), 'no-such-job')).rejects.toThrow(new JobNotFound('job no-such-job does not exist'));
    });
  });

  describe('getRow', () => {
    /** Each custom_id's line in an attempt's raw results file. */
    async function linesOf(jobId: string, attempt: number): Promise<Map<string, BatchResultLine>> {
      const text = (await readText(aws, jobKeys(jobId).chunkResults(0, attempt)))!;
      const lines = text
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as BatchResultLine);
      return new Map(lines.map((line) => [line.custom_id, line]));
    }

    it('returns the row record and its result line, read by its recorded byte range, for rows anywhere in the file', async () => {
      const key = 'inbox/get-row.jsonl';
      const { etag } = await putInput(aws, key, jsonl(requests(3, 'g')));
      const jobId = await runPipeline(pipeline(), { key, etag, sequencer: '0A1' });
      const lines = await linesOf(jobId, 1);

      const offsets: number[] = [];
      for (const customId of ['g-00000', 'g-00001', 'g-00002']) {
        const found = await getRow(depsOf(aws), jobId, customId);
        expect(found.result).toEqual(lines.get(customId));
        expect(found.row).toMatchObject({ jobId, customId, status: 'succeeded', final: true, attempt: 1, chunk: 0 });
        expect(found.row.result!.key).toBe(jobKeys(jobId).chunkResults(0, 1));
        offsets.push(found.row.result!.offset);
      }
      // The first line of the file, and two further in (the API returns results in any order).
      expect(offsets.filter((offset) => offset > 0)).toHaveLength(2);
    });

    it("returns a retried row's line from its latest attempt", async () => {
      const faulty = await startApi({ batchFaultsBySequence: { 1: { errored: { overloaded_error: 1 } } } });
      try {
        const key = 'inbox/get-retried.jsonl';
        const { etag } = await putInput(aws, key, jsonl([request('retried')]));
        const jobId = await runPipeline(pipeline(faulty), { key, etag, sequencer: '0A2' });

        const found = await getRow(depsOf(aws), jobId, 'retried');

        expect((await linesOf(jobId, 1)).get('retried')!.result.type).toBe('errored');
        expect(found.result).toEqual((await linesOf(jobId, 2)).get('retried'));
        expect(found.result!.result.type).toBe('succeeded');
        expect(found.row).toMatchObject({ attempt: 2, status: 'succeeded', result: { key: jobKeys(jobId).chunkResults(0, 2), offset: 0 } });
      } finally {
        await stopApi(faulty);
      }
    });

    it('says the result is unavailable when the work file has expired, and keeps the record', async () => {
      const key = 'inbox/get-expired.jsonl';
      const { etag } = await putInput(aws, key, jsonl([request('gone')]));
      const jobId = await runPipeline(pipeline(), { key, etag, sequencer: '0A3' });
      await aws.s3.send(new DeleteObjectCommand({ Bucket: aws.bucket, Key: jobKeys(jobId).chunkResults(0, 1) }));

      const found = await getRow(depsOf(aws), jobId, 'gone');

      expect(found.result).toBeUndefined();
      expect(found.row.status).toBe('succeeded');
      expect(found.resultUnavailable).toBe(
        `s3://${aws.bucket}/${jobKeys(jobId).chunkResults(0, 1)} no longer exists (work files expire; results.jsonl keeps every row)`,
      );
    });

    it('throws RowNotFound for a custom_id the job has no record of, and JobNotFound for an unknown job', async () => {
      const own = await freshTable(aws);
      await putJob(own, 'rowless');
      await expect(getRow(depsOf(own), 'rowless', 'nope')).rejects.toThrow(
        new RowNotFound(
          'job rowless has no record of custom_id "nope" (rows are recorded as their batch is collected; invalid lines are listed in invalid.jsonl)',
        ),
      );
      await expect(getRow(depsOf(own), 'missing-job', 'nope')).rejects.toThrow(JobNotFound);
    });
  });

  describe('requestCancel', () => {
    const NOW = new Date('2026-05-06T07:08:09.000Z');

    it('sets cancelRequested on a running job, and Submit then creates no batch for its chunks', async () => {
      const job = await seedJob(aws, { chunks: [requests(2, 'c')] });

      const outcome = await requestCancel(depsOf(aws), job.jobId, () => NOW);

      expect(outcome.outcome).toBe('requested');
      expect(await readJobItem(aws, job.jobId)).toMatchObject({ status: 'running', cancelRequested: true, updatedAt: NOW.toISOString() });
      const submitted = await submitChunk({ jobId: job.jobId, chunk: 0 }, { s3: aws.s3, dynamo: aws.dynamo, api: api.api, config: pipelineConfig(aws) });
      expect(submitted).toMatchObject({ batchId: null, canceled: true });
      expect((await readChunkItem(aws, job.jobId, 0)).attempts[0]!.batchId).toBeUndefined();
    });

    it('reports a second request as already requested', async () => {
      const job = await seedJob(aws, { chunks: [requests(1, 'd')], cancelRequested: true });
      expect((await requestCancel(depsOf(aws), job.jobId)).outcome).toBe('already-requested');
    });

    const ENDED_AT = '2026-01-02T04:00:00.000Z';
    it.each<[string, JobStatus, string | undefined, string]>([
      ['an ended succeeded', 'succeeded', ENDED_AT, 'ended'],
      ['an ended rejected', 'rejected', ENDED_AT, 'ended'],
      ['an ended canceled', 'canceled', ENDED_AT, 'ended'],
      ['a failed', 'failed', ENDED_AT, 'ended'],
      ['a finalizing', 'finalizing', undefined, 'finalizing'],
      ['a rejected (Finalize still to run)', 'rejected', undefined, 'finalizing'],
    ])('leaves %s job untouched', async (_title, status, endedAt, expected) => {
      const own = await freshTable(aws);
      const before = await putJob(own, 'untouched', { status, endedAt });

      const outcome = await requestCancel(depsOf(own), 'untouched', () => NOW);

      expect(outcome).toEqual({ outcome: expected, job: before });
      expect(await readJobItem(own, 'untouched')).toEqual(before);
    });

    it('throws JobNotFound for an unknown job', async () => {
      await expect(requestCancel(depsOf(aws), 'never-was')).rejects.toThrow(new JobNotFound('job never-was does not exist'));
    });
  });

  describe('jobForUpload', () => {
    it('finds the job Register made from an unversioned upload by key and ETag, skipping jobs that existed before it', async () => {
      const own = await freshTable(aws);
      const config = pipelineConfig(own);
      const key = 'inbox/find-me.jsonl';
      const { etag } = await putInput(own, key, jsonl([request('x')]));
      const since = '2020-01-01T00:00:00.000Z';
      const earlier = await registerJob(objectCreated({ bucket: own.bucket, key, etag, sequencer: '0001' }), { s3: own.s3, dynamo: own.dynamo, config });
      const exclude = await jobIdsForKey(depsOf(own), own.bucket, key, since);
      const uploaded = { bucket: own.bucket, key, etag: `"${etag}"` };

      expect(exclude).toEqual(new Set([earlier.jobId]));
      expect(await jobForUpload(depsOf(own), uploaded, { since, exclude })).toBeUndefined();

      // The same bytes uploaded again: a new sequencer, so a new job.
      const later = await registerJob(objectCreated({ bucket: own.bucket, key, etag, sequencer: '0002' }), { s3: own.s3, dynamo: own.dynamo, config });
      expect(later.jobId).not.toBe(earlier.jobId);
      expect((await jobForUpload(depsOf(own), uploaded, { since, exclude }))?.jobId).toBe(later.jobId);
    });

    it('finds the job of a versioned upload by the id Register derives from the version', async () => {
      const own = await freshTable(aws);
      const key = 'inbox/versioned.jsonl';
      const jobId = jobIdFor({ bucket: own.bucket, key, token: 'v-123' });
      // Recorded with another ETag: only the version can lead to it.
      await putJob(own, jobId, { key, etag: 'other', createdAt: '2019-01-01T00:00:00.000Z' });

      const found = await jobForUpload(depsOf(own), { bucket: own.bucket, key, etag: 'abc', versionId: 'v-123' }, { since: '2020-01-01T00:00:00.000Z' });

      expect(found?.jobId).toBe(jobId);
      expect(
        await jobForUpload(depsOf(own), { bucket: own.bucket, key, etag: 'abc', versionId: 'null' }, { since: '2020-01-01T00:00:00.000Z' }),
      ).toBeUndefined();
    });
  });
});
