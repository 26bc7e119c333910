/**
 * The poller's records as the chunk lifecycle sees them: a watch (a chunk attempt waiting in
 * AwaitBatch, or a chunk waiting out its retry backoff in AwaitRetry, with its task token) and the poller's health record, which decides whether a chunk
 * waits for the poller or on the adaptive Wait loop (docs/architecture.md, "Waiting for a batch").
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { PollerConfig } from '../config';
import { getItem } from '../store/dynamo';
import { POLLER_PK, POLLER_SK, type PollerHealthItem, type WatchItem } from '../store/items';

/**
 * Arms per chunk attempt before it stays on the Wait loop. The first arm is the attempt's wait; a
 * later one follows a wake that found the batch still running (a cancel forwarded, a heartbeat
 * timeout while the poller was down), which is rare. Each costs ~13 history events, and the cap is
 * what keeps every setting the history budget accepted before the poller accepted still
 * (infra/history-budget.ts: 3 attempts of a 24 h batch polled every 2 minutes fit with 3, not 4 — every 125 s since the deadline fallback's loop is counted too).
 */
export const WATCH_ARMS_CAP = 3;

/** A watch is kept two days past its batch's expiry at most (DynamoDB TTL), whatever happens to its token. */
export const WATCH_TTL_PAST_EXPIRY_SECONDS = 2 * 86_400;

/** A watch's key, as stored (a batch's watch and a retry backoff's have different sort keys). */
export const watchKey = (watch: Pick<WatchItem, 'pk' | 'sk'>) => ({ pk: watch.pk, sk: watch.sk });
export const pollerHealthKey = { pk: POLLER_PK, sk: POLLER_SK };

export async function readPollerHealth(dynamo: DynamoDBClient, table: string): Promise<PollerHealthItem | undefined> {
  return getItem<PollerHealthItem>(dynamo, table, pollerHealthKey);
}

/** Whether the poller ticked within `staleSeconds` of `nowMs` (both on the local clock). */
export function pollerHealthy(health: PollerHealthItem | undefined, nowMs: number, config: Pick<PollerConfig, 'staleSeconds'>): boolean {
  if (!health) return false;
  const last = Date.parse(health.lastTickAt);
  return Number.isFinite(last) && nowMs - last <= config.staleSeconds * 1000;
}
