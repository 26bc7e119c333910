/**
 * The Message a succeeded request gets: deterministic from the request (same prompt, model and
 * max_tokens → same text), plausible in shape (text, thinking, tool_use blocks as the SDK types
 * them), and never an echo of the prompt — the text names only a hash of it.
 */
import { createHash } from 'node:crypto';
import type { Message } from '../shared/anthropic/types';
import { textTokens } from '../shared/cost/tokens';
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

/** A signature for a thinking block: opaque, base64, fixed by the prompt (never checked by the simulator). */
function signature(request: RequestDigest): string {
  return createHash('sha256').update(`thinking:${request.model}:${request.promptHash}`).digest('base64');
}

function words(request: RequestDigest, label: string, count: number): string[] {
  const random = seededRandom(0, label, request.promptHash);
  return Array.from({ length: count }, () => FILLER[Math.floor(random() * FILLER.length)]!);
}

export interface ReplyOptions {
  id: string;
  /** `usage.service_tier`: 'batch' in a results file, 'standard' for a Messages call. */
  serviceTier: 'batch' | 'standard';
}

/**
 * The reply: a thinking block first when thinking is on (up to its budget), then a tool call
 * (after a short text with tool_choice auto) or text. Output never passes max_tokens: what does not
 * fit is cut and the stop reason is max_tokens. One word, and one token of a tool call's JSON by
 * the shared text rule, is one output token.
 */
export function replyMessage(request: RequestDigest, cache: CacheUsage, options: ReplyOptions): Message {
  const plan = request.reply;
  const content: unknown[] = [];
  let left = request.maxTokens;
  let thinkingTokens = 0;
  let stopReason = 'end_turn';
  if (plan.thinkingBudget !== null && left > 0) {
    // Thinking takes what the prompt "needs" (fixed by its hash), within the budget and leaving room to answer.
    const wanted = 40 + (Number.parseInt(request.promptHash.slice(6, 10) || '0', 16) % 400);
    thinkingTokens = Math.max(1, Math.min(wanted, plan.thinkingBudget, left - 1));
    const thought = ['Simulated', 'reasoning', 'about', `${request.promptHash}:`, ...words(request, 'thinking', thinkingTokens)].slice(0, thinkingTokens);
    content.push({ type: 'thinking', thinking: thought.join(' '), signature: signature(request) });
    left -= thinkingTokens;
  }
  if (plan.tool !== null) {
    const preamble = plan.toolPreamble ? ['I', 'will', 'use', `${plan.tool.name}.`].slice(0, left) : [];
    if (preamble.length > 0) content.push({ type: 'text', text: preamble.join(' '), citations: null });
    left -= preamble.length;
    const callTokens = textTokens(plan.tool.name) + textTokens(JSON.stringify(plan.tool.input));
    if (callTokens <= left) {
      content.push({
        type: 'tool_use',
        id: derivedId('toolu_', 0, 'tool', request.promptHash),
        name: plan.tool.name,
        input: plan.tool.input,
        caller: { type: 'direct' },
      });
      left -= callTokens;
      stopReason = 'tool_use';
    } else {
      stopReason = 'max_tokens';
    }
  } else if (left > 0) {
    const intended = intendedLength(request.promptHash);
    const cut = intended > left;
    const text = replyWords(request, Math.min(intended, left));
    content.push({ type: 'text', text: `${text.join(' ')}${cut ? '' : '.'}`, citations: null });
    left -= text.length;
    if (cut) stopReason = 'max_tokens';
  } else {
    stopReason = 'max_tokens'; // max_tokens 0 (cache pre-warming) or all of it spent thinking
  }
  const created = cache.created5m + cache.created1h;
  return {
    id: options.id,
    type: 'message',
    role: 'assistant',
    model: request.model,
    content,
    stop_reason: stopReason,
    stop_sequence: null,
    stop_details: null,
    container: null,
    diagnostics: null,
    usage: {
      input_tokens: Math.max(0, request.inputTokens - cache.read - created),
      output_tokens: request.maxTokens - left,
      cache_creation_input_tokens: created,
      cache_read_input_tokens: cache.read,
      cache_creation: { ephemeral_5m_input_tokens: cache.created5m, ephemeral_1h_input_tokens: cache.created1h },
      server_tool_use: null,
      service_tier: options.serviceTier,
      inference_geo: request.inferenceGeo,
      output_tokens_details: plan.thinkingBudget === null ? null : { thinking_tokens: thinkingTokens },
      speed: plan.speed,
    },
  };
}
