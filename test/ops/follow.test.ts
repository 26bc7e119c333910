import { describe, expect, it } from 'vitest';
import { describeEvent } from '../../cli/progress';
import { eventsBetween } from '../../cli/ops/follow';
import { progressTotals, type JobProgressReport } from '../../shared/jobs/queries';
import type { ChunkAttempt, ChunkItem, JobItem } from '../../shared/store/items';

const job = (fields: Partial<JobItem>): JobItem => ({
  pk: 'JOB#j',
  sk: 'JOB',
  type: 'job',
  jobId: 'j',
  status: 'running',
  bucket: 'b',
  key: 'inbox/j.jsonl',
  etag: 'e',
  sourceToken: 'e',
  validationMode: 'strict',
  createdAt: 't',
  updatedAt: 't',
  gsi1pk: 'JOBS',
  gsi1sk: 't#j',
  ...fields,
});

const chunk = (n: number, status: ChunkItem['status'], attempts: Array<Partial<ChunkAttempt>>, failure?: ChunkItem['failure']): ChunkItem => ({
  pk: 'JOB#j',
  sk: `CHUNK#${n}`,
  type: 'chunk',
  jobId: 'j',
  chunk: n,
  status,
  rows: 2,
  bytes: 10,
  firstLine: 1,
  lastLine: 2,
  currentAttempt: attempts.length,
  attempts: attempts.map((a, i) => ({ attempt: i + 1, rows: 2, bytes: 10, intentAt: 't', ...a })),
  failure,
  updatedAt: 't',
});

const snapshot = (j: JobItem, chunks: ChunkItem[]): JobProgressReport => ({ job: j, chunks, totals: progressTotals(j, chunks) });
const told = (before: JobProgressReport | undefined, after: JobProgressReport) => eventsBetween(before, after).map((e) => describeEvent(e));

describe('eventsBetween', () => {
  const prepared = job({ chunkCount: 3, validRows: 6, invalidRows: 1 });

  it('tells every step since the last snapshot, in workflow order', () => {
    const before = snapshot(prepared, [chunk(0, 'in_progress', [{ batchId: 'msgbatch_a' }]), chunk(1, 'pending', [{}]), chunk(2, 'pending', [{}])]);
    const after = snapshot(prepared, [
      chunk(0, 'in_progress', [{ batchId: 'msgbatch_a', collectedAt: 't', retryRows: 1 }, { batchId: 'msgbatch_b' }]),
      chunk(1, 'done', [{ collectedAt: 't' }]),
      chunk(2, 'failed', [{}], { error: 'ApiFatal', cause: 'bad' }),
    ]);

    expect(told(before, after)).toEqual([
      'chunk 0: attempt 1 collected, retrying its transient failures',
      'chunk 0: attempt 2 submitted as msgbatch_b',
      'chunk 1: canceled before submitting',
      'chunk 1: attempt 1 collected',
      'chunk 2 failed (ApiFatal); its unfinished rows are errored',
    ]);
  });

  it('tells the whole story from the first snapshot of an ended job, and nothing twice', () => {
    const ended = snapshot(job({ status: 'succeeded', endedAt: 't', chunkCount: 1, validRows: 2, invalidRows: 0 }), [
      chunk(0, 'done', [{ batchId: 'msgbatch_a', collectedAt: 't' }]),
    ]);

    expect(told(undefined, ended)).toEqual([
      'validated: 2 rows valid, 0 invalid; 1 chunk',
      'chunk 0: attempt 1 submitted as msgbatch_a',
      'chunk 0: attempt 1 collected',
      'job j finalized: succeeded',
    ]);
    expect(told(ended, ended)).toEqual([]);
  });

  it('tells a rejected file and a failed job', () => {
    const registered = snapshot(job({ status: 'registered' }), []);
    expect(told(registered, snapshot(job({ status: 'rejected', endedAt: 't', chunkCount: 0, validRows: 3, invalidRows: 2 }), []))).toEqual([
      'validated: 3 rows valid, 2 invalid; nothing submitted (rejected)',
      'job j finalized: rejected',
    ]);
    // Prepare marks a rejected file before Finalize has written its outputs: not the end yet.
    expect(told(registered, snapshot(job({ status: 'rejected', chunkCount: 0, validRows: 3, invalidRows: 2 }), []))).toEqual([
      'validated: 3 rows valid, 2 invalid; nothing submitted (rejected)',
    ]);
    expect(told(registered, snapshot(job({ status: 'failed', endedAt: 't', failure: { error: 'States.Timeout', cause: '' } }), []))).toEqual([
      'job j failed: States.Timeout',
    ]);
  });
});
