import { describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { jsonl, objectCreated, pipelineConfig, putInput, request } from '../support/pipeline';
import { getItem, putItem } from '../../shared/store/dynamo';
import { JOB_SK, JOBS_GSI_PK, jobPk, type JobItem } from '../../shared/store/items';
import { InvalidBudget, MAX_COST_METADATA, registerJob } from '../../shared/jobs/register-job';
import { oldRowState, paramsHash, parseOnly, REUSE_METADATA, REUSE_ONLY_METADATA, ReuseNotPossible, reusableState } from '../../shared/jobs/reuse';
import { rerunKey } from '../../shared/jobs/rerun';

describe('which rows of a finished job are reused', () => {
  it('a success always; another row only when --only is given and names neither its status nor its error type', () => {
    expect(reusableState({ status: 'succeeded' }, undefined)).toBe(true);
    expect(reusableState({ status: 'expired' }, undefined)).toBe(false);
    expect(reusableState({ status: 'errored', errorType: 'overloaded_error' }, undefined)).toBe(false);
    expect(reusableState({ status: 'expired' }, ['expired'])).toBe(false);
    expect(reusableState({ status: 'errored', errorType: 'overloaded_error' }, ['expired'])).toBe(true);
    expect(reusableState({ status: 'errored', errorType: 'overloaded_error' }, ['overloaded_error'])).toBe(false);
    expect(reusableState({ status: 'errored', errorType: 'invalid_request_error' }, ['errored'])).toBe(false);
  });

  it('--only is a comma-separated list of statuses or error types, never succeeded', () => {
    expect(parseOnly(' expired, api_error ,expired', '--only')).toEqual(['expired', 'api_error']);
    expect(() => parseOnly('expired,succeeded', '--only')).toThrow(new ReuseNotPossible('--only names succeeded: a row that succeeded is never sent again'));
    expect(() => parseOnly(',', '--only')).toThrow('--only names no status or error type');
    expect(() => parseOnly('Expired!', '--only')).toThrow('--only: "Expired!" is not a status (succeeded, errored, expired, canceled) or an error type');
  });

  it('compares params byte for byte: the same object spelled differently is another request', () => {
    const a = Buffer.from('{"custom_id":"a","params":{"model":"m","max_tokens":5}}');
    const b = Buffer.from('{"custom_id":"b","params":{"model":"m","max_tokens":5}}');
    const c = Buffer.from('{"custom_id":"a","params":{"max_tokens":5,"model":"m"}}');
    expect(paramsHash(a)).toBe(paramsHash(b));
    expect(paramsHash(a)).not.toBe(paramsHash(c));
  });

  it("reads a results line's custom_id and status without parsing a succeeded row's message", () => {
    const succeeded = Buffer.from(
      '{"custom_id":"r-1","status":"succeeded","attempts":1,"batch_id":"b","usage":null,"cost_usd":0.1,"message":{"x":"\\"status\\":\\"errored\\""}}',
    );
    expect(oldRowState(succeeded, 'line 1')).toEqual({ customId: 'r-1', status: 'succeeded' });
    const errored = Buffer.from(
      '{"custom_id":"r-2","status":"errored","attempts":2,"batch_id":"b","error":{"type":"api_error","message":"x"},"usage":null,"cost_usd":null}',
    );
    expect(oldRowState(errored, 'line 2')).toMatchObject({ customId: 'r-2', status: 'errored', errorType: 'api_error' });
    expect(() => oldRowState(Buffer.from('{"status":"succeeded"}'), 'line 3')).toThrow('line 3 does not start with a custom_id');
  });

  it("names a rerun's copy after the input and the time, beside the inbox's other files", () => {
    expect(rerunKey('scheduled/nightly/Tickets.jsonl', new Date('2026-12-07T18:04:05.678Z'), '0a1b2c3d')).toBe(
      'inbox/Tickets.rerun-20261207T180405Z-0a1b2c3d.jsonl',
    );
    // Two reruns in the same second never share a key (nor, so, look like one upload).
    expect(rerunKey('a.jsonl', new Date(0))).not.toBe(rerunKey('a.jsonl', new Date(0)));
  });
});

describe('registering a file that reuses rows or sets a budget', () => {
  const aws = useLocalAws();
  const deps = () => ({ s3: aws.s3, dynamo: aws.dynamo, config: pipelineConfig(aws) });
  const register = async (key: string, metadata: Record<string, string>) => {
    const { etag } = await putInput(aws, key, jsonl([request('a')]), metadata);
    return registerJob(objectCreated({ bucket: aws.bucket, key, etag, sequencer: key }), deps());
  };
  const ended: JobItem = {
    pk: jobPk('old-0000000000000000'),
    sk: JOB_SK,
    type: 'job',
    jobId: 'old-0000000000000000',
    status: 'succeeded',
    bucket: 'b',
    key: 'inbox/old.jsonl',
    etag: 'e',
    sourceToken: 't',
    validationMode: 'strict',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    validRows: 1,
    endedAt: '2026-01-01T00:00:01.000Z',
    gsi1pk: JOBS_GSI_PK,
    gsi1sk: '2026-01-01T00:00:00.000Z#old-0000000000000000',
  };

  it('records the job to reuse, the statuses to send again and the budget', async () => {
    await putItem(aws.dynamo, aws.table, ended);
    const { jobId } = await register('inbox/fixed.jsonl', { [REUSE_METADATA]: ended.jobId, [REUSE_ONLY_METADATA]: 'expired', [MAX_COST_METADATA]: '$12.50' });
    const job = await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK });
    expect(job).toMatchObject({ reuse: { fromJob: ended.jobId, only: ['expired'] }, maxCostUsd: 12.5 });
  });

  it('refuses a job to reuse that does not exist or has not ended, and a budget that is not dollars', async () => {
    await expect(register('inbox/a.jsonl', { [REUSE_METADATA]: 'nope-1' })).rejects.toThrow(new ReuseNotPossible('there is no job nope-1 to reuse rows from'));
    await putItem(aws.dynamo, aws.table, { ...ended, pk: jobPk('running-1'), jobId: 'running-1', status: 'running', endedAt: undefined });
    await expect(register('inbox/b.jsonl', { [REUSE_METADATA]: 'running-1' })).rejects.toThrow('job running-1 has not ended (status running)');
    await expect(register('inbox/c.jsonl', { [MAX_COST_METADATA]: 'ten' })).rejects.toThrow(
      new InvalidBudget(`the object's batchline-max-cost metadata is "ten"; use an amount of US dollars, e.g. 25 or 12.50`),
    );
  });
});
