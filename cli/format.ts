/** How numbers, money, durations and paths read in the CLI's output. */
import path from 'node:path';

const integer = new Intl.NumberFormat('en-US');

export const count = (n: number | undefined): string => (n === undefined ? '–' : integer.format(n));

export function usd(amount: number | undefined): string {
  if (amount === undefined || !Number.isFinite(amount)) return '–';
  // Small jobs cost fractions of a cent: three significant figures say more than "$0.00".
  if (amount !== 0 && Math.abs(amount) < 1) return `$${Number(amount.toPrecision(3))}`;
  return `$${amount.toFixed(2)}`;
}

export function duration(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

export const plural = (n: number, word: string, many = `${word}s`): string => `${count(n)} ${n === 1 ? word : many}`;

/** A path relative to the working directory when it is inside it, else absolute. */
export function displayPath(cwd: string, target: string): string {
  const relative = path.relative(cwd, target);
  if (relative === '') return '.';
  return relative.startsWith('..') || path.isAbsolute(relative) ? target : relative;
}
