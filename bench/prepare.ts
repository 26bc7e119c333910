/**
 * Benchmark 1 — Prepare's throughput and memory.
 *
 * A realistic N-row file is streamed to disk, uploaded to s3rver (multipart), and read four ways,
 * each in a fresh child process while s3rver and dynalite run in this one:
 *   - bare, from disk: split on `\n` (Buffer.indexOf) + JSON.parse per line — context only;
 *   - bare, from s3rver: the same over a GetObject body of the same object — the baseline;
 *   - validation only, from s3rver: Prepare's reading half, to tell validating from writing;
 *   - Prepare's core (shared/jobs/prepare.ts) on that object: validate, a row index per chunk to S3, records;
 *   - reading every chunk's attempt 1 back as Submit does (not timed against a target).
 * The ratio Prepare / bare-from-s3rver compares our work with the least any reader must do over
 * the same transport. Peak RSS is the Prepare child's maxrss.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Upload } from '@aws-sdk/lib-storage';
import { createPipelineTable, startDynamo, startS3 } from '../local/emulators';
import { describeRequests, requestsOf } from './aws-meter';
import { cpuShare, runInChild, type ChildMeasure } from './child';
import type { BenchContext } from './context';
import { writeInputFile } from './input-file';
import type { BarePass, PrepareRun } from './prepare-tasks';
import { check, fmt, int, mb, mib, secs, type BenchReport } from './report';

export const PREPARE_TARGETS = { ratio: 0.7, peakRssBytes: 512 * 1024 * 1024 };
const DEFAULT_ROWS = 200_000;
const FULL_ROWS = 1_000_000;
const BUCKET = 'bench-prepare';
const TABLE = 'bench-prepare';
const KEY = 'inbox/bench-input.jsonl';

export async function benchPrepare(ctx: BenchContext): Promise<BenchReport> {
  const rows = ctx.options.rows ?? (ctx.options.full ? FULL_ROWS : DEFAULT_ROWS);
  const dir = await mkdtemp(path.join(ctx.options.workDir, 'prepare-'));
  const file = path.join(dir, 'input.jsonl');
  const s3 = await startS3({ buckets: [BUCKET], directory: path.join(dir, 's3') });
  const dynamo = await startDynamo();
  try {
    await createPipelineTable(dynamo.client, TABLE);
    ctx.log(`prepare: writing ${int(rows)} rows to disk`);
    let start = performance.now();
    const input = await writeInputFile(file, rows);
    const generateMs = performance.now() - start;

    ctx.log(`prepare: uploading ${fmt(mb(input.bytes), 0)} MB to s3rver`);
    start = performance.now();
    await new Upload({
      client: s3.client,
      params: { Bucket: BUCKET, Key: KEY, Body: createReadStream(file), Metadata: { 'batchline-mode': 'strict' } },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    }).done();
    const uploadMs = performance.now() - start;

    const object = { s3Endpoint: s3.endpoint, bucket: BUCKET, key: KEY };
    ctx.log('prepare: bare pass from disk');
    const disk = await runInChild<BarePass>({ module: './prepare-tasks', fn: 'bareFromDisk' }, { path: file });
    ctx.log('prepare: bare pass from s3rver');
    const bare = await runInChild<BarePass>({ module: './prepare-tasks', fn: 'bareFromS3' }, object);
    ctx.log('prepare: validation only, from s3rver');
    const validate = await runInChild<BarePass & { valid: number }>({ module: './prepare-tasks', fn: 'validateFromS3' }, object);
    ctx.log('prepare: Prepare core');
    const prep = await runInChild<PrepareRun>(
      { module: './prepare-tasks', fn: 'prepareObject' },
      { ...object, dynamoEndpoint: dynamo.endpoint, table: TABLE },
    );
    ctx.log('prepare: reading the chunks back');
    const back = await runInChild<{ ms: number; requests: number; bytes: number }>(
      { module: './prepare-tasks', fn: 'readBackFromS3' },
      { ...object, jobId: prep.value.jobId, chunks: prep.value.chunks },
    );
    if (back.value.requests !== rows) throw new Error(`reading the chunks back gave ${back.value.requests} requests, expected ${rows}`);
    for (const pass of [disk.value, bare.value, validate.value]) {
      if (pass.bytes !== input.bytes || pass.lines !== rows) throw new Error(`a bare pass read ${pass.bytes} bytes / ${pass.lines} lines, expected ${input.bytes} / ${rows}`);
    }
    if (prep.value.validRows !== rows || prep.value.outcome !== 'ready') {
      throw new Error(`Prepare found ${prep.value.validRows} valid rows (${prep.value.outcome}), expected ${rows}`);
    }

    const rate = (ms: number) => mb(input.bytes) / (ms / 1000);
    const ratio = rate(prep.value.ms) / rate(bare.value.ms);
    ctx.measured.prepare = { rows, bytes: input.bytes, ms: prep.value.ms, aws: prep.value.aws };

    const measured = (m: ChildMeasure<unknown>) => [`${cpuShare(m.cpuMs, m.wallMs)} / ${cpuShare(m.parentCpuMs, m.wallMs)}`, mib(m.peakRssBytes), mib(m.startRssBytes)];
    return {
      name: 'prepare',
      title: `prepare — ${int(rows)} rows, ${fmt(mb(input.bytes), 0)} MB (${fmt(input.bytes / rows, 0)} B/row)`,
      tables: [
        {
          headers: ['pass', 'MB/s', 'time', 'CPU: pass / servers', 'peak RSS', 'RSS at start'],
          rows: [
            ['write the file to disk (generator)', fmt(rate(generateMs)), secs(generateMs), '—', '—', '—'],
            ['upload to s3rver (multipart, 16 MiB parts)', fmt(rate(uploadMs)), secs(uploadMs), '—', '—', '—'],
            ['bare split + JSON.parse, from disk', fmt(rate(disk.value.ms)), secs(disk.value.ms), ...measured(disk)],
            ['bare split + JSON.parse, from s3rver', fmt(rate(bare.value.ms)), secs(bare.value.ms), ...measured(bare)],
            ['splitLines + validateLine only, from s3rver', fmt(rate(validate.value.ms)), secs(validate.value.ms), ...measured(validate)],
            ['Prepare core, from s3rver (validate + write row indexes)', fmt(rate(prep.value.ms)), secs(prep.value.ms), ...measured(prep)],
            ['read every chunk back as Submit does (row index + input range)', fmt(rate(back.value.ms)), secs(back.value.ms), ...measured(back)],
          ],
        },
        {
          headers: ['Prepare', 'value'],
          rows: [
            ['chunks (row indexes written)', int(prep.value.chunks)],
            ['S3 requests', `${int(requestsOf(prep.value.aws, 's3'))} (${describeRequests(prep.value.aws, 's3')})`],
            ['DynamoDB requests', `${int(requestsOf(prep.value.aws, 'dynamodb'))} (${describeRequests(prep.value.aws, 'dynamodb')})`],
            ['DynamoDB write / read units', `${fmt(prep.value.aws.writeUnits, 0)} / ${fmt(prep.value.aws.readUnits, 1)}`],
          ],
        },
      ],
      checks: [
        check('prepare: MB/s ÷ bare split+parse (same s3rver object)', `≥ ${fmt(PREPARE_TARGETS.ratio, 2)}`, fmt(ratio, 2), ratio >= PREPARE_TARGETS.ratio),
        check('prepare: peak RSS', `≤ ${mib(PREPARE_TARGETS.peakRssBytes)}`, mib(prep.peakRssBytes), prep.peakRssBytes <= PREPARE_TARGETS.peakRssBytes),
      ],
      notes: [
        'MB = 10^6 bytes. Each pass ran in its own child process; s3rver and dynalite ran in the parent, so the two share the 2 cores. ' +
          'CPU is each process\'s CPU time as a share of one core over the pass (100% = one core busy throughout).',
        'Prepare copies no request: a chunk is a byte range of the input, pinned to the version (or ETag) Prepare read, and Prepare writes one small row index per chunk (offsets, lengths, custom_ids).',
      ],
    };
  } finally {
    await s3.stop();
    await dynamo.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
