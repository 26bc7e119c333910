import { describe, expect, it } from 'vitest';
import { CREATE_PIECE_BYTES, encodeCreateBody, newProgress } from '../../shared/anthropic/create-body';
import type { BatchRequest } from '../../shared/anthropic/types';

function request(id: string, text = 'hi'): BatchRequest {
  return { custom_id: id, params: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: text }] } };
}

async function collect(pieces: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const piece of pieces) out.push(piece);
  return out;
}

describe('encodeCreateBody', () => {
  it('writes {"requests":[...]} from objects and raw lines, trimming line ends and skipping blank lines', async () => {
    const progress = newProgress();
    const raw = Buffer.from(`${JSON.stringify(request('b'))}\r\n`);
    const body = Buffer.concat(await collect(encodeCreateBody([request('a'), raw, Buffer.from('  \n'), request('c')], progress, () => 42)));
    expect(JSON.parse(body.toString())).toEqual({ requests: [request('a'), request('b'), request('c')] });
    expect(progress).toEqual({ requests: 3, bytes: body.length, complete: true, completedAt: 42, sourceError: undefined });
  });

  it('reads an async source lazily and emits bounded pieces', async () => {
    let produced = 0;
    async function* many(): AsyncGenerator<BatchRequest> {
      for (let i = 0; i < 5000; i += 1) {
        produced += 1;
        yield request(`r${i}`, 'x'.repeat(100));
      }
    }
    const pieces = encodeCreateBody(many(), newProgress());
    const first = await pieces.next();
    expect(first.done).toBe(false);
    expect(produced).toBeLessThan(5000);
    const rest = await collect(pieces);
    const all = [first.value as Buffer, ...rest];
    expect(Math.max(...all.map((p) => p.length))).toBeLessThan(CREATE_PIECE_BYTES + 1024);
    expect(JSON.parse(Buffer.concat(all).toString()).requests).toHaveLength(5000);
  });

  it('is not complete until the consumer has taken the last piece', async () => {
    const progress = newProgress();
    const pieces = encodeCreateBody([request('a')], progress);
    await pieces.next();
    expect(progress.complete).toBe(false);
    expect((await pieces.next()).done).toBe(true);
    expect(progress.complete).toBe(true);
  });

  it('records a failing source as the source error', async () => {
    const progress = newProgress();
    async function* failing(): AsyncGenerator<BatchRequest> {
      yield request('a');
      throw new Error('S3 read failed');
    }
    await expect(collect(encodeCreateBody(failing(), progress))).rejects.toThrow('S3 read failed');
    expect((progress.sourceError?.error as Error).message).toBe('S3 read failed');
    expect(progress.complete).toBe(false);
  });
});
