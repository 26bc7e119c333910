/**
 * A rerun starts the way every job starts: an object under inbox/. The finished job's input (the
 * very version it was registered for) is copied inside S3 to a new key, with metadata naming the
 * job to reuse (shared/jobs/reuse.ts) and, if asked, the statuses to send again and a budget. The
 * stack's trigger then starts a job as for any upload, deployed or local, and Prepare sends only the
 * rows that did not succeed (docs/architecture.md, "Re-running without paying twice").
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CopyObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { inboxKey, type Prefixes } from '../store/keys';
import { JSONL_CONTENT_TYPE } from '../store/s3';
import { bareEtag } from './job-id';
import type { UploadedObject } from './queries';
import { MAX_COST_METADATA, MODE_METADATA } from './register-job';
import { jobToReuse, REUSE_METADATA, REUSE_ONLY_METADATA } from './reuse';

export interface RerunOptions {
  /** Send again only rows with these statuses or error types (the other failures are reused as they are). */
  only?: readonly string[];
  /** The new job's budget in USD. */
  maxCostUsd?: number;
  /** Names the copy (default now). */
  at?: Date;
}

/** The object metadata that makes an upload reuse `fromJob`'s rows (and set a budget). */
export function reuseMetadata(fromJob: string, options: Pick<RerunOptions, 'only' | 'maxCostUsd'> = {}): Record<string, string> {
  return {
    [REUSE_METADATA]: fromJob,
    ...(options.only ? { [REUSE_ONLY_METADATA]: options.only.join(',') } : {}),
    ...(options.maxCostUsd === undefined ? {} : { [MAX_COST_METADATA]: String(options.maxCostUsd) }),
  };
}

/**
 * The key a rerun's copy goes to: `<inbox prefix><name>.rerun-<UTC time>-<random>.jsonl`, beside the inbox's
 * other files. Unique per rerun: two reruns of one job in the same second would otherwise copy the
 * same bytes to the same key, the second overwriting the input of the first while it runs, and both
 * uploads would look like one (same key, same ETag).
 */
export function rerunKey(sourceKey: string, at: Date, unique: string = randomBytes(4).toString('hex'), prefixes?: Prefixes): string {
  const stem = path.posix.basename(sourceKey).replace(/\.jsonl$/i, '');
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return inboxKey(`${stem}.rerun-${stamp}-${unique}.jsonl`, prefixes);
}

/**
 * Copies the input `jobId` was registered for into the inbox (the stack's, `deps.prefixes`) with the
 * reuse metadata: the upload that starts the rerun. Objects up to 5 GB (S3's single copy limit); a
 * larger input is rerun by uploading it again with `--reuse`.
 */
export async function startRerun(
  deps: { s3: S3Client; dynamo: DynamoDBClient; bucket: string; table: string; prefixes?: Prefixes },
  jobId: string,
  options: RerunOptions = {},
): Promise<UploadedObject> {
  const job = await jobToReuse(deps.dynamo, deps.table, jobId);
  const key = rerunKey(job.key, options.at ?? new Date(), undefined, deps.prefixes);
  const source = `${job.bucket}/${encodeURIComponent(job.key).replace(/%2F/g, '/')}${job.versionId ? `?versionId=${encodeURIComponent(job.versionId)}` : ''}`;
  const copied = await deps.s3.send(
    new CopyObjectCommand({
      Bucket: deps.bucket,
      Key: key,
      CopySource: source,
      // Not the same bytes any more: the copy would start a job for other rows than the ones reused.
      CopySourceIfMatch: job.versionId ? undefined : `"${job.etag}"`,
      MetadataDirective: 'REPLACE',
      ContentType: JSONL_CONTENT_TYPE,
      Metadata: { [MODE_METADATA]: job.validationMode, ...reuseMetadata(jobId, options) },
    }),
  );
  return {
    bucket: deps.bucket,
    key,
    etag: bareEtag(copied.CopyObjectResult?.ETag ?? ''),
    versionId: copied.VersionId && copied.VersionId !== 'null' ? copied.VersionId : undefined,
  };
}
