/**
 * Durable local state (docs/local-state.md): with --live, batches run and bill at the API whatever
 * becomes of this process, so S3 and DynamoDB live in a folder of the project instead of a temporary
 * one, and every execution's start and end is journaled there. The local Step Functions engine keeps
 * executions in memory only; `resume` starts each journaled execution that never ended again, under
 * its own name, and every step of the workflow is safe to re-run (docs/workflow-contract.md).
 *
 * Each journal line is written and flushed to disk (fdatasync) before the execution starts. A
 * batch's id is in the table before its create's result is used: Submit's claim (`BATCH#<id>`) is
 * the first write after the create, on the durable table; a kill before that write leaves the
 * attempt's intent, from which a resumed Submit finds the batch again rather than create another.
 */
import { closeSync, fdatasyncSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { LocalStackError } from './errors';

/** The durable state's folder, under the working folder. */
export const STATE_DIR = path.join('.batchline', 'state');

const JOURNAL = 'executions.jsonl';
const LOCK = 'lock';
const SETTINGS = 'settings.json';

export interface JournaledExecution {
  name: string;
  /** The execution's input, as started (JSON text). */
  input: string;
  startedAt: string;
}

type JournalLine = { type: 'started'; name: string; input: string; at: string } | { type: 'ended'; name: string; status: string; at: string };

export class LocalState {
  private constructor(
    readonly dir: string,
    private readonly journal: string,
  ) {}

  /**
   * Opens (creating) the state folder and takes its lock: one process at a time. A lock whose
   * process is gone (killed, crashed) is taken over.
   */
  static open(dir: string): LocalState {
    mkdirSync(dir, { recursive: true });
    const lock = path.join(dir, LOCK);
    const holder = readPid(lock);
    if (holder !== undefined && holder !== process.pid && processAlive(holder)) {
      throw new LocalStackError(`another batchline (pid ${holder}) is using ${dir}: one process at a time keeps its state`);
    }
    writeFileSync(lock, `${process.pid}\n`);
    return new LocalState(dir, path.join(dir, JOURNAL));
  }

  get s3Directory(): string {
    return path.join(this.dir, 's3');
  }

  get dynamoDirectory(): string {
    return path.join(this.dir, 'dynamodb');
  }

  started(name: string, input: string): void {
    this.append({ type: 'started', name, input, at: new Date().toISOString() });
  }

  ended(name: string, status: string): void {
    this.append({ type: 'ended', name, status, at: new Date().toISOString() });
  }

  /** The executions started here that never ended (their process was killed or stopped), oldest first. */
  unfinished(): JournaledExecution[] {
    return unfinishedIn(this.dir);
  }

  /**
   * The stack settings this state's jobs run with (cdk.json `batchline:settings`, as the CLI takes
   * them from BATCHLINE_* variables), so that resume runs them as they were started. No secret is
   * a setting: the API key is never written here.
   */
  recordSettings(settings: Record<string, string | number>): void {
    writeFileSync(path.join(this.dir, SETTINGS), `${JSON.stringify(settings, null, 2)}\n`);
  }

  /** Lets the next process in. */
  release(): void {
    if (readPid(path.join(this.dir, LOCK)) === process.pid) rmSync(path.join(this.dir, LOCK), { force: true });
  }

  private append(line: JournalLine): void {
    const fd = openSync(this.journal, 'a');
    try {
      writeSync(fd, `${JSON.stringify(line)}\n`);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** The unfinished executions of a state folder, read without opening it (no lock taken). */
export function unfinishedIn(dir: string): JournaledExecution[] {
  let text: string;
  try {
    text = readFileSync(path.join(dir, JOURNAL), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const open = new Map<string, JournaledExecution>();
  for (const raw of text.split('\n')) {
    if (raw.trim() === '') continue;
    let line: JournalLine;
    try {
      line = JSON.parse(raw) as JournalLine;
    } catch {
      // A line cut by a kill mid-write: its execution had not started yet.
      continue;
    }
    if (line.type === 'started') open.set(line.name, { name: line.name, input: line.input, startedAt: line.at });
    else open.delete(line.name);
  }
  return [...open.values()];
}

/** The settings recorded by the last stack on this state (undefined when none was). */
export function recordedSettings(dir: string): Record<string, string | number> | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, SETTINGS), 'utf8')) as Record<string, string | number>;
  } catch {
    return undefined;
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process is running (EPERM: it exists, under another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
