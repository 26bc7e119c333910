/**
 * DynamoDB access the core shares. Items are plain objects (shapes in ./items.ts), marshalled here.
 * Bulk writes loop on UnprocessedItems with backoff until none remain: the SDK does not retry
 * those for us, and dropping them silently loses rows.
 */
import {
  BatchWriteItemCommand,
  DeleteItemCommand,
  ConditionalCheckFailedException,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { JOBS_GSI, JOBS_GSI_PK } from './items';
import { TABLE_GSIS } from './table';

export type Key = { pk: string; sk: string };

const MARSHALL = { removeUndefinedValues: true, convertClassInstanceToMap: true } as const;

export class UnprocessedWrites extends Error {
  override readonly name = 'UnprocessedWrites';
  constructor(
    readonly remaining: number,
    readonly attempts: number,
  ) {
    super(`${remaining} items were still unprocessed after ${attempts} BatchWriteItem attempts`);
  }
}

export async function getItem<T>(dynamo: DynamoDBClient, table: string, key: Key, consistent = true): Promise<T | undefined> {
  const response = await dynamo.send(new GetItemCommand({ TableName: table, Key: marshall(key), ConsistentRead: consistent }));
  return response.Item ? (unmarshall(response.Item) as T) : undefined;
}

/** Puts an item; with `ifAbsent`, only when no item has its key. Returns false when the condition failed. */
export async function putItem(dynamo: DynamoDBClient, table: string, item: object, options: { ifAbsent?: boolean } = {}): Promise<boolean> {
  try {
    await dynamo.send(
      new PutItemCommand({
        TableName: table,
        Item: marshall(item, MARSHALL),
        ConditionExpression: options.ifAbsent ? 'attribute_not_exists(pk)' : undefined,
      }),
    );
    return true;
  } catch (error) {
    if (options.ifAbsent && isConditionFailure(error)) return false;
    throw error;
  }
}

export interface Update {
  /** Attributes to set (undefined values are skipped). */
  set?: Record<string, unknown>;
  /** Numeric attributes to add to (counters). */
  add?: Record<string, number>;
  /** Attributes to remove. */
  remove?: string[];
  /** A condition on the current item, with its own names and values (`#c0`, `:c0`, ...). */
  condition?: { expression: string; names?: Record<string, string>; values?: Record<string, unknown> };
}

/** Updates an item and returns it as it is afterwards. Throws ConditionFailed when the condition is false. */
export async function updateItem<T>(dynamo: DynamoDBClient, table: string, key: Key, update: Update): Promise<T> {
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const sets: string[] = [];
  const adds: string[] = [];
  let i = 0;
  for (const [name, value] of Object.entries(update.set ?? {})) {
    if (value === undefined) continue;
    names[`#s${i}`] = name;
    values[`:s${i}`] = value;
    sets.push(`#s${i} = :s${i}`);
    i += 1;
  }
  for (const [name, value] of Object.entries(update.add ?? {})) {
    names[`#a${i}`] = name;
    values[`:a${i}`] = value;
    adds.push(`#a${i} :a${i}`);
    i += 1;
  }
  const removes = (update.remove ?? []).map((name) => {
    names[`#r${i}`] = name;
    return `#r${i++}`;
  });
  Object.assign(names, update.condition?.names);
  Object.assign(values, update.condition?.values);
  const expression = [
    sets.length ? `SET ${sets.join(', ')}` : '',
    adds.length ? `ADD ${adds.join(', ')}` : '',
    removes.length ? `REMOVE ${removes.join(', ')}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  try {
    const response = await dynamo.send(
      new UpdateItemCommand({
        TableName: table,
        Key: marshall(key),
        UpdateExpression: expression,
        ConditionExpression: update.condition?.expression,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: Object.keys(values).length ? marshall(values, MARSHALL) : undefined,
        ReturnValues: 'ALL_NEW',
      }),
    );
    return unmarshall(response.Attributes ?? {}) as T;
  } catch (error) {
    if (isConditionFailure(error)) throw new ConditionFailed(key);
    throw error;
  }
}

export class ConditionFailed extends Error {
  override readonly name = 'ConditionFailed';
  constructor(readonly key: Key) {
    super(`condition failed for ${key.pk} / ${key.sk}`);
  }
}

export function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException || (error as { name?: string }).name === 'ConditionalCheckFailedException';
}

/** Deletes an item when `condition` holds of it; returns false when it did not (or the item is gone). */
export async function deleteItemIf(
  dynamo: DynamoDBClient,
  table: string,
  key: Key,
  condition: { expression: string; names?: Record<string, string>; values?: Record<string, unknown> },
): Promise<boolean> {
  try {
    await dynamo.send(
      new DeleteItemCommand({
        TableName: table,
        Key: marshall(key),
        ConditionExpression: condition.expression,
        ExpressionAttributeNames: condition.names,
        ExpressionAttributeValues: condition.values ? marshall(condition.values, MARSHALL) : undefined,
      }),
    );
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}

/** Every item of a partition whose sort key starts with `skPrefix`, following pages. */
export async function* queryPartition<T>(dynamo: DynamoDBClient, table: string, pk: string, skPrefix?: string): AsyncGenerator<T> {
  let startKey: Record<string, AttributeValue> | undefined;
  do {
    const response = await dynamo.send(
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: skPrefix ? 'pk = :pk AND begins_with(sk, :sk)' : 'pk = :pk',
        ExpressionAttributeValues: marshall(skPrefix ? { ':pk': pk, ':sk': skPrefix } : { ':pk': pk }),
        ExclusiveStartKey: startKey,
        ConsistentRead: true,
      }),
    );
    for (const item of response.Items ?? []) yield unmarshall(item) as T;
    startKey = response.LastEvaluatedKey;
  } while (startKey);
}

const JOBS_INDEX = TABLE_GSIS.find((gsi) => gsi.indexName === JOBS_GSI)!;

/** A read of the jobs index (`byCreated`: every job record, sorted by `<createdAt>#<jobId>`). */
export interface JobsIndexQuery {
  /** Only jobs whose index sort key is ≥ this: an ISO time takes jobs created then or later. */
  from?: string;
  /** Only jobs whose index sort key is ≤ this (an ISO time excludes jobs created at exactly that instant). */
  until?: string;
  /** Newest first; default oldest first. */
  newestFirst?: boolean;
  /**
   * A FilterExpression on each job, with its own names and values. DynamoDB applies it after reading
   * a page, so a page may hold fewer jobs than pageSize, or none. Its placeholders must not start
   * with `#jobs` or `:jobs`, which the key condition uses.
   */
  filter?: { expression: string; names?: Record<string, string>; values?: Record<string, unknown> };
  /** At most this many jobs in all; without a filter, no page reads more than is still wanted. */
  limit?: number;
  /** Items read per page (DynamoDB's Limit); default as many as fit in 1 MB. */
  pageSize?: number;
}

/**
 * Job records from the jobs index, following pages. The index is eventually consistent and holds
 * what the job record held when it was last indexed: read the record itself before acting on one.
 */
export async function* queryJobsIndex<T>(dynamo: DynamoDBClient, table: string, query: JobsIndexQuery = {}): AsyncGenerator<T> {
  const names: Record<string, string> = { '#jobsPk': JOBS_INDEX.partitionKey, ...query.filter?.names };
  const values: Record<string, unknown> = { ':jobsPk': JOBS_GSI_PK, ...query.filter?.values };
  let keyCondition = '#jobsPk = :jobsPk';
  if (query.from !== undefined || query.until !== undefined) {
    names['#jobsSk'] = JOBS_INDEX.sortKey;
    if (query.from !== undefined) values[':jobsFrom'] = query.from;
    if (query.until !== undefined) values[':jobsUntil'] = query.until;
    keyCondition +=
      query.from === undefined
        ? ' AND #jobsSk <= :jobsUntil'
        : query.until === undefined
          ? ' AND #jobsSk >= :jobsFrom'
          : ' AND #jobsSk BETWEEN :jobsFrom AND :jobsUntil';
  }
  let left = query.limit ?? Number.POSITIVE_INFINITY;
  let startKey: Record<string, AttributeValue> | undefined;
  while (left > 0) {
    const wanted = query.filter === undefined && Number.isFinite(left) ? left : undefined;
    const pageSize = wanted === undefined ? query.pageSize : Math.min(wanted, query.pageSize ?? wanted);
    const response = await dynamo.send(
      new QueryCommand({
        TableName: table,
        IndexName: JOBS_INDEX.indexName,
        KeyConditionExpression: keyCondition,
        FilterExpression: query.filter?.expression,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: marshall(values, MARSHALL),
        ScanIndexForward: query.newestFirst !== true,
        Limit: pageSize,
        ExclusiveStartKey: startKey,
      }),
    );
    for (const item of response.Items ?? []) {
      if (left <= 0) return;
      left -= 1;
      yield unmarshall(item) as T;
    }
    startKey = response.LastEvaluatedKey;
    if (!startKey) return;
  }
}

export interface BulkWriteOptions {
  /** BatchWriteItem calls in flight at once. */
  concurrency?: number;
  /** Attempts per group of 25 before giving up with UnprocessedWrites. */
  maxAttempts?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Counts requests sent, for benchmarks and tests. */
  onRequest?: () => void;
}

const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Puts many items with BatchWriteItem, 25 a request, `concurrency` requests at a time, retrying
 * UnprocessedItems with exponential backoff and full jitter until none remain.
 */
export class BulkWriter {
  private readonly pending: WriteRequest[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  private readonly concurrency: number;
  private readonly maxAttempts: number;
  private readonly sleep: (ms: number) => Promise<void>;
  written = 0;
  requests = 0;

  constructor(
    private readonly dynamo: DynamoDBClient,
    private readonly table: string,
    private readonly options: BulkWriteOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 8;
    this.maxAttempts = options.maxAttempts ?? 12;
    this.sleep = options.sleep ?? sleepMs;
  }

  async put(item: object): Promise<void> {
    if (this.failure) throw this.failure;
    this.pending.push({ PutRequest: { Item: marshall(item, MARSHALL) } });
    if (this.pending.length >= 25) await this.launch(this.pending.splice(0, 25));
  }

  /** Writes what is pending and waits for every request. */
  async flush(): Promise<void> {
    while (this.pending.length > 0) await this.launch(this.pending.splice(0, 25));
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure;
  }

  private async launch(group: WriteRequest[]): Promise<void> {
    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    const task = this.writeGroup(group).catch((error: unknown) => {
      this.failure ??= error;
    });
    const tracked = task.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async writeGroup(group: WriteRequest[]): Promise<void> {
    let remaining = group;
    for (let attempt = 1; ; attempt++) {
      this.requests += 1;
      this.options.onRequest?.();
      let unprocessed: WriteRequest[];
      try {
        const response = await this.dynamo.send(new BatchWriteItemCommand({ RequestItems: { [this.table]: remaining } }));
        unprocessed = response.UnprocessedItems?.[this.table] ?? [];
      } catch (error) {
        // When every item of a request is throttled the call throws (after the SDK's own retries):
        // that is the whole group unprocessed, to retry here like any other.
        if (!isThrottling(error)) throw error;
        unprocessed = remaining;
      }
      this.written += remaining.length - unprocessed.length;
      if (unprocessed.length === 0) return;
      if (attempt >= this.maxAttempts) throw new UnprocessedWrites(unprocessed.length, attempt);
      remaining = unprocessed;
      await this.sleep(Math.random() * Math.min(5000, 50 * 2 ** attempt));
    }
  }
}

const THROTTLING_ERRORS = new Set(['ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded']);

function isThrottling(error: unknown): boolean {
  return THROTTLING_ERRORS.has((error as { name?: string }).name ?? '');
}
