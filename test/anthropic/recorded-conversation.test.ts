/**
 * The client against a recorded conversation (fixtures/recorded-conversation.json): requests and
 * responses in the API's wire format with every header the API sends (request-id,
 * anthropic-organization-id, anthropic-workspace-id, rate limits, Cloudflare's), replayed over HTTP
 * in the recorded order. What the client sends must be what the recording holds; what it returns
 * must be what the API said.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import { ApiAuthError } from '../../shared/anthropic/errors';
import type { MessageBatch } from '../../shared/anthropic/types';
import { loadRecording, startReplay, type ReplayServer } from '../support/replay';

const RECORDING = loadRecording(fileURLToPath(new URL('./fixtures/recorded-conversation.json', import.meta.url)));
const KEY = 'sk-ant-api03-replay-test-key';
const [created, polled, ended, endedAgain, results, listed, refused] = RECORDING.exchanges;

let replay: ReplayServer | undefined;
afterEach(async () => {
  await replay?.stop();
  replay = undefined;
});

/** A recorded body as the replay serves it: the API's origin replaced by the replay server's. */
const served = <T>(body: unknown): T => JSON.parse(JSON.stringify(body).split(RECORDING.origin).join(replay!.url)) as T;

describe('the client, replaying a recorded conversation', () => {
  it('sends each request as recorded and reads each answer as the API gave it: create, two polls, results, list', async () => {
    replay = await startReplay(RECORDING, 'sequence');
    const client = new BatchesClient({ apiKey: KEY, baseUrl: replay.url, sleep: async () => {} });
    try {
      const requests = (created!.request.body as { requests: unknown[] }).requests;
      const batch = await client.create(requests as never, { maxRetries: 0 });
      expect(batch).toEqual(created!.response.body);

      const first = await client.retrieveWithTime(batch.id);
      expect(first.value).toEqual(polled!.response.body);
      // The API's clock, from its Date header, and its request id.
      expect(first.serverTime).toBe(Date.parse(polled!.response.headers.date!));
      expect(first.requestId).toBe(polled!.response.headers['request-id']);
      const last = await client.retrieve(batch.id);
      expect(last).toEqual(served<MessageBatch>(ended!.response.body));

      // As the SDK does, results reads the batch first for its results_url (on the API's origin, here the replay's).
      const lines = [];
      for await (const entry of client.results(batch.id)) lines.push(entry.line);
      expect(lines).toEqual(results!.response.jsonl);

      const page = await client.listPage({ limit: 1 });
      expect(page).toEqual(served(listed!.response.body));
    } finally {
      await client.close();
    }
    expect(replay.mismatches).toEqual([]);

    // What went on the wire, request by request, against what the recording holds.
    const sent = replay.requests;
    expect(sent.map((r) => `${r.method} ${r.path}`)).toEqual(
      [created, polled, ended, endedAgain, results, listed].map((exchange) => `${exchange!.request.method} ${exchange!.request.path}`),
    );
    expect(JSON.parse(sent[0]!.body.toString('utf8'))).toEqual(created!.request.body);
    for (const request of sent) {
      expect(request.headers['x-api-key']).toBe(KEY);
      expect(request.headers['anthropic-version']).toBe('2023-06-01');
    }
    expect(sent[0]!.headers['content-type']).toBe('application/json');
  });

  it('reads a refused key (401, with the request id of the error envelope) as ApiAuthError, not retried', async () => {
    replay = await startReplay({ ...RECORDING, exchanges: [refused!] }, 'sequence');
    const client = new BatchesClient({ apiKey: KEY, baseUrl: replay.url, sleep: async () => {} });
    try {
      const error = await client.listPage({ limit: 1 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ApiAuthError);
      expect(error).toMatchObject({ status: 401, requestId: refused!.response.headers['request-id'] });
      expect(String((error as Error).message)).not.toContain(KEY);
    } finally {
      await client.close();
    }
    expect(replay.requests).toHaveLength(1);
  });
});
