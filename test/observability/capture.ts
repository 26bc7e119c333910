/**
 * What the handlers write while a test runs: every byte to stdout and stderr (Powertools writes its
 * log lines and EMF there), held back from the terminal and split into lines.
 *
 *   const out = await captureOutput(() => handler(event));
 *   out.logs    // Powertools log lines, parsed
 *   out.emf     // EMF metric lines, parsed
 *   out.text    // everything, raw, for "this never appears anywhere" checks
 */

export interface LogLine {
  level: string;
  message: string;
  service: string;
  handler?: string;
  jobId?: string;
  chunk?: number;
  attempt?: number;
  batchId?: string;
  [field: string]: unknown;
}

export interface EmfLine {
  _aws: { Timestamp: number; CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string; Unit: string }> }> };
  [field: string]: unknown;
}

export interface Captured {
  text: string;
  lines: string[];
  logs: LogLine[];
  emf: EmfLine[];
}

export interface CaptureResult<T> extends Captured {
  /** What the function returned, or undefined when it threw (see `error`). */
  result: T | undefined;
  error: unknown;
}

export async function captureOutput<T>(run: () => Promise<T>): Promise<CaptureResult<T>> {
  const chunks: string[] = [];
  const streams = [process.stdout, process.stderr];
  const originals = streams.map((stream) => stream.write);
  for (const stream of streams) {
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      const callback = rest.find((arg): arg is () => void => typeof arg === 'function');
      callback?.();
      return true;
    }) as typeof stream.write;
  }
  let result: T | undefined;
  let error: unknown;
  try {
    result = await run();
  } catch (thrown) {
    error = thrown;
  } finally {
    streams.forEach((stream, i) => {
      stream.write = originals[i]!;
    });
  }
  return { result, error, ...parse(chunks.join('')) };
}

function parse(text: string): Captured {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const objects = lines.flatMap((line) => {
    try {
      const value = JSON.parse(line) as unknown;
      return typeof value === 'object' && value !== null ? [value as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
  return {
    text,
    lines,
    logs: objects.filter((o): o is LogLine => typeof o.level === 'string' && typeof o.message === 'string'),
    emf: objects.filter((o): o is EmfLine => typeof o._aws === 'object' && o._aws !== null),
  };
}

/** One EMF line's metrics: name → value, and name → unit. */
export function metricsOf(line: EmfLine): { values: Record<string, unknown>; units: Record<string, string> } {
  const definitions = line._aws.CloudWatchMetrics.flatMap((set) => set.Metrics);
  return {
    values: Object.fromEntries(definitions.map((metric) => [metric.Name, line[metric.Name]])),
    units: Object.fromEntries(definitions.map((metric) => [metric.Name, metric.Unit])),
  };
}
