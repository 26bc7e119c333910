import { InvalidDeadline, resolveDeadline } from '../shared/jobs/deadline';
/** Command-line parsing shared by the commands: node:util parseArgs, with its errors made one clear line. */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { nearest } from '../shared/validation/nearest';

/** A mistake in how the command was called (bad flag, missing file, port in use): exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse<T extends Options>(args: string[], options: T, command: string) {
  const all = { ...options, help: { type: 'boolean', short: 'h' } } as const satisfies Options;
  try {
    return parseArgs({ args, options: all, allowPositionals: true, strict: true });
  } catch (error) {
    const unknown = (error as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && /Unknown option '([^']+)'/.exec((error as Error).message)?.[1];
    if (unknown) {
      const hint = unknown.startsWith('--') ? didYouMean(unknown, flagNames(all)) : '';
      throw new UsageError(`unknown option ${unknown}${hint} (see batchline ${command} --help)`);
    }
    // parseArgs explains itself well; its own hint about `--` is noise here.
    const message = (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new UsageError(`${message} (see batchline ${command} --help)`);
  }
}

/** `--name` for each option (a one-letter slip like `-x` has no near miss worth naming). */
function flagNames(options: Options): string[] {
  return Object.keys(options).map((name) => `--${name}`);
}

/** `: did you mean X?` when a candidate is near enough to `word`, else ''. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const suggestion = nearest(word, candidates);
  return suggestion === undefined ? '' : `: did you mean ${suggestion}?`;
}

export function positiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, got "${value}"`);
  return n;
}

export function port(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${flag} must be a port number from 0 to 65535, got "${value}"`);
  return n;
}

export function atMostOne(positionals: string[], command: string): string | undefined {
  if (positionals.length > 1) throw new UsageError(`batchline ${command} takes one file, got ${positionals.length} (see batchline ${command} --help)`);
  return positionals[0];
}

/**
 * The input file `given` names, resolved against `cwd`, once it is known to be a regular file this
 * process can read: anything else is a UsageError saying what is wrong with it, so a command fails
 * before it starts a stack or uploads a byte. With `streams`, a pipe or a device (`/dev/stdin`) is
 * taken too, unopened: opening a pipe can wait for its writer.
 */
export async function readableFile(cwd: string, given: string, options: { streams?: boolean } = {}): Promise<string> {
  const file = path.resolve(cwd, given);
  let info;
  try {
    info = await stat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UsageError(`no such file: ${given}`);
    throw new UsageError(`cannot read ${given}: ${reason(error)}`);
  }
  if (info.isDirectory()) throw new UsageError(`${given} is a directory: give a .jsonl file`);
  if (options.streams && (info.isFIFO() || info.isCharacterDevice())) return file;
  if (!info.isFile()) throw new UsageError(`${given} is not a regular file: give a .jsonl file`);
  try {
    await (await open(file, 'r')).close();
  } catch (error) {
    throw new UsageError(`cannot read ${given}: ${reason(error)}`);
  }
  return file;
}

/** `permission denied` for EACCES and the like: the system's words, without the call and the path. */
function reason(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return code ?? message;
}

/**
 * A `--deadline` value (an ISO time with its zone, or a duration such as 6h or 90m), checked now so a
 * bad one is a usage error; it is sent as given (a duration counts from when the job is registered).
 */
export function deadlineFlag(value: string | undefined, flag = '--deadline'): string | undefined {
  if (value === undefined) return undefined;
  try {
    resolveDeadline(value, Date.now(), flag);
  } catch (error) {
    if (error instanceof InvalidDeadline) throw new UsageError(error.message);
    throw error;
  }
  return value.trim();
}
