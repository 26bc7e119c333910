/**
 * Before a `--live` run starts the local stack: can the API be reached at all? Without a network
 * (no DNS, refused connection, a proxy that swallows the request) the pipeline would otherwise retry
 * its first create for minutes behind a spinner. Any HTTP answer counts as reachable: a refused key
 * (401) is the run's to report, and 429/5xx are retried by the pipeline as usual.
 */
import { request } from 'undici';
import { DEFAULT_ANTHROPIC_VERSION, DEFAULT_BASE_URL } from '../shared/anthropic/client';

const TIMEOUT_MS = 15_000;

/** The API could not be reached: nothing was sent. */
export class ApiUnreachable extends Error {
  override readonly name = 'ApiUnreachable';
}

/** Resolves when `baseUrl` answers over HTTP; ApiUnreachable, naming the cause, when it cannot be reached. */
export async function checkReachable(baseUrl: string | undefined, apiKey: string): Promise<void> {
  await probeApi(baseUrl, apiKey);
}

/** What the API answered to `GET /v1/messages/batches?limit=1`: a list call, free of charge. */
export interface ApiProbe {
  base: string;
  status: number;
  headers: Record<string, string>;
  /** The body parsed as JSON, when it was JSON. */
  body: unknown;
}

/**
 * One `GET /v1/messages/batches?limit=1` with the key (the cheapest call that shows the key, the
 * workspace and the batch limits; it creates nothing). ApiUnreachable when no HTTP answer comes.
 */
export async function probeApi(baseUrl: string | undefined, apiKey: string): Promise<ApiProbe> {
  const base = (baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(`${base}/v1/messages/batches?limit=1`);
  } catch {
    throw new ApiUnreachable(`ANTHROPIC_BASE_URL is not a URL: ${base}`);
  }
  try {
    const response = await request(url, {
      method: 'GET',
      headers: { 'x-api-key': apiKey, 'anthropic-version': DEFAULT_ANTHROPIC_VERSION },
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = await response.body.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      if (typeof value === 'string') headers[name.toLowerCase()] = value;
      else if (Array.isArray(value)) headers[name.toLowerCase()] = value.join(', ');
    }
    return { base, status: response.statusCode, headers, body };
  } catch (error) {
    throw new ApiUnreachable(`cannot reach ${base} (${causeOf(error)}): check the network, a proxy, or ANTHROPIC_BASE_URL; nothing was sent`);
  }
}

/** The most telling name of a network failure: ENOTFOUND, ECONNREFUSED, a timeout… */
function causeOf(error: unknown): string {
  const seen = new Set<unknown>();
  for (let e: unknown = error; e && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !code.startsWith('UND_ERR_')) return code;
  }
  const e = error as { code?: unknown; name?: unknown; message?: unknown };
  if (e?.name === 'TimeoutError' || e?.code === 'UND_ERR_CONNECT_TIMEOUT' || e?.code === 'UND_ERR_HEADERS_TIMEOUT')
    return `no answer in ${TIMEOUT_MS / 1000} s`;
  return typeof e?.code === 'string' ? e.code : String(e?.message ?? error);
}
