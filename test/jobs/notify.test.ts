import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { AnnounceFailed, announceJobEnded, messageFor, subjectFor, type JobEndedDetail } from '../../shared/notify';

const TOPIC = 'arn:aws:sns:us-east-1:123456789012:batchline-alerts';

describe('announceJobEnded', () => {
  let aws: RecordingEndpoint;
  beforeAll(async () => {
    aws = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await aws?.stop();
  });
  beforeEach(() => {
    aws.calls.length = 0;
  });

  const succeeded: JobEndedDetail = {
    jobId: 'reviews-0123456789abcdef',
    status: 'succeeded',
    bucket: 'inputs',
    key: 'inbox/reviews.jsonl',
    counts: { succeeded: 8, errored: 1, expired: 0, canceled: 0, invalid: 1 },
    costUsd: 0.0123,
    resultsPrefix: 'results/reviews-0123456789abcdef/',
  };
  const failed: JobEndedDetail = {
    jobId: 'reviews-0123456789abcdef',
    status: 'failed',
    bucket: 'inputs',
    key: 'inbox/reviews.jsonl',
    resultsPrefix: 'results/reviews-0123456789abcdef/',
    failure: { error: 'ApiAuthError', cause: 'ApiAuthError: 401 authentication_error: invalid x-api-key' },
  };

  it('puts a Job Ended event on the configured bus, and tells no topic of a success', async () => {
    await announceJobEnded(succeeded, aws, { eventBus: 'batchline-bus', topicArn: TOPIC });

    expect(aws.calls).toEqual([
      {
        action: 'AWSEvents.PutEvents',
        body: {
          Entries: [{ Source: 'batchline', DetailType: 'Job Ended', Detail: JSON.stringify(succeeded), EventBusName: 'batchline-bus' }],
        },
      },
    ]);
  });

  it('also publishes a failed job to the topic, with a short subject and a readable message', async () => {
    await announceJobEnded(failed, aws, { eventBus: 'default', topicArn: TOPIC });

    const publish = aws.calls.find((call) => call.action === 'Publish');
    expect(aws.calls.map((call) => call.action).sort()).toEqual(['AWSEvents.PutEvents', 'Publish']);
    expect(publish?.body).toMatchObject({
      TopicArn: TOPIC,
      Subject: 'batchline job failed: reviews-0123456789abcdef',
      Message: messageFor(failed),
    });
    expect(messageFor(failed)).toBe(
      [
        'batchline job reviews-0123456789abcdef failed.',
        'Input: s3://inputs/inbox/reviews.jsonl',
        'Error: ApiAuthError',
        'Cause: ApiAuthError: 401 authentication_error: invalid x-api-key',
        'Outputs: results/reviews-0123456789abcdef/ in the batchline bucket',
        '',
        JSON.stringify(failed, null, 2),
      ].join('\n'),
    );
  });

  it('publishes a rejected job too, but nothing to a topic that is not configured', async () => {
    await announceJobEnded({ ...failed, status: 'rejected', failure: undefined }, aws, { eventBus: 'default', topicArn: TOPIC });
    const rejectedCalls = aws.calls.splice(0).map((call) => call.action);
    await announceJobEnded(failed, aws, { eventBus: 'default', topicArn: undefined });

    expect(rejectedCalls.sort()).toEqual(['AWSEvents.PutEvents', 'Publish']);
    expect(aws.calls.map((call) => call.action)).toEqual(['AWSEvents.PutEvents']);
  });

  it('throws AnnounceFailed when EventBridge refuses the entry, after still telling the topic', async () => {
    aws.failNextPutEvents('InternalFailure');

    const announcing = announceJobEnded(failed, aws, { eventBus: 'default', topicArn: TOPIC });

    await expect(announcing).rejects.toBeInstanceOf(AnnounceFailed);
    await expect(announcing).rejects.toThrow(/InternalFailure/);
    expect(aws.calls.filter((call) => call.action === 'Publish')).toHaveLength(1);
  });

  it('keeps subjects to 100 printable ASCII characters', () => {
    const unregistered: JobEndedDetail = { status: 'failed', bucket: 'inputs', key: `inbox/${'é'.repeat(120)}.jsonl` };
    const subject = subjectFor(unregistered);

    expect(subject).toHaveLength(100);
    expect(subject).toMatch(/^batchline job failed: s3:\/\/inputs\/inbox\/\?+\.\.\.$/);
    expect(subjectFor({ status: 'failed' })).toBe('batchline job failed: unregistered input');
  });
});
