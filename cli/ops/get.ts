/** `batchline get JOB CUSTOM_ID`: one row's status and its result line, read where Collect recorded it. */
import { getRow, type RowLookup } from '../../shared/jobs/queries';
import { UsageError } from '../args';
import { count, plural, usd } from '../format';
import { opsCommand } from './command';
import { TARGET_HELP } from './target';
import { JSON_FLAGS, JSON_HELP, wantsJson, writeJson } from '../json';

export const GET_HELP = `Usage: batchline get JOB CUSTOM_ID [options]

Shows one row of a job: its status, attempt, batch, error type, tokens and cost, and its latest
result line exactly as the Message Batches API returned it (read from the chunk's results file by
its recorded byte range). Rows are recorded as their batch is collected; invalid lines are listed
in the job's invalid.jsonl instead.

Options:
${JSON_HELP}
${TARGET_HELP}
  -h, --help         show this help

Exit status: 0 when the row is shown (whatever its status), 1 when the job or the row does not
exist or the stack cannot be read, 2 for a usage error.
`;

export const getCommand = opsCommand('get', GET_HELP, { ...JSON_FLAGS }, async ({ values, positionals }, open, io) => {
  const json = wantsJson(values);
  if (positionals.length !== 2)
    throw new UsageError(`needs a job id and a custom_id, got ${plural(positionals.length, 'argument')} (see batchline get --help)`);
  const [jobId, customId] = positionals as [string, string];
  const target = await open();
  const lookup = await getRow(target, jobId, customId);
  if (json) {
    const { row } = lookup;
    writeJson(io.stdout, 'get', {
      jobId: row.jobId,
      customId: row.customId,
      status: row.status,
      final: row.final,
      errorType: row.errorType ?? null,
      attempt: row.attempt,
      batchId: row.batchId ?? null,
      synchronous: isSynchronous(row),
      chunk: row.chunk,
      index: row.index,
      usage: row.usage ?? null,
      costUsd: row.costUsd ?? null,
      resultLocation: row.result ? { bucket: target.bucket, ...row.result } : null,
      result: lookup.result ?? null,
      resultUnavailable: lookup.resultUnavailable ?? null,
      updatedAt: row.updatedAt,
    });
    return 0;
  }
  io.stdout.write(formatRow(lookup, target.bucket));
  return 0;
});

export function formatRow({ row, result, resultUnavailable }: RowLookup, bucket: string): string {
  const outcome = row.errorType ? `${row.status} (${row.errorType})` : row.status;
  const next = row.final === false ? `, to be retried in attempt ${row.attempt + 1}` : '';
  const lines = [`Row ${row.customId} of job ${row.jobId}: ${outcome}${next}`];
  const sent = row.batchId ? ` in batch ${row.batchId}` : isSynchronous(row) ? ' as a synchronous call (the deadline fallback)' : ' (never submitted)';
  lines.push(`  attempt   ${row.attempt}${sent}, chunk ${row.chunk} row ${row.index}`);
  if (row.usage) {
    const u = row.usage;
    lines.push(
      `  tokens    ${count(u.input_tokens)} input, ${count(u.output_tokens)} output, ${count(u.cache_read_input_tokens)} cache read, ${count(u.cache_creation_input_tokens)} cache write`,
    );
  }
  if (row.costUsd !== undefined) lines.push(`  cost      ${usd(row.costUsd)} at ${isSynchronous(row) ? 'standard' : 'batch'} rates`);
  if (row.result) {
    const { key, offset, length } = row.result;
    lines.push(`  line      s3://${bucket}/${key} bytes ${offset}–${offset + length - 1}`);
  }
  if (resultUnavailable) lines.push(`  result    unavailable: ${resultUnavailable}`);
  let text = lines.join('\n') + '\n';
  if (result) text += `${JSON.stringify(result, null, 2)}\n`;
  return text;
}

/** A row answered by a synchronous call: its attempt had no batch, yet it has a result line (shared/jobs/stragglers.ts). */
function isSynchronous(row: RowLookup['row']): boolean {
  return row.batchId === undefined && row.result !== undefined;
}
