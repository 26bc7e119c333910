/**
 * A job's progress while it runs: one line redrawn in place on a terminal, plain lines (one per
 * step of the workflow) when the output is a file or a pipe.
 */
import type { LocalEvent } from '../local/runtime';
import type { JobProgress } from '../local/progress';
import { count, duration, plural } from './format';

/** The error a chunk fails with when the API refuses the key (401/403; shared/anthropic/errors.ts). */
const KEY_REFUSED = 'ApiAuthError';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Events that say the workflow got past a step: a retry shown on the bar is over. */
const MOVED_ON: ReadonlySet<LocalEvent['type']> = new Set([
  'batch-submitted',
  'batch-polled',
  'chunk-collected',
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

export class ProgressView {
  private frame = 0;
  private lastLine = '';
  /** A retried step's failure, on the bar until the workflow moves on: why a run seems to stall. */
  private retrying: string | undefined;

  constructor(
    private readonly out: NodeJS.WritableStream & { columns?: number },
    private readonly tty: boolean,
    private readonly startedAt = Date.now(),
    private readonly verbose = false,
    /** Live: each batch id on screen as soon as it exists (they run, and bill, at the API). */
    private readonly showBatches = false,
  ) {}

  /** A snapshot from the job's records: redraws the bar (terminal only). */
  update(progress: JobProgress): void {
    if (!this.tty) return;
    const retrying = this.retrying ? ` · ${this.retrying}` : '';
    const line = `${SPINNER[this.frame++ % SPINNER.length]} ${statusLine(progress, Date.now() - this.startedAt)}${retrying}`;
    const width = this.out.columns ?? 120;
    this.out.write(`\r\x1b[2K${line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line}`);
    this.lastLine = line;
  }

  /** A step of the workflow: one plain line (not on a terminal, where the bar tells it). */
  event(event: LocalEvent): void {
    // A refused key fails every chunk the same way: the summary says it once, with what to check.
    if ('error' in event && event.error === KEY_REFUSED) return;
    if (event.type === 'task-failed' && event.cause !== undefined) this.retrying = `retrying ${event.state}: ${event.error} (${event.cause})`;
    else if (MOVED_ON.has(event.type)) this.retrying = undefined;
    if (!shownEvent(event, this.verbose)) return;
    const text = describeEvent(event);
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

export function statusLine(progress: JobProgress, elapsedMs: number): string {
  const parts = [duration(elapsedMs)];
  if (progress.status !== 'running') parts.push(progress.status ?? 'registering');
  if (progress.validRows !== undefined) {
    parts.push(`${count(progress.validRows)} valid${progress.invalidRows ? `, ${count(progress.invalidRows)} invalid` : ''}`);
  }
  if (progress.chunks !== undefined && progress.chunks > 0) {
    parts.push(`chunks ${count(progress.chunksDone + progress.chunksFailed)}/${count(progress.chunks)}`);
  }
  if (progress.batches > 0) {
    parts.push(`${plural(progress.batches, 'batch', 'batches')}${progress.retries > 0 ? ` (${plural(progress.retries, 'retry', 'retries')})` : ''}`);
  }
  const outcomes = progress.counts ?? progress.attemptOutcomes;
  if (progress.batches > 0 || progress.counts) {
    parts.push(`${count(outcomes.succeeded)} ok, ${count(outcomes.errored)} errored, ${count(outcomes.expired)} expired`);
  }
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
      return `chunk ${event.chunk}: attempt ${event.attempt} collected${event.retry ? ', retrying its transient failures' : ''}`;
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
