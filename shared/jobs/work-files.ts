/**
 * The work files Finalize needs (a collected attempt's results, a retry's requests, Prepare's
 * records): a missing one is a named failure, never an empty answer.
 */
import type { RawLine } from '../jsonl/lines';
import { isS3NotFound } from '../store/s3';
import { ChunkFileCorrupt } from './chunk-files';

/** A file Finalize needs is missing (a collected attempt's results, a retry's requests). */
export class WorkFileMissing extends Error {
  override readonly name = 'WorkFileMissing';
}

/** Runs a read of `key`; a missing object becomes WorkFileMissing. */
export async function needed(key: string, read: () => Promise<void>): Promise<void> {
  try {
    await read();
  } catch (error) {
    if (isS3NotFound(error)) throw new WorkFileMissing(`${key} is missing`);
    throw error;
  }
}

/** A work file's entries, streamed; a missing file is WorkFileMissing (as `needed` makes it). */
export async function* neededLines<T>(key: string, entries: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    yield* entries;
  } catch (error) {
    if (isS3NotFound(error)) throw new WorkFileMissing(`${key} is missing`);
    throw error;
  }
}

/** A line of a work file batchline wrote, as JSON; one that is not is ChunkFileCorrupt. */
export function parseJsonLine(line: RawLine, key: string): unknown {
  try {
    return JSON.parse(line.bytes.toString('utf8'));
  } catch {
    throw new ChunkFileCorrupt(`${key} line ${line.lineNumber} is not JSON`);
  }
}
