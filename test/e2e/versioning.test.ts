import { describe, expect, it } from 'vitest';
import { DeleteObjectCommand, ListObjectVersionsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import type { LocalEvent } from '../../local/runtime';
import { ids, nextEvent, readJsonl, request, useLocalStack, versionedBucket, writeRequests } from './support';

// The deployed bucket versions its objects; of the local backends only moto can (s3rver has no versions).
describe.runIf(versionedBucket)('a versioned bucket, end to end', () => {
  const under = useLocalStack();

  it('runs each upload of an overwritten key as its own job, reading the version its event named', async () => {
    const key = 'inbox/tickets.jsonl';
    const first = ids('first', 3);
    const second = ids('second', 2);
    const file = await writeRequests(under, 'tickets.jsonl', first.map(request));
    // Overwrite the key the moment the first job is registered, while its Prepare is about to read it.
    let overwriting: Promise<unknown> | undefined;
    const off = under.stack.on((event) => {
      if (event.type !== 'job-registered' || overwriting) return;
      const body = second.map((id) => JSON.stringify(request(id))).join('\n') + '\n';
      overwriting = under.stack.s3.send(new PutObjectCommand({ Bucket: under.stack.bucket, Key: key, Body: body }));
    });

    const firstJob = await under.stack.submitFile(file);
    await overwriting;
    off();
    const { jobId: secondJob } = await nextEvent(
      under,
      (event): event is Extract<LocalEvent, { type: 'job-registered' }> => event.type === 'job-registered' && event.jobId !== firstJob,
    );
    const [one, two] = [await under.stack.waitForJob(firstJob), await under.stack.waitForJob(secondJob)];

    const { Versions = [] } = await under.stack.s3.send(new ListObjectVersionsCommand({ Bucket: under.stack.bucket, Prefix: key }));
    const latest = Versions.find((version) => version.IsLatest)!;
    const older = Versions.find((version) => !version.IsLatest)!;
    expect(Versions).toHaveLength(2);
    expect([one.job?.versionId, two.job?.versionId]).toEqual([older.VersionId, latest.VersionId]);
    expect([one.status, two.status]).toEqual(['succeeded', 'succeeded']);
    expect((await readJsonl<ResultRow>(under.stack, one.keys.results)).map((row) => [row.custom_id, row.status])).toEqual(first.map((id) => [id, 'succeeded']));
    expect((await readJsonl<ResultRow>(under.stack, two.keys.results)).map((row) => [row.custom_id, row.status])).toEqual(
      second.map((id) => [id, 'succeeded']),
    );
  });

  it('runs every row from the version a job was made from when its key is deleted after Prepare', async () => {
    // Attempt 1 of a chunk is a byte range of that version (shared/jobs/chunk-files.ts), read by Submit.
    const key = 'inbox/deleted.jsonl';
    const rows = ids('kept', 3);
    const file = await writeRequests(under, 'deleted.jsonl', rows.map(request));
    let deleted = false;
    const undo = under.stack.stepFunctions.wrapTask('SubmitChunk', async (input, invoke) => {
      if (!deleted) {
        deleted = true;
        await under.stack.s3.send(new DeleteObjectCommand({ Bucket: under.stack.bucket, Key: key }));
      }
      return invoke(input);
    });
    try {
      const outcome = await under.stack.waitForJob(await under.stack.submitFile(file));

      expect(deleted).toBe(true);
      expect(outcome.status).toBe('succeeded');
      expect((await readJsonl<ResultRow>(under.stack, outcome.keys.results)).map((row) => [row.custom_id, row.status])).toEqual(
        rows.map((id) => [id, 'succeeded']),
      );
    } finally {
      undo();
    }
  });
});
