/**
 * FinalizeJob: the job's outputs under `results/<jobId>/`, the job record marked done, and a `Job
 * Ended` event.
 *
 * - results.jsonl: exactly one line per valid input row, in input order, with its final state.
 * - errors.jsonl: every final row that did not succeed. invalid.jsonl: Prepare's report, copied.
 * - summary.json: counts, errors by type, tokens, cost, batches, retries, timings — written only
 *   after the counts are checked to add up (CountsMismatch otherwise).
 *
 * Nothing here grows with the job's rows: each chunk's rows were ordered and decided by its own
 * FinalizeChunk (./finalize-chunk.ts) into its share of results.jsonl and errors.jsonl, with a
 * tally. FinalizeJob sums the tallies and joins the chunks' files inside S3 (multipart
 * UploadPartCopy, shared/store/concat.ts): its time is a few requests per chunk. A chunk without a
 * current final record (its FinalizeChunk failed, or the chunk or job changed since) is finalized
 * here, and its record kept: a FinalizeJob that runs out of time resumes where it stopped.
 * A rejected job's rows are written here directly (ids only, never submitted).
 *
 * Re-runnable: every output is rewritten whole, and endedAt is kept from an earlier run.
 *
 * After a failure (`recovering`, the reconciler's re-run of a FinalizeJob that failed): the job
 * record keeps the failure MarkJobFailed wrote, and summary.json reports it as `recoveredFrom`.
 * MarkJobFailed set cancelRequested, so the flag no longer tells a user's cancel from the failure:
 * the job ends `canceled` only when some row was canceled; a rejected job is recognised by Prepare's
 * rule (strict, with invalid lines), since its `rejected` status was overwritten.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CopyObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { NotifyConfig, PipelineConfig } from '../config';
import { roundUsd } from '../cost/cost';
import { priceTableFromConfig } from '../cost/prices';
import { AnnounceFailed, announceJobEnded, type NotifyClients } from '../notify';
import { errorFields, quietObserver, type Observer } from '../observability';
import { queryPartition, updateItem } from '../store/dynamo';
import { concatObjects, copySource, type ConcatSource } from '../store/concat';
import { CHUNK_SK_PREFIX, jobPk, type ChunkItem, type JobItem, type JobStatus, type RowCounts } from '../store/items';
import { jobKeys } from '../store/keys';
import { isS3NotFound, putJson } from '../store/s3';
import { ChunkFileCorrupt, objectLines, requestCustomIds, requestsKey } from './chunk-files';
import type { RawLine } from '../jsonl/lines';
import { isoAt, jobKey, readJob } from './chunk-state';
import type { FinalizeJobInput, FinalizeJobOutput } from './contract';
import { MESSAGES, Outputs } from './final-rows';
import { currentChunkFinal, settleFailedSync, writeChunkFinal } from './finalize-chunk';
import { Tally, type JobSummary } from './tally';
import { PrimingTally } from './prime-cache';
import { neededLines, parseJsonLine } from './work-files';
import { AttemptTimeline, cacheSavings, errorExamplesFrom, renderSummaryHtml } from './summary-html';
import { mergeReused, type ReusedSummary } from './reuse';
import { clockOf } from '../clock';
import { addToOutputHistory, type SucceededOutput } from './output-history';

/**
 * What the job cost: its batches at batch rates plus, for the deadline fallback, its synchronous
 * calls at standard rates (the job record's costUsd, the CostUsd metric, the CLI's costUsd).
 */
export function jobCostUsd(summary: Pick<JobSummary, 'cost' | 'synchronous'>): number {
  return roundUsd(summary.cost.batchUsd + (summary.synchronous?.costUsd ?? 0));
}

export type { ErrorRow, ResultRow } from './final-rows';
export type { JobSummary } from './tally';
export { resultCustomId } from './result-lines';
export { WorkFileMissing } from './work-files';

/** The outputs would not add up: nothing is claimed (no summary, no job status) until they do. */
export class CountsMismatch extends Error {
  override readonly name = 'CountsMismatch';
}

export interface FinalizeDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'maxAttempts' | 'pricesJson' | 'rowTtlDays'>;
  notify: { clients: NotifyClients; config: NotifyConfig };
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where results files are staged (default os.tmpdir()). */
  tmpDir?: string;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
}

/** Errors that say the API key itself is wrong or missing: no chunk of the job can succeed. */
const API_KEY_ERRORS: ReadonlySet<string> = new Set(['ApiAuthError', 'ApiKeyMissing']);

export async function finalizeJob(input: FinalizeJobInput, deps: FinalizeDeps): Promise<FinalizeJobOutput> {
  const { s3, dynamo, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  const job = await readJob(dynamo, config.table, input.jobId);
  if (job.totalRows === undefined || job.validRows === undefined || job.invalidRows === undefined) {
    throw new CountsMismatch(`job ${job.jobId} has no row counts: Prepare did not finish`);
  }
  const keys = jobKeys(job.jobId);
  const recovering = input.recovering === true && job.status === 'failed';
  const rejected =
    input.outcome === 'rejected' ||
    job.status === 'rejected' ||
    job.rejection !== undefined ||
    (recovering && job.validationMode === 'strict' && job.invalidRows > 0);
  // A job that took rows over from another writes its own rows aside first, then merges (./reuse.ts).
  const reusing = job.reuse !== undefined && (job.reusedRows ?? 0) > 0;
  const ownKeys = reusing ? keys.sentRows : keys;
  let reused: ReusedSummary | undefined;
  const prices = priceTableFromConfig(config);
  const tally = new Tally(prices);
  // Chunks ordered here, without a current record of their own FinalizeChunk (reported with the end).
  let finalizedHere = 0;
  // A rejected API key fails every chunk alike: the job has failed, though every row is accounted for.
  let keyFailure: { error: string; cause: string } | undefined;
  const collectPending: number[] = [];
  const priming = new PrimingTally();
  const timeline = new AttemptTimeline();
  // The chunks' shares of errors.jsonl, in order: the report's examples are read from them (in work/,
  // which this step reads; it only writes results/).
  const errorParts: ConcatSource[] = [];

  if (rejected) {
    const outputs = new Outputs(s3, config.bucket, ownKeys);
    try {
      for await (const customId of validCustomIds(job, deps)) {
        await outputs.write(tally.add({ custom_id: customId, status: 'canceled', attempts: 0, batch_id: null, usage: null, cost_usd: null }), {
          message: MESSAGES.rejected,
        });
      }
      if (!reusing) checkCounts(job, tally);
      await outputs.finish();
    } catch (error) {
      await outputs.abort();
      throw error;
    }
  } else {
    const results: ConcatSource[] = [];
    const errors = errorParts;
    for await (const listed of queryPartition<ChunkItem>(dynamo, config.table, jobPk(job.jobId), CHUNK_SK_PREFIX)) {
      let chunk = listed;
      let final = await currentChunkFinal(chunk, job, deps);
      if (!final) {
        // A failed synchronous attempt keeps its paid answers here too, as FinalizeChunk would have.
        chunk = await settleFailedSync(chunk, deps);
        final = await writeChunkFinal(chunk, job, deps);
        finalizedHere += 1;
      }
      tally.merge(Tally.fromJSON(final.tally, prices));
      timeline.add(chunk);
      results.push(final.results);
      errors.push(final.errors);
      if (chunk.status === 'failed' && chunk.failure && API_KEY_ERRORS.has(chunk.failure.error)) keyFailure ??= chunk.failure;
      if (chunk.collectLater) collectPending.push(chunk.chunk);
      priming.addChunk(chunk);
    }
    if (!reusing) checkCounts(job, tally);
    await Promise.all([concatObjects(s3, config.bucket, results, ownKeys.results), concatObjects(s3, config.bucket, errors, ownKeys.errors)]);
  }
  if (reusing) {
    reused = await mergeReused(job, tally, deps);
    checkCounts(job, tally);
  }
  await copyObject(s3, config.bucket, keys.invalidWork, keys.invalid);

  const canceled = job.cancelRequested === true && (!recovering || tally.counts.canceled > 0);
  // Nobody drops an empty file on purpose: a file without a single request is rejected, as one with invalid lines is.
  const rejection = rejectionOf(job, rejected);
  const status: JobStatus = rejection ? 'rejected' : keyFailure ? 'failed' : canceled ? 'canceled' : 'succeeded';
  const endedAt = job.endedAt ?? isoAt(now());
  const summary = tally.summary(job, status, endedAt);
  if (recovering && job.failure) summary.recoveredFrom = job.failure;
  if (rejected && tally.counts.canceled > 0) summary.notSubmitted = { rows: tally.counts.canceled, reason: 'rejected' };
  if (collectPending.length > 0) summary.collectPending = collectPending;
  if (job.reuse) summary.reused = reused ?? { fromJob: job.reuse.fromJob, rows: 0, costUsd: 0 };
  if (job.maxCostUsd !== undefined) {
    summary.budget = { maxCostUsd: job.maxCostUsd, estimateUsd: job.estimateUsd ?? null, expectedUsd: job.expectedUsd ?? job.estimateUsd ?? null };
  }
  if (input.collectedLate && input.collectedLate.length > 0) summary.collectedLate = { chunks: input.collectedLate, at: isoAt(now()) };
  const promptCache = priming.report(tally.cost.toJSON(), prices);
  if (promptCache) summary.promptCache = promptCache;
  await putJson(s3, config.bucket, keys.summary, summary);
  // The same numbers as a page for a person; errors.jsonl is read only as far as its examples need.
  const errorExamples = await errorExamplesFrom(linesOf(s3, config.bucket, errorParts), Object.keys(summary.errorsByType));
  const html = renderSummaryHtml(summary, {
    errorExamples,
    cache: cacheSavings(tally.cost.toJSON(), prices),
    attempts: timeline.attempts,
    attemptsLeftOut: timeline.leftOut,
  });
  await s3.send(new PutObjectCommand({ Bucket: config.bucket, Key: keys.summaryHtml, Body: html, ContentType: 'text/html; charset=utf-8' }));
  const counts = rowCounts(summary.counts);
  await updateItem(dynamo, config.table, jobKey(job.jobId), {
    set: { status, endedAt, counts, costUsd: jobCostUsd(summary), failure: keyFailure ?? rejection, updatedAt: isoAt(now()) },
  });
  if (!rejected) await addToHistory(job, tally, observer, deps);
  observer.metric('JobsEnded', 1);
  observer.metric('CostUsd', jobCostUsd(summary));
  if (summary.cost.unpricedModels.length > 0) {
    observer.warn('no price for these models: the cost leaves their rows out', { models: summary.cost.unpricedModels });
  }
  observer.info('finalized', {
    status,
    counts,
    errorsByType: summary.errorsByType,
    costUsd: jobCostUsd(summary),
    chunks: summary.chunks,
    chunksOrderedHere: finalizedHere,
    batches: summary.batches.length,
    retries: summary.retries,
    durationSeconds: summary.timings.durationSeconds,
  });
  try {
    await announceJobEnded(
      {
        jobId: job.jobId,
        status,
        bucket: job.bucket,
        key: job.key,
        counts,
        costUsd: jobCostUsd(summary),
        resultsPrefix: keys.resultsPrefix,
        failure: keyFailure ?? rejection,
      },
      deps.notify.clients,
      deps.notify.config,
    );
  } catch (error) {
    // The job is done and its outputs are written: a lost notification must not turn it into a
    // failed job (the workflow's Catch would). It is logged for the alarm on errors instead.
    if (!(error instanceof AnnounceFailed)) throw error;
    observer.error('the job ended, but announcing it failed', { status, error: errorFields(error) });
  }
  return { jobId: job.jobId, status, counts, ...(rejection ? { rejection: { Error: rejection.error, Cause: rejection.cause } } : {}) };
}

/** The lines of these objects one after another, each read only as far as the caller takes them. */
async function* linesOf(s3: S3Client, bucket: string, parts: readonly ConcatSource[]): AsyncGenerator<RawLine> {
  for (const part of parts) if (part.bytes > 0) yield* objectLines(s3, bucket, part.key);
}

/** Why a job is rejected, if it is: strict validation found invalid lines, or the file holds no request at all. */
function rejectionOf(job: JobItem, rejected: boolean): { error: string; cause: string } | undefined {
  if (job.rejection) return job.rejection;
  if (rejected) {
    const lines = job.invalidRows === 1 ? 'an invalid line' : `${job.invalidRows ?? 0} invalid lines`;
    return { error: 'ValidationFailed', cause: `The input file has ${lines}, so nothing was submitted; see the job's invalid.jsonl` };
  }
  if (job.totalRows === 0) return { error: 'EmptyInput', cause: 'The input file holds no requests: it is empty, or only blank lines' };
  return undefined;
}

function rowCounts(counts: JobSummary['counts']): RowCounts {
  const { succeeded, errored, expired, canceled, invalid } = counts;
  return { succeeded, errored, expired, canceled, invalid };
}

function checkCounts(job: JobItem, tally: Tally): void {
  const c = tally.counts;
  const sum = c.succeeded + c.errored + c.expired + c.canceled + (job.invalidRows ?? 0);
  if (sum !== job.totalRows || tally.lines !== job.validRows) {
    throw new CountsMismatch(
      `job ${job.jobId}: ${tally.lines} result lines for ${job.validRows} valid rows; ` +
        `succeeded ${c.succeeded} + errored ${c.errored} + expired ${c.expired} + canceled ${c.canceled} + invalid ${job.invalidRows} = ${sum}, ` +
        `not the ${job.totalRows} rows of the input`,
    );
  }
}

/** Copies a work file to the outputs inside S3 (no bytes through the function); a missing one becomes empty. */
async function copyObject(s3: S3Client, bucket: string, from: string, to: string): Promise<void> {
  try {
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: copySource(bucket, from) }));
  } catch (error) {
    if (!isS3NotFound(error)) throw error;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: to, Body: '', ContentLength: 0, ContentType: 'application/x-ndjson' }));
  }
}

/**
 * The custom_ids of a rejected job's valid rows, in input order, from what Prepare recorded (never
 * the input, which may have been overwritten or deleted since): the rows before the first invalid
 * line are in the chunk files `rejectedValidIds` names, the ids of the later ones follow in it.
 */
async function* validCustomIds(job: JobItem, deps: FinalizeDeps): AsyncGenerator<string> {
  const { s3, config } = deps;
  const keys = jobKeys(job.jobId);
  const key = keys.rejectedValidIds;
  // The header alone first: the ids after it are read once the chunk files have been.
  let header: unknown;
  for await (const line of neededLines(key, objectLines(s3, config.bucket, key))) {
    header = parseJsonLine(line, key);
    break;
  }
  const chunkFiles = (header as { chunkFiles?: unknown } | undefined)?.chunkFiles;
  if (typeof chunkFiles !== 'number' || !Number.isInteger(chunkFiles) || chunkFiles < 0) {
    throw new ChunkFileCorrupt(`${key} does not start with {"chunkFiles": n}`);
  }
  for (let chunk = 0; chunk < chunkFiles; chunk++) {
    const ref = { jobId: job.jobId, chunk, attempt: 1 };
    yield* neededLines(requestsKey(ref), requestCustomIds(s3, config.bucket, ref));
  }
  let first = true;
  for await (const line of neededLines(key, objectLines(s3, config.bucket, key))) {
    if (first) {
      first = false;
      continue;
    }
    const customId = parseJsonLine(line, key);
    if (typeof customId !== 'string') throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} is not a custom_id`);
    yield customId;
  }
}

/** The job's succeeded rows into the output history (./output-history.ts); best-effort, at most once. */
async function addToHistory(job: JobItem, tally: Tally, observer: Observer, deps: FinalizeDeps): Promise<void> {
  const succeeded: Record<string, SucceededOutput> = {};
  for (const [model, entry] of Object.entries(tally.cost.toJSON().models)) {
    succeeded[model] = { rows: entry.requests, outputTokens: entry.tokens.output };
  }
  try {
    const added = await addToOutputHistory(deps.dynamo, deps.config.table, job, succeeded, isoAt(clockOf(deps)()));
    if (added) observer.info('added to the output history', { models: Object.keys(succeeded).length });
  } catch (error) {
    // The history only sharpens later estimates: a job's outputs never wait on it.
    observer.warn('could not add the job to the output history', { error: errorFields(error) });
  }
}
