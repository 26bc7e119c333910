/**
 * The output history (docs/architecture.md, "Budgets"): per model, what past jobs' succeeded rows
 * used of their max_tokens. FinalizeJob adds each job once; Prepare and `batchline estimate` read it
 * for the estimate's expected figure (shared/cost/cost.ts EstimateTotals).
 *
 * Prepare records per model the rows it sends and their Σ max_tokens (`sentOutput`); the succeeded
 * rows' share of that sum is taken in proportion to their count (exact when every row of a model
 * succeeded; rows that failed are assumed to have asked for the same max_tokens on average).
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { OutputHistory } from '../cost/cost';
import { ConditionFailed, queryPartition, updateItem } from '../store/dynamo';
import { HISTORY_PK, JOB_SK, jobPk, OUTPUT_HISTORY_SK_PREFIX, outputHistorySk, type JobItem, type OutputHistoryItem } from '../store/items';

/** Every model's history: one Query of a small partition (one item per model ever run). */
export async function readOutputHistory(dynamo: DynamoDBClient, table: string): Promise<OutputHistory> {
  const history: OutputHistory = {};
  for await (const item of queryPartition<OutputHistoryItem>(dynamo, table, HISTORY_PK, OUTPUT_HISTORY_SK_PREFIX)) {
    history[item.model] = { rows: item.rows ?? 0, outputTokens: item.outputTokens ?? 0, maxTokens: item.maxTokens ?? 0 };
  }
  return history;
}

/** One model's part of a finished job: its succeeded rows and the output they used. */
export interface SucceededOutput {
  rows: number;
  outputTokens: number;
}

/** What a job adds to each model's history, from Prepare's `sentOutput` and the succeeded rows' output. */
export function historyAdditions(
  sent: NonNullable<JobItem['sentOutput']>,
  succeeded: Record<string, SucceededOutput>,
): Array<{ model: string; rows: number; outputTokens: number; maxTokens: number }> {
  const additions: Array<{ model: string; rows: number; outputTokens: number; maxTokens: number }> = [];
  for (const [model, out] of Object.entries(succeeded)) {
    const asked = Object.hasOwn(sent, model) ? sent[model] : undefined;
    if (!asked || asked.rows <= 0 || out.rows <= 0) continue;
    const rows = Math.min(out.rows, asked.rows);
    additions.push({ model, rows, outputTokens: out.outputTokens, maxTokens: Math.round((asked.maxTokens * rows) / asked.rows) });
  }
  return additions;
}

/**
 * Adds a finished job to the history, at most once: the job record is marked first (conditionally),
 * then each model's counters are ADDed. A FinalizeJob that dies between the two leaves the job out
 * of the history (never counted twice). Returns whether this call added it.
 */
export async function addToOutputHistory(
  dynamo: DynamoDBClient,
  table: string,
  job: Pick<JobItem, 'jobId' | 'sentOutput'>,
  succeeded: Record<string, SucceededOutput>,
  at: string,
): Promise<boolean> {
  if (!job.sentOutput) return false;
  const additions = historyAdditions(job.sentOutput, succeeded);
  if (additions.length === 0) return false;
  try {
    await updateItem(
      dynamo,
      table,
      { pk: jobPk(job.jobId), sk: JOB_SK },
      {
        set: { historyAddedAt: at },
        condition: { expression: 'attribute_exists(pk) AND attribute_not_exists(historyAddedAt)' },
      },
    );
  } catch (error) {
    if (error instanceof ConditionFailed) return false;
    throw error;
  }
  await Promise.all(
    additions.map((add) =>
      updateItem(
        dynamo,
        table,
        { pk: HISTORY_PK, sk: outputHistorySk(add.model) },
        {
          set: { type: 'output-history', model: add.model, updatedAt: at },
          add: { rows: add.rows, outputTokens: add.outputTokens, maxTokens: add.maxTokens, jobs: 1 },
        },
      ),
    ),
  );
  return true;
}
