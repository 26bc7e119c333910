/**
 * Row records: what DynamoDB keeps of every custom_id — status, attempt, batch, error type, usage,
 * cost, where its result line is — packed many to an item.
 *
 * An item a row cost one write unit per row (DynamoDB rounds each item up to 1 KB), which made
 * DynamoDB most of the pipeline's AWS bill and most of Collect's time. A record is ~100 bytes, so
 * packed rows cost about a tenth of that. The packing keeps a row findable by its custom_id alone:
 *
 * - A job has `rowShards` shards (Prepare records rowShardCount of its valid rows); a custom_id's
 *   shard is a hash of it.
 * - Collect writes, for the attempt it collected, one item per shard its rows fall in
 *   (pk `ROWS#<jobId>#<shard>`, sk `<chunk>#<attempt>#C<part>`); a shard's records for one
 *   attempt are split into parts when they would pass MAX_PAGE_BYTES.
 * - Finalize writes the rows an uncollected attempt left (`chunk_failed`) the same way, writer `F`.
 * - Reading a row is one Query on its shard's partition: every attempt of every chunk that has a
 *   row in the shard. The row's record is the one of its highest attempt; within an attempt, the
 *   last written (a re-run's, or Finalize's over a Collect that died half-way).
 *
 * Re-runnable: a re-run writes the same keys again. A job's shard count is on its record, so a
 * changed setting (BATCHLINE_ROWS_PER_SHARD) applies to new jobs only.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BulkWriter, queryPartition, type BulkWriteOptions } from '../store/dynamo';
import { rowPagePk, rowPageSk, type JobItem, type RowPageItem, type RowPageWriter, type RowRecord, type RowStatus, type TokenTotals } from '../store/items';
import { jobKeys, type Prefixes } from '../store/keys';

/** A page's `records` JSON stays under this (DynamoDB's item limit is 400 KB). */
export const MAX_PAGE_BYTES = 300 * 1024;

/** Shards for a job: about `rowsPerShard` rows each over the whole job, so a chunk's share of a shard is one item. */
export function rowShardCount(validRows: number, rowsPerShard: number): number {
  return Math.max(1, Math.ceil(validRows / rowsPerShard));
}

/** FNV-1a (32 bit) of the custom_id's UTF-16 code units, modulo the shard count. */
export function rowShard(customId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < customId.length; i++) {
    hash ^= customId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/** The per-row part of a record; the rest is the page's. */
export type RowEntry = Pick<RowRecord, 'customId' | 'index' | 'status' | 'final' | 'errorType' | 'usage' | 'costUsd'> & {
  /** Where the row's line is in the attempt's results file. */
  line?: { offset: number; length: number };
};

/** One record inside `records`: [customId, index, status, final, errorType, usage, costUsd, offset, length]. */
type RowTuple = [string, number, RowStatus, 0 | 1, string | null, [number, number, number, number] | null, number | null, number | null, number | null];

export interface RowPage {
  jobId: string;
  chunk: number;
  attempt: number;
  batchId?: string;
  /** The job's shard count (its record's rowShards). */
  shards: number;
  writer: RowPageWriter;
  updatedAt: string;
  ttl?: number;
}

/** Gathers one chunk attempt's row records by shard, then writes them as pages. */
export class RowRecordWriter {
  private readonly byShard = new Map<number, string[]>();
  rows = 0;

  constructor(
    private readonly dynamo: DynamoDBClient,
    private readonly table: string,
    private readonly page: RowPage,
    private readonly writes: BulkWriteOptions = {},
  ) {}

  add(entry: RowEntry): void {
    const shard = rowShard(entry.customId, this.page.shards);
    let records = this.byShard.get(shard);
    if (!records) this.byShard.set(shard, (records = []));
    records.push(JSON.stringify(toTuple(entry)));
    this.rows += 1;
  }

  /** Writes every page (BatchWriteItem, unprocessed items retried); returns the items written. */
  async flush(): Promise<number> {
    const writer = new BulkWriter(this.dynamo, this.table, this.writes);
    const { jobId, chunk, attempt, writer: by, batchId, updatedAt, ttl } = this.page;
    let items = 0;
    for (const shard of [...this.byShard.keys()].sort((a, b) => a - b)) {
      let part = 0;
      for (const records of pages(this.byShard.get(shard)!)) {
        const item: RowPageItem = {
          pk: rowPagePk(jobId, shard),
          sk: rowPageSk(chunk, attempt, by, part),
          type: 'rows',
          jobId,
          shard,
          chunk,
          attempt,
          writer: by,
          part,
          batchId,
          rows: records.length,
          records: `[${records.join(',')}]`,
          updatedAt,
          ttl,
        };
        await writer.put(item);
        part += 1;
        items += 1;
      }
    }
    await writer.flush();
    return items;
  }
}

/** The job's shard count; a job Prepare never got through has no rows (one shard, all empty). */
export const rowShardsOf = (job: Pick<JobItem, 'rowShards'>): number => job.rowShards ?? 1;

/** The record of `customId` in the job, or undefined. */
export async function readRowRecord(
  dynamo: DynamoDBClient,
  table: string,
  job: Pick<JobItem, 'jobId' | 'rowShards'>,
  customId: string,
  prefixes?: Prefixes,
): Promise<RowRecord | undefined> {
  const pk = rowPagePk(job.jobId, rowShard(customId, rowShardsOf(job)));
  // A quoted custom_id cannot occur inside another record's fields (custom_ids are [A-Za-z0-9_-]).
  const needle = JSON.stringify(customId);
  let found: RowRecord | undefined;
  for await (const page of queryPartition<RowPageItem>(dynamo, table, pk)) {
    if (!page.records.includes(needle)) continue;
    for (const tuple of JSON.parse(page.records) as RowTuple[]) {
      if (tuple[0] !== customId) continue;
      const record = fromTuple(tuple, page, prefixes);
      if (!found || record.attempt > found.attempt || (record.attempt === found.attempt && record.updatedAt >= found.updatedAt)) found = record;
    }
  }
  return found;
}

function toTuple(entry: RowEntry): RowTuple {
  const u = entry.usage;
  return [
    entry.customId,
    entry.index,
    entry.status,
    entry.final ? 1 : 0,
    entry.errorType ?? null,
    u ? [u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens] : null,
    entry.costUsd ?? null,
    entry.line?.offset ?? null,
    entry.line?.length ?? null,
  ];
}

function fromTuple(tuple: RowTuple, page: RowPageItem, prefixes?: Prefixes): RowRecord {
  const [customId, index, status, final, errorType, usage, costUsd, offset, length] = tuple;
  const record: RowRecord = {
    jobId: page.jobId,
    customId,
    chunk: page.chunk,
    index,
    status,
    final: final === 1,
    attempt: page.attempt,
    updatedAt: page.updatedAt,
  };
  if (page.batchId !== undefined) record.batchId = page.batchId;
  if (errorType !== null) record.errorType = errorType;
  if (usage !== null) record.usage = tokenTotalsOf(usage);
  if (costUsd !== null) record.costUsd = costUsd;
  if (offset !== null && length !== null) record.result = { key: jobKeys(page.jobId, prefixes).chunkResults(page.chunk, page.attempt), offset, length };
  return record;
}

function tokenTotalsOf([input, output, cacheCreation, cacheRead]: [number, number, number, number]): TokenTotals {
  return { input_tokens: input, output_tokens: output, cache_creation_input_tokens: cacheCreation, cache_read_input_tokens: cacheRead };
}

/** Splits encoded records into runs whose JSON array stays under MAX_PAGE_BYTES. */
function* pages(records: string[]): Generator<string[]> {
  let page: string[] = [];
  let bytes = 2;
  for (const record of records) {
    const size = Buffer.byteLength(record) + 1;
    if (page.length > 0 && bytes + size > MAX_PAGE_BYTES) {
      yield page;
      page = [];
      bytes = 2;
    }
    page.push(record);
    bytes += size;
  }
  if (page.length > 0) yield page;
}
