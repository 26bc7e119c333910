/**
 * The durable state of a live local stack (local/state.ts, docs/local-state.md): the journal of
 * executions, what resume finds unfinished in it, the one-process lock, the recorded settings.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalState, recordedSettings, unfinishedIn } from '../../local/state';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'batchline-state-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the execution journal', () => {
  it('lists the executions started and not ended, oldest first, with their inputs as started', () => {
    const state = LocalState.open(dir);
    state.started('a', '{"key":"inbox/a.jsonl"}');
    state.started('b', '{"key":"inbox/b.jsonl"}');
    state.started('c', '{"key":"inbox/c.jsonl"}');
    state.ended('b', 'SUCCEEDED');
    expect(unfinishedIn(dir).map(({ name, input }) => ({ name, input }))).toEqual([
      { name: 'a', input: '{"key":"inbox/a.jsonl"}' },
      { name: 'c', input: '{"key":"inbox/c.jsonl"}' },
    ]);
    state.release();
  });

  it('reads past a last line cut by a kill mid-write, and finds nothing in a folder with no journal', async () => {
    const state = LocalState.open(dir);
    state.started('a', '{}');
    state.release();
    await appendFile(path.join(dir, 'executions.jsonl'), '{"type":"started","name":"b","inp');
    expect(unfinishedIn(dir).map((e) => e.name)).toEqual(['a']);
    expect(unfinishedIn(path.join(dir, 'nothing-here'))).toEqual([]);
  });
});

describe('the lock', () => {
  it('refuses a second process while the first lives, and lets one in once it is gone', async () => {
    // Another process, alive, holds the folder.
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    await once(other, 'spawn');
    try {
      await writeFile(path.join(dir, 'lock'), `${other.pid}\n`);
      expect(() => LocalState.open(dir)).toThrow(`another batchline (pid ${other.pid}) is using ${dir}: one process at a time keeps its state`);
    } finally {
      other.kill('SIGKILL');
      await once(other, 'exit');
    }
    // Its process is gone (killed): the lock is taken over.
    const state = LocalState.open(dir);
    expect(await readFile(path.join(dir, 'lock'), 'utf8')).toBe(`${process.pid}\n`);
    state.release();
    await expect(readFile(path.join(dir, 'lock'), 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('the recorded settings', () => {
  it('keeps the settings the stack started with, for resume', () => {
    expect(recordedSettings(dir)).toBeUndefined();
    const state = LocalState.open(dir);
    state.recordSettings({ maxRequestsPerChunk: '50', maxAttempts: 3 });
    state.release();
    expect(recordedSettings(dir)).toEqual({ maxRequestsPerChunk: '50', maxAttempts: 3 });
  });
});
