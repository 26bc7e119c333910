import { describe, expect, it } from 'vitest';
import {
  ApiAuthError,
  ApiFailed,
  ApiNotFound,
  ApiRequestInvalid,
  ApiRetryable,
  BatchTooLarge,
  errorClassFor,
  errorFromResponse,
  scrubbedCause,
} from '../../shared/anthropic/errors';

const KEY = 'sk-ant-api03-unit-test-key-000';

function envelope(type: string, message: string, requestId = 'req_01'): string {
  return JSON.stringify({ type: 'error', error: { type, message }, request_id: requestId });
}

describe('errorClassFor', () => {
  it.each([
    [400, ApiRequestInvalid],
    [401, ApiAuthError],
    [402, ApiRequestInvalid],
    [403, ApiAuthError],
    [404, ApiNotFound],
    [408, ApiRetryable],
    [409, ApiRetryable],
    [413, BatchTooLarge],
    [422, ApiRequestInvalid],
    [429, ApiRetryable],
    [500, ApiRetryable],
    [529, ApiRetryable],
  ])('maps status %i to its class', (status, cls) => {
    expect(errorClassFor(status, {})).toBe(cls);
  });

  it('follows x-should-retry before the status', () => {
    expect(errorClassFor(500, { 'x-should-retry': 'false' })).toBe(ApiFailed);
    expect(errorClassFor(429, { 'x-should-retry': 'false' })).toBe(ApiRequestInvalid);
    expect(errorClassFor(400, { 'x-should-retry': 'true' })).toBe(ApiRetryable);
  });
});

describe('errorFromResponse', () => {
  it("keeps the server's error type, message and request id, under the class's name", () => {
    const error = errorFromResponse({ status: 429, headers: { 'request-id': 'req_header' }, body: envelope('rate_limit_error', 'Slow down', 'req_body') }, [
      KEY,
    ]);
    expect(error).toBeInstanceOf(ApiRetryable);
    expect(error.name).toBe('ApiRetryable');
    expect(error.message).toBe('429 rate_limit_error: Slow down');
    expect(error.status).toBe(429);
    expect(error.type).toBe('rate_limit_error');
    expect(error.requestId).toBe('req_body');
  });

  it('keeps the start of a body that is not the API envelope, and the header request id', () => {
    const error = errorFromResponse({ status: 413, headers: { 'request-id': 'req_h' }, body: '<html>413 Request Entity Too Large</html>' }, [KEY]);
    expect(error).toBeInstanceOf(BatchTooLarge);
    expect(error.message).toBe('413 error: <html>413 Request Entity Too Large</html>');
    expect(error.type).toBeUndefined();
    expect(error.requestId).toBe('req_h');
  });

  it('never carries the key, even when the server echoes it', () => {
    const error = errorFromResponse({ status: 401, headers: {}, body: envelope('authentication_error', `invalid x-api-key: ${KEY}`, `req_${KEY}`) }, [KEY]);
    expect(error).toBeInstanceOf(ApiAuthError);
    expect(error.message).toBe('401 authentication_error: invalid x-api-key: [redacted]');
    for (const text of [error.message, error.stack ?? '', JSON.stringify(error), String(error.requestId)]) {
      expect(text).not.toContain(KEY);
    }
  });
});

describe('scrubbedCause', () => {
  it('keeps name, code and a scrubbed message, and nothing else', () => {
    const original = Object.assign(new Error(`connect failed for ${KEY}`), {
      name: 'SocketError',
      code: 'UND_ERR_SOCKET',
      socket: { headers: { 'x-api-key': KEY } },
    });
    const copy = scrubbedCause(original, [KEY]);
    expect(copy.name).toBe('SocketError');
    expect((copy as Error & { code?: string }).code).toBe('UND_ERR_SOCKET');
    expect(copy.message).toBe('connect failed for [redacted]');
    expect(JSON.stringify(copy) + copy.stack).not.toContain(KEY);
    expect(copy).not.toHaveProperty('socket');
  });
});
