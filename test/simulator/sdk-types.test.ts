/**
 * The official SDKs' types accept every reply the simulator gives: the corpus's batch results
 * lines and a Messages call's reply are written into a TypeScript file as typed constants (with
 * excess-property checks, so a field the SDK does not know fails too) and `tsc` checks it against
 * both generations, @anthropic-ai/sdk 1.12.0 and 0.137.0 (the `@anthropic-ai/sdk-0137` alias).
 * A reply with a field missing must fail the same check: the test can fail.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchesClient } from '../../shared/anthropic/client';
import type { BatchResultLine, Message } from '../../shared/anthropic/types';
import { CORPUS } from '../fixtures/request-corpus';
import { API_KEY, request, runBatch, useSimulators } from './fixtures';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const SDKS = { sdk112: '@anthropic-ai/sdk', sdk0137: '@anthropic-ai/sdk-0137' } as const;

const sims = useSimulators();
let dir: string;
let lines: BatchResultLine[];
let sync: Message;

beforeAll(async () => {
  // A folder outside the checkout that still resolves the project's node_modules.
  dir = await mkdtemp(path.join(tmpdir(), 'batchline-sdk-types-'));
  await symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const tsconfig = {
    compilerOptions: { target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', strict: true, skipLibCheck: true, noEmit: true, types: [] },
    include: ['*.ts'],
  };
  await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));

  const sim = await sims.start();
  lines = [
    ...(
      await runBatch(
        sim,
        CORPUS.map((entry) => ({ custom_id: entry.id, params: entry.params })),
        60,
      )
    ).values(),
  ];
  const client = new BatchesClient({ apiKey: API_KEY, baseUrl: sim.url, maxRetries: 0 });
  sync = await client.createMessage(
    request('sync', { tools: [{ name: 'lookup', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }] }).params,
  );
  await client.close();
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** A .ts file typing `lines` and `messages` with one SDK's types. */
function typedFile(sdk: string, batchLines: unknown[], messages: unknown[]): string {
  return [
    `import type { MessageBatchIndividualResponse } from '${sdk}/resources/messages/batches';`,
    `import type { Message } from '${sdk}/resources/messages/messages';`,
    `export const lines: MessageBatchIndividualResponse[] = ${JSON.stringify(batchLines, null, 1)};`,
    `export const messages: Message[] = ${JSON.stringify(messages, null, 1)};`,
    '',
  ].join('\n');
}

async function typecheck(files: Record<string, string>): Promise<{ ok: boolean; output: string }> {
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  try {
    await run(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', path.join(dir, 'tsconfig.json')], { cwd: dir });
    return { ok: true, output: '' };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('the SDK types accept the simulator’s replies', () => {
  it('every results line of the corpus and a Messages reply, with both SDK generations', async () => {
    expect(lines.map((line) => line.result.type)).toContain('errored');
    expect(lines.filter((line) => line.result.type === 'succeeded').length).toBeGreaterThan(10);
    const checked = await typecheck({
      'replies-sdk112.ts': typedFile(SDKS.sdk112, lines, [sync]),
      'replies-sdk0137.ts': typedFile(SDKS.sdk0137, lines, [sync]),
    });
    expect(checked.output).toBe('');
    expect(checked.ok).toBe(true);
  });

  it('rejects a reply missing a field the SDK requires (the check can fail)', async () => {
    const broken = structuredClone(sync) as unknown as { content: Array<Record<string, unknown>>; usage: Record<string, unknown> };
    delete broken.usage.speed;
    const checked = await typecheck({
      'replies-sdk112.ts': typedFile(SDKS.sdk112, [], [broken]),
      'replies-sdk0137.ts': typedFile(SDKS.sdk0137, [], [sync]),
    });
    expect(checked.ok).toBe(false);
    expect(checked.output).toContain('replies-sdk112.ts');
    expect(checked.output).toContain('speed');
  });
});
