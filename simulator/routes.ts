/** Maps method + path onto the six batch endpoints and Messages (docs/api-reference.md §1, §10). Query strings are the caller's. */
import type { Endpoint } from './options';
import { ApiError } from './envelopes';

export interface Route {
  endpoint: Endpoint;
  batchId: string | null;
}

const MESSAGES = /^\/v1\/messages\/?$/;
const COLLECTION = /^\/v1\/messages\/batches\/?$/;
const ITEM = /^\/v1\/messages\/batches\/([^/]+)\/?$/;
const ACTION = /^\/v1\/messages\/batches\/([^/]+)\/(cancel|results)\/?$/;

function decodeId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError(404, `No batch with id ${JSON.stringify(raw)}`);
  }
}

function allow(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) {
    throw new ApiError(405, `Method ${method} is not allowed here (allowed: ${allowed.join(', ')})`, {
      Allow: allowed.join(', '),
    });
  }
}

/** Throws 404 for paths outside the Batches API and 405 for a known path with the wrong method. */
export function route(method: string, pathname: string): Route {
  if (MESSAGES.test(pathname)) {
    allow(method, ['POST']);
    return { endpoint: 'messages', batchId: null };
  }
  if (COLLECTION.test(pathname)) {
    allow(method, ['GET', 'POST']);
    return { endpoint: method === 'POST' ? 'create' : 'list', batchId: null };
  }
  const action = ACTION.exec(pathname);
  if (action) {
    const isCancel = action[2] === 'cancel';
    allow(method, [isCancel ? 'POST' : 'GET']);
    return { endpoint: isCancel ? 'cancel' : 'results', batchId: decodeId(action[1]!) };
  }
  const item = ITEM.exec(pathname);
  if (item) {
    allow(method, ['GET', 'DELETE']);
    return { endpoint: method === 'DELETE' ? 'delete' : 'retrieve', batchId: decodeId(item[1]!) };
  }
  throw new ApiError(404, `Not found: ${method} ${pathname}`);
}
