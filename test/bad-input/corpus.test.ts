/**
 * The bad-input corpus through the local pipeline: strict mode rejects the file before anything is
 * submitted, with a report naming the line and reason of every bad line; lenient mode runs the
 * valid rows and counts the rest. Files with nothing to run (empty, only blank lines) are rejected at once.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ResultRow } from '../../shared/jobs/finalize-job';
import { readJsonl, useLocalStack } from '../e2e/support';
import { combinedFile, corpus, expectedReport, invalidCount, MAX_BYTES_PER_CHUNK, validIds } from './corpus';

describe('the bad-input corpus on the local pipeline', () => {
  const under = useLocalStack({ settings: { maxBytesPerChunk: MAX_BYTES_PER_CHUNK } });
  const entries = corpus();
  const valid = validIds(entries);
  const invalid = invalidCount(entries);

  const upload = async (name: string, bytes: Buffer, lenient: boolean) => {
    const file = path.join(under.dir, name);
    await writeFile(file, bytes);
    const before = under.stack.simulator!.stats();
    const jobId = await under.stack.submitFile(file, { lenient });
    const outcome = await under.stack.waitForJob(jobId);
    const after = under.stack.simulator!.stats();
    return { outcome, batches: after.batchesCreated.length - before.batchesCreated.length, creates: after.calls.create - before.calls.create };
  };

  it('holds at least 20 distinct bad cases, each with its exact verdict', () => {
    const report = expectedReport(entries);
    expect(report.length).toBeGreaterThanOrEqual(20);
    expect(new Set(entries.flatMap((entry) => (entry.kind === 'invalid' ? [entry.name] : []))).size).toBe(report.length);
  });

  it('strict: rejects the file, reports every bad line by number, code and reason, and submits nothing', async () => {
    const { outcome, batches, creates } = await upload('corpus-strict.jsonl', combinedFile(entries), false);

    expect(outcome.status).toBe('rejected');
    expect(outcome.execution).toMatchObject({ status: 'FAILED', error: 'ValidationFailed' });
    expect({ batches, creates }).toEqual({ batches: 0, creates: 0 });
    expect(await readJsonl(under.stack, outcome.keys.invalid)).toEqual(expectedReport(entries));
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status, row.attempts])).toEqual(valid.map((id) => [id, 'canceled', 0]));
    expect(outcome.summary?.counts).toEqual({ total: valid.length + invalid, succeeded: 0, errored: 0, expired: 0, canceled: valid.length, invalid });
  });

  it('lenient: runs the valid rows (BOM and CRLF lines among them) and counts the bad ones', async () => {
    const { outcome, batches } = await upload('corpus-lenient.jsonl', combinedFile(entries), true);

    expect(outcome.status).toBe('succeeded');
    expect(await readJsonl(under.stack, outcome.keys.invalid)).toEqual(expectedReport(entries));
    const results = await readJsonl<ResultRow>(under.stack, outcome.keys.results);
    expect(results.map((row) => [row.custom_id, row.status])).toEqual(valid.map((id) => [id, 'succeeded']));
    expect(outcome.summary?.counts).toEqual({ total: valid.length + invalid, succeeded: valid.length, errored: 0, expired: 0, canceled: 0, invalid });
    expect(batches).toBe(outcome.summary?.chunks);
  });

  it.each([
    ['an empty file', Buffer.alloc(0)],
    ['a file of blank lines only', readFileSync(fileURLToPath(new URL('./cases/only-blank-lines.jsonl', import.meta.url)))],
  ])('rejects %s at once, nothing submitted, zero rows, saying why, in both modes', async (name, bytes) => {
    for (const lenient of [false, true]) {
      const { outcome, batches } = await upload(`${lenient ? 'lenient' : 'strict'}-${name.replace(/\W+/g, '-')}.jsonl`, bytes, lenient);
      // Nobody drops an empty file on purpose: it is rejected, not "succeeded with 0 rows".
      expect({ lenient, status: outcome.status, batches }).toEqual({ lenient, status: 'rejected', batches: 0 });
      expect(outcome.execution).toMatchObject({
        status: 'FAILED',
        error: 'EmptyInput',
        cause: 'The input file holds no requests: it is empty, or only blank lines',
      });
      expect(outcome.summary?.counts).toEqual({ total: 0, succeeded: 0, errored: 0, expired: 0, canceled: 0, invalid: 0 });
      expect(await readJsonl(under.stack, outcome.keys.results)).toEqual([]);
      expect(await readJsonl(under.stack, outcome.keys.invalid)).toEqual([]);
    }
  });
});
