/**
 * The one fixture builder for input requests and JSONL files.
 *   request('row-1')                              → a minimal valid {custom_id, params}
 *   request('row-2', { max_tokens: 0 })           → params overridden (undefined removes a param)
 *   jsonl([request('a'), '{"raw": true}', Buffer.from([0xff])], { eol: '\r\n', bom: true })
 *   await collectLines(jsonl(rows), { pieceSize: 7 })  → RawLines, fed through splitLines in pieces
 */
import type { BatchRequest, MessageParams } from '../../shared/anthropic/types';
import { splitLines, type RawLine } from '../../shared/jsonl/lines';

export const DEFAULT_MODEL = 'claude-haiku-4-5';

/** Params override: any value, of any type, so invalid requests are built the same way as valid ones. */
export type ParamsOverrides = Record<string, unknown>;

export function params(overrides: ParamsOverrides = {}): MessageParams {
  const merged: Record<string, unknown> = {
    model: DEFAULT_MODEL,
    max_tokens: 64,
    messages: [{ role: 'user', content: 'Say hello.' }],
    ...overrides,
  };
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  return merged as MessageParams;
}

/** A valid request; `overrides` replace or (with undefined) remove params. */
export function request(customId: string, overrides: ParamsOverrides = {}): BatchRequest {
  return { custom_id: customId, params: params(overrides) };
}

/** `count` valid requests with ids `<prefix>-00000`, `<prefix>-00001`, … */
export function requests(count: number, prefix = 'row'): BatchRequest[] {
  return Array.from({ length: count }, (_, i) => request(`${prefix}-${String(i).padStart(5, '0')}`));
}

export interface JsonlOptions {
  eol?: '\n' | '\r\n';
  /** Start with a UTF-8 byte order mark. */
  bom?: boolean;
  /** End the last line with `eol` (default true). */
  trailingNewline?: boolean;
}

/**
 * A JSONL file: objects are serialized, strings are taken as a line's text as-is, Buffers as its
 * raw bytes (for invalid UTF-8 and the like).
 */
export function jsonl(rows: ReadonlyArray<unknown>, options: JsonlOptions = {}): Buffer {
  const eol = Buffer.from(options.eol ?? '\n');
  const parts: Buffer[] = options.bom ? [Buffer.from([0xef, 0xbb, 0xbf])] : [];
  rows.forEach((row, i) => {
    parts.push(Buffer.isBuffer(row) ? row : Buffer.from(typeof row === 'string' ? row : JSON.stringify(row)));
    if (i < rows.length - 1 || (options.trailingNewline ?? true)) parts.push(eol);
  });
  return Buffer.concat(parts);
}

/** Splits a buffer into pieces of `size` bytes, the way a network stream would hand them over. */
export async function* pieces(bytes: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** The lines of a file as the pipeline sees them: through splitLines, fed in pieces. */
export function lines(bytes: Buffer, options: { pieceSize?: number } = {}): AsyncGenerator<RawLine> {
  return splitLines(pieces(bytes, options.pieceSize));
}

export async function collectLines(bytes: Buffer, options: { pieceSize?: number } = {}): Promise<RawLine[]> {
  const all: RawLine[] = [];
  for await (const line of lines(bytes, options)) all.push(line);
  return all;
}
