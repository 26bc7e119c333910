/** Identifiers in the API's shapes: `msgbatch_01…`, `req_01…`, `msg_01…` (prefix + "01" + 22 base62 characters). */
import { randomBytes } from 'node:crypto';
import { seededRandom } from './prng';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = 22;

/**
 * Batch and request ids are random, not seeded: two simulators in one test process must never hand
 * out the same batch id (pipelines key their records by it). Nothing seeded depends on them.
 */
export function randomId(prefix: 'msgbatch_' | 'req_'): string {
  const bytes = randomBytes(BODY_LENGTH);
  let out = `${prefix}01`;
  for (const byte of bytes) out += BASE62[byte % 62];
  return out;
}

/** Derived ids (message ids in results) repeat with the seed, so results files are reproducible. */
export function derivedId(prefix: 'msg_' | 'toolu_', seed: number, ...parts: Array<string | number>): string {
  const random = seededRandom(seed, 'id', ...parts);
  let out = `${prefix}01`;
  for (let i = 0; i < BODY_LENGTH; i += 1) out += BASE62[Math.floor(random() * 62)];
  return out;
}
