import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { jsonl, pipelineConfig, putInput, request, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { sfnStarter, sweepExecutionName, sweepPrefix, type StartExecution } from '../../shared/jobs/sweep';
import { registerJob } from '../../shared/jobs/register-job';
import { InvalidEvent } from '../../shared/jobs/events';
import { sha256Hex } from '../../shared/jobs/job-id';

const STATE_MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:batchline-job';
const NOW = new Date('2026-03-04T05:06:07.000Z');
const FILE = jsonl([request('a')]);

describe('sweepPrefix', () => {
  const aws = useLocalAws();
  let sfn: RecordingEndpoint;
  const etags = new Map<string, string>();

  beforeAll(async () => {
    sfn = await startRecordingEndpoint();
    for (const key of [
      'daily/a.jsonl',
      'daily/b c+d.jsonl',
      'daily/sub/',
      'daily/sub/e.jsonl',
      'other/x.jsonl',
      'work/j/chunk.jsonl',
      'results/j/results.jsonl',
    ]) {
      etags.set(key, (await putInput(aws, key, key.endsWith('/') ? '' : FILE)).etag);
    }
  });
  afterAll(async () => {
    await sfn?.stop();
  });
  beforeEach(() => {
    sfn.calls.length = 0;
    sfn.executions.clear();
  });

  const deps = (overrides: { startExecution?: StartExecution; pageSize?: number } = {}) => ({
    s3: aws.s3,
    bucket: aws.bucket,
    startExecution: overrides.startExecution ?? sfnStarter(sfn.sfn, STATE_MACHINE),
    now: () => NOW.getTime(),
    pageSize: overrides.pageSize,
  });
  const started = () =>
    sfn.calls.map((call) => call.body as { name: string; input: string; stateMachineArn: string }).sort((a, b) => a.name.localeCompare(b.name));

  it('starts one execution per object under the prefix, skipping folder markers', async () => {
    const result = await sweepPrefix({ schedule: 'nightly', prefix: 'daily/' }, deps());

    expect(result).toEqual({ schedule: 'nightly', prefix: 'daily/', started: 3, alreadyStarted: 0 });
    const keys = ['daily/a.jsonl', 'daily/b c+d.jsonl', 'daily/sub/e.jsonl'];
    const expected = keys.map((key) => ({ name: sweepExecutionName(aws.bucket, key, etags.get(key)!), key }));
    expect(started().map((call) => call.name)).toEqual(expected.map((e) => e.name).sort());
    expect(started().every((call) => call.stateMachineArn === STATE_MACHINE)).toBe(true);
  });

  it('names executions sched- and the hex sha256 of bucket, key and ETag, within 80 characters', () => {
    const name = sweepExecutionName('bucket', 'daily/a.jsonl', '"0123abcd"');

    expect(name).toBe(`sched-${sha256Hex(['bucket', 'daily/a.jsonl', '0123abcd'])}`);
    expect(name).toMatch(/^sched-[0-9a-f]{64}$/);
    expect(name.length).toBeLessThanOrEqual(80);
  });

  it('gives each execution the S3 event shape with source batchline.schedule, which Register accepts', async () => {
    await sweepPrefix({ schedule: 'nightly', prefix: 'daily/b' }, deps());

    const [call] = started();
    const etag = etags.get('daily/b c+d.jsonl')!;
    expect(JSON.parse(call!.input)).toEqual({
      version: '0',
      'detail-type': 'Object Created',
      source: 'batchline.schedule',
      time: NOW.toISOString(),
      resources: [`arn:aws:s3:::${aws.bucket}`],
      detail: {
        version: '0',
        bucket: { name: aws.bucket },
        object: { key: 'daily/b c+d.jsonl', size: FILE.length, etag },
        reason: 'Schedule',
        schedule: 'nightly',
      },
    });
    const registered = await registerJob(JSON.parse(call!.input), { s3: aws.s3, dynamo: aws.dynamo, config: pipelineConfig(aws) });
    expect(registered).toMatchObject({ duplicate: false, jobId: expect.stringMatching(/^b-c-d-[0-9a-f]{16}$/) });
  });

  it('starts nothing new when the same listing is swept again', async () => {
    const first = await sweepPrefix({ schedule: 'nightly', prefix: 'daily/' }, deps());
    const namesFirst = started().map((call) => call.name);
    sfn.calls.length = 0;

    const second = await sweepPrefix({ schedule: 'nightly', prefix: 'daily/' }, deps());

    expect(first).toMatchObject({ started: 3, alreadyStarted: 0 });
    expect(second).toMatchObject({ started: 0, alreadyStarted: 3 });
    expect(started().map((call) => call.name)).toEqual(namesFirst);
  });

  it('starts a changed object again under a new name', async () => {
    await sweepPrefix({ schedule: 'nightly', prefix: 'other/' }, deps());
    const before = started()[0]!.name;
    await putInput(aws, 'other/x.jsonl', jsonl([request('changed')]));

    const result = await sweepPrefix({ schedule: 'nightly', prefix: 'other/' }, deps());

    expect(result).toMatchObject({ started: 1, alreadyStarted: 0 });
    expect((sfn.calls[1]!.body as { name: string }).name).not.toBe(before);
  });

  it('follows every listing page', async () => {
    const names: string[] = [];
    const record: StartExecution = async (name) => {
      names.push(name);
      return 'started';
    };

    const result = await sweepPrefix({ schedule: 'nightly', prefix: 'daily/' }, deps({ startExecution: record, pageSize: 1 }));

    expect(result.started).toBe(3);
    expect(new Set(names).size).toBe(3);
  });

  it('never takes the pipeline own work and results files for inputs', async () => {
    const result = await sweepPrefix({ schedule: 'everything', prefix: '' }, deps());

    expect(result).toMatchObject({ started: 4, alreadyStarted: 0 });
    expect(
      started()
        .map((call) => JSON.parse(call.input).detail.object.key)
        .sort(),
    ).toEqual(['daily/a.jsonl', 'daily/b c+d.jsonl', 'daily/sub/e.jsonl', 'other/x.jsonl'].sort());
  });

  it('refuses an input without a schedule name', async () => {
    await expect(sweepPrefix({ prefix: 'daily/' }, deps())).rejects.toBeInstanceOf(InvalidEvent);
  });
});
