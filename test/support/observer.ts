/** An observer for tests that keeps the log lines the core writes, to read what an operator would be told. */
import type { LogFields, Observer } from '../../shared/observability';

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  message: string;
  fields: LogFields;
}

export function logRecorder(): Observer & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    keys: () => undefined,
    info: (message, fields = {}) => lines.push({ level: 'info', message, fields }),
    warn: (message, fields = {}) => lines.push({ level: 'warn', message, fields }),
    error: (message, fields = {}) => lines.push({ level: 'error', message, fields }),
    metric: () => undefined,
  };
}
