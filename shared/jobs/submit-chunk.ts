/**
 * Submit: create the batch of a chunk's current attempt — at most one batch per attempt, even when
 * a create's outcome is unknown (docs/architecture.md, "Which batch is whose": the API takes no
 * idempotency key and batches carry no metadata).
 *
 * 1. The attempt takes the create slot of its request count (./create-slot.ts): no other chunk
 *    attempt of the stack may have an unanswered create of the same size meanwhile.
 * 2. The intent to create is recorded (conditionally) with a fresh nonce before create is called;
 *    the API sees each request's custom_id as `<nonce>-<line>` (./wire-ids.ts), so every results
 *    line proves which create it came from.
 * 3. create runs with maxRetries 0: a retry belongs to the workflow, so that a retried Submit can
 *    look for the batch first.
 * 4. A Submit that finds an intent but no batch id adopts: it lists recent batches and takes one of
 *    the attempt's request count, created since the intent, that nobody has claimed, claiming it
 *    with a conditional put (`BATCH#<id>`) so one batch is never adopted twice. The slot makes that
 *    batch the attempt's own; Collect still checks every line's nonce.
 * 5. Found nothing? It creates again only once the API has shown that the lost create made no
 *    batch: the list holds a batch whose create was sent after the lost one had ended (a claim's
 *    intentAt), and none of ours. Otherwise it looks again (OutcomeUnknown, retried by the
 *    workflow), and after GIVE_UP_LOOKS looks it ends the attempt loudly (CreateOutcomeUnknown: its
 *    rows end errored `create_unknown`, saying how to find the batch) rather than pay twice.
 *
 * Clocks: intentAt, lostAt and the grace are on the local clock. The intent is written before any
 * API call, so no server time exists for it. The local runtime, whose simulator's clock runs fast,
 * shortens the grace with BATCHLINE_ADOPT_GRACE_SECONDS.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BatchesApi, MessagesApi } from '../anthropic/api';
import { AnthropicError, ApiRetryable, OutcomeUnknown } from '../anthropic/errors';
import type { MessageBatch, RequestCounts } from '../anthropic/types';
import type { PipelineConfig } from '../config';
import { ConditionFailed, getItem, putItem, updateItem } from '../store/dynamo';
import { BATCH_SK, batchPk, ttlAfter, type BatchClaimItem, type ChunkAttempt, type ChunkItem } from '../store/items';
import { errorFields, quietObserver, type Observer } from '../observability';
import { attemptOf, chunkCondition, isoAt, jobKey, patchAttempt, readChunk, readJob, updateChunk } from './chunk-state';
import type { AttemptKey, ChunkRef, SubmitOutput } from './contract';
import { requestLines } from './chunk-files';
import { nextPollDelay, type PollSettings } from './poll-batch';
import { cancelBatch, recordCancelSent, type AttemptBatch } from './cancel';
import { acquireCreateSlot, releaseCreateSlot } from './create-slot';
import { newNonce, wireId, wireRequestLine } from './wire-ids';
import { sendProbe, type Probe } from './create-probe';
import { clockOf } from '../clock';
import { primeAttempt } from './prime-cache';

/** How far before the recorded intent adoption looks: clock skew between us and the API. */
export const ADOPT_LOOKBACK_MS = 2 * 60_000;

/**
 * Looks for a lost create's batch before the attempt gives up (CreateOutcomeUnknown). Under the
 * workflow's OutcomeUnknown retry (8 tries, 15 s doubling to 5 min) the 7th look comes about 18
 * minutes after the create: the give-up comes from Submit, with its message, not from the retry
 * running out.
 */
export const GIVE_UP_LOOKS = 7;

/**
 * How long a slot is held without its holder coming back: longer than a holder's looks take (about
 * 18 minutes), so a slot only lapses when its chunk's execution is gone (a chunk failure frees it).
 */
export const SLOT_HOLD_MS = 30 * 60_000;

/** How long Submit waits in-process for a slot held by another attempt before CreateSlotBusy (the workflow retries). */
const SLOT_WAIT_MS = 10_000;

/** A create whose answer was lost, whose batch Submit could not find in GIVE_UP_LOOKS looks: not retried. */
export class CreateOutcomeUnknown extends Error {
  override readonly name = 'CreateOutcomeUnknown';
}

/** The batch we created was claimed by another chunk attempt (an adoption guessed wrong). */
export class BatchClaimConflict extends Error {
  override readonly name = 'BatchClaimConflict';
}

export interface SubmitDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: Pick<PipelineConfig, 'bucket' | 'table' | 'adoptGraceSeconds' | 'rowTtlDays'> & PollSettings;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where the step's log lines and metrics go (the handler's invocation). */
  observer?: Observer;
  /** How long to wait in-process for another attempt's create slot (default 10 s; tests pass 0). */
  slotWaitMs?: number;
  /** The Messages endpoint, for a job that primes the prompt cache (shared/jobs/prime-cache.ts); without it, nothing is primed. */
  messages?: MessagesApi;
}

interface Owner extends ChunkRef {
  attempt: number;
}

export async function submitChunk(input: ChunkRef, deps: SubmitDeps): Promise<SubmitOutput> {
  const { dynamo, config } = deps;
  const now = clockOf(deps);
  const observer = deps.observer ?? quietObserver;
  let [chunk, job] = await Promise.all([readChunk(dynamo, config.table, input.jobId, input.chunk), readJob(dynamo, config.table, input.jobId)]);
  const attempt = chunk.currentAttempt;
  observer.keys({ attempt });
  const { record, index } = attemptOf(chunk, attempt);
  const owner: Owner = { jobId: input.jobId, chunk: input.chunk, attempt };

  // A retried Submit after one that succeeded (its slot freed again, should that have failed).
  if (record.batchId) {
    await releaseCreateSlot(dynamo, config.table, record.rows, owner);
    return alreadySubmitted(owner, record.batchId, record, config, observer);
  }

  const holdSlot = () => acquireCreateSlot(dynamo, config.table, record.rows, owner, { now, holdMs: SLOT_HOLD_MS, waitMs: deps.slotWaitMs ?? SLOT_WAIT_MS });
  let slot = record.intentAt ? await holdSlot() : undefined;
  if (record.intentAt) {
    const found = await findLostBatch(owner, record, slot!.abandonedAt, deps);
    if (found.batch) {
      observer.keys({ batchId: found.batch.id });
      observer.warn('adopted a batch whose create had an unknown outcome', { batchId: found.batch.id, rows: record.rows, createdAt: found.batch.created_at });
      return recordBatch(owner, chunk, found.batch, deps, observer, true);
    }
    const intentAge = now() - Date.parse(record.intentAt);
    // No create of the lost one can land after this moment: only then may the list prove it made none.
    const settledAt = lostBy(record, config.adoptGraceSeconds * 1000);
    const settled = now() > settledAt;
    if (!settled || !found.provenAbsent) {
      // Nothing created since shows the list current: make something that will (a probe), once per
      // loss, and not on the last look (its proof would come too late).
      const probed = record.probeAt !== undefined && Date.parse(record.probeAt) > settledAt;
      const lastLook = (record.looks ?? 0) + 1 >= GIVE_UP_LOOKS;
      const probe = settled && !probed && !lastLook ? await probeFor(owner, record, deps, observer) : undefined;
      await lookedAgain(owner, chunk, index, { ...record, probeAt: probe?.sentAt ?? record.probeAt }, deps, observer, intentAge);
    }
    observer.warn('the lost create made no batch: the list is current past it and holds none of ours', { rows: record.rows, intentAt: record.intentAt });
  }

  if (job.cancelRequested) {
    if (slot) await releaseCreateSlot(dynamo, config.table, record.rows, owner);
    observer.info('not submitted: the job was canceled', { rows: record.rows });
    return { ...owner, batchId: null, canceled: true, waitSeconds: 0 };
  }

  if (!slot) {
    slot = await holdSlot();
    // The wait for the slot may have been long enough for the job to be stopped: create nothing then.
    if ((await readJob(dynamo, config.table, input.jobId)).cancelRequested) {
      await releaseCreateSlot(dynamo, config.table, record.rows, owner);
      observer.info('not submitted: the job was canceled', { rows: record.rows });
      return { ...owner, batchId: null, canceled: true, waitSeconds: 0 };
    }
  }
  // Just before the create, with the slot held: once per attempt, never after an intent (the cache would be primed again).
  if (job.primeCache && deps.messages && !record.intentAt) {
    chunk = await primeAttempt(owner, chunk, index, { ...deps, messages: deps.messages, now, observer });
  }
  const intentAt = isoAt(now());
  const nonce = newNonce();
  let intended: ChunkItem;
  try {
    intended = await updateChunk(dynamo, config.table, chunk, {
      set: {
        attempts: patchAttempt(chunk, index, { intentAt, nonce, lostAt: undefined, looks: undefined, probeAt: undefined }),
        status: 'submitting',
        updatedAt: intentAt,
      },
      condition: chunkCondition(
        `#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND ` + `(attribute_not_exists(#att[${index}].#int) OR #att[${index}].#int = :previous)`,
        {
          ':attempt': attempt,
          ':previous': record.intentAt ?? '',
        },
      ),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // Another Submit of this attempt got there first; the retry will find (adopt) its batch.
    throw new OutcomeUnknown(`chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: another Submit is creating its batch`, {
      requests: record.rows,
      bytes: record.bytes,
      sentAt: now(),
    });
  }

  let batch: MessageBatch;
  try {
    batch = await deps.api.create(() => wireRequests(deps, { jobId: input.jobId, chunk: input.chunk, attempt }, nonce), { maxRetries: 0 });
  } catch (error) {
    if (provesNoBatch(error)) {
      await withdrawIntent(intended, index, attempt, intentAt, deps);
      await releaseCreateSlot(dynamo, config.table, record.rows, owner);
    } else {
      await noteLost(intended, index, attempt, intentAt, deps);
    }
    if (error instanceof ApiRetryable && error.status === 429) {
      // The workspace's queue of batch requests is full, or its rate limit reached: that lasts
      // until earlier batches end, hours perhaps — the workflow waits minutes between tries.
      throw new BatchQueueFull(`chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: ${error.message}`);
    }
    if (error instanceof ApiRetryable && provesNoBatch(error)) {
      // Refused before anything was made (overloaded, or never sent): an outage of the API, which
      // the workflow waits out for over an hour rather than fail the chunk.
      throw new CreateRefused(`chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: ${error.message}`);
    }
    throw error;
  }
  observer.keys({ batchId: batch.id });
  let output: SubmitOutput;
  try {
    await claim(owner, batch.id, intentAt, deps, true);
    output = await recordBatch(owner, intended, batch, deps, observer, false);
  } catch (error) {
    if (error instanceof BatchClaimConflict) throw error;
    // The batch exists but may not be recorded: the retry must find it (its claim, or adoption),
    // never fail the chunk and leave the batch running unseen.
    throw new OutcomeUnknown(
      `chunk ${input.chunk} attempt ${attempt} of job ${input.jobId}: batch ${batch.id} was created but recording it failed ` + `(${(error as Error).name})`,
      { requests: record.rows, bytes: record.bytes, sentAt: Date.parse(intentAt) },
    );
  }
  await cancelIfJobStopped(owner, { chunk: input.chunk, index, batchId: batch.id }, deps, observer);
  return output;
}

/**
 * A job that failed or was canceled while this Submit was creating its batch has already swept
 * its batches; one recorded after the sweep would run unseen. Poll would cancel it, but a failed
 * job's chunks are no longer polled. A cancel that fails is logged, not thrown: the batch is
 * recorded, so it stays un-canceled for a re-run of MarkJobFailed (or Poll) to stop.
 */
async function cancelIfJobStopped(owner: Owner, at: AttemptBatch, deps: SubmitDeps, observer: Observer): Promise<void> {
  const job = await readJob(deps.dynamo, deps.config.table, owner.jobId);
  if (!job.cancelRequested) return;
  const { batchId } = at;
  try {
    const cancel = await cancelBatch(deps.api, batchId);
    if (cancel.outcome === 'refused') {
      observer.error('could not cancel the batch of a stopped job', { batchId, error: errorFields(cancel.error) });
      return;
    }
    observer.warn('canceled the batch just created: the job was stopped meanwhile', { batchId, status: job.status, cancel: cancel.outcome });
  } catch (error) {
    observer.error('could not cancel the batch of a stopped job', { batchId, error: errorFields(error) });
    return;
  }
  try {
    // As MarkJobFailed records its cancels: a re-run of it then leaves this batch alone.
    await recordCancelSent(deps.dynamo, deps.config.table, owner.jobId, at, isoAt(clockOf(deps)()));
  } catch (error) {
    observer.warn('canceled the batch, but could not record it: a re-run of MarkJobFailed cancels it again', { batchId, error: errorFields(error) });
  }
}

/** Creating a batch was refused with 429: the queue of batch requests is full (or the rate limit hit). */
export class BatchQueueFull extends Error {
  override readonly name = 'BatchQueueFull';
}

/** Creating a batch was refused, transiently, before any batch was made (529, or the body never sent). */
export class CreateRefused extends Error {
  override readonly name = 'CreateRefused';
}

export const totalRequests = (counts: RequestCounts): number => counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired;

/** The attempt's requests as sent: each custom_id replaced by `<nonce>-<line>` (./wire-ids.ts). */
async function* wireRequests(deps: SubmitDeps, ref: AttemptKey, nonce: string): AsyncGenerator<Buffer> {
  let line = 0;
  for await (const request of requestLines(deps.s3, deps.config.bucket, ref)) yield wireRequestLine(request, wireId(nonce, line++));
}

/** Listed batches whose claims are read, newest first, to show the list current past a lost create. */
const PROOF_READS = 20;

/**
 * The batch an earlier create of this attempt made, if it can be found: a listed batch of the
 * attempt's request count, created since the intent (less ADOPT_LOOKBACK_MS, and not before the
 * slot's last abandoned create), either already claimed by this attempt (a Submit that died after
 * claiming) or unclaimed and now claimed by us. Candidates nearest the intent in time go first.
 *
 * Found none: `provenAbsent` when the list shows a batch whose create was sent after the lost one
 * had ended (a claim's intentAt past the attempt's lostAt, or past the intent by the grace when the
 * Submit died without noting it): the list is current past the lost create, and holds no batch of it.
 */
async function findLostBatch(
  owner: Owner,
  record: ChunkAttempt,
  abandonedAt: string | undefined,
  deps: SubmitDeps,
): Promise<{ batch?: MessageBatch; provenAbsent: boolean }> {
  const intentMs = Date.parse(record.intentAt);
  const since = Math.max(intentMs - ADOPT_LOOKBACK_MS, abandonedAt ? Date.parse(abandonedAt) : Number.NEGATIVE_INFINITY);
  const lostAfter = lostBy(record, deps.config.adoptGraceSeconds * 1000);
  const candidates: MessageBatch[] = [];
  const newest: MessageBatch[] = [];
  for await (const batch of deps.api.list({ limit: 100 })) {
    if (newest.length < PROOF_READS) newest.push(batch);
    if (Date.parse(batch.created_at) < since) break;
    if (totalRequests(batch.request_counts) === record.rows) candidates.push(batch);
  }
  candidates.sort((a, b) => Math.abs(Date.parse(a.created_at) - intentMs) - Math.abs(Date.parse(b.created_at) - intentMs));
  const claims = await Promise.all(candidates.map((batch) => readClaim(batch.id, deps)));
  const ours = candidates.find((_, i) => isOwner(claims[i], owner));
  if (ours) return { batch: ours, provenAbsent: false };
  for (const [i, batch] of candidates.entries()) {
    if (claims[i] === undefined && (await claim(owner, batch.id, record.intentAt, deps, false))) return { batch, provenAbsent: false };
  }
  if (candidates.some((_, i) => claims[i] === undefined)) return { provenAbsent: false };
  for (const batch of newest) {
    const held = await readClaim(batch.id, deps);
    if (held?.intentAt && Date.parse(held.intentAt) > lostAfter) return { provenAbsent: true };
  }
  return { provenAbsent: false };
}

/**
 * The moment after which no create of the lost one can still land (local clock): when the call
 * failed, plus a margin for a server still acting on it; or, for a Submit that died without noting
 * it, the grace after the intent (which outlasts Submit's whole run).
 */
function lostBy(record: ChunkAttempt, graceMs: number): number {
  return record.lostAt ? Date.parse(record.lostAt) + Math.min(graceMs, 60_000) : Date.parse(record.intentAt) + graceMs;
}

/** A probe batch made with the model of the attempt's first request; undefined when it could not be made now. */
async function probeFor(owner: Owner, record: ChunkAttempt, deps: SubmitDeps, observer: Observer): Promise<Probe | undefined> {
  let model: string | undefined;
  for await (const line of requestLines(deps.s3, deps.config.bucket, owner)) {
    model = (JSON.parse(line.toString('utf8')) as { params: { model: string } }).params.model;
    break;
  }
  if (model === undefined) return undefined;
  // A probe's size is never the attempt's own, so the attempt can never take it for its lost batch.
  const requests = record.rows === 1 ? 2 : 1;
  return sendProbe(owner, { model, requests }, { dynamo: deps.dynamo, api: deps.api, config: deps.config, now: clockOf(deps), observer });
}

/**
 * One more look found nothing: counted on the attempt, then OutcomeUnknown (the workflow retries),
 * or after GIVE_UP_LOOKS looks CreateOutcomeUnknown, the slot freed with the moment noted.
 */
async function lookedAgain(
  owner: Owner,
  chunk: ChunkItem,
  index: number,
  record: ChunkAttempt,
  deps: SubmitDeps,
  observer: Observer,
  intentAge: number,
): Promise<never> {
  const now = clockOf(deps)();
  const looks = (record.looks ?? 0) + 1;
  const where = `chunk ${owner.chunk} attempt ${owner.attempt} of job ${owner.jobId}`;
  try {
    await updateChunk(deps.dynamo, deps.config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, { looks, probeAt: record.probeAt }), updatedAt: isoAt(now) },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND #att[${index}].#int = :intent`, {
        ':attempt': owner.attempt,
        ':intent': record.intentAt,
      }),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // A concurrent Submit of this attempt moved it on (recorded a batch, or a new intent): the retry sees which.
    throw new OutcomeUnknown(`${where}: another Submit changed the attempt while this one looked for its batch`, {
      requests: record.rows,
      bytes: record.bytes,
      sentAt: Date.parse(record.intentAt),
    });
  }
  if (looks >= GIVE_UP_LOOKS) {
    await releaseCreateSlot(deps.dynamo, deps.config.table, record.rows, owner, isoAt(now));
    // The reconciler looks for the batch this create may have made (shared/jobs/orphans.ts).
    await updateItem(deps.dynamo, deps.config.table, jobKey(owner.jobId), { add: { lostCreates: 1 }, set: { updatedAt: isoAt(now) } });
    const hint =
      `if the API made it, it is a batch of ${record.rows} requests created near ${record.intentAt}` +
      (record.nonce ? ` whose custom_ids start with ${record.nonce}-` : '');
    observer.error('gave up on a create whose answer was lost: not created again, to never pay twice', {
      rows: record.rows,
      intentAt: record.intentAt,
      nonce: record.nonce,
      looks,
    });
    throw new CreateOutcomeUnknown(`${where}: the answer to its create was lost and its batch could not be found in ${looks} looks; ${hint}`);
  }
  throw new OutcomeUnknown(
    `${where}: a create may have been accepted ${Math.round(intentAge / 1000)} s ago and no batch of ${record.rows} requests ` +
      `is listed yet (look ${looks} of ${GIVE_UP_LOOKS})`,
    { requests: record.rows, bytes: record.bytes, sentAt: Date.parse(record.intentAt) },
  );
}

/** Notes when a create ended without an answer (best effort: without it, the grace bounds the create instead). */
async function noteLost(chunk: ChunkItem, index: number, attempt: number, intentAt: string, deps: SubmitDeps): Promise<void> {
  try {
    await updateChunk(deps.dynamo, deps.config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, { lostAt: isoAt(clockOf(deps)()) }) },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND #att[${index}].#int = :intent`, {
        ':attempt': attempt,
        ':intent': intentAt,
      }),
    });
  } catch {
    // The create's own error is what the workflow must see.
  }
}

async function readClaim(batchId: string, deps: SubmitDeps): Promise<BatchClaimItem | undefined> {
  return getItem<BatchClaimItem>(deps.dynamo, deps.config.table, { pk: batchPk(batchId), sk: BATCH_SK });
}

const isOwner = (item: BatchClaimItem | undefined, owner: Owner): boolean =>
  item !== undefined && item.jobId === owner.jobId && item.chunk === owner.chunk && item.attempt === owner.attempt;

/**
 * Claims a batch for a chunk attempt. True when the claim is (now) ours. For a batch we created
 * ourselves (`created`), a claim held by someone else is a conflict: an adoption took our batch.
 */
async function claim(owner: Owner, batchId: string, intentAt: string, deps: SubmitDeps, created: boolean): Promise<boolean> {
  const now = clockOf(deps)();
  const item: BatchClaimItem = {
    pk: batchPk(batchId),
    sk: BATCH_SK,
    type: 'batch',
    batchId,
    jobId: owner.jobId,
    chunk: owner.chunk,
    attempt: owner.attempt,
    claimedAt: isoAt(now),
    intentAt,
    ttl: ttlAfter(now, deps.config.rowTtlDays),
  };
  if (await putItem(deps.dynamo, deps.config.table, item, { ifAbsent: true })) return true;
  const holder = await readClaim(batchId, deps);
  if (isOwner(holder, owner)) return true;
  if (created) {
    throw new BatchClaimConflict(
      `batch ${batchId}, created for chunk ${owner.chunk} attempt ${owner.attempt} of job ${owner.jobId}, is claimed by ` +
        `chunk ${holder?.chunk} attempt ${holder?.attempt} of job ${holder?.jobId}`,
    );
  }
  return false;
}

/** Records the batch on the attempt (once: a retry after this point finds it there). */
async function recordBatch(owner: Owner, chunk: ChunkItem, batch: MessageBatch, deps: SubmitDeps, observer: Observer, adopted: boolean): Promise<SubmitOutput> {
  const { dynamo, config } = deps;
  const now = clockOf(deps);
  const { record, index } = attemptOf(chunk, owner.attempt);
  const patch = { batchId: batch.id, createdAt: batch.created_at, expiresAt: batch.expires_at };
  try {
    await updateChunk(dynamo, config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, patch), status: 'in_progress', updatedAt: isoAt(now()) },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid)`, { ':attempt': owner.attempt }),
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    // Recorded meanwhile by a concurrent Submit: theirs stands (it holds the same claim).
    const current = attemptOf(await readChunk(dynamo, config.table, owner.jobId, owner.chunk), owner.attempt).record;
    if (current.batchId === undefined) throw error;
    await releaseCreateSlot(dynamo, config.table, record.rows, owner);
    return alreadySubmitted(owner, current.batchId, current, config, observer);
  }
  // The batch is the attempt's on record: its create is answered, and the slot free for the next of this size.
  await releaseCreateSlot(dynamo, config.table, record.rows, owner);
  try {
    await updateItem(dynamo, config.table, jobKey(owner.jobId), { add: { rowsSubmitted: record.rows }, set: { updatedAt: isoAt(now()) } });
  } catch (error) {
    // A progress counter: failing the chunk for it would cancel a healthy batch.
    observer.warn('could not count the submitted rows on the job', { error: errorFields(error) });
  }
  const output = submitted(owner, batch.id, { ...record, ...patch }, config);
  observer.metric('RowsSubmitted', record.rows);
  observer.info('submitted', { batchId: batch.id, rows: record.rows, bytes: record.bytes, adopted, waitSeconds: output.waitSeconds });
  return output;
}

/** The answer of a Submit whose batch was recorded before (a retry, or a concurrent Submit): nothing is counted again. */
function alreadySubmitted(owner: Owner, batchId: string, record: ChunkAttempt, settings: PollSettings, observer: Observer): SubmitOutput {
  const output = submitted(owner, batchId, record, settings);
  observer.keys({ batchId });
  observer.info('submitted before', { batchId, rows: record.rows, waitSeconds: output.waitSeconds });
  return output;
}

function submitted(owner: Owner, batchId: string, record: ChunkAttempt, settings: PollSettings): SubmitOutput {
  const createdAt = record.createdAt ?? isoAt(Date.now());
  const expiresAt = record.expiresAt ?? isoAt(Date.parse(createdAt) + 86_400_000);
  return {
    ...owner,
    batchId,
    canceled: false,
    waitSeconds: nextPollDelay({ createdAt, expiresAt, serverNow: createdAt, settings }),
  };
}

/**
 * Whether a failed create shows that no batch was made: the API answered with a 4xx, or the
 * request failed before its whole body was sent. A 5xx (the server may have acted) and
 * OutcomeUnknown leave the intent in place, so the retry looks for a batch first.
 */
function provesNoBatch(error: unknown): boolean {
  if (error instanceof OutcomeUnknown) return false;
  // Only a definite refusal proves it: a 408 or 409 from an intermediary, or a 2xx we could not
  // read, may follow a body the API accepted.
  if (error instanceof AnthropicError) return error.status === undefined || DEFINITE_REFUSALS.has(error.status);
  return true;
}

/**
 * 529 is the API shedding load (overloaded_error) before it takes the request on; 500, 502, 503
 * and 504 may come from a server, or a proxy before it, that had already acted.
 */
const DEFINITE_REFUSALS: ReadonlySet<number> = new Set([400, 401, 402, 403, 404, 413, 422, 429, 529]);

async function withdrawIntent(chunk: ChunkItem, index: number, attempt: number, intentAt: string, deps: SubmitDeps): Promise<void> {
  try {
    await updateChunk(deps.dynamo, deps.config.table, chunk, {
      set: { attempts: patchAttempt(chunk, index, { intentAt: '' }), status: 'pending', updatedAt: isoAt(clockOf(deps)()) },
      condition: chunkCondition(`#ca = :attempt AND attribute_not_exists(#att[${index}].#bid) AND #att[${index}].#int = :intent`, {
        ':attempt': attempt,
        ':intent': intentAt,
      }),
    });
  } catch (error) {
    // Someone moved the attempt on meanwhile; the intent is theirs to resolve.
    if (!(error instanceof ConditionFailed)) throw error;
  }
}
