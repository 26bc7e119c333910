/**
 * The simulator against the request corpus (test/fixtures/request-corpus.ts), over HTTP as one
 * batch: every answer lands in the range the API's documented rules give, has the shape the API
 * gives (tool_use input valid against the tool's input_schema, thinking with a signature), and the
 * estimator's input tokens equal the simulated ones — by construction, since both count with
 * shared/cost/tokens.ts.
 */
import { Ajv } from 'ajv';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BatchResultLine, Message, Usage } from '../../shared/anthropic/types';
import { estimateInputTokens } from '../../shared/cost/cost';
import { ANSWERED, CORPUS, type CorpusEntry } from '../fixtures/request-corpus';
import { runBatch, useSimulators } from './fixtures';

const sims = useSimulators();
let lines: Map<string, BatchResultLine>;

beforeAll(async () => {
  const sim = await sims.start();
  lines = await runBatch(
    sim,
    CORPUS.map((entry) => ({ custom_id: entry.id, params: entry.params })),
    60,
  );
});

function messageOf(id: string): Message {
  const line = lines.get(id);
  if (line?.result.type !== 'succeeded') throw new Error(`${id}: expected succeeded, got ${JSON.stringify(line?.result)}`);
  return line.result.message;
}

const totalInput = (usage: Usage): number => usage.input_tokens + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0);
const blockTypes = (message: Message): string => message.content.map((block) => (block as { type: string }).type).join('+');
const SHAPES: Record<Exclude<CorpusEntry['reply'], 'errored'>, string> = {
  text: 'text',
  tool_use: 'tool_use',
  'text+tool_use': 'text+tool_use',
  'thinking+text': 'thinking+text',
};

describe('the simulator on realistic requests', () => {
  it.each(ANSWERED.map((entry) => [entry.id, entry] as const))('%s: input tokens in the documented range, reply of the API’s shape', (_id, entry) => {
    const message = messageOf(entry.id);
    const [low, high] = entry.input!;
    const total = totalInput(message.usage);
    expect(total).toBeGreaterThanOrEqual(low);
    expect(total).toBeLessThanOrEqual(high);
    expect(blockTypes(message)).toBe(SHAPES[entry.reply as keyof typeof SHAPES]);
    expect(message.usage.output_tokens).toBeLessThanOrEqual(entry.params.max_tokens);
  });

  it('estimates exactly the simulated input of every answered request', () => {
    for (const entry of ANSWERED) expect([entry.id, estimateInputTokens(entry.params)]).toEqual([entry.id, totalInput(messageOf(entry.id).usage)]);
  });

  it('calls tools with input that validates against their input_schema, and stops for tool_use', () => {
    const ajv = new Ajv({ strict: false, validateFormats: false });
    for (const entry of ANSWERED.filter((e) => e.reply.includes('tool_use'))) {
      const message = messageOf(entry.id);
      const call = message.content.find((block) => (block as { type: string }).type === 'tool_use') as { id: string; name: string; input: unknown };
      const tool = (entry.params.tools as Array<{ name: string; input_schema: object }>).find((t) => t.name === call.name)!;
      expect(ajv.validate(tool.input_schema, call.input), `${entry.id}: ${ajv.errorsText()}`).toBe(true);
      expect(call.id).toMatch(/^toolu_01[0-9A-Za-z]{22}$/);
      expect(message.stop_reason).toBe('tool_use');
    }
    const forced = messageOf('tool-forced').content[0] as { name: string };
    expect(forced.name).toBe('record_summary');
  });

  it('thinks within the budget, with a signature, and counts thinking as output', () => {
    const message = messageOf('thinking');
    const [thinking, text] = message.content as [{ type: string; thinking: string; signature: string }, { type: string; citations: unknown }];
    expect(thinking.signature).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(thinking.thinking.split(' ').length).toBe(message.usage.output_tokens_details!.thinking_tokens);
    expect(message.usage.output_tokens_details!.thinking_tokens).toBeLessThanOrEqual(10000);
    expect(message.usage.output_tokens).toBeGreaterThan(message.usage.output_tokens_details!.thinking_tokens!);
    expect(text.citations).toBeNull();
  });

  it('writes the cached system prompts, each billed at its TTL', () => {
    expect(messageOf('cached-system').usage.cache_creation).toEqual({ ephemeral_5m_input_tokens: expect.any(Number), ephemeral_1h_input_tokens: 0 });
    expect(messageOf('cached-system').usage.cache_creation_input_tokens).toBeGreaterThan(2000);
    expect(messageOf('cached-system-1h').usage.cache_creation?.ephemeral_1h_input_tokens).toBeGreaterThan(4096);
  });

  it.each(CORPUS.filter((entry) => entry.reply === 'errored').map((entry) => [entry.id, entry] as const))(
    '%s: errored with invalid_request_error naming the parameter',
    (_id, entry) => {
      const result = lines.get(entry.id)!.result;
      expect(result.type).toBe('errored');
      if (result.type !== 'errored') return;
      expect(result.error.error.type).toBe('invalid_request_error');
      expect(result.error.error.message.startsWith(`${entry.errorNames}:`)).toBe(true);
    },
  );
});
