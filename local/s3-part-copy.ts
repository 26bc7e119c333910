/**
 * What s3rver lacks of S3's multipart uploads, added in front of it (a Koa middleware, no fork):
 *
 * - UploadPartCopy (PUT ?partNumber&uploadId with x-amz-copy-source, and x-amz-copy-source-range),
 *   which s3rver refuses with NotImplemented. FinalizeJob joins a job's per-chunk files with it
 *   (shared/store/concat.ts); moto_server and S3 have it natively.
 * - S3's rule that every part but the last is at least 5 MiB: s3rver completes an upload of any
 *   parts, S3 refuses it with EntityTooSmall. Checked here, so a join that breaks the rule fails
 *   locally as it would on AWS.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

/** S3's smallest part but the last. */
const MIN_PART_BYTES = 5 * 1024 * 1024;

interface S3rverStore {
  getObject(bucket: string, key: string, options?: { start?: number; end?: number }): Promise<{ content: Readable | null; size: number } | null>;
  putPart(bucket: string, uploadId: string, partNumber: number, content: Readable): Promise<{ md5: string }>;
  getResourcePath(bucket: string, key: string | undefined, resourceType: string): string;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
  store: S3rverStore;
}

type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

/** Puts the middleware in front of s3rver's own (a Koa app composes its middleware on listen). */
export function addPartCopy(server: { middleware: Middleware[] }): void {
  server.middleware.unshift(partCopy);
}

const partCopy: Middleware = async (ctx, next) => {
  const uploadId = single(ctx.query.uploadId);
  if (uploadId === undefined) return next();
  if (ctx.method === 'PUT' && ctx.headers['x-amz-copy-source'] !== undefined) return copyPart(ctx, uploadId);
  if (ctx.method === 'POST') {
    const tooSmall = await firstSmallPart(ctx, uploadId);
    if (tooSmall !== undefined) {
      return fail(ctx, 400, 'EntityTooSmall', `Your proposed upload is smaller than the minimum allowed object size (part ${tooSmall}).`);
    }
  }
  return next();
};

async function copyPart(ctx: KoaContext, uploadId: string): Promise<void> {
  const [bucket] = ctx.path.slice(1).split('/');
  const partNumber = Number(single(ctx.query.partNumber));
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000)
    return fail(ctx, 400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000');
  const source = decodeURIComponent(single(ctx.headers['x-amz-copy-source']) ?? '')
    .replace(/^\//, '')
    .replace(/\?versionId=.*$/, '');
  const slash = source.indexOf('/');
  const [sourceBucket, sourceKey] = [source.slice(0, slash), source.slice(slash + 1)];
  const rangeHeader = single(ctx.headers['x-amz-copy-source-range']);
  let range: { start: number; end: number } | undefined;
  if (rangeHeader !== undefined) {
    const match = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader);
    if (!match) return fail(ctx, 400, 'InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last');
    range = { start: Number(match[1]), end: Number(match[2]) };
  }
  const object = await ctx.store.getObject(sourceBucket!, sourceKey!, range);
  if (!object) return fail(ctx, 404, 'NoSuchKey', 'The specified key does not exist.');
  if (range && (range.end < range.start || range.end >= object.size)) {
    object.content?.destroy();
    return fail(ctx, 416, 'InvalidRange', 'The requested range is not satisfiable');
  }
  const { md5 } = await ctx.store.putPart(bucket!, uploadId, partNumber, object.content!);
  ctx.status = 200;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>' + `<CopyPartResult><LastModified>${new Date().toISOString()}</LastModified><ETag>"${md5}"</ETag></CopyPartResult>`;
}

/** The number of an uploaded part under 5 MiB that is not the last, if any. */
async function firstSmallPart(ctx: KoaContext, uploadId: string): Promise<number | undefined> {
  const [bucket] = ctx.path.slice(1).split('/');
  const dir = path.join(ctx.store.getResourcePath(bucket!, undefined, 'uploads'), uploadId);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  const numbers = names
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .sort((a, b) => a - b);
  for (const number of numbers.slice(0, -1)) {
    if ((await stat(path.join(dir, String(number)))).size < MIN_PART_BYTES) return number;
  }
  return undefined;
}

function fail(ctx: KoaContext, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
