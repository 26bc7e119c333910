/**
 * The chunk lifecycle's shared reads and writes: the chunk and job records, one attempt of a chunk,
 * and conditional writes of a chunk's attempts list (the chunk states' inputs are shared/jobs/contract.ts's).
 *
 * The attempts list is small (one entry per attempt, ≤ BATCHLINE_MAX_ATTEMPTS), so a state writes it
 * whole; every such write is conditioned on the fields it depends on (`currentAttempt`, and the
 * attempt's batchId / intentAt / collectedAt), so a retried or concurrent invocation can never
 * overwrite a step that already happened.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { getItem, queryPartition, updateItem, type Update } from '../store/dynamo';
import { CHUNK_SK_PREFIX, chunkSk, JOB_SK, jobPk, type ChunkAttempt, type ChunkItem, type JobItem } from '../store/items';
import { JobNotFound } from './prepare-job';

export { JobNotFound };

export class ChunkNotFound extends Error {
  override readonly name = 'ChunkNotFound';
}

/** The chunk record is not in the state this step expects (e.g. a stale attempt number). */
export class ChunkStateConflict extends Error {
  override readonly name = 'ChunkStateConflict';
}

export const chunkKey = (jobId: string, chunk: number) => ({ pk: jobPk(jobId), sk: chunkSk(chunk) });
export const jobKey = (jobId: string) => ({ pk: jobPk(jobId), sk: JOB_SK });

export async function readChunk(dynamo: DynamoDBClient, table: string, jobId: string, chunk: number): Promise<ChunkItem> {
  const item = await getItem<ChunkItem>(dynamo, table, chunkKey(jobId, chunk));
  if (!item) throw new ChunkNotFound(`chunk ${chunk} of job ${jobId} does not exist`);
  return item;
}

export async function readJob(dynamo: DynamoDBClient, table: string, jobId: string): Promise<JobItem> {
  const item = await getItem<JobItem>(dynamo, table, jobKey(jobId));
  if (!item) throw new JobNotFound(`job ${jobId} does not exist`);
  return item;
}

/**
 * Every chunk record of a job, in chunk order. A record per chunk, each a few attempts long (the
 * whole list is what jobProgress shows): a caller that looks at them more than once reads them once.
 */
export async function readJobChunks(dynamo: DynamoDBClient, table: string, jobId: string): Promise<ChunkItem[]> {
  const chunks: ChunkItem[] = [];
  for await (const chunk of queryPartition<ChunkItem>(dynamo, table, jobPk(jobId), CHUNK_SK_PREFIX)) chunks.push(chunk);
  return chunks;
}

export interface AttemptAt {
  record: ChunkAttempt;
  /** Position in the chunk's attempts list (for conditions on `attempts[i]`). */
  index: number;
}

export function attemptOf(chunk: ChunkItem, attempt: number): AttemptAt {
  const index = chunk.attempts.findIndex((a) => a.attempt === attempt);
  if (index === -1) throw new ChunkStateConflict(`chunk ${chunk.chunk} of job ${chunk.jobId} has no attempt ${attempt}`);
  return { record: chunk.attempts[index]!, index };
}

const CHUNK_NAMES: Record<string, string> = {
  '#ca': 'currentAttempt',
  '#att': 'attempts',
  '#bid': 'batchId',
  '#int': 'intentAt',
  '#col': 'collectedAt',
  '#pri': 'priming',
  '#syn': 'sync',
  '#clm': 'claimed',
};

/**
 * A condition on a chunk record, written with the placeholders `#ca` (currentAttempt), `#att`
 * (attempts), `#bid`, `#int`, `#col`, `#pri`, `#syn` (an attempt's batchId, intentAt, collectedAt, priming, sync), `#clm` (sync's claimed). Only the names
 * the expression uses are sent: DynamoDB rejects unused ones.
 */
export function chunkCondition(expression: string, values: Record<string, unknown> = {}): NonNullable<Update['condition']> {
  const names: Record<string, string> = {};
  for (const [placeholder, name] of Object.entries(CHUNK_NAMES)) {
    if (new RegExp(`${placeholder}\\b`).test(expression)) names[placeholder] = name;
  }
  return { expression, names, values };
}

/** The chunk's attempts with attempt `index` changed by `patch`. */
export function patchAttempt(chunk: ChunkItem, index: number, patch: Partial<ChunkAttempt>): ChunkAttempt[] {
  return chunk.attempts.map((a, i) => (i === index ? { ...a, ...patch } : a));
}

export async function updateChunk(dynamo: DynamoDBClient, table: string, chunk: ChunkItem, update: Update): Promise<ChunkItem> {
  return updateItem<ChunkItem>(dynamo, table, chunkKey(chunk.jobId, chunk.chunk), update);
}

/** Epoch ms → ISO, the one timestamp format of the records. */
export const isoAt = (ms: number) => new Date(ms).toISOString();
