/**
 * Errors of the Batches client. Each class's `name` is the error name a Step Functions Retry or
 * Catch matches (Lambda reports a thrown error by its `name`).
 *
 * The API key never appears in an error: every message is scrubbed of it (a server may echo it),
 * no raw body or header is kept, and a `cause` is either one of these errors or a scrubbed copy.
 */
import { type HeaderBag, headerValue, shouldRetryResponse } from './retry';

export interface AnthropicErrorDetails {
  /** HTTP status; undefined for connection errors and client-side checks. */
  status?: number;
  /** The server's `error.type` (e.g. `rate_limit_error`). */
  type?: string;
  requestId?: string | null;
  cause?: unknown;
}

export class AnthropicError extends Error {
  override name: string = 'AnthropicError';
  readonly status: number | undefined;
  readonly type: string | undefined;
  readonly requestId: string | null;

  constructor(message: string, details: AnthropicErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.status = details.status;
    this.type = details.type;
    this.requestId = details.requestId ?? null;
  }
}

/** Transient (408/409/429/5xx/529, timeouts, connection errors): worth trying again later. */
export class ApiRetryable extends AnthropicError {
  override name = 'ApiRetryable';
}

/** 401/403: the key is wrong, revoked or lacks permission. */
export class ApiAuthError extends AnthropicError {
  override name = 'ApiAuthError';
}

/** 413: the create body is over the API's limit (256 MB). */
export class BatchTooLarge extends AnthropicError {
  override name = 'BatchTooLarge';
}

/** 400, 402, 422 and any other 4xx not worth retrying. */
export class ApiRequestInvalid extends AnthropicError {
  override name = 'ApiRequestInvalid';
}

/** A 5xx the server marked `x-should-retry: false`: final, though not the request's fault. */
export class ApiFailed extends AnthropicError {
  override name = 'ApiFailed';
}

/** 404 outside the grace window after create: no such batch (or it was deleted). */
export class ApiNotFound extends AnthropicError {
  override name = 'ApiNotFound';
}

/** A 2xx whose body is not what the API sends (not JSON, a bad Content-Range, a broken results line). */
export class ApiResponseInvalid extends AnthropicError {
  override name = 'ApiResponseInvalid';
}

/** results() on a batch with no results_url yet. */
export class ResultsNotReady extends AnthropicError {
  override name = 'ResultsNotReady';
}

/** The API key could not be read: the secret is missing or empty. */
export class ApiKeyMissing extends AnthropicError {
  override name = 'ApiKeyMissing';
}

export interface OutcomeUnknownDetails extends AnthropicErrorDetails {
  /** Requests in the body that was sent (to recognise the batch among recent ones). */
  requests: number;
  /** Body bytes sent. */
  bytes: number;
  /** Local epoch ms when the body had been handed to the socket. */
  sentAt: number;
}

/**
 * create sent its whole body, then lost the connection (or timed out) before a response: the batch
 * may or may not exist. The caller must look for it (adopt) rather than create a second one.
 */
export class OutcomeUnknown extends AnthropicError {
  override name = 'OutcomeUnknown';
  readonly requests: number;
  readonly bytes: number;
  readonly sentAt: number;

  constructor(message: string, details: OutcomeUnknownDetails) {
    super(message, details);
    this.requests = details.requests;
    this.bytes = details.bytes;
    this.sentAt = details.sentAt;
  }
}

const REDACTED = '[redacted]';

/** Removes every secret from a text. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join(REDACTED);
  }
  return out;
}

/**
 * A safe stand-in for a low-level error (undici, socket, AWS SDK): keeps its name, code and
 * scrubbed message, drops everything else (request objects, headers, sockets).
 */
export function scrubbedCause(err: unknown, secrets: readonly string[]): Error {
  if (err instanceof AnthropicError) return err;
  const source = err instanceof Error ? err : new Error(String(err));
  const copy = new Error(scrub(source.message, secrets));
  copy.name = source.name;
  copy.stack = `${copy.name}: ${copy.message}`;
  const code = (source as { code?: unknown }).code;
  if (typeof code === 'string') (copy as Error & { code?: string }).code = code;
  return copy;
}

type ErrorClass = new (message: string, details: AnthropicErrorDetails) => AnthropicError;

/** Which class an HTTP error response becomes once the client stops retrying it. */
export function errorClassFor(status: number, headers?: HeaderBag): ErrorClass {
  if (shouldRetryResponse(status, headers)) return ApiRetryable;
  if (status === 401 || status === 403) return ApiAuthError;
  if (status === 404) return ApiNotFound;
  if (status === 413) return BatchTooLarge;
  return status >= 500 ? ApiFailed : ApiRequestInvalid;
}

export interface ErrorResponse {
  status: number;
  headers: HeaderBag;
  /** The response body as text (possibly cut short); not kept on the error. */
  body: string;
}

/** Builds the typed error for an HTTP error response, keeping the server's error.type and message. */
export function errorFromResponse(
  response: ErrorResponse,
  secrets: readonly string[],
  errorClass: ErrorClass = errorClassFor(response.status, response.headers),
): AnthropicError {
  let type: string | undefined;
  let serverMessage: string | undefined;
  let requestId: string | null = headerValue(response.headers, 'request-id') ?? null;
  try {
    const parsed = JSON.parse(response.body) as {
      error?: { type?: unknown; message?: unknown };
      request_id?: unknown;
    };
    if (typeof parsed?.error?.type === 'string') type = parsed.error.type;
    if (parsed?.error?.message !== undefined) {
      serverMessage = typeof parsed.error.message === 'string' ? parsed.error.message : JSON.stringify(parsed.error.message);
    }
    if (typeof parsed?.request_id === 'string') requestId = parsed.request_id;
  } catch {
    // Not the API's envelope (a proxy page, a Cloudflare 413): keep the start of the text.
  }
  if (serverMessage === undefined) {
    const text = response.body.trim().slice(0, 500);
    serverMessage = text === '' ? '(no body)' : text;
  }
  const message = `${response.status} ${type ?? 'error'}: ${serverMessage}`;
  return new errorClass(scrub(message, secrets), {
    status: response.status,
    type,
    requestId: requestId === null ? null : scrub(requestId, secrets),
  });
}
