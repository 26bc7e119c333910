/**
 * A stack placed under prefixes of its own, as in a bucket shared with other data: the synthesized
 * trigger rule, the handlers and the keys all follow the settings, and nothing is written under the
 * default inbox/, work/ or results/.
 */
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { ErrorRow, ResultRow } from '../../shared/jobs/finalize-job';
import { getRow } from '../../shared/jobs/queries';
import { startRerun } from '../../shared/jobs/rerun';
import { bareEtag } from '../../shared/jobs/job-id';
import { DEFAULT_PREFIXES } from '../../shared/store/keys';
import { ids, jobOf, readJsonl, request, useLocalStack, writeRequests, type StackUnderTest } from './support';

const PREFIXES = { inbox: 'team/batchline/in/', work: 'team/batchline/work/', results: 'team/out/' };

async function allKeys(under: StackUnderTest): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await under.stack.s3.send(new ListObjectsV2Command({ Bucket: under.stack.bucket, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((object) => object.Key!));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

describe('a stack under prefixes of its own, end to end', () => {
  const under = useLocalStack({
    settings: { inboxPrefix: PREFIXES.inbox, workPrefix: PREFIXES.work, resultsPrefix: PREFIXES.results, maxRequestsPerChunk: 4, maxAttempts: 2 },
    context: { 'batchline:schedules': [{ name: 'drops', cron: 'rate(1 day)', prefix: 'team/drops/' }] },
    // Some rows of the first batch fail transiently: their retry's requests file is written under work too.
    simulator: { batchFaultsBySequence: { 1: { errored: { overloaded_error: 0.5 } } } },
  });
  const customIds = ids('row', 10);
  let first: string;

  it('runs a job from the inbox prefix to outputs under the results prefix, retries and invalid lines included', async () => {
    expect(under.stack.prefixes).toEqual(PREFIXES);
    const file = await writeRequests(under, 'tickets.jsonl', [...customIds.slice(0, 5).map(request), '{not json', ...customIds.slice(5).map(request)]);

    first = await under.stack.submitFile(file, { lenient: true });
    const outcome = await under.stack.waitForJob(first);

    expect(outcome.status).toBe('succeeded');
    expect(outcome.keys.resultsPrefix).toBe(`team/out/${first}/`);
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status])).toEqual(customIds.map((id) => [id, 'succeeded']));
    expect(await readJsonl<ErrorRow>(under.stack, outcome.keys.errors)).toEqual([]);
    expect((await readJsonl<{ line: number }>(under.stack, outcome.keys.invalid)).map((row) => row.line)).toEqual([6]);
    expect(outcome.summary?.counts).toEqual({ total: 11, succeeded: 10, errored: 0, expired: 0, canceled: 0, invalid: 1 });
    // The fault made some rows go again: a second attempt ran.
    expect(under.stack.simulator!.stats().batchesCreated.length).toBeGreaterThan(3);
  });

  it('wrote every object under the three prefixes, none under the default ones', async () => {
    const keys = await allKeys(under);
    expect(keys).toContain('team/batchline/in/tickets.jsonl');
    expect(keys).toContain(`team/out/${first}/summary.json`);
    expect(keys.some((key) => key.startsWith(`team/batchline/work/${first}/chunks/`))).toBe(true);
    expect(keys.some((key) => /\/attempt-2\/requests\.jsonl$/.test(key))).toBe(true);
    expect(keys.filter((key) => !Object.values(PREFIXES).some((prefix) => key.startsWith(prefix)))).toEqual([]);
    expect(keys.filter((key) => Object.values(DEFAULT_PREFIXES).some((prefix) => key.startsWith(prefix)))).toEqual([]);
  });

  it("reads a row's result line where its record says, under the work prefix", async () => {
    const lookup = await getRow({ ...under.stack }, first, 'row-003');
    expect(lookup.row.result?.key).toMatch(new RegExp(`^team/batchline/work/${first}/chunks/\\d+/attempt-\\d/results\\.jsonl$`));
    expect(lookup.result?.custom_id).toBe('row-003');
    expect(lookup.resultUnavailable).toBeUndefined();
  });

  it("reruns a job through the stack's inbox, reusing its outputs from the results prefix", async () => {
    const sentBefore = under.stack.simulator!.stats().requestsCreated;
    const uploaded = await startRerun(under.stack, first);
    expect(uploaded.key).toMatch(/^team\/batchline\/in\/tickets\.rerun-/);
    const rerun = await jobOf(under, uploaded);
    const outcome = await under.stack.waitForJob(rerun);
    expect(outcome.status).toBe('succeeded');
    const results = await readJsonl<ResultRow & { reused_from?: string }>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.reused_from])).toEqual(customIds.map((id) => [id, first]));
    expect(under.stack.simulator!.stats().requestsCreated).toBe(sentBefore);
  });

  it("sweeps a schedule's prefix beside them into a job whose outputs go under the results prefix", async () => {
    const body = `${customIds
      .slice(0, 2)
      .map((id) => JSON.stringify(request(`swept-${id}`)))
      .join('\n')}\n`;
    const put = await under.stack.s3.send(new PutObjectCommand({ Bucket: under.stack.bucket, Key: 'team/drops/nightly.jsonl', Body: body }));
    await under.stack.runSchedules();
    const swept = await jobOf(under, { bucket: under.stack.bucket, key: 'team/drops/nightly.jsonl', etag: bareEtag(put.ETag ?? '') });
    const outcome = await under.stack.waitForJob(swept);
    expect(outcome.status).toBe('succeeded');
    expect((await readJsonl<ResultRow>(under.stack, `team/out/${swept}/results.jsonl`)).map((row) => row.custom_id)).toEqual([
      'swept-row-001',
      'swept-row-002',
    ]);
    expect((await allKeys(under)).filter((key) => Object.values(DEFAULT_PREFIXES).some((prefix) => key.startsWith(prefix)))).toEqual([]);
  });
});
