/**
 * The runs `batchline run` left on this machine: each one's outputs folder under `batchline-out/`
 * (the default of `run --out`), read from its summary.json. `jobs` and `status` fall back to them
 * when no stack is configured at all (no AWS region or credentials, or no deployed stack) and none
 * was named, so a local user can find a job again without AWS.
 */
import { readdir, readFile } from 'node:fs/promises';
import { jobCostUsd, type JobSummary } from '../../shared/jobs/finalize-job';
import path from 'node:path';
import type { Io } from '../io';
import { failureMessage, isNoRegion, namedTarget } from './command';
import type { Target } from './target';
import type { JobRow } from './jobs';

/** Where `batchline run` copies a job's outputs by default (cli/run.ts). */
export const LOCAL_RUNS_DIR = 'batchline-out';

export interface LocalRun {
  dir: string;
  summary: JobSummary;
}

/** The runs under `root`, newest first; none when the folder does not exist. Unreadable folders are skipped. */
export async function readLocalRuns(root: string): Promise<LocalRun[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const runs: LocalRun[] = [];
  for (const name of names) {
    const dir = path.join(root, name);
    const summary = await readSummary(dir);
    if (summary) runs.push({ dir, summary });
  }
  return runs.sort((a, b) => b.summary.timings.createdAt.localeCompare(a.summary.timings.createdAt));
}

/** One run's summary by its job id, if its folder is there. */
export async function readLocalRun(root: string, jobId: string): Promise<LocalRun | undefined> {
  if (jobId.includes('/') || jobId.includes('\\') || jobId.startsWith('.')) return undefined;
  const dir = path.join(root, jobId);
  const summary = await readSummary(dir);
  return summary ? { dir, summary } : undefined;
}

async function readSummary(dir: string): Promise<JobSummary | undefined> {
  try {
    const summary = JSON.parse(await readFile(path.join(dir, 'summary.json'), 'utf8')) as JobSummary;
    return typeof summary?.jobId === 'string' && typeof summary.timings?.createdAt === 'string' ? summary : undefined;
  } catch {
    return undefined;
  }
}

/** A run's summary as the job record `jobs` lists. */
export function asJobRow({ summary }: LocalRun): JobRow {
  const { total, invalid, ...counts } = summary.counts;
  return {
    jobId: summary.jobId,
    status: summary.status,
    totalRows: total,
    validRows: total - invalid,
    invalidRows: invalid,
    counts: { ...counts, invalid },
    costUsd: jobCostUsd(summary),
    createdAt: summary.timings.createdAt,
    endedAt: summary.timings.endedAt,
  };
}

/**
 * Whether a failure to open the default target means "no stack is configured here" (rather than
 * a stack that could not be read): no region, no credentials, or no such stack.
 */
export function noStackConfigured(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return isNoRegion(error) || error.name === 'CredentialsProviderError' || error.name === 'StackNotFound';
}

/**
 * The target, or, when opening the default one failed because no stack is configured and the user
 * named none, the runs `batchline run` left here (`read` picks what the command needs of them) and
 * why there is no stack. Any other failure is thrown as it came.
 */
export async function targetOrLocalRuns<T>(
  open: () => Promise<Target>,
  values: Record<string, unknown>,
  io: Io,
  read: (root: string) => Promise<T | undefined>,
): Promise<{ target: Target } | { local: T; noStack: string }> {
  try {
    return { target: await open() };
  } catch (error) {
    const local = namedTarget(values, io) || !noStackConfigured(error) ? undefined : await read(path.resolve(io.cwd, LOCAL_RUNS_DIR));
    if (local === undefined) throw error;
    return { local, noStack: failureMessage(error) ?? (error as Error).message };
  }
}
