/**
 * Prepare across invocations (issue 11): the same file prepared in one invocation and in many
 * (prepareLinesPerInvocation small) must give the same rows in the same order, the same invalid
 * report line for line (duplicates across invocations named by their first line), the same counts
 * and estimate, and a rejected strict file the same listed rows. A retried invocation converges.
 */
import { describe, expect, it } from 'vitest';
import { useLocalAws } from '../support/aws';
import { attemptText } from '../support/chunks';
import { jsonl, pipelineConfig, putInput, readText, request } from '../support/pipeline';
import { getItem, updateItem } from '../../shared/store/dynamo';
import { JOB_SK, jobPk, type JobItem } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { registerJob } from '../../shared/jobs/register-job';
import type { PrepareOutput } from '../../shared/jobs/contract';
import { InputTooLarge, MAX_PREPARE_INVOCATIONS, prepareJob } from '../../shared/jobs/prepare-job';
import type { PipelineConfig, ValidationMode } from '../../shared/config';

describe('prepareJob across invocations', () => {
  const aws = useLocalAws();
  let fileNumber = 0;

  /** Uploads `body` and registers it as a job whose Prepare reads `linesPerInvocation` lines an invocation. */
  async function registered(
    body: string,
    linesPerInvocation: number,
    options: { mode?: ValidationMode; metadata?: Record<string, string>; config?: Partial<PipelineConfig> } = {},
  ) {
    const key = `inbox/resume-${++fileNumber}.jsonl`;
    await putInput(aws, key, body, options.metadata);
    const config = pipelineConfig(aws, { prepareLinesPerInvocation: linesPerInvocation, ...options.config });
    const deps = { s3: aws.s3, dynamo: aws.dynamo, config };
    const { jobId } = await registerJob({ bucket: aws.bucket, key, mode: options.mode ?? 'lenient' }, deps);
    return { jobId, deps, jobKey: { pk: jobPk(jobId), sk: JOB_SK } };
  }

  /** Registers `body` and prepares it to the file's end, `linesPerInvocation` lines an invocation; every answer in order. */
  async function prepared(body: string, linesPerInvocation: number, options: { mode?: ValidationMode; metadata?: Record<string, string> } = {}) {
    const { jobId, deps } = await registered(body, linesPerInvocation, { ...options, config: { maxRequestsPerChunk: 4 } });
    const answers: PrepareOutput[] = [];
    do answers.push(await prepareJob({ jobId }, deps));
    while (answers.at(-1)!.outcome === 'partial' && answers.length < 100);
    const job = (await getItem<JobItem>(aws.dynamo, aws.table, { pk: jobPk(jobId), sk: JOB_SK }))!;
    return { jobId, deps, answers, job, keys: jobKeys(jobId) };
  }

  /** Every chunk's requests, in chunk order: the rows the job sends, as sent. */
  async function sentRows(jobId: string, chunks: number): Promise<string> {
    let text = '';
    for (let chunk = 0; chunk < chunks; chunk++) text += await attemptText(aws, { jobId, chunk, attempt: 1 });
    return text;
  }

  /** 31 lines: 26 valid rows, line 2's custom_id used again on lines 13, 28 and 29, broken JSON on line 18, line 21 blank. */
  const mixedFile = () => {
    const lines: Array<object | string> = Array.from({ length: 26 }, (_, i) => request(`row-${i + 1}`));
    lines.splice(12, 0, request('row-2'));
    lines.splice(17, 0, '{"custom_id": "broken", "params": {');
    lines.splice(20, 0, '');
    lines.splice(27, 0, request('row-2'), request('row-2'));
    return jsonl(lines);
  };

  it('gives the rows, the invalid report, the counts and the estimate of one invocation', async () => {
    const budget = { 'batchline-max-cost': '1000' };
    const whole = await prepared(mixedFile(), 1_000, { metadata: budget });
    const split = await prepared(mixedFile(), 3, { metadata: budget });

    expect(whole.answers.map((a) => a.outcome)).toEqual(['ready']);
    expect(split.answers.map((a) => a.outcome)).toEqual([...Array(10).fill('partial'), 'ready']);
    const end = split.answers.at(-1)!;
    expect({ validRows: end.validRows, invalidRows: end.invalidRows }).toEqual({ validRows: 26, invalidRows: 4 });
    expect(whole.answers[0]).toMatchObject({ validRows: 26, invalidRows: 4 });
    // Each invocation closes its chunk in progress, so the cut differs; the rows sent do not.
    expect(end.chunks.length).toBeGreaterThan(whole.answers[0]!.chunks.length);
    expect(await sentRows(split.jobId, end.chunks.length)).toBe(await sentRows(whole.jobId, whole.answers[0]!.chunks.length));
    const report = await readText(aws, split.keys.invalidWork);
    expect(report).toBe(await readText(aws, whole.keys.invalidWork));
    expect(
      report
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { reason: string }).reason),
    ).toEqual([
      'line 13: custom_id "row-2" is already used on line 2',
      expect.stringMatching(/^line 18 /),
      'line 28: custom_id "row-2" is already used on line 2',
      // Line 28 is in the same invocation: its set recorded the id there, and names line 2 all the same.
      'line 29: custom_id "row-2" is already used on line 2',
    ]);
    for (const field of ['totalRows', 'validRows', 'invalidRows', 'estimateUsd', 'expectedUsd', 'sentOutput', 'rowShards'] as const) {
      expect(split.job[field], field).toEqual(whole.job[field]);
    }
    expect(split.job.estimateUsd).toBeGreaterThan(0);
    expect(split.job).toMatchObject({ status: 'running', preparedSegments: 10, preparedLines: 30 });
  });

  it('rejects a strict file whose first invalid line is invocations in, listing the same valid rows', async () => {
    const whole = await prepared(mixedFile(), 1_000, { mode: 'strict' });
    const split = await prepared(mixedFile(), 5, { mode: 'strict' });

    for (const run of [whole, split]) expect(run.answers.at(-1)).toMatchObject({ outcome: 'rejected', chunks: [], validRows: 26, invalidRows: 4 });
    /** The valid rows a rejected job lists: those in its chunk files, then the later ids. */
    const listed = async (run: typeof whole) => {
      const [header, ...later] = (await readText(aws, run.keys.rejectedValidIds)).split('\n').filter(Boolean);
      const { chunkFiles } = JSON.parse(header!) as { chunkFiles: number };
      const inChunks = (await sentRows(run.jobId, chunkFiles))
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { custom_id: string }).custom_id);
      return [...inChunks, ...later.map((id) => JSON.parse(id) as string)];
    };
    const expected = [...Array.from({ length: 26 }, (_, i) => `row-${i + 1}`)];
    expect(await listed(whole)).toEqual(expected);
    expect(await listed(split)).toEqual(expected);
    expect(await readText(aws, split.keys.invalidWork)).toBe(await readText(aws, whole.keys.invalidWork));
  });

  it('converges when an invocation is run again after its commit was lost, and when a committed one is retried', async () => {
    const reference = await prepared(mixedFile(), 4);
    const { jobId, deps, jobKey } = await registered(mixedFile(), 4, { config: { maxRequestsPerChunk: 4 } });

    const pointer = async () => {
      const { preparedSegments, preparedCheckpoint } = (await getItem<JobItem>(aws.dynamo, aws.table, jobKey))!;
      return { preparedSegments, preparedCheckpoint };
    };
    expect(await prepareJob({ jobId }, deps)).toMatchObject({ outcome: 'partial' });
    const first = await pointer();
    expect(await prepareJob({ jobId }, deps)).toMatchObject({ outcome: 'partial' });
    const lost = await pointer();
    // Invocation 2's commit "lost": the pointer back at checkpoint 1, its objects still there.
    await updateItem(aws.dynamo, aws.table, jobKey, { set: first });
    expect(await prepareJob({ jobId }, deps)).toMatchObject({ outcome: 'partial' });
    // Done again under its own name: the pointer moved to checkpoint 2, not to the lost attempt's.
    const again = await pointer();
    expect(again.preparedSegments).toBe(2);
    expect(again.preparedCheckpoint).not.toBe(lost.preparedCheckpoint);
    // Two attempts at invocation 2 that both read checkpoint 1: the other commits just before this
    // one's commit is sent (a hook on the real client). This one's commit is refused; the other's stands.
    await updateItem(aws.dynamo, aws.table, jobKey, { set: first });
    let raced = false;
    aws.dynamo.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { ConditionExpression?: string };
        if (!raced && input.ConditionExpression?.includes('preparedCheckpoint')) {
          raced = true;
          await updateItem(aws.dynamo, aws.table, jobKey, { set: again });
        }
        return next(args);
      },
      { step: 'initialize', name: 'raceTheCommit' },
    );
    try {
      await expect(prepareJob({ jobId }, deps)).resolves.toMatchObject({ outcome: 'partial' });
    } finally {
      aws.dynamo.middlewareStack.remove('raceTheCommit');
    }
    expect(raced).toBe(true);
    expect(await pointer()).toEqual(again);
    let answer: PrepareOutput;
    do answer = await prepareJob({ jobId }, deps);
    while (answer.outcome === 'partial');
    // A retry after the file's end answers what was recorded.
    expect(await prepareJob({ jobId }, deps)).toEqual(answer);
    expect(answer).toEqual({ ...reference.answers.at(-1)!, jobId });
    expect(await sentRows(jobId, answer.chunks.length)).toBe(await sentRows(reference.jobId, answer.chunks.length));
    expect(await readText(aws, jobKeys(jobId).invalidWork)).toBe(await readText(aws, reference.keys.invalidWork));
  });

  it('refuses, naming the setting, a file that would take more invocations than a job may', async () => {
    const lines = Array.from({ length: MAX_PREPARE_INVOCATIONS + 200 }, (_, i) => request(`r${i}`));
    const { jobId, deps, jobKey } = await registered(jsonl(lines), 1);

    const failure = prepareJob({ jobId }, deps);

    await expect(failure).rejects.toBeInstanceOf(InputTooLarge);
    await expect(failure).rejects.toThrow(
      /^this file \([\d.]+ KB, about 1,2\d\d lines\) needs about 1,2\d\d Prepare invocations, more than the 1,000 one job may take at 1 line each: raise the stack setting prepareLinesPerInvocation to at least 2$/,
    );
    // Nothing committed: the job is still at its start.
    expect((await getItem<JobItem>(aws.dynamo, aws.table, jobKey))?.preparedSegments).toBeUndefined();
  });

  it("names prepareMemoryMiB, not fewer lines an invocation, when the earlier invocations' filters fill the memory", async () => {
    // 200,000 ids in invocation 1: a 500 KB filter, more than half of 85% of a 1 MiB function.
    const rows = Array.from({ length: 200_010 }, (_, i) => ({
      custom_id: `r${i}`,
      params: { model: 'claude-haiku-4-5', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] },
    }));
    const { jobId, deps } = await registered(jsonl(rows), 200_000);
    expect(await prepareJob({ jobId }, deps)).toMatchObject({ outcome: 'partial' });

    const failure = prepareJob({ jobId }, { ...deps, limits: { memoryMiB: 1 } });

    await expect(failure).rejects.toBeInstanceOf(InputTooLarge);
    await expect(failure).rejects.toThrow(
      /^Prepare ran short of memory: at line 200,001 \(200,000 rows so far, .*\) it was using [\d,]+ MiB of the function's 1 MiB, 50\d\.\d KB of it the custom_id filters of the 200,000 lines before: raise the stack setting prepareMemoryMiB, or split the file$/,
    );
  });
});
