/**
 * What a live run has running at the API, and what Ctrl-C does about it. With --live a batch runs,
 * and bills, at the API whatever becomes of the local stack: the first Ctrl-C names the batches
 * still running and stops nothing; a second cancels each at the API, waits for the API to take the
 * cancel, says so, and only then stops.
 */
import type { LocalEvent } from '../local/runtime';
import { BatchesClient } from '../shared/anthropic/client';

export interface InFlightBatch {
  jobId: string;
  batchId: string;
  chunk: number;
  attempt: number;
}

/** The batches of the run that have not ended for the pipeline (submitted, not collected nor failed). */
export class BatchesInFlight {
  private readonly batches = new Map<string, InFlightBatch>();

  observe(event: LocalEvent): void {
    if (event.type === 'batch-submitted' && event.batchId) {
      const { jobId, batchId, chunk, attempt } = event;
      this.batches.set(`${jobId}/${chunk}/${attempt}`, { jobId, batchId, chunk, attempt });
    } else if (event.type === 'chunk-collected') {
      this.batches.delete(`${event.jobId}/${event.chunk}/${event.attempt}`);
    } else if (event.type === 'chunk-failed') {
      // RecordChunkFailure cancels a failed chunk's batch itself.
      for (const [key, batch] of [...this.batches]) if (batch.jobId === event.jobId && batch.chunk === event.chunk) this.batches.delete(key);
    } else if ((event.type === 'job-finalized' || event.type === 'job-failed') && event.jobId) {
      for (const [key, batch] of [...this.batches]) if (batch.jobId === event.jobId) this.batches.delete(key);
    }
  }

  get list(): InFlightBatch[] {
    return [...this.batches.values()];
  }
}

/**
 * Ctrl-C for a live run. The first, with batches in flight, lists them and arms the second; the
 * second cancels them at the API and then stops. Without batches in flight, Ctrl-C stops at once.
 * Returns the function that removes the handlers.
 */
export function onLiveInterrupt(
  inFlight: BatchesInFlight,
  api: { apiKey: string; baseUrl?: string },
  say: (line: string) => void,
  stop: () => Promise<void>,
): () => void {
  let presses = 0;
  const exit = () =>
    stop().then(
      () => process.exit(130),
      () => process.exit(130),
    );
  const handler = () => {
    presses += 1;
    const batches = inFlight.list;
    if (presses === 1 && batches.length > 0) {
      say(`\nInterrupted. Still running at the API, and billed, whatever happens here:`);
      for (const { batchId, chunk, attempt } of batches) say(`  ${batchId} (chunk ${chunk}, attempt ${attempt})`);
      say(
        'They are kept running, and so is this run. Should it stop (the terminal closed, the machine asleep), ' +
          '"batchline resume" in this folder carries the job on from .batchline/state/: it collects them, creates nothing twice, ' +
          'and writes the outputs; their results also stay at the API for 29 days. Press Ctrl-C again to cancel them at the API.',
      );
      return;
    }
    if (presses === 2 && batches.length > 0) {
      void cancelAll(batches, api, say).finally(exit);
      return;
    }
    if (presses === 1) say('\nInterrupted: stopping the local stack… "batchline resume" in this folder carries the job on.');
    void exit();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** Cancels each batch at the API, saying what the API answered for each. */
export async function cancelAll(batches: Array<{ batchId: string }>, api: { apiKey: string; baseUrl?: string }, say: (line: string) => void): Promise<void> {
  say('Canceling at the API…');
  const client = new BatchesClient({ apiKey: api.apiKey, ...(api.baseUrl ? { baseUrl: api.baseUrl } : {}) });
  try {
    await Promise.all(
      batches.map(async ({ batchId }) => {
        try {
          const batch = await client.cancel(batchId);
          say(`  ${batchId}: the API took the cancel (${batch.processing_status}); requests not yet processed will not be billed`);
        } catch (error) {
          say(`  ${batchId}: the cancel failed (${(error as Error).name}: ${(error as Error).message}); cancel it by id in the console`);
        }
      }),
    );
  } finally {
    await client.close();
  }
}
