import { describe, expect, it } from 'vitest';
import { parseRegisterEvent } from '../../shared/jobs/events';
import {
  eventRuleTargets,
  executionStatusEvent,
  matchesPattern,
  objectCreatedEvent,
  putEventAsBusEvent,
  schedulesOf,
  UnsupportedPattern,
} from '../../local/events';
import { LocalNames } from '../../local/template';
import { fixtureTemplate } from './fixtures/template';

const record = (key: string, eventName = 'ObjectCreated:Put') => ({
  eventName,
  s3: { bucket: { name: 'databuckete3889a50' }, object: { key, size: 120, eTag: 'd41d8cd98f00b204e9800998ecf8427e', sequencer: '19AB12CD34' } },
});

/** The inbox rule as infra/triggers.ts synthesizes it. */
const inboxPattern = {
  source: ['aws.s3'],
  'detail-type': ['Object Created'],
  detail: { bucket: { name: ['databuckete3889a50'] }, object: { key: [{ prefix: 'inbox/' }] } },
};

describe('the EventBridge event for a created object', () => {
  it('has the shape S3 sends to EventBridge', () => {
    const event = objectCreatedEvent(record('inbox/tickets.jsonl'), new Date('2026-03-04T05:06:07.890Z'));
    expect(event).toEqual({
      version: '0',
      id: expect.any(String),
      'detail-type': 'Object Created',
      source: 'aws.s3',
      account: '000000000000',
      time: '2026-03-04T05:06:07Z',
      region: 'us-east-1',
      resources: ['arn:aws:s3:::databuckete3889a50'],
      detail: {
        version: '0',
        bucket: { name: 'databuckete3889a50' },
        object: { key: 'inbox/tickets.jsonl', size: 120, etag: 'd41d8cd98f00b204e9800998ecf8427e', sequencer: '19AB12CD34' },
        'request-id': expect.stringMatching(/^[0-9A-F]{16}$/),
        requester: '000000000000',
        'source-ip-address': '127.0.0.1',
        reason: 'PutObject',
      },
    });
  });

  it.each(['inbox/my data.jsonl', 'inbox/plus+1.jsonl', 'inbox/ü.jsonl', 'inbox/100%.jsonl', 'inbox/a#b?&=.jsonl', 'inbox/my+data%20v2.jsonl'])(
    'carries %s as stored, as S3 sends keys to EventBridge, and Register reads it back unchanged',
    (key) => {
      const event = objectCreatedEvent(record(key));
      expect(event.detail.object.key).toBe(key);
      expect(parseRegisterEvent(event).key).toBe(key);
      expect(matchesPattern(inboxPattern, event)).toBe(true);
    },
  );

  it('gives a multipart upload the reason CompleteMultipartUpload', () => {
    expect(objectCreatedEvent(record('inbox/big.jsonl', 'ObjectCreated:Post')).detail.reason).toBe('CompleteMultipartUpload');
  });

  it('matches the inbox rule only for objects under inbox/ of the bucket', () => {
    expect(matchesPattern(inboxPattern, objectCreatedEvent(record('inbox/a.jsonl')))).toBe(true);
    expect(matchesPattern(inboxPattern, objectCreatedEvent(record('results/job/summary.json')))).toBe(false);
    const otherBucket = objectCreatedEvent(record('inbox/a.jsonl'));
    otherBucket.detail.bucket.name = 'other';
    expect(matchesPattern(inboxPattern, otherBucket)).toBe(false);
  });
});

describe('event pattern operators', () => {
  const event = { source: 'x', detail: { key: 'inbox/a.JSONL', size: 10, tags: ['a', 'b'] } };
  it.each([
    [{ detail: { key: [{ suffix: '.JSONL' }] } }, true],
    [{ detail: { key: [{ suffix: { 'equals-ignore-case': '.jsonl' } }] } }, true],
    [{ detail: { key: [{ 'anything-but': { prefix: 'inbox/' } }] } }, false],
    [{ detail: { key: [{ wildcard: 'inbox/*.JSONL' }] } }, true],
    [{ detail: { size: [{ numeric: ['>', 0, '<=', 10] }] } }, true],
    [{ detail: { size: [{ numeric: ['>', 10] }] } }, false],
    [{ detail: { tags: ['b'] } }, true],
    [{ detail: { missing: [{ exists: false }] } }, true],
    [{ detail: { key: [{ exists: true }] } }, true],
    [{ source: [{ 'anything-but': ['y', 'z'] }] }, true],
  ])('%j matches: %s', (pattern, expected) => {
    expect(matchesPattern(pattern, event)).toBe(expected);
  });

  it('refuses an operator it does not know', () => {
    expect(() => matchesPattern({ source: [{ cidr: '10.0.0.0/24' }] }, event)).toThrow(UnsupportedPattern);
  });
});

describe("the stack's rules and schedules", () => {
  const template = fixtureTemplate({
    definition: { StartAt: 'A', States: { A: { Type: 'Succeed' } } },
    functions: { SweepFunction: { entry: 'functions/sweep-prefix.ts' } },
    resources: {
      InboxRule: {
        Type: 'AWS::Events::Rule',
        Properties: {
          State: 'ENABLED',
          EventPattern: { ...inboxPattern, detail: { bucket: { name: [{ Ref: 'DataBucketE3889A50' }] }, object: { key: [{ prefix: 'inbox/' }] } } },
          Targets: [{ Arn: { Ref: 'JobStateMachine' }, Id: 'Target0', DeadLetterConfig: { Arn: { 'Fn::GetAtt': ['Queue', 'Arn'] } } }],
        },
      },
      Nightly: {
        Type: 'AWS::Scheduler::Schedule',
        Properties: {
          ScheduleExpression: 'cron(0 23 * * ? *)',
          State: 'ENABLED',
          Target: { Arn: { 'Fn::GetAtt': ['SweepFunction', 'Arn'] }, Input: '{"schedule":"nightly","prefix":"scheduled/nightly/"}' },
        },
      },
      Queue: { Type: 'AWS::SQS::Queue', Properties: {} },
    },
  });
  const names = new LocalNames(template);

  it('finds the rule that starts the state machine, with the event itself as input', () => {
    const [rule, ...others] = eventRuleTargets(template, names);
    expect(others).toEqual([]);
    expect(rule).toMatchObject({ rule: 'InboxRule', eventBus: 'default', targetArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:JobStateMachine' });
    const event = objectCreatedEvent(record('inbox/a.jsonl'));
    expect(matchesPattern(rule!.pattern, event)).toBe(true);
    expect(rule!.input(event)).toBe(event);
  });

  it('finds the schedule, the function it invokes and its input', () => {
    expect(schedulesOf(template, names)).toEqual([
      {
        name: 'Nightly',
        expression: 'cron(0 23 * * ? *)',
        targetArn: 'arn:aws:lambda:us-east-1:000000000000:function:SweepFunction',
        input: { schedule: 'nightly', prefix: 'scheduled/nightly/' },
      },
    ]);
  });
});

describe('events other services put on the bus', () => {
  it('a Step Functions execution that ends becomes a Status Change event a rule can match on status', () => {
    const event = executionStatusEvent({
      executionArn: 'arn:aws:states:us-east-1:000000000000:execution:Jobs:run-1',
      stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:Jobs',
      name: 'run-1',
      status: 'ABORTED',
      startDate: new Date('2026-01-01T00:00:00.000Z'),
      stopDate: new Date('2026-01-01T00:05:00.000Z'),
      input: '{"a":1}',
    });
    expect(event).toMatchObject({
      source: 'aws.states',
      'detail-type': 'Step Functions Execution Status Change',
      time: '2026-01-01T00:05:00Z',
      resources: ['arn:aws:states:us-east-1:000000000000:execution:Jobs:run-1'],
      detail: { name: 'run-1', status: 'ABORTED', startDate: 1767225600000, stopDate: 1767225900000, input: '{"a":1}', output: null, error: null },
    });
    const pattern = {
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { status: ['FAILED', 'TIMED_OUT', 'ABORTED'] },
    };
    expect(matchesPattern(pattern, event)).toBe(true);
  });

  it('a PutEvents entry keeps its id, source, detail type and detail', () => {
    const event = putEventAsBusEvent({
      eventId: 'e-1',
      source: 'batchline',
      detailType: 'Job Ended',
      detail: { jobId: 'j' },
      resources: [],
      time: '2026-01-01T00:00:00.123Z',
    });
    expect(event).toEqual({
      version: '0',
      id: 'e-1',
      'detail-type': 'Job Ended',
      source: 'batchline',
      account: '000000000000',
      time: '2026-01-01T00:00:00Z',
      region: 'us-east-1',
      resources: [],
      detail: { jobId: 'j' },
    });
  });
});
