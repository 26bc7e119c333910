/**
 * Create slots: at most one chunk attempt of this stack may have a create of N requests whose answer
 * it has not seen (items.ts, CreateSlotItem). A lost create is found again by request count and
 * creation time (submit.ts); with one holder per count, the batch found can only be the holder's,
 * so two equal-size chunks — of one job or of two files running at once — never claim each other's
 * batch. A slot is held for the few hundred milliseconds a create takes, or, when its answer was
 * lost, until the batch is found; an attempt of the same size waits (CreateSlotBusy, retried by the
 * workflow) rather than create beside it.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ConditionFailed, getItem, updateItem } from '../store/dynamo';
import { CREATE_SLOT_SK, createSlotPk, type CreateSlotItem } from '../store/items';

/** Another chunk attempt holds the create slot of this request count: retried by the workflow. */
export class CreateSlotBusy extends Error {
  override readonly name = 'CreateSlotBusy';
}

export interface SlotHolder {
  jobId: string;
  chunk: number;
  attempt: number;
}

const HOLDER_NAMES = { '#j': 'jobId', '#c': 'chunk', '#a': 'attempt' };
const holderValues = (holder: SlotHolder) => ({ ':j': holder.jobId, ':c': holder.chunk, ':a': holder.attempt });
const isHeldBy = '#j = :j AND #c = :c AND #a = :a';

/**
 * Takes the slot of `requests` for `holder` for `holdMs`, or renews it when the holder has it
 * already; a slot held by another is asked again every SLOT_POLL_MS for up to `waitMs` (a create
 * is answered in seconds), then CreateSlotBusy. Answers the slot as it now is (its `abandonedAt`
 * bounds adoption).
 */
export async function acquireCreateSlot(
  dynamo: DynamoDBClient,
  table: string,
  requests: number,
  holder: SlotHolder,
  options: { now: () => number; holdMs: number; waitMs: number },
): Promise<CreateSlotItem> {
  const waitUntil = Date.now() + options.waitMs;
  for (;;) {
    try {
      const now = options.now();
      return await takeSlot(dynamo, table, requests, holder, { now, heldUntil: now + options.holdMs });
    } catch (error) {
      if (!(error instanceof CreateSlotBusy) || Date.now() + SLOT_POLL_MS > waitUntil) throw error;
      await new Promise((resolve) => setTimeout(resolve, SLOT_POLL_MS));
    }
  }
}

const SLOT_POLL_MS = 250;

async function takeSlot(
  dynamo: DynamoDBClient,
  table: string,
  requests: number,
  holder: SlotHolder,
  at: { now: number; heldUntil: number },
): Promise<CreateSlotItem> {
  const key = { pk: createSlotPk(requests), sk: CREATE_SLOT_SK };
  try {
    return await updateItem<CreateSlotItem>(dynamo, table, key, {
      set: { type: 'create-slot', requests, ...holder, heldUntil: at.heldUntil },
      condition: {
        expression: `attribute_not_exists(#j) OR #h < :now OR (${isHeldBy})`,
        names: { ...HOLDER_NAMES, '#h': 'heldUntil' },
        values: { ...holderValues(holder), ':now': at.now },
      },
    });
  } catch (error) {
    if (!(error instanceof ConditionFailed)) throw error;
    const slot = await getItem<CreateSlotItem>(dynamo, table, key);
    throw new CreateSlotBusy(
      `a create of ${requests} requests by chunk ${slot?.chunk} attempt ${slot?.attempt} of job ${slot?.jobId} is not yet answered; ` +
        `chunk ${holder.chunk} attempt ${holder.attempt} of job ${holder.jobId} waits for it rather than create a batch of the same size beside it`,
    );
  }
}

/**
 * Frees the slot if `holder` has it. With `abandonedAt`, the holder gave up on a create it could
 * not find: later holders never adopt a batch made before that moment.
 */
export async function releaseCreateSlot(dynamo: DynamoDBClient, table: string, requests: number, holder: SlotHolder, abandonedAt?: string): Promise<void> {
  try {
    await updateItem(
      dynamo,
      table,
      { pk: createSlotPk(requests), sk: CREATE_SLOT_SK },
      {
        set: { heldUntil: 0, abandonedAt },
        remove: ['jobId', 'chunk', 'attempt'],
        condition: { expression: isHeldBy, names: HOLDER_NAMES, values: holderValues(holder) },
      },
    );
  } catch (error) {
    // Taken over after its lease ran out: the slot is no longer ours to free.
    if (!(error instanceof ConditionFailed)) throw error;
  }
}
