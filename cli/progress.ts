/**
 * A job's progress while it runs: one line redrawn in place on a terminal, plain lines (one per
 * step of the workflow) when the output is a file or a pipe.
 */
import type { LocalEvent } from '../local/runtime';
import type { JobProgress, LiveProgress } from '../local/progress';
import { count, duration, plural } from './format';
import type { NextTry, RetryClock } from './retry-delay';

/** The error a chunk fails with when the API refuses the key (401/403; shared/anthropic/errors.ts). */
const KEY_REFUSED = 'ApiAuthError';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Events that say the workflow got past a step: a retry shown on the bar is over. */
const MOVED_ON: ReadonlySet<LocalEvent['type']> = new Set([
  'batch-submitted',
  'batch-polled',
  'chunk-collected',
  'stragglers-ran',
  'chunk-failed',
  'job-finalized',
  'job-failed',
]);

/** Events about the stack's own wiring (the topic, the event bus): shown only with --verbose. */
const PLUMBING: ReadonlySet<LocalEvent['type']> = new Set(['notification', 'event-published']);

/** Whether an event is worth a line on a person's screen (plumbing only when they asked for it). */
export function shownEvent(event: LocalEvent, verbose: boolean): boolean {
  return verbose || !PLUMBING.has(event.type);
}

/** Work this large gets a plain progress line now and then when the output is not a terminal (CI logs). */
export const LONG_WORK_ROWS = 100_000;
/** How often that plain line is printed, at most. */
export const PLAIN_PROGRESS_EVERY_MS = 10_000;

/** How fast the work goes, from the first snapshot of a phase to the latest. */
export interface Pace {
  /** Valid rows a second while validating. */
  rowsPerSecond?: number;
  /** How much of the phase is done (0–1), where it can be known. */
  fraction?: number;
  /** Time left in the phase at that pace. */
  etaMs?: number;
  /** The clock the running batches' times are read against (default now). */
  now?: number;
}

export class ProgressView {
  private frame = 0;
  private lastLine = '';
  /** A retried step's failure, on the bar until the workflow moves on: why a run seems to stall. */
  private retrying: string | undefined;
  /** The first snapshot of the phase under way (validating, or batches), for its pace. */
  private phaseStart: { phase: 'validating' | 'batches'; at: number; done: number; rows: number } | undefined;
  private lastPlainAt = 0;

  constructor(
    private readonly out: NodeJS.WritableStream & { columns?: number },
    private readonly tty: boolean,
    private readonly startedAt = Date.now(),
    private readonly verbose = false,
    /** Live: each batch id on screen as soon as it exists (they run, and bill, at the API). */
    private readonly showBatches = false,
    /** When a retried step's next try comes (from the state machine's Retry fields). */
    private readonly retryClock?: RetryClock,
  ) {}

  /**
   * A snapshot from the job's records: redraws the bar on a terminal; otherwise, for long work
   * (LONG_WORK_ROWS and more), a plain progress line every PLAIN_PROGRESS_EVERY_MS at most.
   */
  update(progress: JobProgress | LiveProgress, now = Date.now()): void {
    const pace = this.pace(progress, now);
    if (!this.tty) {
      const rows = 'validating' in progress && progress.validating ? progress.validating.rows : (progress.validRows ?? 0);
      if (rows < LONG_WORK_ROWS || progress.ended || now - this.lastPlainAt < PLAIN_PROGRESS_EVERY_MS) return;
      this.lastPlainAt = now;
      const retrying = this.retrying ? ` · ${this.retrying}` : '';
      this.out.write(`[${duration(now - this.startedAt).padStart(6)}] progress: ${statusLine(progress, now - this.startedAt, pace)}${retrying}\n`);
      return;
    }
    const retrying = this.retrying ? ` · ${this.retrying}` : '';
    const line = `${SPINNER[this.frame++ % SPINNER.length]} ${statusLine(progress, now - this.startedAt, { ...pace, bar: true })}${retrying}`;
    const width = this.out.columns ?? 120;
    this.out.write(`\r\x1b[2K${line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line}`);
    this.lastLine = line;
  }

  /** The pace of the phase under way: rows a second while validating, and an ETA where one can be known. */
  private pace(progress: JobProgress | LiveProgress, now: number): Pace {
    const live = 'running' in progress ? progress : undefined;
    const phase = live?.validating ? 'validating' : live && live.rowsSent > 0 && !progress.ended ? 'batches' : undefined;
    if (!live || !phase) return { now };
    const done = phase === 'validating' ? live.validating!.bytes : live.rowsProcessed;
    const total = phase === 'validating' ? live.validating!.inputBytes : Math.max(live.rowsSent, progress.validRows ?? 0);
    const rows = live.validating?.rows ?? 0;
    if (this.phaseStart?.phase !== phase) this.phaseStart = { phase, at: now, done, rows };
    const seconds = (now - this.phaseStart.at) / 1000;
    const pace: Pace = { now };
    if (total !== undefined && total > 0) pace.fraction = Math.min(1, done / total);
    // A pace from a second or more of progress, not from the first snapshot's jitter.
    if (seconds >= 1 && phase === 'validating') pace.rowsPerSecond = (rows - this.phaseStart.rows) / seconds;
    const gained = done - this.phaseStart.done;
    if (seconds >= 1 && gained > 0 && total !== undefined && total > done) pace.etaMs = ((total - done) / gained) * seconds * 1000;
    return pace;
  }

  /** A step of the workflow: one plain line (not on a terminal, where the bar tells it). */
  event(event: LocalEvent): void {
    // A refused key fails every chunk the same way: the summary says it once, with what to check.
    if ('error' in event && event.error === KEY_REFUSED) return;
    let nextTry = '';
    if (event.type === 'task-failed' && event.cause !== undefined) {
      nextTry = nextTryText(this.retryClock?.failed(event.state, event.error));
      this.retrying = `retrying ${event.state}: ${event.error} (${event.cause})${nextTry}`;
    } else if (MOVED_ON.has(event.type)) {
      this.retrying = undefined;
      this.retryClock?.movedOn();
    }
    if (!shownEvent(event, this.verbose)) return;
    const described = describeEvent(event);
    const text = described === undefined ? undefined : `${described}${nextTry}`;
    if (text === undefined) return;
    if (this.tty) {
      // Failures stay on screen above the bar; routine steps are in the bar already.
      const kept = event.type === 'chunk-failed' || event.type === 'job-failed' || (this.showBatches && event.type === 'batch-submitted');
      if (!kept) return;
      this.out.write(`\r\x1b[2K${text}\n${this.lastLine}`);
      return;
    }
    this.out.write(`[${duration(Date.now() - this.startedAt).padStart(6)}] ${text}\n`);
  }

  /** Clears the bar, leaving the terminal at the start of a fresh line. */
  finish(): void {
    if (this.tty && this.lastLine !== '') this.out.write('\r\x1b[2K');
    this.lastLine = '';
  }
}

/** `, next try in 40.0s` (`within` when the jitter may make it sooner); '' when unknown. */
export function nextTryText(next: NextTry | undefined): string {
  if (!next) return '';
  return `, next try ${next.upTo ? 'within' : 'in'} ${duration(next.ms)}`;
}

const BAR_WIDTH = 12;

/** `[████░░░░░░░░] 31%` */
export function bar(fraction: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * BAR_WIDTH);
  return `[${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}] ${Math.floor(fraction * 100)}%`;
}

/** The running batches that have run longest, with how long: `chunk 3 4m10s, chunk 7 1m02s, +5 more`. */
function runningBatches(running: LiveProgress['running'], now: number): string {
  const oldest = [...running].filter((batch) => batch.since !== '').sort((a, b) => a.since.localeCompare(b.since));
  const shown = oldest
    .slice(0, 3)
    .map((batch) => `chunk ${batch.chunk}${batch.attempt > 1 ? ` (attempt ${batch.attempt})` : ''} ${duration(Math.max(0, now - Date.parse(batch.since)))}`);
  const more = running.length - shown.length;
  return `${shown.join(', ')}${more > 0 ? `${shown.length > 0 ? ', ' : ''}+${count(more)} more` : ''}`;
}

export function statusLine(progress: JobProgress | LiveProgress, elapsedMs: number, pace: Pace & { bar?: boolean } = {}): string {
  const parts = [duration(elapsedMs)];
  const live = 'running' in progress ? progress : undefined;
  if (pace.fraction !== undefined && !progress.ended) parts.push(pace.bar ? bar(pace.fraction) : `${Math.floor(pace.fraction * 100)}%`);
  if (live?.validating) {
    parts.push(`validating: ${count(live.validating.rows)} rows${pace.rowsPerSecond !== undefined ? `, ${count(Math.round(pace.rowsPerSecond))} rows/s` : ''}`);
  } else if (progress.status !== 'running') parts.push(progress.status ?? 'registering');
  if (progress.validRows !== undefined) {
    parts.push(`${count(progress.validRows)} valid${progress.invalidRows ? `, ${count(progress.invalidRows)} invalid` : ''}`);
  }
  if (progress.chunks !== undefined && progress.chunks > 0) {
    parts.push(`chunks ${count(progress.chunksDone + progress.chunksFailed)}/${count(progress.chunks)}`);
  }
  if (progress.batches > 0) {
    const ended = live ? `, ${count(live.batchesEnded)} ended` : '';
    parts.push(
      `${plural(progress.batches, 'batch', 'batches')}${live ? ' submitted' : ''}${ended}${progress.retries > 0 ? ` (${plural(progress.retries, 'retry', 'retries')})` : ''}`,
    );
  }
  if (live && live.running.length > 0 && !progress.ended) parts.push(`running: ${runningBatches(live.running, pace.now ?? Date.now())}`);
  const outcomes = progress.counts ?? progress.attemptOutcomes;
  if (progress.batches > 0 || progress.counts) {
    parts.push(`${count(outcomes.succeeded)} ok, ${count(outcomes.errored)} errored, ${count(outcomes.expired)} expired`);
  }
  if (pace.etaMs !== undefined && !progress.ended) parts.push(`ETA ${duration(pace.etaMs)}`);
  return parts.join(' · ');
}

export function describeEvent(event: LocalEvent): string | undefined {
  switch (event.type) {
    case 'job-registered':
      return event.duplicate ? `duplicate event for job ${event.jobId}: nothing to do` : `job ${event.jobId} registered`;
    case 'job-prepared':
      return event.outcome === 'ready'
        ? `validated: ${plural(event.validRows, 'row')} valid, ${count(event.invalidRows)} invalid; ${plural(event.chunks, 'chunk')}`
        : `validated: ${plural(event.validRows, 'row')} valid, ${count(event.invalidRows)} invalid; nothing submitted (${event.outcome})`;
    case 'batch-submitted':
      return event.canceled
        ? `chunk ${event.chunk}: canceled before submitting`
        : `chunk ${event.chunk}: attempt ${event.attempt} submitted as ${event.batchId}`;
    case 'chunk-collected':
      if (event.stragglers)
        return `chunk ${event.chunk}: attempt ${event.attempt} canceled for the deadline and collected; its unfinished rows go as synchronous calls`;
      return `chunk ${event.chunk}: attempt ${event.attempt} collected${event.retry ? ', retrying its transient failures' : ''}`;
    case 'stragglers-ran':
      return event.done
        ? `chunk ${event.chunk}: synchronous calls done (attempt ${event.attempt})`
        : `chunk ${event.chunk}: synchronous calls under way, ${plural(event.remaining, 'row')} to go`;
    case 'chunk-failed':
      return `chunk ${event.chunk} failed (${event.error}); its unfinished rows are errored`;
    case 'task-failed':
      return event.cause === undefined
        ? `${event.state} failed with ${event.error}`
        : `${event.state} failed with ${event.error} (${event.cause}); the workflow retries it`;
    case 'job-finalized':
      return `job ${event.jobId} finalized: ${event.status}`;
    case 'job-failed':
      return `job ${event.jobId ?? ''} failed: ${event.error}`.replace('job  ', 'job ');
    case 'delivery-failed':
      return `${event.target} failed (${event.error}) on an event of rule ${event.rule}`;
    case 'notification':
      return `SNS notification: ${event.message.subject ?? 'message'} (${event.message.topicArn.split(':').pop()})`;
    case 'event-published':
      return `EventBridge event: ${event.event.detailType} from ${event.event.source}`;
    default:
      return undefined;
  }
}
