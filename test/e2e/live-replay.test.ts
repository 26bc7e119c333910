/**
 * The live path through the whole pipeline without a key: the local stack in live mode (real time,
 * the real client) against a replay server (test/support/replay.ts) serving the recorded
 * conversation of test/anthropic/fixtures/recorded-conversation.json over HTTP, every header the API
 * sends included. The job must end as the recording says: two rows succeeded with the recorded
 * replies and usage, one errored with the recorded error, one batch created.
 */
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../local/runtime';
import { loadRecording, startReplay, type ReplayServer } from '../support/replay';
import { readJsonl } from './support';

const RECORDING = loadRecording(fileURLToPath(new URL('../anthropic/fixtures/recorded-conversation.json', import.meta.url)));
const CREATE = RECORDING.exchanges[0]!;
const RESULTS = RECORDING.exchanges.find((exchange) => exchange.response.jsonl !== undefined)!;

interface ResultRow {
  custom_id: string;
  status: string;
  batch_id: string;
  message?: { content: Array<{ text: string }>; usage: { input_tokens: number; output_tokens: number } };
  error?: { type: string; message: string };
}

describe('a live run replaying a recorded conversation', () => {
  let replay: ReplayServer;
  let stack: LocalStack;
  let dir: string;
  beforeAll(async () => {
    replay = await startReplay(RECORDING, 'routes');
    dir = await mkdtemp(path.join(tmpdir(), 'batchline-replay-'));
    stack = await startLocalStack({
      live: { apiKey: 'sk-ant-api03-replay-test-key', baseUrl: replay.url },
      // Live time is real: the Wait loop at its shortest instead of the poller's one-a-minute tick.
      settings: { poller: 'false', pollMinSeconds: 1 },
    });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    await replay?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ends the job as the recording says: the recorded replies, usage and error, one batch', async () => {
    const requests = (CREATE.request.body as { requests: Array<{ custom_id: string }> }).requests;
    const file = path.join(dir, 'tickets.jsonl');
    await writeFile(file, requests.map((request) => `${JSON.stringify(request)}\n`).join(''));

    const jobId = await stack.submitFile(file);
    const outcome = await stack.waitForJob(jobId);
    expect(replay.mismatches).toEqual([]);
    expect(outcome.status).toBe('succeeded');
    expect(outcome.summary?.counts).toMatchObject({ succeeded: 2, errored: 1, expired: 0, canceled: 0, invalid: 0 });
    expect(replay.requests.filter((r) => r.method === 'POST' && r.path === '/v1/messages/batches')).toHaveLength(1);

    const batchId = (CREATE.response.body as { id: string }).id;
    const recorded = new Map(
      (RESULTS.response.jsonl as Array<{ custom_id: string; result: { message?: ResultRow['message'] } }>).map((line) => [line.custom_id, line.result]),
    );
    const rows = await readJsonl<ResultRow>(stack, outcome.keys.results);
    expect(rows.map((row) => [row.custom_id, row.status, row.batch_id])).toEqual([
      ['ticket-1', 'succeeded', batchId],
      ['ticket-2', 'succeeded', batchId],
      ['ticket-3', 'errored', batchId],
    ]);
    for (const row of rows.filter((r) => r.status === 'succeeded')) {
      const message = recorded.get(row.custom_id)!.message!;
      expect(row.message?.content).toEqual(message.content);
      expect(row.message?.usage).toMatchObject({ input_tokens: message.usage.input_tokens, output_tokens: message.usage.output_tokens });
    }
    const errored = rows.find((row) => row.status === 'errored')!;
    expect(errored.error).toMatchObject({ type: 'invalid_request_error', message: 'prompt is too long: 210345 tokens > 200000 maximum' });
    // The pipeline sent the recorded requests (each custom_id replaced by its wire id), once.
    const sent = JSON.parse(replay.requests.find((r) => r.method === 'POST')!.body.toString('utf8')) as { requests: Array<{ params: unknown }> };
    expect(sent.requests.map((request) => request.params)).toEqual(requests.map((request) => (request as unknown as { params: unknown }).params));
  }, 120_000);
});
