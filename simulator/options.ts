/**
 * The simulator's configuration: how fast its clock runs, how long batches take, and which faults
 * it injects. Shared by the simulator (./server.ts) and every test or tool that starts one.
 * All randomness is drawn from a PRNG seeded by `seed` (per batch: seed + batch sequence), so a
 * run is repeatable.
 */
import type { ErrorType } from '../shared/anthropic/types';
import type { ModelCatalog } from '../shared/validation/models';

export type Endpoint = 'create' | 'retrieve' | 'list' | 'cancel' | 'delete' | 'results' | 'messages';

/** An HTTP failure answered instead of the real response. */
export interface HttpFault {
  /** Which endpoint(s) it hits; omitted = all. */
  endpoint?: Endpoint | Endpoint[];
  /** 429, 500, 529, ... (the error envelope's type follows the status table of §5.2). */
  status: number;
  /** Sent as `retry-after` (seconds). */
  retryAfterSeconds?: number;
  /** Sent as `retry-after-ms`. */
  retryAfterMs?: number;
  /** Sent as `x-should-retry`. */
  shouldRetry?: boolean;
  /** Fail the first `times` matching calls, then answer normally. Default 1. */
  times?: number;
  /** Or: fail each matching call with this probability (seeded). Overrides `times`. */
  rate?: number;
}

/** Per-request outcome rates, applied when a batch ends (seeded per batch). Each in [0, 1]. */
export interface OutcomeRates {
  /** Fraction of requests errored, by error type (e.g. `{ overloaded_error: 0.1 }`). */
  errored?: Partial<Record<ErrorType, number>>;
  /** Fraction of requests left unprocessed when the batch expires (they come back `expired`). */
  expired?: number;
}

/**
 * How a results line is damaged: `cut` keeps its first half (the custom_id, written first, still
 * whole), `headless` its second half (nothing tells whose it is), `oversize` pads it with spaces
 * (still valid JSON) to `oversizeResultLineBytes`.
 */
export type ResultLineDamage = 'cut' | 'headless' | 'oversize';

/** Faults that follow one batch (given at server level, or targeted at a batch by its sequence). */
export interface BatchFaults extends OutcomeRates {
  /** Processing time for this batch, in simulated seconds (overrides the server's). */
  processingSeconds?: number;
  /** Never finish: the batch runs until it expires at 24 h (simulated) — all unfinished rows expire. */
  stall?: boolean;
  /** Cut the results stream after this many bytes (the connection is destroyed mid-body). */
  cutResultsAfterBytes?: number;
  /** How many results requests are cut before one is served whole. Default 1. */
  cutResultsTimes?: number;
  /** Serve the whole results file (200) to a request with `Range`, as a server without Range support does. */
  ignoreResultsRange?: boolean;
  /**
   * Results lines served damaged, by position in the results file (0 = its first line), the same
   * bytes on every read, as a flaky proxy or a storage hiccup might leave them (ResultLineDamage).
   */
  damageResultLines?: Record<number, ResultLineDamage>;
  /** Bytes an `oversize` line is padded to, its newline aside. Default 64 MiB + 1 KiB: past the client's default limit. */
  oversizeResultLineBytes?: number;
  /** Retrieve and results answer 404 for this many simulated seconds after create. */
  notFoundForSeconds?: number;
  /**
   * List calls leave the batch out this many times after its creation (counted per list call, so
   * the lag is the same at any time scale): a list that lags behind create.
   */
  hiddenFromListCalls?: number;
}

export interface SimulatorOptions {
  /** Port to listen on; 0 (default) picks a free one. Always binds 127.0.0.1 unless `host` says otherwise. */
  port?: number;
  host?: string;
  /** Simulated seconds per real second. 1 = real time; 3600 makes an hour pass in a second. */
  timeScale?: number;
  /** Simulated seconds a batch takes to process, before per-batch faults. Default 60. */
  processingSeconds?: number;
  /** Base seed for every random choice. Default 1. */
  seed?: number;
  /**
   * API keys accepted (via `x-api-key` or `Authorization: Bearer`). Default: any non-empty key.
   * A key not in the list gets 401 authentication_error.
   */
  apiKeys?: string[];
  /** HTTP faults on any endpoint, applied in order. */
  httpFaults?: HttpFault[];
  /** Faults applied to every batch. */
  batchFaults?: BatchFaults;
  /** Faults for specific batches, by creation sequence (1 = the first batch created). */
  batchFaultsBySequence?: Record<number, BatchFaults>;
  /**
   * Accept this many creates (the batch exists) but destroy the connection before the response is
   * delivered — the client cannot know whether the batch was created.
   */
  dropCreateResponses?: number;
  /** Maximum request body in bytes (default 256 MB, the API's limit); above it: 413 request_too_large. */
  maxBodyBytes?: number;
  /**
   * The models the simulated API serves; a request for any other errors with not_found_error, as
   * the API answers it. Default: the models batchline knows (shared/validation/models.ts).
   */
  models?: ModelCatalog;
}

/** What a running simulator exposes to tests beyond HTTP. */
export interface SimulatorHandle {
  /** `http://127.0.0.1:PORT` — use as the client's base URL. */
  url: string;
  /** Simulated now (epoch ms). */
  now(): number;
  /** Advance the simulated clock by this many simulated seconds (on top of timeScale). */
  advance(seconds: number): void;
  /** Change faults while running (e.g. turn on 529s for the next calls). */
  setHttpFaults(faults: HttpFault[]): void;
  setBatchFaults(faults: BatchFaults | undefined): void;
  /** The list catches up: every batch is listed from now on (ends `hiddenFromListCalls`). */
  catchUpList(): void;
  /** Drop the responses of the next `count` creates (as `dropCreateResponses`, from now on). */
  dropCreateResponses(count: number): void;
  /** Batches created so far, in creation order (ids), and per-endpoint call counts. */
  stats(): { batchesCreated: string[]; calls: Record<Endpoint, number>; requestsCreated: number };
  stop(): Promise<void>;
}
