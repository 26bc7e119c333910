import { describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { objectCreated, pipelineConfig, putInput, request, jsonl } from '../support/pipeline';
import { getItem } from '../../shared/store/dynamo';
import { jobPk, type JobItem } from '../../shared/store/items';
import { InvalidMode, registerJob, SourceChanged, SourceNotFound } from '../../shared/jobs/register-job';
import { InvalidEvent } from '../../shared/jobs/events';
import { jobIdFor, jobSlug } from '../../shared/jobs/job-id';
import type { PipelineConfig } from '../../shared/config';

const NOW = new Date('2026-03-04T05:06:07.000Z');
const FILE = jsonl([request('a'), request('b')]);

describe('job ids', () => {
  it('are the file name as a slug and 16 hex characters of sha256(bucket, key, identity)', () => {
    expect(jobIdFor({ bucket: 'batchline-test', key: 'inbox/Reviews 2026.jsonl', token: '0055AED6DCD90281E5' })).toBe('reviews-2026-17b240bfff34c868');
  });

  it.each([
    ['inbox/Reviews 2026.jsonl', 'reviews-2026'],
    ['a/b/c/UPPER_case.v2.jsonl', 'upper-case-v2'],
    ['inbox/Café crème.jsonl', 'cafe-creme'],
    ['inbox/--odd--.jsonl', 'odd'],
    ['inbox/.jsonl', 'jsonl'],
    ['inbox/日本語.jsonl', 'job'],
    ['inbox/noextension', 'noextension'],
    [`inbox/${'x'.repeat(39)}-tail.jsonl`, 'x'.repeat(39)],
    [`inbox/${'y'.repeat(60)}.jsonl`, 'y'.repeat(40)],
  ])('slug of %s is %s', (key, slug) => {
    expect(jobSlug(key)).toBe(slug);
  });

  it('differ by bucket, key and identity', () => {
    const base = { bucket: 'b', key: 'k.jsonl', token: 't' };
    const ids = new Set([jobIdFor(base), jobIdFor({ ...base, bucket: 'b2' }), jobIdFor({ ...base, key: 'k2.jsonl' }), jobIdFor({ ...base, token: 't2' })]);
    expect(ids.size).toBe(4);
  });
});

describe('registerJob', () => {
  const aws = useLocalAws();
  const config = (overrides: Partial<PipelineConfig> = {}) => pipelineConfig(aws, overrides);
  const deps = (overrides: Partial<PipelineConfig> = {}) => ({ s3: aws.s3, dynamo: aws.dynamo, config: config(overrides), now: () => NOW.getTime() });
  const jobItem = (jobId: string) => getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: 'JOB' });

  it('registers an EventBridge S3 event as a job record', async () => {
    const { etag } = await putInput(aws, 'inbox/first.jsonl', FILE);
    const event = objectCreated({ bucket: aws.bucket, key: 'inbox/first.jsonl', etag, sequencer: '0055AED6DCD90281E5' });

    const result = await registerJob(event, deps());

    const jobId = jobIdFor({ bucket: aws.bucket, key: 'inbox/first.jsonl', token: '0055AED6DCD90281E5' });
    expect(result).toEqual({ jobId, duplicate: false });
    expect(jobId).toMatch(/^first-[0-9a-f]{16}$/);
    expect(await jobItem(jobId)).toEqual({
      pk: `JOB#${jobId}`,
      sk: 'JOB',
      type: 'job',
      jobId,
      status: 'registered',
      bucket: aws.bucket,
      key: 'inbox/first.jsonl',
      etag,
      sourceToken: '0055AED6DCD90281E5',
      validationMode: 'strict',
      createdAt: '2026-03-04T05:06:07.000Z',
      updatedAt: '2026-03-04T05:06:07.000Z',
      gsi1pk: 'JOBS',
      gsi1sk: `2026-03-04T05:06:07.000Z#${jobId}`,
      ttl: Math.floor(NOW.getTime() / 1000) + 90 * 86_400,
    });
  });

  it.each(['inbox/My Data+v2 (100%) é#?&=.jsonl', 'inbox/my+data%20v2.jsonl'])(
    'reads the object the event names by its key as stored, taking %s literally',
    async (key) => {
      const { etag } = await putInput(aws, key, FILE);
      // S3's EventBridge events carry the key as stored, not URL-encoded (its SQS/SNS/Lambda notifications do encode it).
      const event = objectCreated({ bucket: aws.bucket, key, etag, sequencer: '01' });
      expect(event.detail.object.key).toBe(key);

      const { jobId } = await registerJob(event, deps());

      expect((await jobItem(jobId))?.key).toBe(key);
    },
  );

  it('ends a duplicate delivery of the same event quietly, leaving the first record as it was', async () => {
    const { etag } = await putInput(aws, 'inbox/twice.jsonl', FILE);
    const event = objectCreated({ bucket: aws.bucket, key: 'inbox/twice.jsonl', etag, sequencer: '02' });
    const first = await registerJob(event, deps());
    const later = { ...deps(), now: () => Date.parse('2026-03-05T00:00:00.000Z') };

    const second = await registerJob(event, later);

    expect(second).toEqual({ jobId: first.jobId, duplicate: true });
    expect((await jobItem(first.jobId))?.createdAt).toBe('2026-03-04T05:06:07.000Z');
  });

  it('makes two jobs of the same name uploaded twice', async () => {
    const key = 'inbox/again.jsonl';
    const one = await putInput(aws, key, FILE);
    const first = await registerJob(objectCreated({ bucket: aws.bucket, key, etag: one.etag, sequencer: '10' }), deps());
    const two = await putInput(aws, key, jsonl([request('c')]));
    const second = await registerJob(objectCreated({ bucket: aws.bucket, key, etag: two.etag, sequencer: '11' }), deps());
    // The same bytes uploaded once more: same ETag, a new sequencer.
    await putInput(aws, key, jsonl([request('c')]));
    const third = await registerJob(objectCreated({ bucket: aws.bucket, key, etag: two.etag, sequencer: '12' }), deps());

    expect(new Set([first.jobId, second.jobId, third.jobId]).size).toBe(3);
    expect([first.duplicate, second.duplicate, third.duplicate]).toEqual([false, false, false]);
    expect((await jobItem(second.jobId))?.etag).toBe(two.etag);
  });

  it('takes a version id over the sequencer as the upload identity', async () => {
    const { etag } = await putInput(aws, 'inbox/versioned.jsonl', FILE);
    const a = await registerJob(objectCreated({ bucket: aws.bucket, key: 'inbox/versioned.jsonl', etag, versionId: 'v1', sequencer: '20' }), deps());
    const b = await registerJob(objectCreated({ bucket: aws.bucket, key: 'inbox/versioned.jsonl', etag, versionId: 'v1', sequencer: '21' }), deps());

    expect(b).toEqual({ jobId: a.jobId, duplicate: true });
    expect(a.jobId).toBe(jobIdFor({ bucket: aws.bucket, key: 'inbox/versioned.jsonl', token: 'v1' }));
    expect((await jobItem(a.jobId))?.versionId).toBe('v1');
  });

  it('registers a schedule sweep event by its ETag, once', async () => {
    const { etag } = await putInput(aws, 'scheduled/daily.jsonl', FILE);
    const event = objectCreated({ bucket: aws.bucket, key: 'scheduled/daily.jsonl', etag, source: 'batchline.schedule' });

    const first = await registerJob(event, deps());
    const second = await registerJob(event, deps());

    expect(first).toEqual({ jobId: jobIdFor({ bucket: aws.bucket, key: 'scheduled/daily.jsonl', token: etag }), duplicate: false });
    expect(second).toEqual({ jobId: first.jobId, duplicate: true });
  });

  it('registers a direct input, taking the ETag from the object and the requested mode', async () => {
    const { etag } = await putInput(aws, 'inbox/direct.jsonl', FILE);

    const { jobId } = await registerJob({ bucket: aws.bucket, key: 'inbox/direct.jsonl', mode: 'lenient' }, deps());

    const item = await jobItem(jobId);
    expect(jobId).toBe(jobIdFor({ bucket: aws.bucket, key: 'inbox/direct.jsonl', token: etag }));
    expect(item).toMatchObject({ etag, sourceToken: etag, validationMode: 'lenient', key: 'inbox/direct.jsonl' });
  });

  it('takes the mode from the object metadata first, then the input, then the configured default', async () => {
    await putInput(aws, 'inbox/meta.jsonl', FILE, { 'batchline-mode': 'Lenient' });
    await putInput(aws, 'inbox/plain.jsonl', FILE);

    const fromMetadata = await registerJob({ bucket: aws.bucket, key: 'inbox/meta.jsonl', mode: 'strict' }, deps());
    const fromDefault = await registerJob({ bucket: aws.bucket, key: 'inbox/plain.jsonl' }, deps({ validationMode: 'lenient' }));

    expect((await jobItem(fromMetadata.jobId))?.validationMode).toBe('lenient');
    expect((await jobItem(fromDefault.jobId))?.validationMode).toBe('lenient');
  });

  it('refuses a mode other than strict or lenient', async () => {
    await putInput(aws, 'inbox/loose.jsonl', FILE, { 'batchline-mode': 'loose' });
    await putInput(aws, 'inbox/loose2.jsonl', FILE);

    await expect(registerJob({ bucket: aws.bucket, key: 'inbox/loose.jsonl' }, deps())).rejects.toThrow(InvalidMode);
    await expect(registerJob({ bucket: aws.bucket, key: 'inbox/loose2.jsonl', mode: 'sloppy' as never }, deps())).rejects.toMatchObject({
      name: 'InvalidMode',
      message: 'the requested mode is "sloppy"; use strict or lenient',
    });
  });

  it('fails with SourceNotFound when the object does not exist', async () => {
    const event = objectCreated({ bucket: aws.bucket, key: 'inbox/gone.jsonl', etag: 'abc', sequencer: '30' });

    await expect(registerJob(event, deps())).rejects.toMatchObject({
      name: 'SourceNotFound',
      message: `s3://${aws.bucket}/inbox/gone.jsonl does not exist`,
    });
    await expect(registerJob(event, deps())).rejects.toBeInstanceOf(SourceNotFound);
  });

  it('fails with SourceChanged when an unversioned object was overwritten after its event', async () => {
    const one = await putInput(aws, 'inbox/raced.jsonl', FILE);
    await putInput(aws, 'inbox/raced.jsonl', jsonl([request('z')]));

    await expect(registerJob(objectCreated({ bucket: aws.bucket, key: 'inbox/raced.jsonl', etag: one.etag, sequencer: '40' }), deps())).rejects.toBeInstanceOf(
      SourceChanged,
    );
  });

  it('sets no ttl when records are kept forever', async () => {
    await putInput(aws, 'inbox/forever.jsonl', FILE);
    const { jobId } = await registerJob({ bucket: aws.bucket, key: 'inbox/forever.jsonl' }, deps({ rowTtlDays: 0 }));
    expect((await jobItem(jobId))?.ttl).toBeUndefined();
  });

  it('carries on when its own execution retries it after the write landed', async () => {
    const { etag } = await putInput(aws, 'inbox/retried.jsonl', FILE);
    const event = { ...objectCreated({ bucket: aws.bucket, key: 'inbox/retried.jsonl', etag, sequencer: '50' }), executionArn: 'arn:exec:1' };

    const first = await registerJob(event, deps());
    const retried = await registerJob(event, deps());
    const other = await registerJob({ ...event, executionArn: 'arn:exec:2' }, deps());

    expect(retried).toEqual({ jobId: first.jobId, duplicate: false });
    expect(other).toEqual({ jobId: first.jobId, duplicate: true });
  });

  it('reads the event the state machine wraps with its execution id', async () => {
    const { etag } = await putInput(aws, 'inbox/wrapped.jsonl', FILE);
    const event = objectCreated({ bucket: aws.bucket, key: 'inbox/wrapped.jsonl', etag, sequencer: '60' });

    const first = await registerJob({ event, executionArn: 'arn:exec:w1' }, deps());
    const retried = await registerJob({ event, executionArn: 'arn:exec:w1' }, deps());
    const duplicate = await registerJob({ event, executionArn: 'arn:exec:w2' }, deps());

    expect(first.duplicate).toBe(false);
    expect((await jobItem(first.jobId))?.key).toBe('inbox/wrapped.jsonl');
    expect(retried).toEqual({ jobId: first.jobId, duplicate: false });
    expect(duplicate).toEqual({ jobId: first.jobId, duplicate: true });
  });

  it.each([
    ['another source', { ...objectCreated({ bucket: 'b', key: 'k', etag: 'e' }), source: 'aws.ec2' }],
    ['another detail-type', { ...objectCreated({ bucket: 'b', key: 'k', etag: 'e' }), 'detail-type': 'Object Deleted' }],
    ['no key', { bucket: 'b' }],
    ['not an object', 'inbox/x.jsonl'],
  ])('refuses %s as an InvalidEvent', async (_, event) => {
    await expect(registerJob(event, deps())).rejects.toBeInstanceOf(InvalidEvent);
  });
});

describe('the RegisterJob handler', () => {
  const aws = useLocalAws({ bucket: 'batchline-handler' });

  it('registers with clients and settings from the environment', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, aws.env);
    try {
      const { etag } = await putInput(aws, 'inbox/handler.jsonl', FILE);
      const { handler } = await import('../../functions/register-job');

      const result = await handler({ bucket: aws.bucket, key: 'inbox/handler.jsonl' });

      expect(result).toEqual({ jobId: jobIdFor({ bucket: aws.bucket, key: 'inbox/handler.jsonl', token: etag }), duplicate: false });
    } finally {
      process.env = saved;
    }
  });
});
