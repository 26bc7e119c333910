/**
 * What `batchline run` shows while it works, as a user's terminal and a CI log get it: real
 * processes, one writing to a pipe (plain lines), one to a pseudo-terminal made by util-linux's
 * `script` (the live line, redrawn in place).
 */
import { execFile, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchline, ROOT, type Run } from '../support/cli';

const ROWS = 100_000;

async function bigFile(file: string): Promise<void> {
  const out = createWriteStream(file);
  for (let i = 0; i < ROWS; i++) {
    const line = `${JSON.stringify({ custom_id: `r-${i}`, params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'Say hi.' }] } })}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** `batchline ARGS` with its stdout and stderr on a pseudo-terminal, as in a user's terminal. */
function inTerminal(args: string[], cwd: string): Promise<Run> {
  const command = [process.execPath, path.join(ROOT, 'bin/batchline.mjs'), ...args].map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    execFile('script', ['-qec', command, '/dev/null'], { cwd, timeout: 150_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const hasScript = spawnSync('sh', ['-c', 'command -v script']).status === 0;

describe('progress on the screen', () => {
  let cwd: string;
  let piped: Run;
  let terminal: Run | undefined;
  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'batchline-progress-'));
    await bigFile(path.join(cwd, 'big.jsonl'));
    [piped, terminal] = await Promise.all([
      // Four chunks of 25,000: several batches to follow.
      batchline(['run', 'big.jsonl', '--out', 'big'], { cwd, env: { BATCHLINE_MAX_REQUESTS_PER_CHUNK: '25000' } }),
      hasScript ? inTerminal(['run', path.join(ROOT, 'examples/classification.jsonl'), '--out', 'small'], cwd) : undefined,
    ]);
  }, 300_000);
  afterAll(async () => {
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('of 100,000 rows, in a log: plain progress lines with the rows and batches, never a carriage return or an escape', () => {
    expect(piped.code).toBe(0);
    expect(piped.stdout.includes('\r') || piped.stdout.includes('\u001b')).toBe(false);
    const progress = piped.stdout.split('\n').filter((line) => / progress: /.test(line));
    expect(progress.length).toBeGreaterThan(0);
    // A line every 10 s: while validating (a slow or busy machine) or once the file is in chunks.
    for (const line of progress) {
      expect(line).toMatch(/^\[ *[\dhms.]+\] progress: [\dhms.]+ · (\d+% · )?(validating: [\d,]+ rows, [\d,]+ rows\/s|100,000 valid · chunks \d\/4)/);
    }
    expect(piped.stdout).toContain('validated: 100,000 rows valid, 0 invalid; 4 chunks');
    expect(piped.stdout).toContain('rows      100,000 succeeded, 0 errored, 0 expired, 0 canceled, 0 invalid');
  });

  it.skipIf(!hasScript)('in a terminal: one line redrawn in place, with a bar', () => {
    expect(terminal!.code).toBe(0);
    const screen = terminal!.stdout;
    expect(screen).toContain('\r\u001b[2K');
    expect(screen).toMatch(/\[[█░]{12}\] \d+%/);
    expect(screen).toMatch(/Job classification-[0-9a-f]+: succeeded in /);
  });
});
