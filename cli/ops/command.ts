/**
 * What every operating command shares: parsing with the target flags, the target opened and closed
 * around the work, and failures the operator can act on said in one line (exit 1; usage mistakes
 * exit 2), whether or not main() is the caller.
 */
import { JobNotFound, ResultLocationMismatch, RowNotFound } from '../../shared/jobs/queries';
import { parse, UsageError, type Options } from '../args';
import { plural } from '../format';
import type { Io } from '../io';
import { oneLine } from './layout';
import { LocalStackUnavailable } from './local-state';
import { resolveTarget, StackNotFound, TARGET_OPTIONS, type Target } from './target';

export interface OpsCommand {
  run: (args: string[], io: Io) => Promise<number>;
  help: string;
}

export interface Parsed {
  values: Record<string, unknown>;
  positionals: string[];
}

/** A failure the command explains itself (exit 1). */
export class OpsFailure extends Error {
  override readonly name = 'OpsFailure';
}

const EXPLAINED: ReadonlySet<string> = new Set([
  OpsFailure.name,
  JobNotFound.name,
  RowNotFound.name,
  ResultLocationMismatch.name,
  StackNotFound.name,
  LocalStackUnavailable.name,
]);

/**
 * Parses `args` (the target flags included), prints the help when asked, opens the target, runs
 * `body` and closes the target, turning expected failures into one line on stderr.
 */
export function opsCommand<T extends Options>(
  name: string,
  help: string,
  options: T,
  body: (parsed: Parsed, target: () => Promise<Target>, io: Io) => Promise<number>,
): OpsCommand {
  return {
    help,
    async run(args, io) {
      let target: Target | undefined;
      try {
        const parsed = parse(args, { ...options, ...TARGET_OPTIONS }, name) as unknown as Parsed;
        if (parsed.values.help) {
          io.stdout.write(help);
          return 0;
        }
        const open = async () => (target ??= await resolveTarget(parsed.values, io));
        return await body(parsed, open, io);
      } catch (error) {
        const message = failureMessage(error, target);
        if (message === undefined) throw error;
        if (io.env.BATCHLINE_DEBUG) io.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
        io.stderr.write(`batchline ${name}: ${message}\n`);
        return error instanceof UsageError ? 2 : 1;
      } finally {
        target?.close();
      }
    },
  };
}

/** Whether the user named a target (a flag or BATCHLINE_LOCAL / BATCHLINE_STACK), rather than taking the default stack. */
export function namedTarget(values: Record<string, unknown>, io: Io): boolean {
  return values.stack !== undefined || values.local !== undefined || Boolean(io.env.BATCHLINE_LOCAL?.trim()) || Boolean(io.env.BATCHLINE_STACK?.trim());
}

/** The one job id a command takes. */
export function oneJob(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new UsageError(`needs one job id, got ${plural(positionals.length, 'argument')} (see batchline ${command} --help)`);
  return positionals[0]!;
}

/** The SDK found no AWS region: none set, or an empty AWS_REGION. */
export function isNoRegion(error: Error): boolean {
  return error.message === 'Region is missing' || error.message.startsWith('Region not accepted: region="" ');
}

/** One line for a failure the operator can act on; undefined for anything else (main() reports it). */
export function failureMessage(error: unknown, target?: Target): string | undefined {
  if (!(error instanceof Error)) return undefined;
  if (error instanceof UsageError || EXPLAINED.has(error.name)) return error.message;
  if (error.name === 'CredentialsProviderError') {
    return 'no AWS credentials found: configure them as for the AWS CLI (AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or use --local DIR for a local stack';
  }
  if (isNoRegion(error)) return 'no AWS region: set AWS_REGION, or a region in your AWS profile; or use --local DIR for a running "batchline serve"';
  if (['ExpiredToken', 'ExpiredTokenException', 'TokenRefreshRequired'].includes(error.name)) {
    return `your AWS credentials have expired (${error.name}): refresh them (e.g. aws sso login) and try again`;
  }
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ECONNRESET' || code === 'ETIMEDOUT') {
    const where = target ? ` ${target.label}` : '';
    const hint = target?.kind === 'local' ? ' (is "batchline serve" still running?)' : '';
    return `cannot reach${where}: ${code}${hint}`;
  }
  // Any other error an AWS service answered with: its code and message say what went wrong.
  if ('$metadata' in error) return `${error.name}: ${oneLine(error.message)}`;
  return undefined;
}
