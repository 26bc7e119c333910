import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { OPS_COMMANDS } from '../../cli/ops';
import { localStatePath } from '../../cli/ops/local-state';
import { followToEnd, uploadFile, waitForJob } from '../../cli/ops/submit';
import { DEFAULT_PART_SIZE, headObject } from '../../shared/store/s3';
import { OpsFailure } from '../../cli/ops/command';
import { RowRecordWriter } from '../../shared/jobs/row-records';
import { DEFAULT_PREFIXES, jobKeys } from '../../shared/store/keys';
import { useLocalAws, type LocalAws } from '../support/aws';
import { putText, readJobItem, readText, startApi, stopApi, type ApiContext } from '../support/chunks';
import { pipelineConfig, putInput, startRecordingEndpoint, type RecordingEndpoint } from '../support/pipeline';
import { jsonl, request, requests } from '../support/requests';
import { freshTable, localStateFor, memoryIo, putChunk, putJob, runPipeline, tempDir, type PipelineContext } from './support';

/** Runs a command as `batchline NAME ARGS` would, against the local stack whose state is in `dir`. */
async function run(name: string, args: string[], dir: string, options: { cwd?: string; env?: Record<string, string> } = {}) {
  const memory = memoryIo({ cwd: options.cwd, env: options.env });
  const code = await OPS_COMMANDS[name]!.run([...args, '--local', dir], memory.io);
  return { code, out: memory.out(), err: memory.err() };
}

describe('operating commands against a local stack', () => {
  const aws = useLocalAws();
  let api: ApiContext;
  let recorder: RecordingEndpoint;
  let ctx: PipelineContext;
  let dir: string;
  /** Inbox keys that run through the pipeline core when an upload creates them (as the trigger rule would). */
  const watched = new Set<string>();
  const runs: Array<Promise<unknown>> = [];

  beforeAll(async () => {
    api = await startApi();
    recorder = await startRecordingEndpoint();
    ctx = { aws, sim: api.sim, api: api.api, config: pipelineConfig(aws), recorder };
    dir = await localStateFor(aws);
    aws.s3Server.onObjectCreated((record) => {
      const { key, eTag, sequencer } = record.s3.object;
      if (!watched.has(key)) return;
      runs.push(runPipeline(ctx, { key, etag: eTag.replace(/"/g, ''), sequencer }));
    });
  });
  afterAll(async () => {
    await Promise.allSettled(runs);
    await stopApi(api);
    await recorder.stop();
  });

  /** A table of its own with a state file naming it: the test sees only its own jobs. */
  async function isolated(): Promise<{ own: LocalAws; dir: string }> {
    const own = await freshTable(aws);
    return { own, dir: await localStateFor(own) };
  }

  describe('jobs', () => {
    it('lists the jobs newest first with status, rows, outcomes, cost and creation time', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'done-job', {
        createdAt: '2026-01-02T03:04:05.000Z',
        totalRows: 6,
        validRows: 5,
        invalidRows: 1,
        counts: { succeeded: 3, errored: 1, expired: 1, canceled: 0, invalid: 1 },
        costUsd: 0.00123,
      });
      await putJob(own, 'running-job', {
        status: 'running',
        createdAt: '2026-01-03T00:00:00.000Z',
        totalRows: 1200,
        validRows: 1200,
        rowsFinal: 300,
        cancelRequested: true,
      });
      await putJob(own, 'failed-job', {
        status: 'failed',
        createdAt: '2026-01-01T00:00:00.000Z',
        totalRows: undefined,
        validRows: undefined,
        invalidRows: undefined,
        chunkCount: undefined,
      });

      const result = await run('jobs', [], dir);

      expect(result).toEqual({
        code: 0,
        err: '',
        out: [
          'JOB          STATUS                    ROWS  SUCCEEDED  FAILED  INVALID      COST  CREATED',
          'running-job  running 25% (canceling)  1,200          –       –        0         –  2026-01-03 00:00:00Z',
          'done-job     succeeded                    6          3       2        1  $0.00123  2026-01-02 03:04:05Z',
          'failed-job   failed                       –          –       –        –         –  2026-01-01 00:00:00Z',
          '',
        ].join('\n'),
      });
    });

    it('shows at most --limit jobs and says there are more', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'first', { createdAt: '2026-01-01T00:00:00.000Z' });
      await putJob(own, 'second', { createdAt: '2026-01-02T00:00:00.000Z' });

      const result = await run('jobs', ['--limit', '1'], dir);

      expect(result.out).toBe(
        [
          'JOB     STATUS     ROWS  SUCCEEDED  FAILED  INVALID  COST  CREATED',
          'second  succeeded     5          –       –        0     –  2026-01-02 00:00:00Z',
          '(the 1 most recent; --limit N shows more)',
          '',
        ].join('\n'),
      );
    });

    it('says so when the stack has no jobs', async () => {
      const { dir } = await isolated();
      expect(await run('jobs', [], dir)).toEqual({ code: 0, out: `No jobs yet in the local stack in ${dir}.\n`, err: '' });
    });

    it('refuses a --limit that is not a positive whole number with exit code 2', async () => {
      expect(await run('jobs', ['--limit', '0'], dir)).toEqual({ code: 2, out: '', err: 'batchline jobs: --limit must be a positive number, got "0"\n' });
      expect(await run('jobs', ['--limit', '1.5'], dir)).toEqual({ code: 2, out: '', err: 'batchline jobs: --limit must be a whole number, got "1.5"\n' });
    });
  });

  describe('status', () => {
    it('shows the job and every attempt of every chunk, with the failures spelled out', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'busy', {
        status: 'running',
        validationMode: 'lenient',
        createdAt: '2026-01-02T03:04:05.000Z',
        updatedAt: '2026-01-02T03:10:00.000Z',
        totalRows: 8,
        validRows: 7,
        invalidRows: 1,
        chunkCount: 3,
        rowsFinal: 3,
      });
      const attempt = { bytes: 100, intentAt: '2026-01-02T03:05:00.000Z' };
      await putChunk(own, 'busy', 0, {
        status: 'done',
        rows: 3,
        bytes: 100,
        firstLine: 1,
        lastLine: 3,
        currentAttempt: 2,
        updatedAt: 't',
        attempts: [
          {
            ...attempt,
            attempt: 1,
            rows: 3,
            batchId: 'msgbatch_a1',
            polls: 4,
            counts: { succeeded: 2, errored: 1, expired: 0, canceled: 0 },
            retryRows: 1,
            collectedAt: 't',
          },
          {
            ...attempt,
            attempt: 2,
            rows: 1,
            batchId: 'msgbatch_a2',
            polls: 1,
            counts: { succeeded: 1, errored: 0, expired: 0, canceled: 0 },
            collectedAt: 't',
          },
        ],
      });
      await putChunk(own, 'busy', 1, {
        status: 'in_progress',
        rows: 2,
        bytes: 100,
        firstLine: 4,
        lastLine: 5,
        currentAttempt: 1,
        updatedAt: 't',
        attempts: [
          {
            ...attempt,
            attempt: 1,
            rows: 2,
            batchId: 'msgbatch_b1',
            polls: 2,
            processingStatus: 'in_progress',
            requestCounts: { processing: 1, succeeded: 1, errored: 0, canceled: 0, expired: 0 },
          },
        ],
      });
      await putChunk(own, 'busy', 2, {
        status: 'failed',
        rows: 2,
        bytes: 100,
        firstLine: 7,
        lastLine: 8,
        currentAttempt: 1,
        updatedAt: 't',
        attempts: [{ ...attempt, attempt: 1, rows: 2 }],
        failure: { error: 'ApiFatal', cause: 'invalid_request_error:\n  requests too large' },
      });

      const result = await run('status', ['busy'], dir);

      expect(result.code).toBe(0);
      expect(result.out).toBe(
        [
          'Job busy: running',
          `  input     s3://${aws.bucket}/inbox/busy.jsonl (lenient)`,
          '  created   2026-01-02 03:04:05Z · updated 2026-01-02 03:10:00Z',
          '  rows      8 in all: 7 valid, 1 invalid · 3 final so far',
          '  chunks    3: 1 done, 1 failed · 3 batches (1 retry) · 7 polls',
          '',
          'CHUNK  ATTEMPT  STATUS       BATCH        ROWS  SUCCEEDED  ERRORED  EXPIRED  CANCELED  POLLS  NOTE',
          '    0        1  collected    msgbatch_a1     3          2        1        0         0      4  1 to retry',
          '    0        2  done         msgbatch_a2     1          1        0        0         0      1',
          '    1        1  in_progress  msgbatch_b1     2          1        0        0         0      2  1 processing',
          '    2        1  failed       –               2          –        –        –         –      0',
          'chunk 2 failed: ApiFatal: invalid_request_error: requests too large',
          '',
        ].join('\n'),
      );
    });

    it('shows an ended job with its outcome and cost, and a job not yet validated without chunks', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'ended', {
        endedAt: '2026-01-02T04:00:00.000Z',
        counts: { succeeded: 4, errored: 0, expired: 0, canceled: 1, invalid: 0 },
        costUsd: 1.5,
        cancelRequested: true,
        status: 'canceled',
      });
      await putJob(own, 'fresh', { status: 'registered', totalRows: undefined, validRows: undefined, invalidRows: undefined, chunkCount: undefined });

      expect((await run('status', ['ended'], dir)).out).toBe(
        [
          'Job ended: canceled',
          `  input     s3://${aws.bucket}/inbox/ended.jsonl (strict)`,
          '  created   2026-01-02 03:04:05Z · updated 2026-01-02 03:04:05Z · ended 2026-01-02 04:00:00Z',
          '  rows      5 in all: 5 valid, 0 invalid',
          '  chunks    1: 0 done, 0 failed',
          '  outcome   4 succeeded, 0 errored, 0 expired, 1 canceled, 0 invalid',
          '  cost      $1.50 at batch rates',
          '',
        ].join('\n'),
      );
      expect((await run('status', ['fresh'], dir)).out).toBe(
        [
          'Job fresh: registered',
          `  input     s3://${aws.bucket}/inbox/fresh.jsonl (strict)`,
          '  created   2026-01-02 03:04:05Z · updated 2026-01-02 03:04:05Z',
          '  rows      not counted yet (the file is being validated)',
          '',
        ].join('\n'),
      );
    });

    it("exits with an ended job's outcome: 0 when every row succeeded, 3 when some did not, 1 when it failed or was rejected; 0 while it runs", async () => {
      const { own, dir } = await isolated();
      const ended = { endedAt: '2026-01-02T04:00:00.000Z' };
      const all = { succeeded: 5, errored: 0, expired: 0, canceled: 0, invalid: 0 };
      await putJob(own, 'all-ok', { ...ended, counts: all });
      await putJob(own, 'some-errored', { ...ended, counts: { ...all, succeeded: 3, errored: 1, expired: 1 } });
      await putJob(own, 'canceled-part', { ...ended, status: 'canceled', counts: { ...all, succeeded: 4, canceled: 1 } });
      await putJob(own, 'lenient-invalid', { ...ended, validationMode: 'lenient', counts: { ...all, succeeded: 4, invalid: 1 } });
      await putJob(own, 'rejected', { ...ended, status: 'rejected', counts: { ...all, succeeded: 0, canceled: 4, invalid: 1 } });
      await putJob(own, 'failed', { ...ended, status: 'failed', failure: { error: 'States.Timeout', cause: 'PrepareJob timed out' } });
      await putJob(own, 'running', { status: 'running' });

      const codes: Record<string, number> = {};
      for (const job of ['all-ok', 'some-errored', 'canceled-part', 'lenient-invalid', 'rejected', 'failed', 'running']) {
        codes[job] = (await run('status', [job], dir)).code;
      }
      expect(codes).toEqual({ 'all-ok': 0, 'some-errored': 3, 'canceled-part': 3, 'lenient-invalid': 3, rejected: 1, failed: 1, running: 0 });
    });

    it('says in one line that a job does not exist (exit 1) and needs exactly one job id (exit 2)', async () => {
      expect(await run('status', ['nope'], dir)).toEqual({ code: 1, out: '', err: 'batchline status: job nope does not exist\n' });
      expect(await run('status', [], dir)).toEqual({
        code: 2,
        out: '',
        err: 'batchline status: needs one job id, got 0 arguments (see batchline status --help)\n',
      });
    });
  });

  describe('get', () => {
    it("prints the row's record and its result line, read from the byte range the record names", async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'rows');
      const other = { custom_id: 'other', result: { type: 'expired' } };
      const mine = { custom_id: 'mine', result: { type: 'errored', error: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } } };
      const first = JSON.stringify(other) + '\n';
      const second = JSON.stringify(mine) + '\n';
      const key = jobKeys('rows').chunkResults(0, 1);
      await putText(own, key, first + second + first);
      const page = { jobId: 'rows', chunk: 0, attempt: 1, batchId: 'msgbatch_x', shards: 1, writer: 'C' as const, updatedAt: 't' };
      const rows = new RowRecordWriter(own.dynamo, own.table, page);
      rows.add({ customId: 'other', index: 3, status: 'expired', final: true, line: { offset: 0, length: first.length } });
      rows.add({
        customId: 'mine',
        index: 4,
        status: 'errored',
        final: false,
        errorType: 'overloaded_error',
        line: { offset: first.length, length: second.length },
      });
      await rows.flush();

      const result = await run('get', ['rows', 'mine'], dir);

      expect(result).toEqual({
        code: 0,
        err: '',
        out: [
          'Row mine of job rows: errored (overloaded_error), to be retried in attempt 2',
          '  attempt   1 in batch msgbatch_x, chunk 0 row 4',
          `  line      s3://${aws.bucket}/${key} bytes ${first.length}–${first.length + second.length - 1}`,
          JSON.stringify(mine, null, 2),
          '',
        ].join('\n'),
      });
    });

    it('prints tokens and cost of a succeeded row collected by the pipeline', async () => {
      const key = 'inbox/get-command.jsonl';
      const { etag } = await putInput(aws, key, jsonl([request('only')]));
      const jobId = await runPipeline(ctx, { key, etag, sequencer: '0B1' });

      const result = await run('get', [jobId, 'only'], dir);

      expect(result.code).toBe(0);
      const lines = result.out.split('\n');
      expect(lines[0]).toBe(`Row only of job ${jobId}: succeeded`);
      expect(lines[2]).toMatch(/^ {2}tokens {4}\d+ input, \d+ output, \d+ cache read, \d+ cache write$/);
      expect(lines[3]).toMatch(/^ {2}cost {6}\$0\.\d+ at batch rates$/);
      const json = JSON.parse(lines.slice(5).join('\n')) as { custom_id: string; result: { type: string } };
      expect(json).toMatchObject({ custom_id: 'only', result: { type: 'succeeded' } });
    });

    it('explains a custom_id with no record in one line', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'rowless');
      expect(await run('get', ['rowless', 'ghost'], dir)).toEqual({
        code: 1,
        out: '',
        err: 'batchline get: job rowless has no record of custom_id "ghost" (rows are recorded as their batch is collected; invalid lines are listed in invalid.jsonl)\n',
      });
    });
  });

  describe('cancel', () => {
    it('requests the cancel of a running job, and says so again the second time', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'to-cancel', { status: 'running' });

      const first = await run('cancel', ['to-cancel'], dir);
      const second = await run('cancel', ['to-cancel'], dir);

      const follow = `batchline status to-cancel --local ${dir}`;
      expect(first).toEqual({
        code: 0,
        err: '',
        out: `Cancel requested for job to-cancel (running): batches in progress are canceled at their next poll. Follow it with: ${follow}\n`,
      });
      expect(second).toEqual({ code: 0, err: '', out: `Cancel was already requested for job to-cancel; it is still running. Follow it with: ${follow}\n` });
      expect((await readJobItem(own, 'to-cancel')).cancelRequested).toBe(true);
    });

    it('tells that an ended job has nothing to cancel, with exit code 1', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'over', { endedAt: '2026-01-02T04:00:00.000Z' });

      expect(await run('cancel', ['over'], dir)).toEqual({
        code: 1,
        out: '',
        err: 'Job over has already ended (succeeded at 2026-01-02 04:00:00Z): nothing to cancel.\n',
      });
      expect((await readJobItem(own, 'over')).cancelRequested).toBeUndefined();
    });
  });

  describe('results', () => {
    it("streams a finished job's outputs (the report too) into --out", async () => {
      const key = 'inbox/results-command.jsonl';
      const { etag } = await putInput(aws, key, jsonl([...requests(2, 'r'), '{"not": "a request"}']), { 'batchline-mode': 'lenient' });
      const jobId = await runPipeline(ctx, { key, etag, sequencer: '0C1' });
      const cwd = await tempDir('batchline-results-');

      const result = await run('results', [jobId, '--out', 'here'], dir, { cwd });

      expect(result).toEqual({
        code: 0,
        err: '',
        out: `Outputs of job ${jobId} (succeeded) in here/: results.jsonl, errors.jsonl, invalid.jsonl, summary.json, summary.html\n`,
      });
      const keys = jobKeys(jobId);
      for (const output of ['results', 'errors', 'invalid', 'summary', 'summaryHtml'] as const) {
        expect(await readFile(path.join(cwd, 'here', path.basename(keys[output])), 'utf8')).toBe(await readText(aws, keys[output]));
      }
      expect((await readFile(path.join(cwd, 'here', 'invalid.jsonl'), 'utf8')).split('\n').filter(Boolean)).toHaveLength(1);
    });

    it('says a running job has no outputs yet', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'still', { status: 'running' });
      expect(await run('results', ['still'], dir)).toEqual({
        code: 1,
        out: '',
        err: `batchline results: job still has not ended yet (running): its outputs are written when it ends (follow it with: batchline status still --local ${dir})\n`,
      });
    });
  });

  describe('submit', () => {
    async function requestFile(name: string, lines: unknown[]): Promise<string> {
      const folder = await tempDir('batchline-submit-');
      const file = path.join(folder, name);
      await writeFile(file, jsonl(lines));
      watched.add(`inbox/${name}`);
      return file;
    }
    /** The output with the elapsed-time prefixes of step lines and the summary's duration taken out. */
    const steady = (text: string) => text.replace(/^\[ *[\d.hms]+\] /gm, '').replace(/: (\w+) in [\d.hms]+$/m, ': $1 in T');

    it('uploads the file to inbox/, finds the job it started and follows it to its summary', async () => {
      const file = await requestFile('submit-ok.jsonl', requests(3, 's'));

      const result = await run('submit', [file], dir, { cwd: path.dirname(file) });

      expect(result.err).toBe('');
      expect(result.code).toBe(0);
      const jobId = /^Job (\S+)$/m.exec(result.out)![1]!;
      const job = await readJobItem(aws, jobId);
      expect(job).toMatchObject({ key: 'inbox/submit-ok.jsonl', validationMode: 'strict', status: 'succeeded' });
      const chunk = (await readText(aws, jobKeys(jobId).summary))!;
      const batchId = (JSON.parse(chunk) as { batches: Array<{ batchId: string }> }).batches[0]!.batchId;
      const out = steady(result.out).split('\n');
      expect(out.slice(0, 7)).toEqual([
        `Uploading submit-ok.jsonl to s3://${aws.bucket}/inbox/submit-ok.jsonl (strict)`,
        `Job ${jobId}`,
        'validated: 3 rows valid, 0 invalid; 1 chunk',
        `chunk 0: attempt 1 submitted as ${batchId}`,
        'chunk 0: attempt 1 collected',
        `job ${jobId} finalized: succeeded`,
        '',
      ]);
      expect(out[7]).toBe(`Job ${jobId}: succeeded in T`);
      expect(out).toContain('  rows      3 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
      expect(out.slice(-3)).toEqual([
        '',
        `Outputs in s3://${aws.bucket}/results/${jobId}/ (download them with: batchline results ${jobId} --local ${dir})`,
        '',
      ]);
    });

    it('sends --lenient as the object metadata and exits 3 for the rows left out, and exits 1 when strict validation rejects the file', async () => {
      const lines = [request('v1'), '{"custom_id": "broken"}'];
      const lenient = await run('submit', [await requestFile('submit-lenient.jsonl', lines), '--lenient'], dir);
      const strict = await run('submit', [await requestFile('submit-strict.jsonl', lines)], dir);

      const jobOf = (out: string) => readJobItem(aws, /^Job (\S+)$/m.exec(out)![1]!);
      expect(lenient.code).toBe(3);
      expect(await jobOf(lenient.out)).toMatchObject({ validationMode: 'lenient', status: 'succeeded', invalidRows: 1 });
      expect(lenient.out.trimEnd().split('\n').at(-1)).toBe('1 of 2 rows did not succeed (1 invalid): exit status 3');
      expect(strict.code).toBe(1);
      expect(await jobOf(strict.out)).toMatchObject({ validationMode: 'strict', status: 'rejected', invalidRows: 1 });
      expect(steady(strict.out)).toContain('validated: 1 row valid, 1 invalid; nothing submitted (rejected)');
    });

    it('rejects a file naming a misspelt model (exit 1), its line and the nearest known model in invalid.jsonl', async () => {
      const result = await run('submit', [await requestFile('submit-typo.jsonl', [request('fine'), request('typo', { model: 'claude-sonet-4-5' })])], dir);

      const jobId = /^Job (\S+)$/m.exec(result.out)![1]!;
      expect(await readJobItem(aws, jobId)).toMatchObject({ status: 'rejected', validRows: 1, invalidRows: 1 });
      expect(JSON.parse((await readText(aws, jobKeys(jobId).invalid))!)).toEqual({
        line: 2,
        custom_id: 'typo',
        code: 'unknown_model',
        reason: 'line 2: unknown model claude-sonet-4-5: did you mean claude-sonnet-4-5?',
      });
      expect(result.code).toBe(1);
    });

    it("says once, in its summary, that the API refused the key and to check the stack's secret, when the job failed on it", async () => {
      const { own, dir } = await isolated();
      const refused = { error: 'ApiAuthError', cause: 'ApiAuthError: 401 authentication_error: Invalid authentication credentials' };
      await putJob(own, 'refused', {
        status: 'failed',
        endedAt: '2026-01-02T04:00:00.000Z',
        failure: refused,
        counts: { succeeded: 0, errored: 5, expired: 0, canceled: 0, invalid: 0 },
      });
      await putChunk(own, 'refused', 0, {
        status: 'failed',
        rows: 5,
        bytes: 100,
        firstLine: 1,
        lastLine: 5,
        currentAttempt: 1,
        updatedAt: 't',
        failure: refused,
        attempts: [{ attempt: 1, rows: 5, bytes: 100, intentAt: '2026-01-02T03:05:00.000Z' }],
      });
      const memory = memoryIo();

      const code = await followToEnd({ ...own, kind: 'stack', flags: '', prefixes: DEFAULT_PREFIXES }, 'refused', memory.io, {
        tty: false,
        startedAt: Date.now(),
      });

      expect(
        memory
          .out()
          .split('\n')
          .filter((line) => /refused the key|ApiAuthError|authentication/.test(line)),
      ).toEqual(["  failure   the API refused the key (401): check the key in the stack's secret (its ApiKeySecretName output)"]);
      expect(memory.err()).toBe('');
      expect(code).toBe(1);
      // A local stack (serve --live) has its key from the environment.
      expect((await run('status', ['refused'], dir)).out).toContain('  failure   the API refused the key (401): check ANTHROPIC_API_KEY\n');
    });

    it('with --no-follow, prints the job id once registered and returns', async () => {
      const file = await requestFile('submit-nofollow.jsonl', requests(1, 'n'));

      const result = await run('submit', [file, '--no-follow'], dir, { cwd: path.dirname(file) });

      const jobId = /^Job (\S+) registered/m.exec(result.out)![1]!;
      expect(result).toEqual({
        code: 0,
        err: '',
        out: [
          `Uploading submit-nofollow.jsonl to s3://${aws.bucket}/inbox/submit-nofollow.jsonl (strict)`,
          `Job ${jobId} registered. Follow it with: batchline status ${jobId} --local ${dir}`,
          '',
        ].join('\n'),
      });
    });

    it('uploads a file larger than a part in parts, with the mode as metadata and the ETag S3 reports', async () => {
      const folder = await tempDir('batchline-big-');
      const file = path.join(folder, 'big.jsonl');
      const row = JSON.stringify(request('x')) + '\n';
      await writeFile(file, row.repeat(Math.ceil((DEFAULT_PART_SIZE + 1024) / row.length)));

      const progress: number[] = [];

      const uploaded = await uploadFile(aws, file, 'inbox/big.jsonl', 'lenient', (percent) => progress.push(percent));

      const head = await headObject(aws.s3, aws.bucket, 'inbox/big.jsonl');
      expect(uploaded).toEqual({ bucket: aws.bucket, key: 'inbox/big.jsonl', etag: head.ETag, versionId: undefined });
      // Part by part (a single PutObject reports once, at 100%).
      expect(progress.length).toBe(2);
      expect(progress.at(-1)).toBe(100);
      expect(head.Metadata).toEqual({ 'batchline-mode': 'lenient' });
      expect(head.ContentLength).toBe((await stat(file)).size);
    });

    it('gives up with one clear line when no job appears for the upload', async () => {
      const uploaded = { bucket: aws.bucket, key: 'inbox/unwatched.jsonl', etag: 'abc' };
      await expect(waitForJob(ctx.aws, uploaded, { since: new Date().toISOString(), timeoutMs: 300, intervalMs: 50 })).rejects.toThrow(
        new OpsFailure(
          `no job appeared for s3://${aws.bucket}/inbox/unwatched.jsonl within 0.3s: is the stack's inbox trigger enabled? ("batchline jobs" lists recent jobs)`,
        ),
      );
    });

    it('refuses a missing file with exit code 2 before touching the stack', async () => {
      expect(await run('submit', ['no-such.jsonl'], '/nonexistent')).toEqual({ code: 2, out: '', err: 'batchline submit: no such file: no-such.jsonl\n' });
    });
  });

  describe('finding the local stack', () => {
    it('says in one line when no local stack serves in the folder, or its process has gone', async () => {
      const empty = await tempDir('batchline-nostack-');
      expect(await run('jobs', [], empty)).toEqual({
        code: 1,
        out: '',
        err: `batchline jobs: no local stack is serving in ${empty} (${localStatePath(empty)} does not exist; start one there with "batchline serve")\n`,
      });

      const stale = await localStateFor(aws);
      const state = JSON.parse(await readFile(localStatePath(stale), 'utf8')) as { pid: number };
      await writeFile(localStatePath(stale), JSON.stringify({ ...state, pid: 2 ** 22 + 1 }));
      expect((await run('jobs', [], stale)).err).toBe(
        `batchline jobs: the local stack recorded in ${localStatePath(stale)} is no longer running (process ${2 ** 22 + 1} has exited)\n`,
      );
    });

    it('reads BATCHLINE_LOCAL when no flag names a stack, and refuses --stack with --local', async () => {
      const { own, dir } = await isolated();
      await putJob(own, 'env-job');
      const memory = memoryIo({ env: { BATCHLINE_LOCAL: dir, BATCHLINE_STACK: 'Elsewhere' } });
      expect(await OPS_COMMANDS.jobs!.run([], memory.io)).toBe(0);
      expect(memory.out()).toContain('env-job');

      expect(await run('jobs', ['--stack', 'Batchline'], dir)).toEqual({ code: 2, out: '', err: 'batchline jobs: give --stack or --local, not both\n' });
    });

    it('says it cannot reach a local stack whose servers are down', async () => {
      const down = await tempDir('batchline-down-');
      const file = localStatePath(down);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(
        file,
        JSON.stringify({ version: 1, pid: process.pid, s3Endpoint: 'http://127.0.0.1:9', dynamodbEndpoint: 'http://127.0.0.1:9', bucket: 'b', table: 't' }),
      );

      expect(await run('jobs', [], down)).toEqual({
        code: 1,
        out: '',
        err: `batchline jobs: cannot reach the local stack in ${down}: ECONNREFUSED (is "batchline serve" still running?)\n`,
      });
    });
  });
});
