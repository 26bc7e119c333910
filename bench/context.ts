/**
 * What every benchmark gets: the command line's options, a scratch directory, and the figures the
 * benchmarks before it measured (the cost estimate is built from them).
 */
import type { MeterReading } from './aws-meter';

export interface BenchOptions {
  /** --rows: rows for every benchmark that takes a row count (overrides the defaults and --full). */
  rows: number | undefined;
  /** --full: the sizes (prepare 1,000,000 rows; collect and end-to-end 100,000). */
  full: boolean;
  /** --scale-10m: the scale benchmark also runs a 10,000,000-row job. */
  scale10m: boolean;
  /** --prepare-only: the scale benchmark stops each size after Register + Prepare (its invocations' figures, no chunks). */
  prepareOnly: boolean;
  /** Where input files and emulator data go; removed afterwards. */
  workDir: string;
}

export interface PrepareMeasurement {
  rows: number;
  bytes: number;
  ms: number;
  aws: MeterReading;
}

/** One step of a chunk's life, run on its own: its duration and what it sent. */
export interface StepMeasurement {
  /** Invocations measured (e.g. polls). */
  calls: number;
  /** Total duration of those calls. */
  ms: number;
  aws: MeterReading;
}

export interface CollectMeasurement {
  rows: number;
  /** Chunks of the job and chunk attempts (batches) made for them. */
  chunks: number;
  attempts: number;
  /** Rows of the next attempt (retry chunk) Collect wrote. */
  retryRows: number;
  register: StepMeasurement;
  prepare: StepMeasurement;
  submit: StepMeasurement;
  poll: StepMeasurement;
  collect: StepMeasurement;
  /** Every chunk's FinalizeChunk (its rows in input order). */
  finalizeChunk: StepMeasurement;
  /** undefined when Finalize's core is not there to run. */
  finalize: StepMeasurement | undefined;
  /** Calls to the Batches API during Collect, by endpoint. */
  apiCalls: Record<string, number>;
}

export interface PollingMeasurement {
  /** The fallback (adaptive Wait loop): polls for a batch that ends after this many seconds (default settings). */
  byDuration: Array<{ seconds: number; polls: number; noticeDelaySeconds: number }>;
  /** With the poller, measured on the local stack. */
  poller: {
    bySeconds: Array<{ seconds: number; pollsPerAttempt: number; maxNoticeSeconds: number }>;
    /** One tick's wall time with 1,000 batches in flight (local). */
    tickMsAt1000: number;
    /** Mean wall time of a tick with a job's watches (local). */
    busyTickMs: number;
  };
}

export interface Measurements {
  prepare?: PrepareMeasurement;
  collect?: CollectMeasurement;
  polling?: PollingMeasurement;
}

export interface BenchContext {
  options: BenchOptions;
  measured: Measurements;
  /** Progress lines (to stderr, so stdout holds only the report). */
  log(line: string): void;
}
