/**
 * What every response carries (docs/api-reference.md §1.3, §5): a `request-id`, the simulated
 * clock's `Date`, JSON with `Content-Type: application/json`, and errors in the API's envelope
 * with the type the status table gives.
 */
import type { ServerResponse } from 'node:http';
import type { ErrorEnvelope } from '../shared/anthropic/types';
import { httpDate } from './clock';

/** §5.2: status → error.type. Other 4xx are invalid_request_error, other 5xx api_error. */
const ERROR_TYPE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

export function errorTypeForStatus(status: number): string {
  return ERROR_TYPE_BY_STATUS[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

/** Thrown by handlers; the dispatcher answers it as an error envelope. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly type: string;
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.type = errorTypeForStatus(status);
  }
}

/** One HTTP exchange: its id, and the clock that dates the response. */
export interface Exchange {
  res: ServerResponse;
  requestId: string;
  now: () => number;
}

/** Headers every response gets, whatever its body. */
export function stampHeaders(exchange: Exchange): void {
  exchange.res.setHeader('request-id', exchange.requestId);
  // Node would stamp the real clock; the pipeline measures batch age on the server's clock.
  exchange.res.setHeader('Date', httpDate(exchange.now()));
}

export function sendJson(exchange: Exchange, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const { res } = exchange;
  const payload = Buffer.from(JSON.stringify(body));
  stampHeaders(exchange);
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', payload.length);
  res.end(payload);
}

export function errorEnvelope(type: string, message: string, requestId: string | null): ErrorEnvelope {
  return { type: 'error', error: { type, message }, request_id: requestId };
}

export function sendError(exchange: Exchange, error: ApiError, headers: Record<string, string> = {}): void {
  sendJson(exchange, error.status, errorEnvelope(error.type, error.message, exchange.requestId), {
    ...error.headers,
    ...headers,
  });
}
