import { describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { jsonl, objectCreated, pipelineConfig, putInput, request } from '../support/pipeline';
import { getItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk, type JobItem } from '../../shared/store/items';
import { registerJob } from '../../shared/jobs/register-job';
import { DEADLINE_METADATA, deadlineCancelDue, deadlineOf, InvalidDeadline, parseDuration, resolveDeadline } from '../../shared/jobs/deadline';

const NOW = Date.parse('2026-12-07T12:00:00.000Z');

describe('parsing a deadline', () => {
  it('reads durations in days, hours, minutes and seconds, combined', () => {
    expect(parseDuration('6h')).toBe(21_600);
    expect(parseDuration('90m')).toBe(5400);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration(' 2d ')).toBe(172_800);
    expect(parseDuration('45s')).toBe(45);
    expect(parseDuration('1.5h')).toBe(5400);
    expect(parseDuration('6')).toBeUndefined();
    expect(parseDuration('h6')).toBeUndefined();
    expect(parseDuration('6 hours')).toBeUndefined();
  });

  it('resolves a duration from now and an ISO time as it says, zone included', () => {
    expect(resolveDeadline('90m', NOW, '--deadline')).toBe(NOW + 5_400_000);
    expect(resolveDeadline('2026-12-07T18:00:00Z', NOW, '--deadline')).toBe(Date.parse('2026-12-07T18:00:00Z'));
    expect(resolveDeadline('2026-12-07T18:00:00+02:00', NOW, '--deadline')).toBe(Date.parse('2026-12-07T16:00:00Z'));
    expect(resolveDeadline('2026-12-07T18:00:00.250Z', NOW, '--deadline')).toBe(Date.parse('2026-12-07T18:00:00.250Z'));
  });

  it('refuses what is neither, a time without a zone, one that has passed, a zero duration and one months away, naming where it came from', () => {
    const hint = 'use an ISO time with its zone (2026-12-08T06:00:00Z) or a duration (6h, 90m, 1h30m)';
    expect(() => resolveDeadline('tomorrow', NOW, '--deadline')).toThrow(new InvalidDeadline(`--deadline is "tomorrow"; ${hint}`));
    expect(() => resolveDeadline('2026-12-07T18:00:00', NOW, 'x')).toThrow(new InvalidDeadline(`x is "2026-12-07T18:00:00"; ${hint}`));
    expect(() => resolveDeadline('2026-12-07T11:00:00Z', NOW, '--deadline')).toThrow(
      new InvalidDeadline('--deadline is "2026-12-07T11:00:00Z", which has passed already (now 2026-12-07T12:00:00.000Z)'),
    );
    expect(() => resolveDeadline('0m', NOW, '--deadline')).toThrow(new InvalidDeadline(`--deadline is "0m": a duration must be more than 0; ${hint}`));
    expect(() => resolveDeadline('40d', NOW, '--deadline')).toThrow(
      new InvalidDeadline('--deadline is "40d", more than 30 days away; a batch ends within 24 hours anyway'),
    );
  });

  it('a batch is canceled from deadline − margin on, never for a job the user asked to cancel', () => {
    const job = { deadline: { at: '2026-12-07T13:00:00.000Z', marginSeconds: 600 } };
    expect(deadlineOf(job)).toEqual({ at: Date.parse('2026-12-07T13:00:00Z'), cancelAt: Date.parse('2026-12-07T12:50:00Z') });
    expect(deadlineCancelDue(job, Date.parse('2026-12-07T12:49:59Z'))).toBe(false);
    expect(deadlineCancelDue(job, Date.parse('2026-12-07T12:50:00Z'))).toBe(true);
    expect(deadlineCancelDue({ ...job, cancelRequested: true }, Date.parse('2026-12-07T12:55:00Z'))).toBe(false);
    expect(deadlineCancelDue({}, NOW)).toBe(false);
  });
});

describe('registering a file with a deadline', () => {
  const aws = useLocalAws();
  const register = async (key: string, metadata: Record<string, string>, margin?: number) => {
    const { etag } = await putInput(aws, key, jsonl([request('a')]), metadata);
    const config = pipelineConfig(aws, margin === undefined ? {} : { deadlineMarginSeconds: margin });
    return registerJob(objectCreated({ bucket: aws.bucket, key, etag, sequencer: key }), { s3: aws.s3, dynamo: aws.dynamo, config, now: () => NOW });
  };

  it('keeps the deadline as an instant, with the stack margin of the time', async () => {
    const { jobId } = await register('inbox/soon.jsonl', { [DEADLINE_METADATA]: '2h' }, 900);
    const job = await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK });
    expect(job?.deadline).toEqual({ at: '2026-12-07T14:00:00.000Z', marginSeconds: 900 });
  });

  it("refuses a deadline whose cancel time (deadline − the stack's margin) is not after now, naming the margin", async () => {
    await expect(register('inbox/within-margin.jsonl', { [DEADLINE_METADATA]: '20m' }, 1800)).rejects.toThrow(
      new InvalidDeadline(
        `the object's batchline-deadline metadata is "20m", within the stack's deadline margin of 1800 s (deadlineMarginSeconds) from now ` +
          '(2026-12-07T12:00:00.000Z): its batch would be canceled at once; give a deadline more than 1800 s away, or lower deadlineMarginSeconds',
      ),
    );
    await expect(register('inbox/at-margin.jsonl', { [DEADLINE_METADATA]: '30m' }, 1800)).rejects.toThrow(InvalidDeadline);
    const { jobId } = await register('inbox/past-margin.jsonl', { [DEADLINE_METADATA]: '31m' }, 1800);
    const job = await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK });
    expect(job?.deadline).toEqual({ at: '2026-12-07T12:31:00.000Z', marginSeconds: 1800 });
  });

  it('refuses a deadline that is not one, naming the metadata', async () => {
    await expect(register('inbox/bad.jsonl', { [DEADLINE_METADATA]: 'soon' })).rejects.toThrow(
      new InvalidDeadline(
        `the object's batchline-deadline metadata is "soon"; use an ISO time with its zone (2026-12-08T06:00:00Z) or a duration (6h, 90m, 1h30m)`,
      ),
    );
  });
});
