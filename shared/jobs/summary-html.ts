/**
 * summary.html: the job's report for a person to look at, beside summary.json and written by the
 * same step (FinalizeJob). `renderSummaryHtml` is a pure function of summary.json and a few details
 * only the step has at hand (cache savings per model, example custom_ids per error type, the
 * attempts' times); the page is self-contained: inline CSS, no script, no network.
 * docs/summary-html.md says what it shows and where each number comes from.
 */
import type { ChunkItem } from '../store/items';
import type { CostTotalsJson } from '../cost/cost';
import { BATCH_DISCOUNT, INFERENCE_GEO_MULTIPLIERS, resolvePrice, type PriceTable } from '../cost/prices';
import type { JobSummary } from './tally';

/** What the report shows besides summary.json's fields. Every part is optional: the page says when one is missing. */
export interface ReportDetails {
  /** Up to EXAMPLES_PER_TYPE custom_ids per error type, from the first lines of errors.jsonl. */
  errorExamples?: Record<string, string[]>;
  /** Per priced model: what cache reads saved, and what cache writes cost over plain input, at batch rates (USD). */
  cache?: Record<string, { readSavedUsd: number; writeExtraUsd: number }>;
  /** Every chunk attempt, in chunk and attempt order (at most TIMELINE_ATTEMPTS; `attemptsLeftOut` says how many more). */
  attempts?: AttemptTimes[];
  attemptsLeftOut?: number;
}

export interface AttemptTimes {
  chunk: number;
  attempt: number;
  rows: number;
  batchId: string | null;
  /** When Submit set out to create the batch, and when Collect finished (ISO, this side's clock, as the job's timings). */
  submittedAt?: string;
  /** When the batch was created and ended, by the API's clock (ISO): how long it ran there. */
  createdAt?: string;
  endedAt?: string;
  collectedAt?: string;
  counts?: { succeeded: number; errored: number; expired: number; canceled: number };
}

export const EXAMPLES_PER_TYPE = 3;
/** The timeline lists this many attempts at most: a report of 10,000 chunks stays a page. */
export const TIMELINE_ATTEMPTS = 500;

/** The attempts of the chunks, as the timeline shows them (the first TIMELINE_ATTEMPTS). */
export class AttemptTimeline {
  readonly attempts: AttemptTimes[] = [];
  leftOut = 0;

  add(chunk: Pick<ChunkItem, 'chunk' | 'attempts'>): void {
    for (const attempt of chunk.attempts) {
      if (this.attempts.length >= TIMELINE_ATTEMPTS) {
        this.leftOut += 1;
        continue;
      }
      this.attempts.push({
        chunk: chunk.chunk,
        attempt: attempt.attempt,
        rows: attempt.rows,
        batchId: attempt.batchId ?? null,
        ...(attempt.intentAt ? { submittedAt: attempt.intentAt } : {}),
        ...(attempt.createdAt ? { createdAt: attempt.createdAt } : {}),
        ...(attempt.endedAt ? { endedAt: attempt.endedAt } : {}),
        ...(attempt.collectedAt ? { collectedAt: attempt.collectedAt } : {}),
        ...(attempt.counts ? { counts: attempt.counts } : {}),
      });
    }
  }
}

/**
 * What cache reads saved and cache writes cost over plain input, per priced model, at batch rates
 * (geo multipliers included): from the job's cost totals, which keep tokens per model.
 */
export function cacheSavings(cost: CostTotalsJson, prices: PriceTable): NonNullable<ReportDetails['cache']> {
  const byModel: NonNullable<ReportDetails['cache']> = {};
  const paid = 1 - BATCH_DISCOUNT;
  for (const [model, totals] of Object.entries(cost.models)) {
    if (totals.usd === null) continue;
    const { price } = resolvePrice(model, prices);
    let readSaved = 0;
    let writeExtra = 0;
    const add = (tokens: (typeof totals)['tokens'], multiplier: number) => {
      readSaved += ((tokens.cacheRead * (price.input - price.cacheRead)) / 1_000_000) * multiplier * paid;
      writeExtra +=
        ((tokens.cacheWrite5m * (price.cacheWrite5m - price.input) + tokens.cacheWrite1h * (price.cacheWrite1h - price.input)) / 1_000_000) * multiplier * paid;
    };
    // `tokens` holds every token of the model; the geo-priced part is also in `geoTokens`.
    const plain = { ...totals.tokens };
    for (const [geo, tokens] of Object.entries(totals.geoTokens)) {
      for (const field of Object.keys(plain) as Array<keyof typeof plain>) plain[field] -= tokens[field];
      add(tokens, INFERENCE_GEO_MULTIPLIERS[geo] ?? 1);
    }
    add(plain, 1);
    byModel[model] = { readSavedUsd: micro(readSaved), writeExtraUsd: micro(writeExtra) };
  }
  return byModel;
}

const micro = (usd: number): number => Math.round(usd * 1_000_000) / 1_000_000;

/** errors.jsonl is read this far at most for examples: the report never costs a pass over a large file. */
export const EXAMPLE_LINES_READ = 5_000;

/**
 * Example custom_ids per error type from the first lines of errors.jsonl (`{custom_id, error_type}`),
 * stopping once each of `types` has EXAMPLES_PER_TYPE, or after EXAMPLE_LINES_READ lines.
 */
export async function errorExamplesFrom(lines: AsyncIterable<{ bytes: Buffer }>, types: readonly string[]): Promise<Record<string, string[]>> {
  const examples = new Map<string, string[]>();
  const full = () => types.every((type) => (examples.get(type)?.length ?? 0) >= EXAMPLES_PER_TYPE);
  let read = 0;
  if (types.length === 0) return {};
  for await (const { bytes } of lines) {
    if (++read > EXAMPLE_LINES_READ) break;
    let row: { custom_id?: unknown; error_type?: unknown };
    try {
      row = JSON.parse(bytes.toString('utf8')) as typeof row;
    } catch {
      continue;
    }
    // errorsByType counts rows by their error's type; rows without one (expired, canceled) are not in it.
    if (typeof row.custom_id !== 'string' || typeof row.error_type !== 'string') continue;
    const ids = examples.get(row.error_type) ?? [];
    if (ids.length < EXAMPLES_PER_TYPE) ids.push(row.custom_id);
    examples.set(row.error_type, ids);
    if (full()) break;
  }
  return Object.fromEntries(examples);
}

// ---------------------------------------------------------------------------------------------
// Rendering

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML content and quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const integer = new Intl.NumberFormat('en-US');
const count = (n: number): string => integer.format(n);

/** Dollars exactly as summary.json holds them (micro-dollars), with at least two decimals. */
export function dollars(usd: number): string {
  const [whole, fraction = ''] = String(Math.abs(usd)).split('.');
  const digits = fraction.length < 2 ? fraction.padEnd(2, '0') : fraction;
  return `${usd < 0 ? '−' : ''}$${integer.format(Number(whole))}.${digits}`;
}

/** A number cell. */
const num = (path: string[], n: number): string => `<td class="n" ${field(...path)}>${count(n)}</td>`;
const usdCell = (path: string[], usd: number | null): string => `<td class="n" ${field(...path)}>${usd === null ? 'no price' : dollars(usd)}</td>`;

/** `data-field`: the path in summary.json of the value an element shows, as a JSON array (a model id may hold any character). */
function field(...path: string[]): string {
  return `data-field="${escapeHtml(JSON.stringify(path))}"`;
}

const STATUS_CLASS: Record<string, string> = { succeeded: 'ok', failed: 'bad', rejected: 'bad', canceled: 'warn' };

const CSS = `
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fff;--muted:#6e6e73;--line:#d2d2d7;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--bar:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#f5f5f7;--bg:#161618;--muted:#a1a1a6;--line:#3a3a3c;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--bar:#58a6ff}}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
.meta,.note{color:var(--muted);font-size:13px}
.status{font-weight:600;padding:1px 8px;border-radius:10px;border:1px solid currentColor}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 10px 4px 0;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;font-size:13px;color:var(--muted)}td.n,th.n{text-align:right}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:130px}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}.card .k{color:var(--muted);font-size:13px}
.track{position:relative;height:14px;background:color-mix(in srgb,var(--line) 40%,transparent);border-radius:3px;min-width:200px}
.span{position:absolute;top:2px;height:10px;background:var(--bar);border-radius:2px;min-width:2px}
`;

/** The page. Pure: the same summary and details give the same bytes. */
export function renderSummaryHtml(summary: JobSummary, details: ReportDetails = {}): string {
  const title = `Job ${summary.jobId}: ${summary.status}`;
  const sections = [header(summary), outcomes(summary), errors(summary, details), cost(summary, details), tokens(summary), timeline(summary, details)];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
${sections.join('\n')}
<p class="note">Written by batchline with summary.json, which holds the same numbers for scripts.</p>
</body>
</html>
`;
}

function header(summary: JobSummary): string {
  const { timings, input } = summary;
  const notes: string[] = [];
  if (summary.notSubmitted) {
    notes.push(`${count(summary.notSubmitted.rows)} valid rows were not submitted: the file was rejected (they are counted as canceled so the counts add up).`);
  }
  if (summary.recoveredFrom) notes.push(`Recovered from a failure: ${summary.recoveredFrom.error}.`);
  if (summary.collectPending?.length) notes.push(`Chunks ${summary.collectPending.join(', ')} wait at the API to be collected.`);
  if (summary.collectedLate) notes.push(`Chunks ${summary.collectedLate.chunks.join(', ')} were collected late, at ${summary.collectedLate.at}.`);
  return `<header>
<h1>Job <code ${field('jobId')}>${escapeHtml(summary.jobId)}</code> <span class="status ${STATUS_CLASS[summary.status] ?? ''}" ${field('status')}>${escapeHtml(summary.status)}</span></h1>
<p class="meta">Input <code>s3://${escapeHtml(input.bucket)}/${escapeHtml(input.key)}</code> (<span ${field('validationMode')}>${escapeHtml(summary.validationMode)}</span>) ·
created <time ${field('timings', 'createdAt')}>${escapeHtml(timings.createdAt)}</time> · ended <time ${field('timings', 'endedAt')}>${escapeHtml(timings.endedAt)}</time> ·
<span ${field('timings', 'durationSeconds')}>${count(timings.durationSeconds)}</span> s</p>
${notes.map((note) => `<p class="note">${escapeHtml(note)}</p>`).join('\n')}
</header>`;
}

const OUTCOMES = ['succeeded', 'errored', 'expired', 'canceled', 'invalid'] as const;

function outcomes(summary: JobSummary): string {
  const cards = [
    `<div class="card"><div class="v" ${field('counts', 'total')}>${count(summary.counts.total)}</div><div class="k">rows in all</div></div>`,
    ...OUTCOMES.map(
      (status) =>
        `<div class="card"><div class="v ${status === 'succeeded' ? 'ok' : summary.counts[status] > 0 ? 'bad' : ''}" ${field('counts', status)}>${count(summary.counts[status])}</div><div class="k">${status}</div></div>`,
    ),
  ];
  return `<section id="outcomes">
<h2>Outcomes</h2>
<div class="cards">${cards.join('')}</div>
<p class="note">Every input row ends in exactly one of these; succeeded + errored + expired + canceled + invalid = rows in all.</p>
</section>`;
}

function errors(summary: JobSummary, details: ReportDetails): string {
  const entries = Object.entries(summary.errorsByType);
  if (entries.length === 0) return `<section id="errors"><h2>Errors by type</h2><p class="note">No row errored.</p></section>`;
  const rows = entries.map(([type, n]) => {
    const examples = details.errorExamples?.[type] ?? [];
    const shown =
      examples.length > 0
        ? examples.map((id) => `<code>${escapeHtml(id)}</code>`).join(', ')
        : '<span class="note">none among the first lines of errors.jsonl</span>';
    return `<tr><td><code>${escapeHtml(type)}</code></td>${num(['errorsByType', type], n)}<td>${shown}</td></tr>`;
  });
  return `<section id="errors">
<h2>Errors by type</h2>
<table><thead><tr><th>type</th><th class="n">rows</th><th>for example (custom_id)</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>
<p class="note">Each row's error is in errors.jsonl; invalid lines and their reasons are in invalid.jsonl.</p>
</section>`;
}

function cost(summary: JobSummary, details: ReportDetails): string {
  const { cost } = summary;
  const rows = Object.entries(cost.byModel).map(([model, entry]) => {
    const cache = details.cache?.[model];
    return `<tr><td><code>${escapeHtml(model)}</code></td>${num(['cost', 'byModel', model, 'requests'], entry.requests)}${usdCell(['cost', 'byModel', model, 'batchUsd'], entry.batchUsd)}${usdCell(['cost', 'byModel', model, 'standardUsd'], entry.standardUsd)}<td class="n">${entry.batchUsd !== null && entry.standardUsd !== null ? dollars(micro(entry.standardUsd - entry.batchUsd)) : '–'}</td><td class="n">${cache ? dollars(cache.readSavedUsd) : '–'}</td><td class="n">${cache ? dollars(cache.writeExtraUsd) : '–'}</td></tr>`;
  });
  const unpriced =
    cost.unpricedModels.length > 0
      ? `<p class="note">Not priced (no price known): ${cost.unpricedModels.map((m) => `<code>${escapeHtml(m)}</code>`).join(', ')}; the totals leave them out.</p>`
      : '';
  return `<section id="cost">
<h2>Cost</h2>
<div class="cards">
<div class="card"><div class="v" ${field('cost', 'batchUsd')}>${dollars(cost.batchUsd)}</div><div class="k">at batch rates</div></div>
<div class="card"><div class="v" ${field('cost', 'standardUsd')}>${dollars(cost.standardUsd)}</div><div class="k">without the batch discount</div></div>
<div class="card"><div class="v ok" ${field('cost', 'savedUsd')}>${dollars(cost.savedUsd)}</div><div class="k">saved by batching</div></div>
</div>
${
  rows.length > 0
    ? `<table><thead><tr><th>model</th><th class="n">requests</th><th class="n">batch</th><th class="n">standard</th><th class="n">batch saving</th><th class="n">cache reads saved</th><th class="n">cache writes cost extra</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`
    : '<p class="note">No request was priced.</p>'
}
${unpriced}
${synchronousNote(summary)}
<p class="note">Cache figures are at batch rates, against the same tokens as plain input.</p>
</section>`;
}

/** The deadline fallback's rows (summary.json `synchronous`): paid at standard rates, outside the batch figures above. */
function synchronousNote(summary: JobSummary): string {
  const sync = summary.synchronous;
  if (!sync) return '';
  return (
    `<p class="note"><span ${field('synchronous', 'rows')}>${count(sync.rows)}</span> rows were left by a batch canceled for the job's deadline: ` +
    `answered by synchronous calls for <span ${field('synchronous', 'costUsd')}>${dollars(sync.costUsd)}</span> at standard rates ` +
    `(<span ${field('synchronous', 'premiumUsd')}>${dollars(sync.premiumUsd)}</span> over batch rates), not in the figures above; ` +
    `<span ${field('synchronous', 'counts', 'expired')}>${count(sync.counts.expired)}</span> expired unanswered at the deadline.</p>`
  );
}

function tokens(summary: JobSummary): string {
  const t = summary.tokens;
  const cells: Array<[keyof JobSummary['tokens'], string, number]> = [
    ['input', 'input', t.input],
    ['output', 'output', t.output],
    ['cache_read_input', 'cache read', t.cache_read_input],
    ['cache_creation_input', 'cache write', t.cache_creation_input],
  ];
  return `<section id="tokens">
<h2>Tokens</h2>
<table><thead><tr>${cells.map(([, label]) => `<th class="n">${label}</th>`).join('')}</tr></thead>
<tbody><tr>${cells.map(([name, , n]) => num(['tokens', name], n)).join('')}</tr></tbody></table>
</section>`;
}

function timeline(summary: JobSummary, details: ReportDetails): string {
  const head = `<h2>Batches and attempts</h2>
<p class="meta">chunks <span ${field('chunks')}>${count(summary.chunks)}</span> · batches <span ${field('batches', 'length')}>${count(summary.batches.length)}</span> ·
retry attempts <span ${field('retries', 'attempts')}>${count(summary.retries.attempts)}</span> · rows retried <span ${field('retries', 'rows')}>${count(summary.retries.rows)}</span></p>`;
  const attempts = details.attempts;
  if (!attempts || attempts.length === 0) {
    const batches = summary.batches.map(
      (b) =>
        `<tr><td class="n">${b.chunk}</td><td class="n">${b.attempt}</td><td><code>${escapeHtml(b.batchId)}</code></td><td>${b.counts ? outcomeText(b.counts) : ''}</td></tr>`,
    );
    return `<section id="timeline">${head}${
      batches.length > 0
        ? `<table><thead><tr><th class="n">chunk</th><th class="n">attempt</th><th>batch</th><th>outcome</th></tr></thead><tbody>${batches.join('\n')}</tbody></table>`
        : '<p class="note">No batch was created.</p>'
    }</section>`;
  }
  const start = Date.parse(summary.timings.createdAt);
  const end = Math.max(Date.parse(summary.timings.endedAt), ...attempts.map((a) => Date.parse(a.collectedAt ?? '') || 0));
  const span = Math.max(1, end - start);
  const at = (iso: string | undefined) => (iso ? Math.min(100, Math.max(0, ((Date.parse(iso) - start) / span) * 100)) : undefined);
  const rows = attempts.map((a) => {
    // Both ends by this side's clock, as the job's own times: the API's clock may differ (or be simulated).
    const from = at(a.submittedAt);
    const to = at(a.collectedAt);
    const bars: string[] = [];
    if (from !== undefined && to !== undefined) {
      bars.push(`<div class="span" style="left:${from.toFixed(2)}%;width:${Math.max(0, to - from).toFixed(2)}%"></div>`);
    }
    const ran = a.createdAt && a.endedAt ? `${count(Math.round((Date.parse(a.endedAt) - Date.parse(a.createdAt)) / 1000))} s` : '–';
    return `<tr><td class="n">${a.chunk}</td><td class="n">${a.attempt}</td><td>${a.batchId ? `<code>${escapeHtml(a.batchId)}</code>` : '<span class="note">no batch</span>'}</td><td class="n">${count(a.rows)}</td><td>${a.counts ? outcomeText(a.counts) : ''}</td><td class="n">${ran}</td><td><div class="track">${bars.join('')}</div></td></tr>`;
  });
  const more = details.attemptsLeftOut ? `<p class="note">… and ${count(details.attemptsLeftOut)} more attempts (see "batchline status").</p>` : '';
  return `<section id="timeline">${head}
<table><thead><tr><th class="n">chunk</th><th class="n">attempt</th><th>batch</th><th class="n">rows</th><th>outcome</th><th class="n">ran at the API</th><th>submitted to collected, across the job's ${count(summary.timings.durationSeconds)} s</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>${more}</section>`;
}

function outcomeText(counts: { succeeded: number; errored: number; expired: number; canceled: number }): string {
  return `${count(counts.succeeded)} succeeded, ${count(counts.errored)} errored, ${count(counts.expired)} expired, ${count(counts.canceled)} canceled`;
}
