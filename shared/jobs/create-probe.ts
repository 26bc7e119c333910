/**
 * A probe: the smallest batch (one request of max_tokens 1; two for a one-row attempt, so its size is
 * never the attempt's own), canceled as soon as it is made. Submit
 * sends one when a lost create's batch is not listed and nothing created since shows the list to be
 * current past it (a one-chunk job whose create got a 5xx, say): once the list shows the probe, and
 * no batch of the lost create, that create made none and may be repeated (submit.ts).
 *
 * A request canceled before it reaches the model is not billed (docs/api-reference.md, results);
 * at worst its requests of max_tokens 1 are. While its own create is unanswered the probe holds the
 * create slot of its size, and it is claimed at once (attempt 0), so no chunk attempt adopts it.
 */
import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { BatchesApi } from '../anthropic/api';
import { AnthropicError } from '../anthropic/errors';
import { putItem } from '../store/dynamo';
import { BATCH_SK, batchPk, ttlAfter, type BatchClaimItem } from '../store/items';
import { errorFields, type Observer } from '../observability';
import { acquireCreateSlot, CreateSlotBusy, releaseCreateSlot, type SlotHolder } from './create-slot';
import { cancelBatch } from './cancel';
import { isoAt } from './chunk-state';

export interface ProbeDeps {
  dynamo: DynamoDBClient;
  api: BatchesApi;
  config: { table: string; rowTtlDays: number };
  now: () => number;
  observer: Observer;
}

export interface Probe {
  id: string;
  /** When its create was sent (ISO, local clock). */
  sentAt: string;
}

/** The probe's attempt number: chunk attempts count from 1. */
const PROBE_ATTEMPT = 0;

/** Sends a probe for the chunk of `owner`; undefined when none could be made now (the next look tries again). */
export async function sendProbe(
  owner: { jobId: string; chunk: number },
  probe: { model: string; requests: number },
  deps: ProbeDeps,
): Promise<Probe | undefined> {
  const { dynamo, api, config, observer } = deps;
  const holder: SlotHolder = { jobId: owner.jobId, chunk: owner.chunk, attempt: PROBE_ATTEMPT };
  const size = probe.requests;
  try {
    await acquireCreateSlot(dynamo, config.table, size, holder, { now: deps.now, holdMs: 15 * 60_000, waitMs: 0 });
  } catch (error) {
    if (error instanceof CreateSlotBusy) return undefined;
    throw error;
  }
  const sentAt = isoAt(deps.now());
  let id: string;
  try {
    const tag = randomUUID().slice(0, 8);
    const requests = Array.from({ length: size }, (_, i) => ({
      custom_id: `batchline-probe-${tag}-${i}`,
      params: { model: probe.model, max_tokens: 1, messages: [{ role: 'user' as const, content: '.' }] },
    }));
    const batch = await api.create(requests, { maxRetries: 0 });
    id = batch.id;
  } catch (error) {
    // Unanswered, the probe itself may exist: the slot notes when, so no one-row attempt adopts it.
    const refused = error instanceof AnthropicError && error.status !== undefined && error.status < 500;
    await releaseCreateSlot(dynamo, config.table, size, holder, refused ? undefined : isoAt(deps.now()));
    observer.warn('the probe batch could not be made; the next look tries again', { error: errorFields(error) });
    return undefined;
  }
  const now = deps.now();
  const claim: BatchClaimItem = {
    pk: batchPk(id),
    sk: BATCH_SK,
    type: 'batch',
    batchId: id,
    jobId: owner.jobId,
    chunk: owner.chunk,
    attempt: PROBE_ATTEMPT,
    claimedAt: isoAt(now),
    intentAt: sentAt,
    ttl: ttlAfter(now, config.rowTtlDays),
  };
  await putItem(dynamo, config.table, claim, { ifAbsent: true });
  await releaseCreateSlot(dynamo, config.table, size, holder);
  try {
    await cancelBatch(api, id);
  } catch (error) {
    observer.warn('could not cancel the probe batch (max_tokens 1)', { batchId: id, error: errorFields(error) });
  }
  observer.info('sent a probe batch to show the list current past a lost create', { batchId: id });
  return { id, sentAt };
}
