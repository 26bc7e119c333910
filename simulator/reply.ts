/**
 * The Message a succeeded request gets: deterministic from the request (same prompt, model and
 * max_tokens → same text), plausible in shape, and never an echo of the prompt — the text names
 * only a hash of it. One word counts as one output token.
 */
import type { Message } from '../shared/anthropic/types';
import { derivedId } from './ids';
import type { CacheUsage } from './prompt-cache';
import { seededRandom } from './prng';
import type { RequestDigest } from './request-digest';

const FILLER = [
  'the',
  'batch',
  'result',
  'is',
  'ready',
  'and',
  'every',
  'request',
  'gets',
  'one',
  'answer',
  'here',
  'with',
  'a',
  'short',
  'note',
  'about',
  'tokens',
  'cost',
  'time',
  'order',
  'line',
  'file',
  'stream',
  'model',
  'reply',
  'text',
  'data',
  'in',
  'of',
  'to',
  'for',
  'on',
  'it',
  'this',
  'that',
  'plain',
  'simple',
];

/** How many words the model "wants" to say: 12–191, fixed by the prompt. */
function intendedLength(promptHash: string): number {
  return 12 + (Number.parseInt(promptHash.slice(0, 6), 16) % 180);
}

/** The first `limit` words of the reply the model "wants" to give. */
function replyWords(request: RequestDigest, limit: number): string[] {
  const words = ['Simulated', 'reply', 'to', 'prompt', `${request.promptHash}:`].slice(0, limit);
  const random = seededRandom(0, 'reply', request.promptHash);
  while (words.length < limit) words.push(FILLER[Math.floor(random() * FILLER.length)]!);
  return words;
}

export function replyMessage(request: RequestDigest, cache: CacheUsage, seed: number, sequence: number): Message {
  const intended = intendedLength(request.promptHash);
  const cut = intended > request.maxTokens;
  const words = replyWords(request, Math.min(intended, request.maxTokens));
  const created = cache.created5m + cache.created1h;
  return {
    id: derivedId('msg_', seed, sequence, request.customId),
    type: 'message',
    role: 'assistant',
    model: request.model,
    content: [{ type: 'text', text: `${words.join(' ')}${cut ? '' : '.'}` }],
    stop_reason: cut ? 'max_tokens' : 'end_turn',
    stop_sequence: null,
    stop_details: null,
    container: null,
    usage: {
      input_tokens: Math.max(0, request.inputTokens - cache.read - created),
      output_tokens: words.length,
      cache_creation_input_tokens: created,
      cache_read_input_tokens: cache.read,
      cache_creation: { ephemeral_5m_input_tokens: cache.created5m, ephemeral_1h_input_tokens: cache.created1h },
      server_tool_use: null,
      service_tier: 'batch',
      inference_geo: request.inferenceGeo,
      output_tokens_details: null,
    },
  };
}
