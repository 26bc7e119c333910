/**
 * Deterministic job ids: `<slug>-<16 hex>`. The slug makes an id readable (it is the input file's
 * name); the hash makes it unique per upload, so one S3 event delivered twice is one job while the
 * same name uploaded twice (a new version or sequencer) is two.
 */
import { createHash } from 'node:crypto';

const SLUG_MAX = 40;

/** The key's base name without its extension, lowercased, `[a-z0-9-]` only, at most 40 characters. */
export function jobSlug(key: string): string {
  const base = key.slice(key.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  const slug = stem
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // é → e, rather than a dash
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, SLUG_MAX)
    .replace(/-+$/, '');
  return slug === '' ? 'job' : slug;
}

/** The upload's identity: a version id when the bucket versions, else the event's sequencer, else the ETag. */
export interface ObjectIdentity {
  bucket: string;
  key: string;
  /** versionId ?? sequencer ?? etag */
  token: string;
}

export function jobIdFor(identity: ObjectIdentity): string {
  return `${jobSlug(identity.key)}-${sha256Hex([identity.bucket, identity.key, identity.token]).slice(0, 16)}`;
}

/** sha256 over a list of strings, JSON-encoded so no separator inside a value can make two lists collide. */
export function sha256Hex(parts: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/** S3 reports ETags quoted in headers and listings, bare in events: compare and hash them bare. */
export function bareEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}
