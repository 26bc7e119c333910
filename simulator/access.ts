/**
 * Who may call, and in which API version (docs/api-reference.md §1.2): the key comes as `x-api-key`
 * (SDK ≤ 0.x) or `Authorization: Bearer` (SDK ≥ 1.0); `anthropic-version` is required and is
 * `2023-06-01` or `2026-10-21`. `anthropic-beta` values are accepted whatever they are.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError } from './envelopes';

export const API_VERSIONS: readonly string[] = ['2023-06-01', '2026-10-21'];

function single(value: string | string[] | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  const trimmed = first?.trim();
  return trimmed === '' ? undefined : trimmed;
}

function apiKeyOf(headers: IncomingHttpHeaders): string | undefined {
  const direct = single(headers['x-api-key']);
  if (direct !== undefined) return direct;
  const authorization = single(headers.authorization);
  const bearer = authorization === undefined ? undefined : /^Bearer\s+(\S.*)$/i.exec(authorization);
  return bearer?.[1]?.trim();
}

/** Throws 401 when no key is given, or when `accepted` is set and does not hold the key. */
export function authenticate(headers: IncomingHttpHeaders, accepted: readonly string[] | undefined): void {
  const key = apiKeyOf(headers);
  if (key === undefined) {
    throw new ApiError(401, 'Missing API key: send an x-api-key header or Authorization: Bearer <key>');
  }
  if (accepted !== undefined && !accepted.includes(key)) {
    throw new ApiError(401, 'Invalid authentication credentials');
  }
}

export function checkVersion(headers: IncomingHttpHeaders): void {
  const version = single(headers['anthropic-version']);
  if (version === undefined) throw new ApiError(400, 'anthropic-version: header is required');
  if (!API_VERSIONS.includes(version)) {
    throw new ApiError(400, `anthropic-version: ${JSON.stringify(version)} is not a supported version (use ${API_VERSIONS.join(' or ')})`);
  }
}
