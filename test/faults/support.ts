/**
 * What every fault test checks, on the local pipeline (test/e2e/support.ts starts the stack):
 * - every row accounted for exactly once: results.jsonl has one line per valid row, in input order,
 *   and the summary's counts add up to the input's rows;
 * - no batch created twice for one chunk attempt: the batches the simulator created while the job
 *   ran are exactly the batch ids recorded on the job's chunk attempts, one per attempt;
 * - where the fault was recoverable, results.jsonl equal to a fault-free run of the same rows, once
 *   the fields that name a particular batch are normalized (see `comparable`).
 */
import { expect } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { getItem } from '../../shared/store/dynamo';
import { BATCH_SK, batchPk, type BatchClaimItem, type ChunkItem, type RowRecord } from '../../shared/store/items';
import { readJob } from '../../shared/jobs/chunk-state';
import { readRowRecord } from '../../shared/jobs/row-records';
import { LOCAL_API_KEY, type JobOutcome, type LocalStack } from '../../local/runtime';
import type { TaskWrapper } from '../../local/step-functions';
import type { Endpoint } from '../../simulator/options';
import { chunksOf, readJsonl, writeRequests, request, type StackUnderTest } from '../e2e/support';

export interface JobRun {
  jobId: string;
  outcome: JobOutcome;
  results: ResultRow[];
  /** Batch ids the simulator created while the job ran, in creation order. */
  batches: string[];
}

/** Uploads `customIds` as a request file named `name` and runs it to its end. */
export async function runJob(under: StackUnderTest, name: string, customIds: string[], options: { lenient?: boolean; key?: string } = {}): Promise<JobRun> {
  return (await startJob(under, await writeRequests(under, name, customIds.map(request)), options)).finish();
}

/**
 * Submits a written request file and returns its job id and `finish`, which waits for the job's end
 * and gathers its run: results, and the batches the simulator created since the submit.
 */
export async function startJob(
  under: StackUnderTest,
  file: string,
  options: { lenient?: boolean; key?: string } = {},
): Promise<{ jobId: string; finish(): Promise<JobRun> }> {
  const before = under.stack.simulator!.stats().batchesCreated.length;
  const jobId = await under.stack.submitFile(file, options);
  const finish = async (): Promise<JobRun> => {
    const outcome = await under.stack.waitForJob(jobId);
    const results = outcome.summary ? await readJsonl<ResultRow>(under.stack, outcome.keys.results) : [];
    return { jobId, outcome, results, batches: under.stack.simulator!.stats().batchesCreated.slice(before) };
  };
  return { jobId, finish };
}

/** One results line per row, in input order, and counts that add up to the input's rows. */
export function expectEveryRowOnce(run: JobRun, customIds: string[], invalid = 0): void {
  expect(run.results.map((row) => row.custom_id)).toEqual(customIds);
  const counts = run.outcome.summary?.counts;
  expect(counts).toBeDefined();
  const { total, succeeded, errored, expired, canceled, invalid: invalidRows } = counts!;
  expect({ total, sum: succeeded + errored + expired + canceled + invalidRows, invalid: invalidRows }).toEqual({
    total: customIds.length + invalid,
    sum: customIds.length + invalid,
    invalid,
  });
  const byStatus = (status: string) => run.results.filter((row) => row.status === status).length;
  expect({ succeeded, errored, expired, canceled }).toEqual({
    succeeded: byStatus('succeeded'),
    errored: byStatus('errored'),
    expired: byStatus('expired'),
    canceled: byStatus('canceled'),
  });
}

/** The job's chunk records (attempts with their batch ids). */
export const chunkRecords: (stack: LocalStack, jobId: string) => Promise<ChunkItem[]> = chunksOf;

/**
 * Every batch the simulator created during the job belongs to exactly one chunk attempt, and every
 * submitted attempt has exactly one: no attempt got two batches, no batch is unaccounted for.
 */
export async function expectOneBatchPerAttempt(stack: LocalStack, run: JobRun): Promise<void> {
  const chunks = await chunkRecords(stack, run.jobId);
  const recorded = chunks.flatMap((chunk) => chunk.attempts.flatMap((attempt) => (attempt.batchId ? [attempt.batchId] : [])));
  expect(new Set(recorded).size).toBe(recorded.length);
  expect((await withoutProbes(stack, run.batches)).sort()).toEqual([...recorded].sort());
}

/**
 * The batches that are not probes (shared/jobs/create-probe.ts: one or two requests, claimed as attempt 0,
 * canceled at once); each probe left out is checked to be so.
 */
export async function withoutProbes(stack: LocalStack, batchIds: string[]): Promise<string[]> {
  const kept: string[] = [];
  for (const batchId of batchIds) {
    const claim = await getItem<BatchClaimItem>(stack.dynamo, stack.table, { pk: batchPk(batchId), sk: BATCH_SK });
    if (claim?.attempt !== 0) {
      kept.push(batchId);
      continue;
    }
    // Canceled at once — or ended before the cancel arrived, on a loaded machine where the
    // simulator's fast clock runs past its processing time; its requests are max_tokens 1.
    const probe = await simulatorBatch(stack, batchId);
    expect([1, 2]).toContain(Object.values(probe.request_counts).reduce((sum, n) => sum + n, 0));
    expect(probe.cancel_initiated_at !== null || probe.processing_status === 'ended').toBe(true);
  }
  return kept;
}

/**
 * A results line with what names one particular batch taken out, so runs of the same rows compare:
 * - `batch_id`: batch ids are random per batch (simulator/ids.ts), so two runs never share one;
 * - `message.id`: derived from the seed, the batch's creation sequence and the custom_id
 *   (simulator/reply.ts), so it differs whenever the batch was not the same n-th batch created.
 * Everything else — status, attempts, the message's content, model, stop reason, usage, cost and
 * error — is a function of the request alone and must match exactly. `attempts` is kept unless the
 * fault legitimately adds one (`ignoreAttempts`, e.g. rows that expired and were retried).
 */
export function comparable(rows: ResultRow[], options: { ignoreAttempts?: boolean } = {}): unknown[] {
  return rows.map(({ batch_id: _batch, attempts, message, ...rest }) => ({
    ...rest,
    ...(options.ignoreAttempts ? {} : { attempts }),
    ...(message === undefined ? {} : { message: { ...(message as Record<string, unknown>), id: '<message id>' } }),
  }));
}

export async function rowItem(stack: LocalStack, jobId: string, customId: string): Promise<RowRecord | undefined> {
  return readRowRecord(stack.dynamo, stack.table, await readJob(stack.dynamo, stack.table, jobId), customId);
}

/** Wraps one state's local task handler for every execution started from now on; returns the undo. */
export function interceptTask(stack: LocalStack, state: string, wrapper: TaskWrapper): () => void {
  return stack.stepFunctions.wrapTask(state, wrapper);
}

/** The simulator's view of a batch (processing_status, request_counts). */
export async function simulatorBatch(
  stack: LocalStack,
  batchId: string,
): Promise<{ processing_status: string; request_counts: Record<string, number>; cancel_initiated_at: string | null }> {
  const response = await fetch(`${stack.simulator!.url}/v1/messages/batches/${batchId}`, {
    headers: { 'x-api-key': LOCAL_API_KEY, 'anthropic-version': '2023-06-01' },
  });
  if (!response.ok) throw new Error(`batch ${batchId}: HTTP ${response.status}`);
  return (await response.json()) as { processing_status: string; request_counts: Record<string, number>; cancel_initiated_at: string | null };
}

/**
 * The HTTP status of a harmless call to `endpoint` now (create with an empty body; retrieve or
 * results of a batch that does not exist). While injected HTTP faults are set, a 400 (create) or
 * 404 (the others) is the endpoint's own answer: every fault counted by `times` has fired already.
 */
export async function ownAnswerStatus(stack: LocalStack, endpoint: Extract<Endpoint, 'create' | 'retrieve' | 'results'>): Promise<number> {
  const batches = `${stack.simulator!.url}/v1/messages/batches`;
  const missing = 'msgbatch_01NoSuchBatchForFaultCheck';
  const url = endpoint === 'create' ? batches : endpoint === 'retrieve' ? `${batches}/${missing}` : `${batches}/${missing}/results`;
  const response = await fetch(url, {
    method: endpoint === 'create' ? 'POST' : 'GET',
    headers: { 'x-api-key': LOCAL_API_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    ...(endpoint === 'create' ? { body: '{}' } : {}),
  });
  await response.arrayBuffer();
  return response.status;
}
