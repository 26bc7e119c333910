/**
 * Register: one S3 object becomes one job record. The job id is derived from the upload, and the
 * record is written only if absent, so a duplicate event (S3 delivers at least once) ends quietly.
 */
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { PipelineConfig, ValidationMode } from '../config';
import { quietObserver, type Observer } from '../observability';
import { getItem, putItem } from '../store/dynamo';
import { JOB_SK, JOBS_GSI_PK, jobPk, ttlAfter, type JobItem } from '../store/items';
import { isS3NotFound } from '../store/s3';
import { bareEtag, jobIdFor } from './job-id';
import { parseRegisterEvent, type ObjectRef } from './events';
import { clockOf } from '../clock';
import type { RegisterOutput } from './contract';
import { jobToReuse, parseOnly, REUSE_METADATA, REUSE_ONLY_METADATA, ReuseNotPossible } from './reuse';
import { choosePrimeCache, PRIME_CACHE_METADATA } from './prime-cache';
import { DEADLINE_METADATA, resolveDeadline } from './deadline';

/** The object named by the event does not exist (deleted since, or a wrong key). */
export class SourceNotFound extends Error {
  override readonly name = 'SourceNotFound';
}

/** The object is no longer the upload the job was made for: it was overwritten (no versioning to pin it). */
export class SourceChanged extends Error {
  override readonly name = 'SourceChanged';
}

/** The object's `batchline-mode` metadata (or the input's mode) is not `strict` or `lenient`. */
export class InvalidMode extends Error {
  override readonly name = 'InvalidMode';
}

/** User metadata that sets a file's validation mode (`x-amz-meta-batchline-mode`). */
export const MODE_METADATA = 'batchline-mode';
/** User metadata that sets a file's budget in USD (`x-amz-meta-batchline-max-cost`), over the stack's maxCostUsd. */
export const MAX_COST_METADATA = 'batchline-max-cost';

/** The object's `batchline-max-cost` metadata is not an amount of dollars. */
export class InvalidBudget extends Error {
  override readonly name = 'InvalidBudget';
}

/** The margin a deadline gets when the config does not say (shared/config.ts deadlineMarginSeconds). */
const DEFAULT_DEADLINE_MARGIN_SECONDS = 1800;

export interface RegisterDeps {
  s3: S3Client;
  dynamo: DynamoDBClient;
  config: Pick<PipelineConfig, 'table' | 'validationMode' | 'rowTtlDays'> &
    Partial<Pick<PipelineConfig, 'maxCostUsd' | 'primeCache' | 'deadlineMarginSeconds'>>;
  /** The local clock (epoch ms). */
  now?: () => number;
  /** Where the step's log lines go (the handler's invocation). */
  observer?: Observer;
}

export async function registerJob(event: unknown, deps: RegisterDeps): Promise<RegisterOutput> {
  const ref = parseRegisterEvent(event);
  const head = await headSource(deps.s3, ref);
  const etag = bareEtag(ref.etag ?? head.etag ?? '');
  if (!ref.versionId && head.etag && bareEtag(head.etag) !== etag) {
    throw new SourceChanged(`s3://${ref.bucket}/${ref.key} was overwritten after this event (ETag ${etag}, now ${bareEtag(head.etag)})`);
  }
  // Pinning the version (when the bucket keeps versions) lets Prepare read exactly this upload.
  const versionId = ref.versionId ?? head.versionId;
  const token = versionId ?? ref.sequencer ?? etag;
  if (token === '') throw new SourceNotFound(`s3://${ref.bucket}/${ref.key} has no ETag, version or sequencer to name a job by`);
  const jobId = jobIdFor({ bucket: ref.bucket, key: ref.key, token });
  const observer = deps.observer ?? quietObserver;
  observer.keys({ jobId });
  const validationMode = chooseMode(head.metadata[MODE_METADATA], ref.mode, deps.config.validationMode);
  const maxCostUsd = chooseBudget(head.metadata[MAX_COST_METADATA], deps.config.maxCostUsd);
  const reuse = await chooseReuse(head.metadata, deps);
  const primeCache = choosePrimeCache(head.metadata[PRIME_CACHE_METADATA], deps.config.primeCache ?? false);

  const now = clockOf(deps)();
  const deadlineText = head.metadata[DEADLINE_METADATA];
  const marginSeconds = deps.config.deadlineMarginSeconds ?? DEFAULT_DEADLINE_MARGIN_SECONDS;
  const deadline =
    deadlineText === undefined
      ? undefined
      : { at: new Date(resolveDeadline(deadlineText, now, `the object's ${DEADLINE_METADATA} metadata`, marginSeconds)).toISOString(), marginSeconds };
  const createdAt = new Date(now).toISOString();
  const item: JobItem = {
    pk: jobPk(jobId),
    sk: JOB_SK,
    type: 'job',
    jobId,
    status: 'registered',
    bucket: ref.bucket,
    key: ref.key,
    etag,
    versionId,
    sourceToken: token,
    validationMode,
    ...(reuse ? { reuse } : {}),
    ...(maxCostUsd === undefined ? {} : { maxCostUsd }),
    ...(primeCache ? { primeCache } : {}),
    ...(deadline ? { deadline } : {}),
    createdAt,
    updatedAt: createdAt,
    executionArn: ref.executionArn,
    gsi1pk: JOBS_GSI_PK,
    gsi1sk: `${createdAt}#${jobId}`,
    ttl: ttlAfter(now, deps.config.rowTtlDays),
  };
  const logged = { bucket: ref.bucket, key: ref.key, validationMode, versioned: versionId !== undefined, reuse, maxCostUsd, deadline: deadline?.at };
  if (await putItem(deps.dynamo, deps.config.table, item, { ifAbsent: true })) {
    observer.info('registered', logged);
    return { jobId, duplicate: false };
  }

  // A Register retried after its write landed (the reply was lost) must carry on, not stop as a duplicate.
  if (ref.executionArn) {
    const existing = await getItem<JobItem>(deps.dynamo, deps.config.table, { pk: item.pk, sk: JOB_SK });
    if (existing?.executionArn === ref.executionArn) {
      observer.info('registered before, by this execution', logged);
      return { jobId, duplicate: false };
    }
  }
  observer.info('duplicate event: the job exists', logged);
  return { jobId, duplicate: true };
}

function chooseMode(metadata: string | undefined, requested: string | undefined, fallback: ValidationMode): ValidationMode {
  if (metadata !== undefined) return checkMode(metadata, `the object's ${MODE_METADATA} metadata`);
  if (requested !== undefined) return checkMode(requested, 'the requested mode');
  return fallback;
}

function chooseBudget(metadata: string | undefined, fallback: number | undefined): number | undefined {
  if (metadata === undefined) return fallback;
  const text = metadata.trim().replace(/^\$/, '');
  const usd = Number(text);
  if (text === '' || !Number.isFinite(usd) || usd < 0) {
    throw new InvalidBudget(`the object's ${MAX_COST_METADATA} metadata is "${metadata}"; use an amount of US dollars, e.g. 25 or 12.50`);
  }
  return usd;
}

/** `batchline-reuse: JOBID` (and `batchline-reuse-only: expired,api_error`): checked now, so a wrong id fails at once. */
async function chooseReuse(metadata: Record<string, string>, deps: RegisterDeps): Promise<{ fromJob: string; only?: string[] } | undefined> {
  const fromJob = metadata[REUSE_METADATA]?.trim();
  const onlyText = metadata[REUSE_ONLY_METADATA];
  if (!fromJob) {
    if (onlyText !== undefined) throw new ReuseNotPossible(`the object has ${REUSE_ONLY_METADATA} metadata but no ${REUSE_METADATA} naming the job`);
    return undefined;
  }
  await jobToReuse(deps.dynamo, deps.config.table, fromJob);
  const only = onlyText === undefined ? undefined : parseOnly(onlyText, `the object's ${REUSE_ONLY_METADATA} metadata`);
  return only ? { fromJob, only } : { fromJob };
}

function checkMode(value: string, what: string): ValidationMode {
  const mode = value.trim().toLowerCase();
  if (mode === 'strict' || mode === 'lenient') return mode;
  throw new InvalidMode(`${what} is "${value}"; use strict or lenient`);
}

async function headSource(s3: S3Client, ref: ObjectRef) {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key, VersionId: ref.versionId }));
    // An unversioned object in a bucket whose versioning was suspended reports version "null".
    const versionId = head.VersionId && head.VersionId !== 'null' ? head.VersionId : undefined;
    return { etag: head.ETag, versionId, metadata: lowerKeys(head.Metadata ?? {}) };
  } catch (error) {
    if (isS3NotFound(error)) {
      throw new SourceNotFound(`s3://${ref.bucket}/${ref.key}${ref.versionId ? ` (version ${ref.versionId})` : ''} does not exist`);
    }
    throw error;
  }
}

function lowerKeys(metadata: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k.toLowerCase(), v]));
}
