/**
 * Telling the world a job ended: always a `Job Ended` event on the configured EventBridge bus (for
 * whoever listens), and for a failed or rejected job a message to the SNS topic, when one is set.
 */
import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { NotifyConfig } from './config';
import type { JobStatus, RowCounts } from './store/items';
import { describeError } from './observability';

export const EVENT_SOURCE = 'batchline';
export const JOB_ENDED = 'Job Ended';

export interface JobEndedDetail {
  /** Absent only when the job could not even be registered (then bucket and key say what was known). */
  jobId?: string;
  status: JobStatus;
  bucket?: string;
  key?: string;
  counts?: RowCounts;
  costUsd?: number;
  /** Where the job's outputs are (`results/<jobId>/`). */
  resultsPrefix?: string;
  failure?: { error: string; cause: string };
}

export interface NotifyClients {
  events: EventBridgeClient;
  sns: SNSClient;
}

/** EventBridge refused the event (FailedEntryCount > 0), or the topic could not be told. */
export class AnnounceFailed extends Error {
  override readonly name = 'AnnounceFailed';
}

/** SNS subjects: at most 100 printable ASCII characters, no line breaks. */
const SUBJECT_MAX = 100;

export async function announceJobEnded(detail: JobEndedDetail, clients: NotifyClients, config: NotifyConfig): Promise<void> {
  const tellTopic = (detail.status === 'failed' || detail.status === 'rejected') && config.topicArn !== undefined;
  // Both are attempted even if one fails: a listener on either should not miss the job for the other.
  const [event, topic] = await Promise.allSettled([
    putEvent(detail, clients.events, config.eventBus),
    tellTopic ? publish(detail, clients.sns, config.topicArn!) : Promise.resolve(),
  ]);
  const failed = [event, topic].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) {
    const reasons = failed.map((r) => describeError(r.reason));
    throw new AnnounceFailed(`announcing job ${detail.jobId ?? '(unregistered)'} failed: ${reasons.join('; ')}`, { cause: failed[0]!.reason });
  }
}

async function putEvent(detail: JobEndedDetail, events: EventBridgeClient, eventBus: string): Promise<void> {
  const response = await events.send(
    new PutEventsCommand({
      Entries: [{ Source: EVENT_SOURCE, DetailType: JOB_ENDED, Detail: JSON.stringify(detail), EventBusName: eventBus }],
    }),
  );
  if ((response.FailedEntryCount ?? 0) > 0) {
    const entry = response.Entries?.find((e) => e.ErrorCode) ?? response.Entries?.[0];
    throw new AnnounceFailed(`EventBridge refused the ${JOB_ENDED} event: ${entry?.ErrorCode ?? 'unknown'} ${entry?.ErrorMessage ?? ''}`.trim());
  }
}

async function publish(detail: JobEndedDetail, sns: SNSClient, topicArn: string): Promise<void> {
  await sns.send(new PublishCommand({ TopicArn: topicArn, Subject: subjectFor(detail), Message: messageFor(detail) }));
}

export function subjectFor(detail: JobEndedDetail): string {
  const name = detail.jobId ?? (detail.key ? `s3://${detail.bucket ?? '?'}/${detail.key}` : 'unregistered input');
  const subject = `batchline job ${detail.status}: ${name}`.replace(/[^\x20-\x7e]/g, '?');
  return subject.length <= SUBJECT_MAX ? subject : `${subject.slice(0, SUBJECT_MAX - 3)}...`;
}

/** A few lines a person reads in a mail client, then the event's JSON for tools. */
export function messageFor(detail: JobEndedDetail): string {
  const lines = [`batchline job ${detail.jobId ?? '(not registered)'} ${detail.status}.`];
  if (detail.key) lines.push(`Input: s3://${detail.bucket ?? '?'}/${detail.key}`);
  if (detail.failure) {
    lines.push(`Error: ${detail.failure.error}`);
    lines.push(`Cause: ${detail.failure.cause}`);
  }
  if (detail.counts) {
    const c = detail.counts;
    lines.push(`Rows: ${c.succeeded} succeeded, ${c.errored} errored, ${c.expired} expired, ${c.canceled} canceled, ${c.invalid} invalid`);
  }
  if (detail.status === 'rejected') lines.push('Nothing was submitted: the input has invalid lines (strict mode).');
  // The outputs live in the pipeline's bucket, which need not be the input's.
  if (detail.resultsPrefix) lines.push(`Outputs: ${detail.resultsPrefix} in the batchline bucket`);
  lines.push('', JSON.stringify(detail, null, 2));
  return lines.join('\n');
}
