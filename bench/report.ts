/**
 * What a benchmark hands back and how it is printed: compact tables of figures, and checks of a
 * figure against its target (PASS / MISS). Benchmarks print; nothing here fails the build.
 */

export interface Table {
  title?: string;
  headers: string[];
  rows: string[][];
}

export interface Check {
  /** What is compared, e.g. "prepare: MB/s vs bare split + parse". */
  name: string;
  /** The target as a person reads it, e.g. "≥ 0.70". */
  target: string;
  /** The measured figure, formatted. */
  value: string;
  /** undefined when the figure could not be measured this run. */
  pass: boolean | undefined;
}

export interface BenchReport {
  name: string;
  title: string;
  tables: Table[];
  checks: Check[];
  /** One-line remarks printed under the tables: method, caveats, what limits the figure. */
  notes: string[];
}

export function check(name: string, target: string, value: string, pass: boolean | undefined): Check {
  return { name, target, value, pass };
}

export function verdict(pass: boolean | undefined): string {
  return pass === undefined ? 'n/a' : pass ? 'PASS' : 'MISS';
}

export function renderTable(table: Table): string {
  const widths = table.headers.map((header, i) => Math.max(header.length, ...table.rows.map((row) => (row[i] ?? '').length)));
  // Text columns read best left-aligned, figures right-aligned.
  const numeric = table.headers.map((_, i) => i > 0 && table.rows.every((row) => /^[-+$~≤≥<>]?[\d.,]+\s?\S*$|^n\/a$|^—$/.test(row[i] ?? '')));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out: string[] = [];
  if (table.title) out.push(table.title);
  out.push(line(table.headers));
  out.push(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const row of table.rows) out.push(line(row));
  return out.join('\n');
}

export function renderReport(report: BenchReport): string {
  const parts = [`\n━━ ${report.title} ━━`];
  for (const table of report.tables) parts.push(renderTable(table));
  if (report.checks.length > 0) {
    parts.push(
      renderTable({
        headers: ['target', 'wanted', 'measured', ''],
        rows: report.checks.map((c) => [c.name, c.target, c.value, verdict(c.pass)]),
      }),
    );
  }
  for (const note of report.notes) parts.push(`· ${note}`);
  return parts.join('\n\n');
}

export function renderSummary(reports: BenchReport[], failures: Array<{ name: string; error: string }>): string {
  const rows = reports.flatMap((r) => r.checks.map((c) => [c.name, c.target, c.value, verdict(c.pass)]));
  for (const failure of failures) {
    const error = failure.error.length > 70 ? `${failure.error.slice(0, 69)}…` : failure.error;
    rows.push([`${failure.name}: did not run`, '—', error, 'n/a']);
  }
  const passed = reports.flatMap((r) => r.checks).filter((c) => c.pass === true).length;
  const missed = reports.flatMap((r) => r.checks).filter((c) => c.pass === false).length;
  return [
    '\n━━ Summary ━━',
    renderTable({ headers: ['target', 'wanted', 'measured', ''], rows }),
    `${passed} PASS, ${missed} MISS${failures.length ? `, ${failures.length} benchmark(s) did not run` : ''}`,
  ].join('\n\n');
}

// Formatting: one place, so every table reads the same.

export const mb = (bytes: number) => bytes / 1_000_000;
export const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
export const int = (n: number) => Math.round(n).toLocaleString('en-US');
export const mib = (bytes: number) => `${fmt(bytes / 1024 / 1024, 0)} MiB`;
export const secs = (ms: number) => `${fmt(ms / 1000, ms < 10_000 ? 2 : 1)} s`;
export const usd = (n: number, digits = 4) => `$${n.toFixed(digits)}`;

/** A duration in seconds as people say it: 45 s, 12.5 min, 3.2 h. */
export function human(seconds: number): string {
  if (seconds < 120) return `${fmt(seconds, 0)} s`;
  if (seconds < 7200) return `${fmt(seconds / 60, 1)} min`;
  return `${fmt(seconds / 3600, 1)} h`;
}
