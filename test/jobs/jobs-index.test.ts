import { beforeAll, describe, expect, it } from 'vitest';
import type { DynamoDBClient, QueryCommandInput } from '@aws-sdk/client-dynamodb';
import { createPipelineTable, localDynamoClient } from '../../local/emulators';
import { putItem, queryJobsIndex, type JobsIndexQuery } from '../../shared/store/dynamo';
import { JOB_SK, JOBS_GSI_PK, jobPk, type JobItem } from '../../shared/store/items';
import { useLocalAws } from '../support/aws';

const TABLE = 'jobs-index';
/** Seven jobs, one a minute from 10:00; every third one failed. */
const JOBS = Array.from({ length: 7 }, (_, i) => ({
  jobId: `job-${i}`,
  createdAt: `2026-02-03T10:0${i}:00.000Z`,
  status: i % 3 === 2 ? 'failed' : 'running',
}));

describe('queryJobsIndex', () => {
  const aws = useLocalAws();
  /** A client of its own that notes each Query it sends. */
  let dynamo: DynamoDBClient;
  let queries: QueryCommandInput[];

  beforeAll(async () => {
    dynamo = localDynamoClient(aws.dynamoServer.endpoint);
    dynamo.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'QueryCommand') queries.push(args.input as QueryCommandInput);
        return next(args);
      },
      { step: 'initialize' },
    );
    await createPipelineTable(aws.dynamo, TABLE);
    for (const { jobId, createdAt, status } of JOBS) {
      await putItem(aws.dynamo, TABLE, {
        pk: jobPk(jobId),
        sk: JOB_SK,
        type: 'job',
        jobId,
        status,
        createdAt,
        gsi1pk: JOBS_GSI_PK,
        gsi1sk: `${createdAt}#${jobId}`,
      });
    }
  });

  async function read(query: JobsIndexQuery): Promise<string[]> {
    queries = [];
    const ids: string[] = [];
    for await (const job of queryJobsIndex<JobItem>(dynamo, TABLE, query)) ids.push(job.jobId);
    return ids;
  }

  it('follows pages: seven jobs two a page are four queries, oldest first', async () => {
    expect(await read({ pageSize: 2 })).toEqual(['job-0', 'job-1', 'job-2', 'job-3', 'job-4', 'job-5', 'job-6']);
    expect(queries.map((q) => [q.Limit, q.ExclusiveStartKey === undefined])).toEqual([
      [2, true],
      [2, false],
      [2, false],
      [2, false],
    ]);
    expect(queries[0]).toMatchObject({ IndexName: 'byCreated', ScanIndexForward: true });
  });

  it('reads newest first, from a time on, across pages', async () => {
    expect(await read({ from: '2026-02-03T10:03:00.000Z', newestFirst: true, pageSize: 3 })).toEqual(['job-6', 'job-5', 'job-4', 'job-3']);
    expect(queries).toHaveLength(2);
  });

  it('keeps to a range of creation times (until excludes a job created at exactly that instant)', async () => {
    expect(await read({ from: '2026-02-03T10:01:00.000Z', until: '2026-02-03T10:04:00.000Z', pageSize: 1 })).toEqual(['job-1', 'job-2', 'job-3']);
    expect(await read({ until: '2026-02-03T10:02:00.000Z' })).toEqual(['job-0', 'job-1']);
  });

  it('applies a filter to every page, pages the filter left empty included', async () => {
    const filter = { expression: '#status = :status', names: { '#status': 'status' }, values: { ':status': 'failed' } };

    expect(await read({ filter, pageSize: 2 })).toEqual(['job-2', 'job-5']);
    // Page 1 (job-0, job-1) matched nothing: the reading went on.
    expect(queries).toHaveLength(4);
  });

  it('stops at the limit: without a filter no page reads more than is still wanted, and no page is read after', async () => {
    expect(await read({ newestFirst: true, limit: 3, pageSize: 2 })).toEqual(['job-6', 'job-5', 'job-4']);
    expect(queries.map((q) => q.Limit)).toEqual([2, 1]);

    expect(await read({ limit: 0 })).toEqual([]);
    expect(queries).toEqual([]);
  });

  it('stops at the limit with a filter, after the page that reached it', async () => {
    const filter = { expression: '#status = :status', names: { '#status': 'status' }, values: { ':status': 'running' } };

    expect(await read({ filter, limit: 1, pageSize: 2 })).toEqual(['job-0']);
    expect(queries).toHaveLength(1);
  });
});
