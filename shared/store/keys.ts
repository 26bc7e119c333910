/**
 * The one module that owns S3 keys. Nothing else builds a key by hand.
 *
 * Keys start with the stack's prefixes (shared/config.ts Prefixes). Inside the pipeline they are the
 * process's own: a function is told them by its environment (the local runtime sets the same), so
 * the core calls `jobKeys(jobId)`. Code that talks to a stack from outside (the CLI) passes the
 * stack's prefixes, as its outputs name them (docs/architecture.md, "Prefixes").
 */
import { DEFAULT_PREFIXES, PREFIX_ENV, readPrefixes, type Prefixes } from '../config';

export { DEFAULT_PREFIXES, type Prefixes };

let read: { from: string; prefixes: Prefixes } | undefined;

/** The prefixes this process's functions were given (BATCHLINE_*_PREFIX), DEFAULT_PREFIXES when none. */
export function processPrefixes(): Prefixes {
  // Read again whenever the variables change: the local runtime sets them after this module loads.
  const from = Object.values(PREFIX_ENV)
    .map((name) => process.env[name] ?? '')
    .join('\0');
  if (read?.from !== from) read = { from, prefixes: readPrefixes(process.env) };
  return read.prefixes;
}

/** The key an input file named `name` is uploaded to. */
export const inboxKey = (name: string, prefixes: Prefixes = processPrefixes()) => `${prefixes.inbox}${name}`;

const pad = (n: number, width: number) => String(n).padStart(width, '0');

export const jobKeys = (jobId: string, prefixes: Prefixes = processPrefixes()) => {
  const work = `${prefixes.work}${jobId}/`;
  const results = `${prefixes.results}${jobId}/`;
  return {
    workPrefix: work,
    resultsPrefix: results,
    /** Invalid lines found by Prepare (JSONL: line, custom_id if known, reason). */
    invalidWork: `${work}invalid.jsonl`,
    /**
     * A strict-rejected job's valid rows that are in no chunk file (shared/jobs/prepare-job.ts): a header
     * `{"chunkFiles": n}` (attempt 1 of chunks 0…n−1 hold the valid rows before the first invalid
     * line), then the custom_id of each valid row after it, in input order, one JSON string a line.
     */
    rejectedValidIds: `${work}rejected-valid-ids.jsonl`,
    /**
     * A Prepare that resumes across invocations (shared/jobs/prepare-job.ts): the checkpoint each
     * invocation leaves (where the next one starts reading, what it carries on), and that
     * invocation's own pieces, joined when the file ends: its invalid lines, rejected ids, reuse plan,
     * and its custom_ids (shared/validation/prior-ids.ts) for the later ones to check theirs against.
     * Each attempt writes under its own name; the job record names the one committed.
     */
    prepareCheckpoint: (segment: number, attempt: string) => `${work}prepare/${pad(segment, 4)}-${attempt}/checkpoint.json`,
    preparePiece: (segment: number, attempt: string, piece: 'invalid' | 'rejected-valid-ids' | 'reuse-plan' | 'custom-ids') =>
      `${work}prepare/${pad(segment, 4)}-${attempt}/${piece}${piece === 'reuse-plan' || piece === 'custom-ids' ? '.bin' : '.jsonl'}`,
    /** Every chunk's work files, row indexes first (Prepare writes them in chunk order as it validates). */
    chunksPrefix: `${work}chunks/`,
    /**
     * A reusing job's plan (shared/jobs/reuse.ts): for each valid row in input order, as a
     * little-endian int32, -1 (sent by this job) or the row's position in the old job's results.jsonl.
     */
    reusePlan: `${work}reuse-plan.bin`,
    /** A reusing job's own rows, in input order, before they are merged with the reused ones. */
    sentRows: { results: `${work}sent/results.jsonl`, errors: `${work}sent/errors.jsonl` },
    /**
     * Attempt 1 of a chunk: where its requests are in the job's input (a pinned byte range) and
     * which lines of that range are its rows, with their custom_ids (shared/jobs/chunk-files.ts).
     */
    chunkRowIndex: (chunk: number) => `${work}chunks/${pad(chunk, 5)}/attempt-1/row-index.txt`,
    /** The requests of a retry attempt (≥ 2), written by Collect: `{custom_id, params}` lines in input order. */
    chunkRequests: (chunk: number, attempt: number) => `${work}chunks/${pad(chunk, 5)}/attempt-${attempt}/requests.jsonl`,
    /** The raw results lines of one chunk attempt, as the API returned them. */
    chunkResults: (chunk: number, attempt: number) => `${work}chunks/${pad(chunk, 5)}/attempt-${attempt}/results.jsonl`,
    /** The stored answers of one claimed slice of a synchronous attempt (shared/jobs/stragglers.ts), by its first row. */
    syncSlice: (chunk: number, attempt: number, start: number) => `${work}chunks/${pad(chunk, 5)}/attempt-${attempt}/sync/${pad(start, 6)}.jsonl`,
    /**
     * Collect's progress on one chunk attempt (shared/jobs/collect-checkpoint.ts): where it is in the
     * API's results file, and the segments it stored so far; a Collect that finds it goes on from there.
     */
    collectCheckpoint: (chunk: number, attempt: number) => `${work}chunks/${pad(chunk, 5)}/attempt-${attempt}/collect/checkpoint.json`,
    /** One stored segment of an attempt's results, by the invocation (`writer`) that wrote it; joined into chunkResults. */
    collectSegment: (chunk: number, attempt: number, writer: string, index: number) =>
      `${work}chunks/${pad(chunk, 5)}/attempt-${attempt}/collect/segment-${pad(index, 5)}-${writer}.jsonl`,
    /**
     * A chunk's rows in input order with their final state (FinalizeChunk): its share of
     * results.jsonl and errors.jsonl, which FinalizeJob joins inside S3, and the record that says
     * what they hold (shared/jobs/finalize-chunk.ts ChunkFinal).
     */
    chunkFinal: (chunk: number) => ({
      results: `${work}chunks/${pad(chunk, 5)}/final/results.jsonl`,
      errors: `${work}chunks/${pad(chunk, 5)}/final/errors.jsonl`,
      record: `${work}chunks/${pad(chunk, 5)}/final/record.json`,
    }),
    /** Outputs the user reads. */
    results: `${results}results.jsonl`,
    errors: `${results}errors.jsonl`,
    invalid: `${results}invalid.jsonl`,
    summary: `${results}summary.json`,
    /** The same summary as a page for a person (shared/jobs/summary-html.ts), written with it. */
    summaryHtml: `${results}summary.html`,
    /** The results of a batch made by a create whose answer was lost, found later (shared/jobs/orphans.ts). */
    orphanResults: (batchId: string) => `${results}orphans/${batchId}.jsonl`,
  };
};

export type JobKeys = ReturnType<typeof jobKeys>;
