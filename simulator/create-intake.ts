/**
 * Reads a create request's body as it arrives: counts bytes against the limit, feeds the streaming
 * parser, and keeps only each request's digest. Once the body is over the limit nothing more is
 * parsed or kept, and the caller answers 413 at once.
 */
import type { IncomingMessage } from 'node:http';
import { CreateBodyParser, InvalidBody } from './create-body';
import { ApiError } from './envelopes';
import type { ModelCatalog } from '../shared/validation/models';
import { MAX_REQUESTS, digestRequest, readRequestItem, type RequestDigest } from './request-digest';

export type Intake =
  | { kind: 'requests'; requests: RequestDigest[] }
  | { kind: 'too-large' }
  /** The client went away before the body ended. */
  | { kind: 'gone' };

export function tooLargeError(maxBodyBytes: number): ApiError {
  return new ApiError(413, `Request exceeds the maximum size of ${maxBodyBytes} bytes`);
}

/** Rejects with a 400 ApiError (after the whole body is read) when the body is not a valid create body. */
export function readCreateBody(req: IncomingMessage, maxBodyBytes: number, models: ModelCatalog): Promise<Intake> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBodyBytes) return Promise.resolve({ kind: 'too-large' });

  const profileHeader = req.headers['anthropic-user-profile-id'];
  const userProfileId = Array.isArray(profileHeader) ? profileHeader[0] : profileHeader;
  const seen = new Set<string>();
  let requests: RequestDigest[] = [];
  const parser = new CreateBodyParser((item, index) => {
    if (index >= MAX_REQUESTS) throw new InvalidBody(`requests: List should have at most ${MAX_REQUESTS} items`);
    const { customId, params } = readRequestItem(item, index, seen);
    requests.push(digestRequest(customId, params, userProfileId, models));
  });

  return new Promise((resolve, reject) => {
    let received = 0;
    let problem: string | null = null;
    const detach = (): void => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('close', onClose);
      req.resume(); // whatever still arrives is discarded
    };
    const fail = (error: unknown): void => {
      if (!(error instanceof InvalidBody)) {
        detach();
        reject(error);
        return;
      }
      problem = error.message;
      requests = [];
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > maxBodyBytes) {
        detach();
        requests = [];
        resolve({ kind: 'too-large' });
        return;
      }
      if (problem !== null) return; // read on to the end, so the 400 reaches a client still sending
      try {
        parser.write(chunk);
      } catch (error) {
        fail(error);
      }
    };
    const onEnd = (): void => {
      detach();
      if (problem === null) {
        try {
          parser.end();
        } catch (error) {
          fail(error);
        }
      }
      if (problem !== null) reject(new ApiError(400, problem));
      else if (requests.length === 0) reject(new ApiError(400, 'requests: List should have at least 1 item after validation, not 0'));
      else resolve({ kind: 'requests', requests });
    };
    const onClose = (): void => {
      if (req.complete) return;
      detach();
      requests = [];
      resolve({ kind: 'gone' });
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
  });
}
