/**
 * Finalize writes rows a window at a time, their result lines staged on disk by input position:
 * the output must not depend on the order the API returned results in, on where windows and staging
 * files split the rows, or on how large a line is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchRequest } from '../../shared/anthropic/types';
import { priceUsage, roundUsd, tokenTotals } from '../../shared/cost/cost';
import { finalizeJob, type ErrorRow, type FinalizeDeps } from '../../shared/jobs/finalize-job';
import { putItem } from '../../shared/store/dynamo';
import type { ChunkAttempt } from '../../shared/store/items';
import { useLocalAws } from '../support/aws';
import { putAttemptOne, putText, readChunkItem, readText, seedJob, serialize, type SeededJob } from '../support/chunks';
import { pipelineConfig, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { request, requests } from '../support/requests';

const MODEL = 'claude-haiku-4-5';
const BATCH_1 = 'msgbatch_windows_1';
const BATCH_2 = 'msgbatch_windows_2';
const COLLECTED_AT = '2026-01-02T04:00:00.000Z';
const MISSING = 'The batch returned no result for this request.';

/** A succeeded message's JSON as the API would write it; `text` goes in verbatim (raw JSON allowed). */
function messageJson(customId: string, n: number, text = JSON.stringify(`Reply to ${customId}`)): string {
  return (
    `{"id":"msg_${customId}","type":"message","role":"assistant","model":"${MODEL}",` +
    `"content":[{"type":"text","text":${text}}],"stop_reason":"end_turn","stop_sequence":null,` +
    `"usage":{"input_tokens":${10 + n},"output_tokens":${5 + (n % 7)},"cache_creation_input_tokens":0,"cache_read_input_tokens":${n % 3}}}`
  );
}

const succeededLine = (customId: string, message: string) => `{"custom_id":"${customId}","result":{"type":"succeeded","message":${message}}}`;
const overloadedLine = (customId: string) =>
  JSON.stringify({
    custom_id: customId,
    result: { type: 'errored', error: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' }, request_id: null } },
  });

/** results.jsonl's line for a succeeded row: the message's bytes exactly as in the result line. */
function succeededRow(customId: string, attempt: number, message: string): string {
  const { usage } = JSON.parse(message) as { usage: Parameters<typeof tokenTotals>[0] };
  const head = {
    custom_id: customId,
    attempts: attempt,
    batch_id: attempt === 1 ? BATCH_1 : BATCH_2,
    usage: tokenTotals(usage),
    cost_usd: roundUsd(priceUsage(usage, MODEL).totalUsd, 10),
    status: 'succeeded',
  };
  return `${JSON.stringify(head).slice(0, -1)},"message":${message}}`;
}

const missingRow = (customId: string) =>
  JSON.stringify({
    custom_id: customId,
    attempts: 1,
    batch_id: BATCH_1,
    usage: null,
    cost_usd: null,
    status: 'errored',
    error: { type: 'missing_result', message: MISSING },
  });

/** `items` in a fixed scrambled order: position i takes item (i · step) mod n (step coprime with n). */
function scrambled<T>(items: readonly T[], step = 7919): T[] {
  return items.map((_, i) => items[(i * step) % items.length]!);
}

describe('finalizeJob, rows in windows', () => {
  const aws = useLocalAws();
  let recorder: RecordingEndpoint;
  beforeAll(async () => {
    recorder = await startRecordingEndpoint();
  });
  afterAll(async () => {
    await recorder.stop();
  });

  const deps = (): FinalizeDeps => ({
    s3: aws.s3,
    dynamo: aws.dynamo,
    config: pipelineConfig(aws),
    notify: { clients: { events: recorder.events, sns: recorder.sns }, config: { topicArn: undefined, eventBus: 'default' } },
    now: () => Date.parse('2030-01-01T00:00:00Z'),
  });

  /**
   * One chunk whose attempts were collected, each results file holding exactly `results` (in that
   * order); attempt 2, when given, retried `retried`.
   */
  async function collectedJob(rows: BatchRequest[], attempt1: string[], attempt2?: { retried: BatchRequest[]; results: string[] }): Promise<SeededJob> {
    const job = await seedJob(aws, { chunks: [rows] });
    await putText(aws, job.keys.chunkResults(0, 1), attempt1.map((line) => `${line}\n`).join(''));
    const chunk = await readChunkItem(aws, job.jobId, 0);
    const attempts: ChunkAttempt[] = [{ ...chunk.attempts[0]!, batchId: BATCH_1, collectedAt: COLLECTED_AT, retryRows: attempt2?.retried.length ?? 0 }];
    if (attempt2) {
      await putText(aws, job.keys.chunkRequests(0, 2), serialize(attempt2.retried));
      await putText(aws, job.keys.chunkResults(0, 2), attempt2.results.map((line) => `${line}\n`).join(''));
      attempts.push({ attempt: 2, rows: attempt2.retried.length, bytes: 1, intentAt: '', batchId: BATCH_2, collectedAt: COLLECTED_AT });
    }
    await putItem(aws.dynamo, aws.table, { ...chunk, status: 'done', currentAttempt: attempts.length, attempts });
    return job;
  }

  const resultLines = async (job: SeededJob) => (await readText(aws, job.keys.results))!.split('\n').slice(0, -1);

  it('writes rows in input order across windows and staging files, whatever order their results came back in', async () => {
    // 4,321 rows: windows and staging files of 2,000 rows split them twice.
    const rows = requests(4_321, 'w');
    const ids = rows.map((r) => r.custom_id);
    const missing = new Set([ids[0]!, ids[1_999]!, ids[2_000]!, ids[4_320]!]);
    const retried = rows.filter((_, i) => i % 500 === 7 || i === 1_998 || i === 2_001);
    const retriedIds = new Set(retried.map((r) => r.custom_id));
    const messages = new Map(ids.map((id, i) => [id, messageJson(id, i)]));

    const job = await collectedJob(
      rows,
      scrambled(ids.filter((id) => !missing.has(id)).map((id) => (retriedIds.has(id) ? overloadedLine(id) : succeededLine(id, messages.get(id)!)))),
      { retried, results: [...retried].reverse().map((r) => succeededLine(r.custom_id, messages.get(r.custom_id)!)) },
    );

    const out = await finalizeJob({ jobId: job.jobId }, deps());
    expect(out.counts).toEqual({ succeeded: 4_317, errored: 4, expired: 0, canceled: 0, invalid: 0 });
    expect(await resultLines(job)).toEqual(
      ids.map((id) => (missing.has(id) ? missingRow(id) : succeededRow(id, retriedIds.has(id) ? 2 : 1, messages.get(id)!))),
    );
    const errors = (await readText(aws, job.keys.errors))!
      .split('\n')
      .slice(0, -1)
      .map((line) => JSON.parse(line) as ErrorRow);
    expect(errors).toEqual(
      ids
        .filter((id) => missing.has(id))
        .map((id) => ({ custom_id: id, status: 'errored', error_type: 'missing_result', message: MISSING, attempts: 1, batch_id: BATCH_1 })),
    );
  });

  it('copies messages byte for byte when lines are large enough to split windows by size', async () => {
    // 40 lines of about 600 KB (24 MB in all): windows end at 16 MiB of lines, not at 2,000 rows,
    // and each line is larger than every buffer between the results file and results.jsonl.
    const rows = requests(40, 'big');
    const ids = rows.map((r) => r.custom_id);
    const long = (i: number) => JSON.stringify(`${i} é "quoted" \\ ${'x'.repeat(600_000)}`);
    const messages = new Map(ids.map((id, i) => [id, messageJson(id, i, i === 7 ? `{"n":12345678901234567890,"s":${long(i)}}` : long(i))]));

    const job = await collectedJob(
      rows,
      scrambled(
        ids.map((id) => succeededLine(id, messages.get(id)!)),
        17,
      ),
    );

    await finalizeJob({ jobId: job.jobId }, deps());
    expect(await resultLines(job)).toEqual(ids.map((id) => succeededRow(id, 1, messages.get(id)!)));
    expect((await resultLines(job))[7]).toContain('"text":{"n":12345678901234567890,');
  });

  it('reads each request’s custom_id the way JSON.parse does, however its line spells it', async () => {
    // What Prepare validated (JSON.parse's reading) is the row's custom_id: the last of duplicate
    // keys, escapes decoded.
    const body = JSON.stringify(request('x').params);
    const lines = [
      `{"custom_id": "py-1", "params": ${body}}`,
      `{"params":${body},"custom_id":"late-2"}`,
      `{"custom_id":"decoy-3","params":${body},"custom_id":"dup-3"}`,
      `{"custom_id":"decoy-4","params":${body},"custom\\u005fid":"escaped-key-4"}`,
      `{"custom_id":"esc\\u0061ped-5","params":${body}}`,
      `{"custom_id":"plain-6","params":{"model":"${MODEL}","max_tokens":8,"messages":[{"role":"user","content":"custom_id"}]}}`,
    ];
    const ids = ['py-1', 'late-2', 'dup-3', 'escaped-key-4', 'escaped-5', 'plain-6'];
    const messages = new Map(ids.map((id, i) => [id, messageJson(id, i)]));
    const job = await collectedJob(
      ids.map((id) => request(id)),
      [...ids].reverse().map((id) => succeededLine(id, messages.get(id)!)),
    );
    await putAttemptOne(aws, job.jobId, 0, lines.map((line) => `${line}\n`).join(''));

    await finalizeJob({ jobId: job.jobId }, deps());
    expect(await resultLines(job)).toEqual(ids.map((id) => succeededRow(id, 1, messages.get(id)!)));
  });
});
