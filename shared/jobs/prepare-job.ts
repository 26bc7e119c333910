/**
 * Prepare: stream the input file once, validate every line, cut the valid rows into chunks (in
 * input order, each within the batch limits) and write each chunk's row index (chunk-files.ts: which
 * bytes of the pinned input are its requests, and their custom_ids; the requests are not copied),
 * the invalid lines into a report, and record the chunks and counts. Memory stays bounded whatever
 * the file's size, and a retried Prepare converges on the same chunks and items.
 *
 * A file of many millions of lines: one invocation reads at most `prepareLinesPerInvocation` lines (or
 * PREPARE_BYTES_PER_INVOCATION bytes), closes the chunk in progress, and commits a checkpoint (where
 * the next line starts, the counts, the chunks so far, the estimate's totals, its own pieces of the
 * reports and its custom_ids); it answers `partial` and the workflow invokes it again, which reads
 * on from there with a Range request. Where an invocation stops depends only on the file and the
 * settings, so a retried one cuts the same chunks; its checkpoint and pieces are under its own name,
 * and the job record names the one committed. Duplicates within an invocation are caught by
 * its CustomIdSet; across invocations by the earlier ones' ids, kept in S3 (prior-ids.ts). When the
 * file ends, the pieces are joined into the job's reports inside S3 (concat.ts). docs/performance.md §6.
 *
 * A strict file is rejected at its first invalid line, and Finalize must still list its valid rows
 * in input order without reading the input again (by then it may have been overwritten or deleted).
 * The rows before that line are already in row indexes, so they stay there (the chunk in progress is
 * stored too); from then on only each valid row's custom_id is written, to `rejectedValidIds`. A file
 * that is not rejected writes nothing more than before.
 */
import { DeleteItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { Readable } from 'node:stream';
import { intSetting, type PipelineConfig } from '../config';
import { isBlank, type RawLine } from '../jsonl/lines';
import { maxLineBytesFor, SourceLineReader, tooLongOutcome, type TooLongLine } from '../validation/input-lines';
import { BulkWriter, ConditionFailed, getItem, queryPartition, updateItem } from '../store/dynamo';
import { CHUNK_SK_PREFIX, chunkSk, JOB_SK, jobPk, ttlAfter, type ChunkItem, type JobItem } from '../store/items';
import { jobKeys } from '../store/keys';
import { getJson, isS3NotFound, ObjectWriter, putJson } from '../store/s3';
import { randomUUID } from 'node:crypto';
import { RowIndex, storeRowIndex, type SourceRef } from './chunk-files';
import { WIRE_GROWTH_BYTES } from './wire-ids';
import { quietObserver, type Observer } from '../observability';
import { bareEtag } from './job-id';
import { SourceChanged, SourceNotFound } from './register-job';
import { rowShardCount } from './row-records';
import { BATCH_BODY_OVERHEAD, CustomIdSet, duplicateRejection, invalidReportRow, validateLine, type LineOutcome } from '../validation/request';
import { PriorIds, storeSegmentIds, type IdSegmentRef } from '../validation/prior-ids';
import { concatObjects, type ConcatSource } from '../store/concat';
import { modelCatalogFromConfig } from '../validation/models';
import { clockOf } from '../clock';
import type { PrepareOutcome, PrepareOutput } from './contract';
import { EstimateTotals, type EstimateTotalsJson, type EstimateTotalsState, type OutputHistory } from '../cost/cost';
import { readOutputHistory } from './output-history';
import { priceTableFromConfig } from '../cost/prices';
import { jobToReuse, paramsHash, PlanWriter, reusableRows, type ReusableRow } from './reuse';

export class JobNotFound extends Error {
  override readonly name = 'JobNotFound';
}

/** The file needs more chunks than one job's state can list (see MAX_CHUNKS). */
export class TooManyChunks extends Error {
  override readonly name = 'TooManyChunks';
}

/**
 * One Prepare invocation's share of the input (prepareLinesPerInvocation) will not fit it: its memory
 * or its time would run out before that share's end. Not retried (a re-run would hit the same wall);
 * the message says which setting to change, and to about what.
 */
export class InputTooLarge extends Error {
  override readonly name = 'InputTooLarge';
}

/** What one Prepare invocation may use, watched while it scans (docs/performance.md §6). */
export interface PrepareLimits {
  /** The function's memory in MiB (Lambda's AWS_LAMBDA_FUNCTION_MEMORY_SIZE); none: memory is not watched. */
  memoryMiB?: number;
  /** The invocation's time left in ms (the Lambda context's getRemainingTimeInMillis); none: time is not watched. */
  remainingMs?: () => number;
}

/** The limits of this invocation: the memory Lambda gives the function and the context's clock. */
export function lambdaLimits(context: { getRemainingTimeInMillis?: () => number } | undefined, env: NodeJS.ProcessEnv = process.env): PrepareLimits {
  const memoryMiB =
    env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE === undefined ? undefined : intSetting(env, 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 0, 1, LAMBDA_MAX_MEMORY_MIB);
  const remainingMs = context?.getRemainingTimeInMillis?.bind(context);
  return { memoryMiB, remainingMs };
}

/** Lambda's largest memory size. */
export const LAMBDA_MAX_MEMORY_MIB = 10_240;
/** Prepare stops once its resident memory passes this share of the function's. */
const MEMORY_SHARE = 0.85;
/** ...or once it has less than this left with input still unread (enough to fail cleanly and record why). */
const TIME_RESERVE_MS = 60_000;
/** The limits are checked at the first line, then every this many lines or bytes, whichever comes first. */
const CHECK_EVERY_LINES = 4096;
const CHECK_EVERY_BYTES = 64 * 1024 * 1024;

/**
 * The most chunks one job may have. Prepare's output lists every chunk index, and it (plus a caught
 * error, in MarkJobFailed's input) must stay under Step Functions' 256 KB state limit: 30,000
 * indexes are about 169 KB of JSON, leaving room for a cause of 32,768 characters even when its
 * escaping doubles it.
 */
export const MAX_CHUNKS = 30_000;

/**
 * One invocation reads at most this many bytes of the input (about 45 s at Lambda's reading speed),
 * besides the `prepareLinesPerInvocation` lines: long lines do not stretch an invocation either.
 */
export const PREPARE_BYTES_PER_INVOCATION = 4 * 1024 ** 3;

/** The job's estimated cost is over its budget: nothing is submitted (a rejected job, as ValidationFailed). */
export const BUDGET_EXCEEDED = 'BudgetExceeded';

export interface PrepareDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  config: Pick<
    PipelineConfig,
    | 'bucket'
    | 'table'
    | 'maxRequestsPerChunk'
    | 'maxBytesPerChunk'
    | 'rowTtlDays'
    | 'rowsPerShard'
    | 'pricesJson'
    | 'allowUnknownModels'
    | 'prepareLinesPerInvocation'
  >;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
  /** Default MAX_CHUNKS; tests lower it rather than write 30,000 files. */
  maxChunks?: number;
  /** The invocation's memory and time (lambdaLimits); default: neither is watched. */
  limits?: PrepareLimits;
  /** Default PREPARE_BYTES_PER_INVOCATION; tests lower it. */
  bytesPerInvocation?: number;
}

/** Invalid-line report rows are gathered into writes of about this size. */
const WRITE_BATCH_BYTES = 1024 * 1024;
const INVALID_PART_BYTES = 5 * 1024 * 1024;

/**
 * Chunk numbers are 0-based (the Map's item indexes); a ChunkItem's first attempt is 1 and its
 * `intentAt` is '' until Submit records its intent to create. `bytes` is the size of the create body
 * the chunk makes (envelope and commas included), the number the API's 256 MB limit applies to.
 */
export async function prepareJob(input: { jobId: string }, deps: PrepareDeps): Promise<PrepareOutput> {
  const { dynamo, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  const key = { pk: jobPk(input.jobId), sk: JOB_SK };
  let job = await getItem<JobItem>(dynamo, config.table, key);
  if (!job) throw new JobNotFound(`job ${input.jobId} does not exist`);
  if (job.chunkCount !== undefined) return preparedBefore(job, observer);
  try {
    job = await updateItem<JobItem>(dynamo, config.table, key, {
      set: { status: 'preparing', updatedAt: new Date(now()).toISOString() },
      condition: { expression: 'attribute_exists(pk) AND attribute_not_exists(chunkCount)' },
    });
  } catch (error) {
    // Another Prepare finished meanwhile: its result stands.
    if (!(error instanceof ConditionFailed)) throw error;
    const finished = await getItem<JobItem>(dynamo, config.table, key);
    if (!finished) throw new JobNotFound(`job ${input.jobId} does not exist`);
    return preparedBefore(finished, observer);
  }

  const from = job.preparedCheckpoint ? await readCheckpoint(deps, job.preparedCheckpoint) : undefined;
  // The budget is judged on the expected figure: output from past jobs' history (none: max_tokens),
  // read once per job, so every invocation of a file read across invocations estimates alike.
  const history = job.maxCostUsd === undefined ? undefined : from ? from.history : await readOutputHistory(dynamo, config.table);
  const read = await scanSource(job, deps, history, from);
  if ('offset' in read) return commitCheckpoint(job, read, deps);
  const scan = read;
  const invalidRejected = job.validationMode === 'strict' && scan.invalidRows > 0;
  const estimate = job.maxCostUsd === undefined ? undefined : scan.estimate.toJSON();
  const estimateUsd = estimate?.totalUsd;
  const expectedUsd = estimate?.expected.totalUsd;
  const budgetRejection =
    !invalidRejected && estimate !== undefined && estimate.expected.totalUsd > job.maxCostUsd!
      ? await rejectForBudget(job, scan.chunks.length, estimate, deps)
      : undefined;
  const rejected = invalidRejected || budgetRejection !== undefined;
  const chunks = rejected ? [] : scan.chunks;
  const outcome: PrepareOutcome = rejected ? 'rejected' : chunks.length === 0 ? 'empty' : 'ready';
  const at = now();
  const ttl = ttlAfter(at, config.rowTtlDays);
  const updatedAt = new Date(at).toISOString();

  const items = new BulkWriter(dynamo, config.table);
  for (const chunk of chunks) {
    const item: ChunkItem = {
      pk: jobPk(job.jobId),
      sk: chunkSk(chunk.chunk),
      type: 'chunk',
      jobId: job.jobId,
      chunk: chunk.chunk,
      status: 'pending',
      rows: chunk.rows,
      bytes: chunk.bytes,
      firstLine: chunk.firstLine,
      lastLine: chunk.lastLine,
      currentAttempt: 1,
      attempts: [{ attempt: 1, rows: chunk.rows, bytes: chunk.bytes, intentAt: '' }],
      updatedAt,
      ttl,
    };
    await items.put(item);
  }
  // Disjoint items: the chunks written now, and those past them an interrupted Prepare left.
  await Promise.all([items.flush(), removeChunksFrom(dynamo, config.table, job.jobId, chunks.length)]);

  await updateItem(dynamo, config.table, key, {
    set: {
      status: rejected ? 'rejected' : 'running',
      totalRows: scan.validRows + scan.invalidRows,
      validRows: scan.validRows,
      invalidRows: scan.invalidRows,
      rowShards: rowShardCount(scan.validRows, config.rowsPerShard),
      chunkCount: chunks.length,
      reusedRows: job.reuse ? scan.reusedRows : undefined,
      estimateUsd,
      expectedUsd,
      sentOutput: scan.sentOutput,
      rejection: budgetRejection,
      updatedAt,
    },
    // Reused rows are final from the start (progress counts them with the rows Collect decides).
    ...(job.reuse && scan.reusedRows > 0 ? { add: { rowsFinal: scan.reusedRows } } : {}),
  });
  observer.metric('RowsInvalid', scan.invalidRows);
  observer.info('prepared', {
    outcome,
    validationMode: job.validationMode,
    validRows: scan.validRows,
    invalidRows: scan.invalidRows,
    reusedRows: job.reuse ? scan.reusedRows : undefined,
    estimateUsd,
    expectedUsd,
    expectedBasis: estimate?.expected.basis,
    budgetUsd: job.maxCostUsd,
    rejection: budgetRejection?.error,
    chunks: chunks.length,
    largestChunkRows: chunks.reduce((max, chunk) => Math.max(max, chunk.rows), 0),
    largestChunkBytes: chunks.reduce((max, chunk) => Math.max(max, chunk.bytes), 0),
  });
  return {
    jobId: job.jobId,
    outcome,
    chunks: chunks.map((chunk) => chunk.chunk),
    validRows: scan.validRows,
    invalidRows: scan.invalidRows,
  };
}

function preparedBefore(job: JobItem, observer: Observer): PrepareOutput {
  const result = recordedResult(job);
  observer.info('prepared before', { outcome: result.outcome, validRows: result.validRows, invalidRows: result.invalidRows, chunks: result.chunks.length });
  return result;
}

/** The result of a Prepare that already finished, rebuilt from the job record. */
function recordedResult(job: JobItem): PrepareOutput {
  const validRows = job.validRows ?? 0;
  const invalidRows = job.invalidRows ?? 0;
  const chunkCount = job.chunkCount ?? 0;
  const rejected = (job.validationMode === 'strict' && invalidRows > 0) || job.rejection !== undefined;
  const outcome: PrepareOutcome = rejected ? 'rejected' : chunkCount === 0 ? 'empty' : 'ready';
  return {
    jobId: job.jobId,
    outcome,
    chunks: Array.from({ length: chunkCount }, (_, chunk) => chunk),
    validRows,
    invalidRows,
  };
}

/** A retry that made fewer chunks than an earlier, interrupted attempt must not leave the extra records. */
async function removeChunksFrom(dynamo: DynamoDBClient, table: string, jobId: string, from: number): Promise<void> {
  for await (const item of queryPartition<ChunkItem>(dynamo, table, jobPk(jobId), CHUNK_SK_PREFIX)) {
    if (item.chunk >= from) {
      await dynamo.send(new DeleteItemCommand({ TableName: table, Key: marshall({ pk: item.pk, sk: item.sk }) }));
    }
  }
}

interface ChunkSummary {
  chunk: number;
  rows: number;
  bytes: number;
  firstLine: number;
  lastLine: number;
}

interface ScanResult {
  validRows: number;
  invalidRows: number;
  chunks: ChunkSummary[];
  /** Valid rows taken over from the job named by `reuse` (in no chunk). */
  reusedRows: number;
  /** The cost estimate of the rows the chunks hold (cost.ts EstimateTotals), when the job has a budget. */
  estimate: EstimateTotals;
  /** Per model, the rows the chunks hold and their Σ max_tokens (for the output history). */
  sentOutput: Record<string, { rows: number; maxTokens: number }>;
}

/**
 * Over budget: the job is rejected before anything is submitted. Its valid rows are all in the
 * chunks' row indexes, so FinalizeJob lists them as a strict rejection's (`rejectedValidIds`).
 */
async function rejectForBudget(job: JobItem, chunkFiles: number, estimate: EstimateTotalsJson, deps: PrepareDeps): Promise<{ error: string; cause: string }> {
  const ids = new ObjectWriter(deps.s3, deps.config.bucket, jobKeys(job.jobId).rejectedValidIds);
  await ids.writeLine({ chunkFiles });
  await ids.finish();
  const usd = (n: number) => `$${n.toFixed(n < 1 ? 4 : 2)}`;
  const { expected } = estimate;
  const basis =
    expected.basis === 'max_tokens'
      ? 'no history: output at max_tokens'
      : `output from ${expected.historyRows.toLocaleString('en-US')} rows of past jobs${expected.basis === 'partial' ? ', at max_tokens for models without history' : ''}`;
  return {
    error: BUDGET_EXCEEDED,
    cause:
      `The expected cost ${usd(expected.totalUsd)} (an estimate: input tokens from the text, prompt caching, ${basis}; ` +
      `at most ${usd(estimate.totalUsd)} with every row using its max_tokens) is over the job's budget of ${usd(job.maxCostUsd!)}, so nothing was submitted`,
  };
}

/**
 * Where a Prepare that reads the input across invocations stands after one of them (stored as JSON,
 * keys.prepareCheckpoint): the next one reads on from `offset` with everything it must carry on.
 */
export interface PrepareCheckpoint {
  /** Invocations committed, this one's included (1-based: the first leaves checkpoint 1). */
  segment: number;
  /** The byte after the last line read, and that line's number: the next invocation starts there. */
  offset: number;
  lineNumber: number;
  validRows: number;
  invalidRows: number;
  /** Every chunk closed so far (the last invocation closes its chunk in progress before it stops). */
  chunks: ChunkSummary[];
  /** A strict job rejected at an earlier line: no more chunks, only the later valid rows' ids. */
  sealed: boolean;
  /** The budget estimate's totals, at a batch's end (budgeted jobs only). */
  estimate?: EstimateTotalsState;
  sentOutput: Record<string, { rows: number; maxTokens: number }>;
  /** Valid rows taken over from the job named by `reuse`, so far. */
  reusedRows: number;
  /** Each committed invocation's custom_ids, for the later ones to check theirs against. */
  idSegments: IdSegmentRef[];
  /** Each committed invocation's pieces, in input order, joined when the file ends (empty ones left out). */
  pieces: { invalid: ConcatSource[]; rejectedValidIds: ConcatSource[]; reusePlan: ConcatSource[] };
  /** The output history the first invocation read (budgeted jobs): the later ones estimate with it too. */
  history?: OutputHistory;
  /** Where this checkpoint is stored (each attempt writes under its own name). */
  key: string;
}

async function readCheckpoint(deps: PrepareDeps, key: string): Promise<PrepareCheckpoint> {
  const checkpoint = await getJson<PrepareCheckpoint>(deps.s3, deps.config.bucket, key);
  if (!checkpoint) throw new Error(`the committed Prepare checkpoint s3://${deps.config.bucket}/${key} no longer exists`);
  return checkpoint;
}

/**
 * Stores the checkpoint (under this attempt's own name, with its pieces), then moves the job's
 * pointer to it, only from the one before: of two attempts at the same invocation (a retry while the
 * first still ran), one commits, and the other's objects are never read.
 */
async function commitCheckpoint(job: JobItem, checkpoint: PrepareCheckpoint, deps: PrepareDeps): Promise<PrepareOutput> {
  const read = job.preparedCheckpoint;
  const { dynamo, config } = deps;
  const observer = deps.observer ?? quietObserver;
  await putJson(deps.s3, config.bucket, checkpoint.key, checkpoint);
  try {
    await updateItem(
      dynamo,
      config.table,
      { pk: jobPk(job.jobId), sk: JOB_SK },
      {
        set: {
          preparedSegments: checkpoint.segment,
          preparedCheckpoint: checkpoint.key,
          preparedLines: checkpoint.lineNumber,
          preparedBytes: checkpoint.offset,
          updatedAt: new Date(clockOf(deps)()).toISOString(),
        },
        // From the checkpoint this attempt read, and no other.
        condition: {
          expression: `attribute_not_exists(chunkCount) AND ${read === undefined ? 'attribute_not_exists(preparedCheckpoint)' : 'preparedCheckpoint = :read'}`,
          ...(read === undefined ? {} : { values: { ':read': read } }),
        },
      },
    );
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    observer.info('checkpoint committed before', { segment: checkpoint.segment });
  }
  observer.info('prepared part of the input', {
    segment: checkpoint.segment,
    lines: checkpoint.lineNumber,
    bytes: checkpoint.offset,
    validRows: checkpoint.validRows,
    invalidRows: checkpoint.invalidRows,
    chunks: checkpoint.chunks.length,
  });
  return { jobId: job.jobId, outcome: 'partial', chunks: [], validRows: checkpoint.validRows, invalidRows: checkpoint.invalidRows };
}

/**
 * Reads the input from where the last invocation stopped (`from`; none: the start) to the file's end,
 * or to this invocation's share of it: a ScanResult at the end, else the checkpoint to commit.
 */
async function scanSource(
  job: JobItem,
  deps: PrepareDeps,
  history: OutputHistory | undefined,
  from: PrepareCheckpoint | undefined,
): Promise<ScanResult | PrepareCheckpoint> {
  const { s3, config } = deps;
  const keys = jobKeys(job.jobId);
  const segment = (from?.segment ?? 0) + 1;
  /** This attempt's name: its checkpoint and pieces are its own, whatever another attempt writes. */
  const attempt = randomUUID().slice(0, 8);
  const piece = (name: Parameters<typeof keys.preparePiece>[2]) => keys.preparePiece(segment, attempt, name);
  const start = { offset: from?.offset ?? 0, lineNumber: (from?.lineNumber ?? 0) + 1 };
  const lastLine = start.lineNumber - 1 + config.prepareLinesPerInvocation;
  const lastByte = start.offset + (deps.bytesPerInvocation ?? PREPARE_BYTES_PER_INVOCATION);
  const strict = job.validationMode === 'strict';
  // One request must fit a batch on its own; a line far beyond that is reported without being buffered.
  const maxRequestBytes = config.maxBytesPerChunk - BATCH_BODY_OVERHEAD - WIRE_GROWTH_BYTES;
  const maxLineBytes = maxLineBytesFor(maxRequestBytes);
  const customIds = new CustomIdSet();
  const prior = await PriorIds.load(s3, config.bucket, from?.idSegments ?? [], { cacheBytes: priorCacheBytes(deps.limits) });
  const models = modelCatalogFromConfig(config);
  const validation = { maxRequestBytes, customIds, models };
  const reusable = job.reuse ? await reusableOf(job.reuse, deps) : undefined;
  const plan = job.reuse ? new PlanWriter(s3, config.bucket, piece('reuse-plan')) : undefined;
  const estimateOptions = { prices: priceTableFromConfig(config), history, primeCache: job.primeCache === true };
  const estimate = from?.estimate ? EstimateTotals.fromState(from.estimate, estimateOptions) : new EstimateTotals(estimateOptions);
  const budgeted = job.maxCostUsd !== undefined;
  const sentOutput = new Map(Object.entries(from?.sentOutput ?? {}).map(([model, sent]) => [model, { ...sent }]));
  const { body, size } = await openSourceSized(s3, job, start.offset);
  const watch = new LimitWatch(deps.limits ?? {}, size, config.prepareLinesPerInvocation, prior.byteSize);
  const invalid = new LineBatches(new ObjectWriter(s3, config.bucket, piece('invalid'), { partSize: INVALID_PART_BYTES }));
  const source: SourceRef = { bucket: job.bucket, key: job.key, versionId: job.versionId, etag: job.etag };
  const chunks = new ChunkFiles(
    s3,
    config.bucket,
    job.jobId,
    source,
    {
      maxRows: config.maxRequestsPerChunk,
      maxBytes: config.maxBytesPerChunk,
      maxChunks: deps.maxChunks ?? MAX_CHUNKS,
      // Each chunk is its own batch: the estimate writes its cached prefixes again.
      onChunkStart: () => estimate.newBatch(),
    },
    from?.chunks ?? [],
  );
  const laterIdsWriter = () => new LineBatches(new ObjectWriter(s3, config.bucket, piece('rejected-valid-ids'), { partSize: INVALID_PART_BYTES }));
  /** Once a strict job is rejected: the custom_ids of the valid rows no chunk file holds. */
  let laterIds: LineBatches | undefined;
  if (from?.sealed) {
    chunks.open = false;
    laterIds = laterIdsWriter();
  }
  const reject = (): Promise<void> => {
    const { files, stored } = chunks.seal();
    laterIds = laterIdsWriter();
    laterIds.add(JSON.stringify({ chunkFiles: files }) + '\n');
    return stored;
  };
  let validRows = from?.validRows ?? 0;
  let invalidRows = from?.invalidRows ?? 0;
  /** Returns a promise only when the line must wait for S3 before the next one is read. */
  const handleLine = (entry: RawLine | TooLongLine): Promise<unknown> | undefined => {
    watch.check(entry, validRows + invalidRows);
    if ('tooLong' in entry) return decide(entry, tooLongOutcome(entry, maxRequestBytes));
    if (isBlank(entry.bytes)) return undefined;
    const outcome = validateLine(entry, validation);
    // New to this invocation, but maybe used on a line an earlier one read (a filter says maybe: rarely).
    const id = outcome.customId;
    if (id !== undefined && (outcome.ok || outcome.code !== 'duplicate_custom_id') && prior.mayHave(id)) {
      return prior.firstLine(id).then((first) => {
        if (first === undefined) return decide(entry, outcome);
        // Later uses of the id in this invocation name its true first line.
        customIds.relabel(id, first);
        return decide(entry, duplicateRejection(outcome.line, id, first));
      });
    }
    return decide(entry, outcome);
  };
  const decide = (entry: RawLine | TooLongLine, outcome: LineOutcome): Promise<unknown> | undefined => {
    if (outcome.ok) {
      validRows += 1;
      if (plan) {
        // Reused: same custom_id, byte-identical params. It goes to no chunk, so it is never sent.
        const old = reusable!.get(outcome.customId);
        const reused = old !== undefined && old.paramsHash === paramsHash(outcome.body);
        const pending = plan.add(reused ? old.index : PlanWriter.SENT);
        if (reused) return pending;
        if (pending) return pending.then(() => handleValid(entry as RawLine, outcome));
      }
      return handleValid(entry as RawLine, outcome);
    }
    invalidRows += 1;
    const pending = invalid.add(JSON.stringify(invalidReportRow(outcome)) + '\n');
    if (strict && chunks.open) return Promise.all([pending, reject()]);
    return pending;
  };
  const handleValid = (line: RawLine, outcome: Extract<LineOutcome, { ok: true }>): Promise<unknown> | undefined => {
    if (chunks.open) {
      const params = outcome.params;
      let sent = sentOutput.get(params.model);
      if (!sent) sentOutput.set(params.model, (sent = { rows: 0, maxTokens: 0 }));
      sent.rows += 1;
      sent.maxTokens += params.max_tokens;
      // The request's place in the source: validateLine's body is a view of the line's bytes.
      const offset = line.offset + (outcome.body.byteOffset - line.bytes.byteOffset);
      const pending = chunks.add(outcome.body.length, offset, outcome.customId, outcome.line);
      // Estimated once the row's chunk is known (a full chunk closes first, and the next one is another batch).
      if (!budgeted) return pending;
      if (pending) return pending.then(() => estimate.add(params));
      estimate.add(params);
      return undefined;
    }
    // A rejected strict job: nothing will be submitted, so only the id is kept (ids need no escaping).
    return laterIds!.add(`"${outcome.customId}"\n`);
  };
  try {
    const lines = new SourceLineReader(maxLineBytes, start);
    /** Where this invocation stopped short of the file's end: the byte after its last line, and that line. */
    let stop: { offset: number; lineNumber: number } | undefined;
    reading: for await (const piece of body) {
      lines.push(piece);
      for (let entry = lines.next(); entry !== undefined; entry = lines.next()) {
        const pending = handleLine(entry);
        if (pending) await pending;
        if ('offset' in entry && (entry.lineNumber >= lastLine || entry.offset + entry.length >= lastByte)) {
          const end = entry.offset + entry.length;
          if (size !== undefined && end < size) {
            stop = { offset: end, lineNumber: entry.lineNumber };
            break reading;
          }
        }
      }
    }
    if (!stop) {
      const last = lines.end();
      if (last !== undefined) await handleLine(last);
    }
    const wasOpen = chunks.open;
    const [written, invalidPiece, laterPiece] = await Promise.all([chunks.finish(), invalid.finish(), laterIds?.finish(), plan?.finish()]);
    const mine = (key: string, bytes: number | undefined): ConcatSource[] => (bytes ? [{ key, bytes }] : []);
    const pieces = {
      invalid: [...(from?.pieces.invalid ?? []), ...mine(piece('invalid'), invalidPiece.bytes)],
      rejectedValidIds: [...(from?.pieces.rejectedValidIds ?? []), ...mine(piece('rejected-valid-ids'), laterPiece?.bytes)],
      reusePlan: [...(from?.pieces.reusePlan ?? []), ...mine(piece('reuse-plan'), plan?.bytes)],
    };
    const reusedRows = (from?.reusedRows ?? 0) + (plan?.reused ?? 0);
    if (stop) {
      checkInvocations(segment, stop, size!, config.prepareLinesPerInvocation, deps.bytesPerInvocation ?? PREPARE_BYTES_PER_INVOCATION);
      return {
        key: keys.prepareCheckpoint(segment, attempt),
        history,
        segment,
        ...stop,
        validRows,
        invalidRows,
        chunks: written,
        sealed: !wasOpen,
        estimate: budgeted ? estimate.toState() : undefined,
        sentOutput: Object.fromEntries(sentOutput),
        reusedRows,
        idSegments: [...(from?.idSegments ?? []), await storeSegmentIds(s3, config.bucket, piece('custom-ids'), customIds, filterFor(segment, customIds.size))],
        pieces,
      };
    }
    // The file's end: the pieces become the job's reports, inside S3.
    await Promise.all([
      concatObjects(s3, config.bucket, pieces.invalid, keys.invalidWork),
      pieces.rejectedValidIds.length > 0 ? concatObjects(s3, config.bucket, pieces.rejectedValidIds, keys.rejectedValidIds) : undefined,
      plan ? concatObjects(s3, config.bucket, pieces.reusePlan, keys.reusePlan) : undefined,
    ]);
    return { validRows, invalidRows, chunks: written, reusedRows, estimate, sentOutput: Object.fromEntries(sentOutput) };
  } catch (error) {
    await Promise.all([chunks.abandon(), invalid.abort(), laterIds?.abort(), plan?.abort()]);
    throw error;
  } finally {
    body.destroy();
  }
}

/** The rows of the job this one reuses from that may be taken over (shared/jobs/reuse.ts). */
async function reusableOf(reuse: NonNullable<JobItem['reuse']>, deps: PrepareDeps): Promise<Map<string, ReusableRow>> {
  const old = await jobToReuse(deps.dynamo, deps.config.table, reuse.fromJob);
  const rows = await reusableRows(old, reuse.only, { s3: deps.s3, config: deps.config, openSource: (source) => openSource(deps.s3, source) });
  (deps.observer ?? quietObserver).info('rows to reuse', { fromJob: reuse.fromJob, only: reuse.only, reusable: rows.size });
  return rows;
}

/** The job's input object, exactly the upload it was registered for. */
export async function openSource(s3: S3Client, job: JobItem): Promise<Readable & AsyncIterable<Uint8Array>> {
  return (await openSourceSized(s3, job)).body;
}

/**
 * openSource from byte `offset` on, and the whole object's size in bytes (undefined if S3 did not
 * say). `offset` is within the object: a resumed Prepare starts at a line it has not read.
 */
async function openSourceSized(s3: S3Client, job: JobItem, offset = 0): Promise<{ body: Readable & AsyncIterable<Uint8Array>; size: number | undefined }> {
  const where = `s3://${job.bucket}/${job.key}`;
  try {
    const response = await s3.send(
      new GetObjectCommand({
        Bucket: job.bucket,
        Key: job.key,
        VersionId: job.versionId,
        IfMatch: job.versionId ? undefined : `"${job.etag}"`,
        Range: offset > 0 ? `bytes=${offset}-` : undefined,
      }),
    );
    const body = response.Body as unknown as (Readable & AsyncIterable<Uint8Array>) | undefined;
    if (!body) throw new Error(`${where} has no body`);
    // Checked here too: not every S3 (s3rver, for one) honours If-Match.
    if (!job.versionId && response.ETag && bareEtag(response.ETag) !== job.etag) {
      body.destroy();
      throw new SourceChanged(`${where} was overwritten after the job was registered (ETag ${job.etag}, now ${bareEtag(response.ETag)})`);
    }
    if (offset === 0) return { body, size: response.ContentLength };
    // A ranged reply's length is the range's; its Content-Range (`bytes a-b/size`) names the whole.
    // Anything else (a server that ignored the Range) would put every line at the wrong place.
    const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(response.ContentRange ?? '');
    if (!range || Number(range[1]) !== offset) {
      body.destroy();
      throw new Error(`${where}: asked for its bytes from ${offset}, S3 answered Content-Range "${response.ContentRange ?? ''}"`);
    }
    return { body, size: Number(range[2]) };
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 412) throw new SourceChanged(`${where} was overwritten after the job was registered (ETag ${job.etag})`);
    if (isS3NotFound(error)) throw new SourceNotFound(`${where} no longer exists`);
    throw error;
  }
}

/**
 * Watches one invocation's memory and time while the input is read, checking cheaply (at the first
 * line, then every CHECK_EVERY_LINES lines or CHECK_EVERY_BYTES bytes), and throws InputTooLarge
 * while there is still time to fail cleanly: a Prepare that Lambda kills (out of memory, timed out) is
 * retried twice at up to 900 s each, and ends with a cause that says nothing of the file.
 */
class LimitWatch {
  private readonly startRss = process.memoryUsage.rss();
  private readonly startRemaining: number | undefined;
  private nextLine = 1;
  private nextByte = 0;
  /** The first line this invocation reads, and the bytes of the input up to the end of the last line seen. */
  private firstLine: number | undefined;
  private read = 0;

  constructor(
    private readonly limits: PrepareLimits,
    private readonly size: number | undefined,
    private readonly linesPerInvocation: number,
    /** The earlier invocations' filters this one holds (they grow with the file, not with the setting). */
    private readonly filterBytes: number,
  ) {
    this.startRemaining = limits.remainingMs?.();
  }

  check(entry: RawLine | TooLongLine, rows: number): void {
    this.firstLine ??= entry.lineNumber;
    if ('offset' in entry) this.read = entry.offset + entry.length;
    if (entry.lineNumber < this.nextLine && this.read < this.nextByte) return;
    this.nextLine = entry.lineNumber + CHECK_EVERY_LINES;
    this.nextByte = this.read + CHECK_EVERY_BYTES;
    const { memoryMiB, remainingMs } = this.limits;
    if (memoryMiB !== undefined) {
      const rss = process.memoryUsage.rss();
      if (rss > memoryMiB * MiB * MEMORY_SHARE) throw this.outOfMemory(entry.lineNumber, rows, rss, memoryMiB);
    }
    const remaining = remainingMs?.();
    const unread = this.size === undefined || this.read < this.size;
    if (remaining !== undefined && remaining < TIME_RESERVE_MS && unread) throw this.outOfTime(entry.lineNumber, rows, remaining);
  }

  /** Where the scan stands, in the user's words. */
  private where(line: number, rows: number): string {
    const of = this.size === undefined ? '' : ` of ${sizeText(this.size)}`;
    return `at line ${count(line)} (${count(rows)} rows so far, ${sizeText(this.read)}${of} read)`;
  }

  /** Lines this invocation has read, the current one included. */
  private linesRead(line: number): number {
    return line - (this.firstLine ?? line) + 1;
  }

  /** The setting to lower, and to about what, when `fits` of this invocation's lines would have fitted. */
  private fewerLines(fits: number | undefined): string {
    const now = `the stack setting prepareLinesPerInvocation (now ${count(this.linesPerInvocation)})`;
    if (fits === undefined || !Number.isFinite(fits) || fits < 1_000) return `lower ${now}`;
    return `lower ${now} to about ${count(Math.floor(fits / 1_000) * 1_000)}`;
  }

  private outOfMemory(line: number, rows: number, rss: number, memoryMiB: number): InputTooLarge {
    const what = `Prepare ran short of memory: ${this.where(line, rows)} it was using ${count(Math.round(rss / MiB))} MiB of the function's ${count(memoryMiB)} MiB`;
    // Memory grows with the lines one invocation reads (its custom_id set): the lines that fit the 85% share at this growth.
    const perLine = Math.max(0, rss - this.startRss) / this.linesRead(line);
    const limit = memoryMiB * MiB * MEMORY_SHARE;
    const room = limit - this.startRss;
    // Most of it the earlier invocations' filters (about 4 B a row of the file so far): fewer lines an invocation would not help.
    if (this.filterBytes > limit / 2) {
      return new InputTooLarge(
        `${what}, ${sizeText(this.filterBytes)} of it the custom_id filters of the ${count(this.firstLine! - 1)} lines before: ` +
          'raise the stack setting prepareMemoryMiB, or split the file',
      );
    }
    const fits = perLine > 0 && room > 0 ? room / perLine : undefined;
    return new InputTooLarge(`${what}: ${this.fewerLines(fits)}, or raise the stack setting prepareMemoryMiB`);
  }

  private outOfTime(line: number, rows: number, remaining: number): InputTooLarge {
    const what = `Prepare ran short of time: ${this.where(line, rows)} it had ${count(Math.floor(remaining / 1000))} s of its time left`;
    const budget = (this.startRemaining ?? 0) - TIME_RESERVE_MS;
    const elapsed = (this.startRemaining ?? 0) - remaining;
    // The lines one invocation reads at this pace, keeping the reserve.
    const fits = elapsed > 0 && budget > 0 ? (this.linesRead(line) / elapsed) * budget : undefined;
    return new InputTooLarge(`${what}: ${this.fewerLines(fits)}`);
  }
}

const MiB = 1024 * 1024;
const count = (n: number) => n.toLocaleString('en-US');
/** A size as people say it: bytes, KB, MB or GB (decimal), to one decimal place. */
function sizeText(bytes: number): string {
  const [unit, scale] = bytes >= 1e9 ? ['GB', 1e9] : bytes >= 1e6 ? ['MB', 1e6] : bytes >= 1e3 ? ['KB', 1e3] : ['bytes', 1];
  return `${(bytes / scale).toLocaleString('en-US', { maximumFractionDigits: 1 })} ${unit}`;
}

/**
 * The chunks of a job's first attempt, cut in order: a row goes to the current chunk unless it
 * would take it past the row or byte limit, in which case the next chunk starts. Only each chunk's
 * row index is written (chunk-files.ts), so `add` returns a promise only when a finished chunk's
 * index must be stored before the next may finish: at most one is being stored at a time.
 * The total is unknown until the end, so the chunk past `maxChunks` is refused before it starts.
 */
class ChunkFiles {
  private readonly written: ChunkSummary[];
  private index: RowIndex | undefined;
  private current: ChunkSummary | undefined;
  /** The previous chunk's store, awaited before another chunk may be stored. */
  private finishing: Promise<unknown> | undefined;
  open = true;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly jobId: string,
    private readonly source: SourceRef,
    private readonly limits: { maxRows: number; maxBytes: number; maxChunks: number; onChunkStart?: () => void },
    /** The chunks earlier invocations of a resumed Prepare closed: numbering goes on after them. */
    before: readonly ChunkSummary[] = [],
  ) {
    this.written = [...before];
  }

  /** A valid request: `length` bytes at `offset` of the source. */
  add(length: number, offset: number, customId: string, lineNumber: number): Promise<void> | undefined {
    const current = this.current;
    // The limit holds as sent: each request's id is replaced by a wire id, up to WIRE_GROWTH_BYTES longer.
    if (current && (current.rows + 1 > this.limits.maxRows || current.bytes + 1 + length + (current.rows + 1) * WIRE_GROWTH_BYTES > this.limits.maxBytes)) {
      return this.closeCurrent().then(() => this.add(length, offset, customId, lineNumber) ?? undefined);
    }
    if (current) {
      current.rows += 1;
      current.bytes += 1 + length;
      current.lastLine = lineNumber;
    } else {
      if (this.written.length >= this.limits.maxChunks) throw this.tooMany(lineNumber);
      if (this.written.length > 0) this.limits.onChunkStart?.();
      this.current = { chunk: this.written.length, rows: 1, bytes: BATCH_BODY_OVERHEAD + length, firstLine: lineNumber, lastLine: lineNumber };
      this.index = new RowIndex();
    }
    this.index!.add(offset, length, customId);
    return undefined;
  }

  private tooMany(lineNumber: number): TooManyChunks {
    const { maxChunks, maxRows, maxBytes } = this.limits;
    return new TooManyChunks(
      `line ${count(lineNumber)} would start chunk ${count(maxChunks + 1)}, but a job may have at most ${count(maxChunks)} chunks ` +
        `(each at most BATCHLINE_MAX_REQUESTS_PER_CHUNK = ${count(maxRows)} requests and BATCHLINE_MAX_BYTES_PER_CHUNK = ${count(maxBytes)} bytes): ` +
        'raise those settings or split the file',
    );
  }

  private async closeCurrent(): Promise<void> {
    if (!this.current) return;
    await this.finishing;
    const finishing = storeRowIndex(this.s3, this.bucket, this.jobId, this.current.chunk, this.source, this.index!);
    // Observed by the next closeCurrent, finish or abandon; until then a failure must not go unhandled.
    finishing.catch(() => undefined);
    this.finishing = finishing;
    this.written.push(this.current);
    this.index = undefined;
    this.current = undefined;
  }

  async finish(): Promise<ChunkSummary[]> {
    await this.closeCurrent();
    await this.finishing;
    this.open = false;
    return this.written;
  }

  /**
   * Stops taking rows (a strict job was rejected) and stores the chunk in progress: `files` chunks'
   * row indexes hold every row added so far, once `stored` settles.
   */
  seal(): { files: number; stored: Promise<void> } {
    const files = this.written.length + (this.current ? 1 : 0);
    this.open = false;
    return { files, stored: this.finish().then(() => undefined) };
  }

  /** Stops writing: the chunk in progress is dropped (indexes already stored stay, unreferenced). */
  async abandon(): Promise<void> {
    this.open = false;
    this.current = undefined;
    this.index = undefined;
    const finishing = this.finishing;
    this.finishing = undefined;
    await finishing?.catch(() => undefined);
  }
}

/** Lines of a report (the invalid lines, a rejected job's later ids), written in batches. */
class LineBatches {
  private buffered: string[] = [];
  private bufferedBytes = 0;

  constructor(private readonly writer: ObjectWriter) {}

  /** `line` ends with its `\n`. */
  add(line: string): Promise<void> | undefined {
    this.buffered.push(line);
    this.bufferedBytes += line.length;
    return this.bufferedBytes >= WRITE_BATCH_BYTES ? this.flush() : undefined;
  }

  private async flush(): Promise<void> {
    if (this.buffered.length === 0) return;
    const text = this.buffered.join('');
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.writer.write(text);
  }

  /** Writes what is left; the object's size in bytes. */
  async finish(): Promise<{ bytes: number }> {
    await this.flush();
    return this.writer.finish();
  }

  async abort(): Promise<void> {
    await this.writer.abort();
  }
}

/** The most invocations one file's Prepare may take: each adds about 7 events to the execution's history (25,000 at most). */
export const MAX_PREPARE_INVOCATIONS = 1_000;

/**
 * At an invocation's end: refuses a file whose pace so far needs more than MAX_PREPARE_INVOCATIONS
 * (a prepareLinesPerInvocation set far too low for it), naming the setting that would do.
 */
function checkInvocations(
  segment: number,
  stop: { offset: number; lineNumber: number },
  size: number,
  linesPerInvocation: number,
  bytesPerInvocation: number,
): void {
  const needed = Math.ceil((size / stop.offset) * segment);
  if (needed <= MAX_PREPARE_INVOCATIONS) return;
  const lines = Math.ceil((size / stop.offset) * stop.lineNumber);
  const what = `this file (${sizeText(size)}, about ${count(lines)} lines) needs about ${count(needed)} Prepare invocations, more than the ${count(MAX_PREPARE_INVOCATIONS)} one job may take`;
  // Stopped by the bytes, not the lines: more lines an invocation would not help.
  if (stop.lineNumber < segment * linesPerInvocation && size > MAX_PREPARE_INVOCATIONS * bytesPerInvocation) {
    throw new InputTooLarge(
      `${what} at ${sizeText(bytesPerInvocation)} each: split the file into parts of at most ${sizeText(MAX_PREPARE_INVOCATIONS * bytesPerInvocation)}`,
    );
  }
  throw new InputTooLarge(
    `${what} at ${count(linesPerInvocation)} ${linesPerInvocation === 1 ? 'line' : 'lines'} each: ` +
      `raise the stack setting prepareLinesPerInvocation to at least ${count(Math.ceil(lines / MAX_PREPARE_INVOCATIONS))}`,
  );
}

/**
 * Each invocation's filter of its custom_ids (prior-ids.ts) gets more bits an id than the ones
 * before: 20 + 2.885·log2(n) at the n-th (at most 48), so the chance that an id is wrongly "maybe" in
 * invocation n's filter is 6.7e-5/n², and in any of them under 1.1e-4 a row however many there are
 * (at 20 bits each: 6.7e-5 times their number). About 3.8 B a row at 25 invocations (50M rows of
 * 2,000,000 an invocation), 4.6 B at 130, 5.6 B at 1,000.
 */
function filterFor(segment: number, ids: number): { bitsPerId: number; hashCount: number } {
  // A filter has fewer than 2^32 bits (prior-ids.ts): past 89M ids in one invocation, fewer bits an id.
  const bitsPerId = Math.max(1, Math.min(48, Math.ceil(20 + 2.885 * Math.log2(segment)), Math.floor((2 ** 32 - 1) / Math.max(1, ids))));
  return { bitsPerId, hashCount: Math.round(bitsPerId * Math.LN2) };
}

/**
 * The cache of the earlier invocations' id blocks: a fifth of the function's memory (256 MiB when it
 * is not known), so a file that repeats earlier rows wholesale reads each block once while they fit.
 */
function priorCacheBytes(limits: PrepareLimits | undefined): number {
  return limits?.memoryMiB === undefined ? 256 * MiB : Math.floor(limits.memoryMiB * MiB * 0.2);
}
