/**
 * A local stack as `batchline serve` leaves it, for tests of the commands that find a running stack
 * (`--local DIR`): the stack, started once per file, and a folder holding its state file. `run` runs
 * an operating command in-process against it, with its output in memory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { OPS_COMMANDS } from '../../cli/ops';
import { removeLocalState, writeLocalState } from '../../cli/ops/local-state';
import { startLocalStack, type LocalStack, type LocalStackOptions } from '../../local/runtime';
import { memoryIo } from '../ops/support';

/** The first start synthesizes the CDK app (cached afterwards), which takes several seconds. */
const START_TIMEOUT_MS = 120_000;

export interface ServedStack {
  readonly stack: LocalStack;
  /** The folder whose `.batchline/local.json` points at the stack (the commands' working folder). */
  readonly dir: string;
  /** An operating command (`submit`, `status`, …) run in-process with `--local DIR`. */
  run(name: string, args: string[]): Promise<{ code: number; out: string; err: string }>;
}

export function useServedStack(folderPrefix: string, options: LocalStackOptions = {}): ServedStack {
  let stack: LocalStack | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), folderPrefix));
    stack = await startLocalStack(options);
    // What `batchline serve` does once its stack is up.
    await writeLocalState(dir, stack);
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    if (dir) await removeLocalState(dir);
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    get stack() {
      if (!stack) throw new Error('the served stack is not started (use it inside a test)');
      return stack;
    },
    get dir() {
      if (!dir) throw new Error('the served stack is not started (use it inside a test)');
      return dir;
    },
    async run(name, args) {
      const memory = memoryIo({ cwd: this.dir });
      const code = await OPS_COMMANDS[name]!.run([...args, '--local', this.dir], memory.io);
      return { code, out: memory.out(), err: memory.err() };
    },
  };
}
