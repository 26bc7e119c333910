import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CostTotals } from '../../shared/cost/cost';
import { BUILT_IN_PRICES } from '../../shared/cost/prices';
import { AttemptTimeline, cacheSavings, dollars, errorExamplesFrom, escapeHtml, renderSummaryHtml, TIMELINE_ATTEMPTS } from '../../shared/jobs/summary-html';
import type { JobSummary } from '../../shared/jobs/finalize-job';
import { findChromium, visitPage } from '../support/browser';

/** A summary whose every text a user or the API controls is markup. */
const HOSTILE = '<script>document.title="owned"</script><img src=x onerror=alert(1)>"\'&';

function summary(overrides: Partial<JobSummary> = {}): JobSummary {
  return {
    jobId: 'tickets-0123456789abcdef',
    input: { bucket: 'bucket', key: `inbox/${HOSTILE}.jsonl` },
    status: 'succeeded',
    validationMode: 'lenient',
    counts: { total: 1_234_567, succeeded: 1_234_000, errored: 500, expired: 60, canceled: 0, invalid: 7 },
    errorsByType: { [HOSTILE]: 400, overloaded_error: 100 },
    tokens: { input: 9_876_543, output: 1_234, cache_creation_input: 0, cache_read_input: 55 },
    cost: {
      batchUsd: 12.345678,
      standardUsd: 24.691356,
      savedUsd: 12.345678,
      byModel: {
        'claude-haiku-4-5': { requests: 1_234_000, batchUsd: 12.345678, standardUsd: 24.691356 },
        [HOSTILE]: { requests: 3, batchUsd: null, standardUsd: null },
      },
      unpricedModels: [HOSTILE],
    },
    chunks: 2,
    batches: [{ chunk: 0, attempt: 1, batchId: 'msgbatch_1', counts: { succeeded: 1, errored: 0, expired: 0, canceled: 0 } }],
    retries: { attempts: 0, rows: 0 },
    timings: { createdAt: '2026-01-02T03:00:00.000Z', endedAt: '2026-01-02T04:00:00.000Z', durationSeconds: 3600 },
    ...overrides,
  };
}

describe('summary.html', () => {
  it('escapes every character that could open markup', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const html = renderSummaryHtml(summary(), { errorExamples: { [HOSTILE]: [HOSTILE] } });
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<img');
    // No script and no network, whatever the page holds.
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`);
    expect(html).not.toMatch(/https?:\/\//);
  });

  it('shows dollars exactly as summary.json holds them, with at least two decimals', () => {
    expect([dollars(0), dollars(1.5), dollars(0.000432), dollars(1234.567891)]).toEqual(['$0.00', '$1.50', '$0.000432', '$1,234.567891']);
  });

  it('is a function of its input alone: the same summary, the same bytes', () => {
    expect(renderSummaryHtml(summary())).toBe(renderSummaryHtml(summary()));
  });

  it('says when a rejected file left its valid rows unsent, and when no batch was created', () => {
    const html = renderSummaryHtml(summary({ status: 'rejected', notSubmitted: { rows: 12, reason: 'rejected' }, batches: [] }));
    expect(html).toContain('12 valid rows were not submitted: the file was rejected');
    expect(html).toContain('No batch was created.');
  });

  it("says what the deadline fallback's synchronous calls cost, and the premium over batch rates, apart from the batch figures", () => {
    const synchronous = {
      deadline: '2026-01-02T04:00:00.000Z',
      rows: 40,
      counts: { succeeded: 37, errored: 0, expired: 3, canceled: 0 },
      tokens: { input: 400, output: 300, cache_creation_input: 0, cache_read_input: 0 },
      costUsd: 0.0042,
      atBatchRatesUsd: 0.0021,
      premiumUsd: 0.0021,
    };
    const html = renderSummaryHtml(summary({ synchronous }));
    expect(html).toContain(
      `<span data-field="[&quot;synchronous&quot;,&quot;rows&quot;]">40</span> rows were left by a batch canceled for the job's deadline: answered by synchronous calls for <span data-field="[&quot;synchronous&quot;,&quot;costUsd&quot;]">$0.0042</span> at standard rates (<span data-field="[&quot;synchronous&quot;,&quot;premiumUsd&quot;]">$0.0021</span> over batch rates)`,
    );
    expect(renderSummaryHtml(summary())).not.toContain('canceled for the job');
  });

  it('takes example custom_ids per error type from the first lines of errors.jsonl, and stops once it has enough', async () => {
    let read = 0;
    const lines = Readable.from(
      (function* () {
        for (let i = 0; i < 100_000; i++) {
          read += 1;
          const type = i % 2 === 0 ? 'overloaded_error' : null;
          yield { bytes: Buffer.from(JSON.stringify({ custom_id: `row-${i}`, status: type ? 'errored' : 'expired', error_type: type })) };
        }
      })(),
    );
    expect(await errorExamplesFrom(lines, ['overloaded_error'])).toEqual({ overloaded_error: ['row-0', 'row-2', 'row-4'] });
    expect(read).toBeLessThan(10);
    expect(await errorExamplesFrom(Readable.from([]), [])).toEqual({});
  });

  it('counts what cache reads saved and cache writes cost over plain input, at batch rates', () => {
    const totals = new CostTotals(BUILT_IN_PRICES);
    // Haiku 4.5: input $1, 5-minute write $1.25, read $0.10 per million tokens; batch pays half.
    totals.add({ input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 1_000_000, cache_read_input_tokens: 2_000_000 }, 'claude-haiku-4-5');
    totals.add(
      { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 1_000_000, inference_geo: 'us' },
      'claude-haiku-4-5',
    );
    totals.add({ input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }, 'claude-nobody-knows');
    expect(cacheSavings(totals.toJSON(), BUILT_IN_PRICES)).toEqual({ 'claude-haiku-4-5': { readSavedUsd: 0.9 + 0.495, writeExtraUsd: 0.125 } });
  });

  it('lists at most the first TIMELINE_ATTEMPTS attempts and counts the rest', () => {
    const timeline = new AttemptTimeline();
    for (let chunk = 0; chunk < TIMELINE_ATTEMPTS + 3; chunk++) {
      timeline.add({ chunk, attempts: [{ attempt: 1, rows: 1, bytes: 1, intentAt: '2026-01-02T03:00:00.000Z', batchId: `msgbatch_${chunk}` }] });
    }
    expect(timeline.attempts).toHaveLength(TIMELINE_ATTEMPTS);
    expect(timeline.leftOut).toBe(3);
    expect(renderSummaryHtml(summary(), { attempts: timeline.attempts, attemptsLeftOut: timeline.leftOut })).toContain('… and 3 more attempts');
  });

  const chromium = findChromium();
  describe.skipIf('skip' in chromium)(`in headless Chromium${'skip' in chromium ? ` (skipped: ${chromium.skip})` : ''}`, () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'batchline-summary-html-'));
    });
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('shows markup in the summary as text: no script runs, no element is injected, nothing is fetched', async () => {
      const file = path.join(dir, 'summary.html');
      await writeFile(file, renderSummaryHtml(summary(), { errorExamples: { [HOSTILE]: ['ticket-1'] } }));
      const url = pathToFileURL(file).href;
      const visit = await visitPage(
        'path' in chromium ? chromium.path : '',
        url,
        `({ title: document.title, images: document.images.length, scripts: document.scripts.length, errorType: document.querySelector('#errors tbody code').textContent, input: document.querySelector('header .meta code').textContent })`,
      );
      expect(visit.problems).toEqual([]);
      expect(visit.requests).toEqual([url]);
      expect(visit.value).toEqual({
        title: 'Job tickets-0123456789abcdef: succeeded',
        images: 0,
        scripts: 0,
        errorType: HOSTILE,
        input: `s3://bucket/inbox/${HOSTILE}.jsonl`,
      });
    });
  });
});
