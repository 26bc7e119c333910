/**
 * What a local run leaves for a person and for a script: `run --json` (one document on stdout) and
 * summary.html, opened in a real headless Chromium whose numbers must be summary.json's.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchline, ROOT, type Run } from '../support/cli';
import { findChromium, visitPage } from '../support/browser';
import { duration } from '../../cli/format';

/** Three models (one misspelt, which the simulator errors not_found_error), and two invalid lines. */
function mixedFile(): string {
  const row = (customId: string, model: string) =>
    JSON.stringify({ custom_id: customId, params: { model, max_tokens: 16, messages: [{ role: 'user', content: 'Say hi.' }] } });
  return (
    [
      row('fine-1', 'claude-haiku-4-5'),
      row('typo-1', 'claude-sonet-4-5'),
      '{"custom_id": "broken"',
      row('fine-2', 'claude-sonnet-4-5'),
      row('typo-2', 'claude-sonet-4-5'),
      JSON.stringify({ custom_id: 'no-params' }),
      row('fine-3', 'claude-haiku-4-5'),
    ].join('\n') + '\n'
  );
}

/** Reads every `[data-field]` of the page: the summary.json path it shows, its text, whether it is laid out. */
const READ_FIELDS = `({
  title: document.title,
  scripts: document.scripts.length,
  fields: [...document.querySelectorAll('[data-field]')].map((e) => ({ path: JSON.parse(e.dataset.field), text: e.textContent, shown: e.getBoundingClientRect().width > 0 })),
  examples: Object.fromEntries([...document.querySelectorAll('#errors tbody tr')].map((tr) => [tr.cells[0].textContent, [...tr.cells[2].querySelectorAll('code')].map((c) => c.textContent)])),
  timeline: document.querySelectorAll('#timeline tbody tr').length,
})`;

interface Fields {
  title: string;
  scripts: number;
  fields: Array<{ path: string[]; text: string; shown: boolean }>;
  examples: Record<string, string[]>;
  timeline: number;
}

/** The value at `at` in summary.json. */
function valueAt(summary: unknown, at: string[]): unknown {
  return at.reduce<unknown>((value, key) => (value as Record<string, unknown>)[key], summary);
}

/** A shown number as a number: `1,234` and `$0.000432` alike. */
const shownNumber = (text: string): number => Number(text.replace(/[$,\s]/g, '').replace('−', '-'));

const chromium = findChromium();

describe('a local run, for scripts and for people', () => {
  let cwd: string;
  let json: Run;
  let cached: Run;
  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-report-'));
    await writeFile(path.join(cwd, 'mixed.jsonl'), mixedFile());
    [json, cached] = await Promise.all([
      batchline(['run', 'mixed.jsonl', '--lenient', '--allow-unknown-models', '--json', '--out', 'mixed'], { cwd }),
      batchline(['run', path.join(ROOT, 'examples/summarization-cached.jsonl'), '--out', 'cached'], { cwd }),
    ]);
  }, 240_000);
  afterAll(async () => {
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('run --json prints one JSON document on stdout, its progress on stderr, and exits as without it', async () => {
    expect(json.code).toBe(3);
    const document = JSON.parse(json.stdout);
    const summary = JSON.parse(await readFile(path.join(cwd, 'mixed', 'summary.json'), 'utf8'));
    expect(document).toMatchObject({
      batchline: 1,
      command: 'run',
      jobId: summary.jobId,
      status: 'succeeded',
      ended: true,
      exitStatus: 3,
      counts: { total: 7, succeeded: 3, errored: 2, expired: 0, canceled: 0, invalid: 2 },
      notSubmitted: null,
      failure: null,
      costUsd: summary.cost.batchUsd,
      simulated: true,
      outputs: {
        dir: path.join(cwd, 'mixed'),
        files: ['results.jsonl', 'errors.jsonl', 'invalid.jsonl', 'summary.json', 'summary.html'],
        report: path.join(cwd, 'mixed', 'summary.html'),
      },
    });
    expect(document.summary).toEqual(summary);
    expect(document.invalidLines).toEqual([
      { line: 3, code: 'invalid_json', reason: expect.stringMatching(/^line 3 is not valid JSON/) },
      { line: 6, code: 'missing_params', reason: 'line 6 has no params' },
    ]);
    // The person's lines went to stderr: the progress, the summary and the closing line.
    // The screen's duration is the job's own, which summary.json's durationSeconds rounds.
    const ms = Date.parse(summary.timings.endedAt) - Date.parse(summary.timings.createdAt);
    expect(Math.round(ms / 1000)).toBe(summary.timings.durationSeconds);
    expect(json.stderr).toContain(`Job ${summary.jobId}: succeeded in ${duration(ms)}\n`);
    expect(document.durationSeconds).toBe(Math.round(ms / 100) / 10);
    expect(json.stderr).toContain('4 of 7 rows did not succeed (2 errored, 2 invalid): exit status 3');
    expect(json.stderr.includes('\r') || json.stderr.includes('\u001b[')).toBe(false);
  });

  it('estimate --json prints the counts, the first invalid lines and the estimate, and exits 1 for invalid lines', async () => {
    const estimate = await batchline(['estimate', 'mixed.jsonl', '--json', '--allow-unknown-models'], { cwd });
    expect(estimate.code).toBe(1);
    expect(estimate.stderr).toBe('');
    const document = JSON.parse(estimate.stdout);
    expect(document).toMatchObject({
      batchline: 1,
      command: 'estimate',
      file: path.join(cwd, 'mixed.jsonl'),
      exitStatus: 1,
      counts: { valid: 5, invalid: 2, blank: 0 },
      invalidLines: [
        { line: 3, code: 'invalid_json' },
        { line: 6, code: 'missing_params' },
      ],
      cost: { complete: false, unpricedModels: ['claude-sonet-4-5'] },
    });
    expect(document.cost.byModel['claude-sonet-4-5']).toEqual({ requests: 2, batchUsd: null, standardUsd: null });
    expect(document.tokens.output).toBe(5 * 16);
    // No stack named: no history, so the expected figure is the upper bound.
    expect(document.expected).toMatchObject({ basis: 'max_tokens', historyRows: 0, historyFrom: null, outputTokens: 5 * 16, batchUsd: document.cost.batchUsd });
  });

  it('a run without --json prints where its report is', () => {
    expect(cached.code).toBe(0);
    expect(cached.stdout).toContain(
      'Outputs in cached/: results.jsonl, errors.jsonl, invalid.jsonl, summary.json, summary.html\nReport: cached/summary.html\n',
    );
  });

  describe.skipIf('skip' in chromium)(`summary.html in headless Chromium${'skip' in chromium ? ` (skipped: ${chromium.skip})` : ''}`, () => {
    const browser = 'path' in chromium ? chromium.path : '';

    async function checkPage(dir: string): Promise<{ fields: Fields; summary: Record<string, unknown> }> {
      const summary = JSON.parse(await readFile(path.join(cwd, dir, 'summary.json'), 'utf8'));
      const page = pathToFileURL(path.join(cwd, dir, 'summary.html')).href;
      const visit = await visitPage(browser, page, READ_FIELDS);
      // It renders alone: no console message, no error, no request but the file itself.
      expect(visit.problems).toEqual([]);
      expect(visit.requests).toEqual([page]);
      const fields = visit.value as Fields;
      expect(fields.title).toBe(`Job ${summary.jobId}: ${summary.status}`);
      expect(fields.scripts).toBe(0);
      for (const field of fields.fields) {
        expect(field.shown, field.path.join('.')).toBe(true);
        const value = valueAt(summary, field.path);
        if (typeof value === 'number') expect(shownNumber(field.text), field.path.join('.')).toBe(value);
        else expect(field.text, field.path.join('.')).toBe(value === null ? 'no price' : String(value));
      }
      return { fields, summary };
    }

    it('shows every number of summary.json as it is there: outcomes, errors by type with their custom_ids, cost by model, tokens, batches', async () => {
      const { fields, summary } = await checkPage('mixed');
      const shown = new Set(fields.fields.map((field) => field.path.join('.')));
      for (const status of ['total', 'succeeded', 'errored', 'expired', 'canceled', 'invalid']) expect(shown).toContain(`counts.${status}`);
      const byModel = (summary.cost as { byModel: Record<string, unknown> }).byModel;
      for (const model of Object.keys(byModel)) {
        expect(shown).toContain(`cost.byModel.${model}.requests`);
        expect(shown).toContain(`cost.byModel.${model}.batchUsd`);
      }
      expect(Object.keys(byModel).sort()).toEqual(['claude-haiku-4-5', 'claude-sonnet-4-5']);
      for (const field of [
        'cost.batchUsd',
        'cost.standardUsd',
        'cost.savedUsd',
        'tokens.input',
        'tokens.output',
        'errorsByType.not_found_error',
        'batches.length',
      ]) {
        expect(shown).toContain(field);
      }
      expect(summary.errorsByType).toEqual({ not_found_error: 2 });
      expect(fields.examples).toEqual({ not_found_error: ['typo-1', 'typo-2'] });
      // One line per attempt of each chunk.
      expect(fields.timeline).toBe((summary.batches as unknown[]).length);
    }, 120_000);

    it('shows the cache tokens of a run that read the prompt cache', async () => {
      const { fields, summary } = await checkPage('cached');
      expect((summary.tokens as { cache_read_input: number }).cache_read_input).toBeGreaterThan(0);
      expect(fields.fields.map((field) => field.path.join('.'))).toContain('tokens.cache_read_input');
    }, 120_000);
  });
});
