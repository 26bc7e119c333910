/**
 * What the simulator keeps of each request: enough to derive its result (model, max_tokens, a
 * hash and token estimate of the prompt, its cache breakpoints), never the prompt text itself.
 *
 * Validation follows docs/api-reference.md §3: problems with the batch as a whole (bad or duplicate
 * custom_id, an item that is not `{custom_id, params}`) are thrown as InvalidBody, answered
 * synchronously; problems inside `params` are kept and come back as an `errored` result
 * (invalid_request_error), as does a model the API does not serve (not_found_error).
 */
import { createHash } from 'node:crypto';
import { InvalidBody } from './create-body';
import { KNOWN_MODELS, type ModelCatalog } from '../shared/validation/models';

export type CacheTtl = '5m' | '1h';

/** A `cache_control` mark: the prompt prefix up to and including the marked block. */
export interface CacheBreakpoint {
  /** Model + hash of the prefix: the key the prompt cache is looked up by. */
  key: string;
  /** Estimated tokens of the prefix. */
  tokens: number;
  ttl: CacheTtl;
}

export interface RequestDigest {
  customId: string;
  model: string;
  maxTokens: number;
  /** Hash of model + whole prompt; the reply is derived from it. */
  promptHash: string;
  /** Estimated input tokens of the whole prompt (≈ characters / 4). */
  inputTokens: number;
  breakpoints: CacheBreakpoint[];
  inferenceGeo: string | null;
  /** Why the request cannot be served (its result is errored with this error), or null. */
  invalid: { type: 'invalid_request_error' | 'not_found_error'; message: string } | null;
}

const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
export const MAX_REQUESTS = 100_000;

/** Params the batch path rejects (§3), with the reason given in the error. */
const UNSUPPORTED: Record<string, string> = {
  speed: 'fast mode is synchronous-only',
  store: 'Threads are stateful',
  previous_thread_event_id: 'Threads are stateful',
  cache_hint: 'scheduling hints are synchronous-only',
  context_hint: 'scheduling hints are synchronous-only',
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks one element of `requests` and returns its parts; throws InvalidBody for batch-level problems. */
export function readRequestItem(item: unknown, index: number, seen: Set<string>): { customId: string; params: unknown } {
  if (!isObject(item)) throw new InvalidBody(`requests.${index}: Input should be an object`);
  const customId = item.custom_id;
  if (customId === undefined) throw new InvalidBody(`requests.${index}.custom_id: Field required`);
  if (typeof customId !== 'string' || !CUSTOM_ID.test(customId)) {
    const shown = typeof customId === 'string' ? JSON.stringify(customId.slice(0, 80)) : typeof customId;
    throw new InvalidBody(`requests.${index}.custom_id: ${shown} should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
  }
  if (seen.has(customId)) {
    throw new InvalidBody(`requests.${index}.custom_id: duplicate custom_id "${customId}"; custom_id must be unique within a batch`);
  }
  if (!('params' in item)) throw new InvalidBody(`requests.${index}.params: Field required`);
  const extra = Object.keys(item).find((key) => key !== 'custom_id' && key !== 'params');
  if (extra !== undefined) throw new InvalidBody(`requests.${index}.${extra}: Extra inputs are not permitted`);
  seen.add(customId);
  return { customId, params: item.params };
}

function problemWithMessages(messages: unknown): string | null {
  if (messages === undefined) return 'messages: Field required';
  if (!Array.isArray(messages)) return 'messages: Input should be a valid list';
  if (messages.length === 0) return 'messages: at least one message is required';
  for (const [j, message] of messages.entries()) {
    if (!isObject(message)) return `messages.${j}: Input should be an object`;
    if (message.role !== 'user' && message.role !== 'assistant') {
      return `messages.${j}.role: Input should be 'user' or 'assistant'`;
    }
    const content = message.content;
    if (typeof content !== 'string' && !(Array.isArray(content) && content.every(isObject))) {
      return `messages.${j}.content: Input should be a string or a list of content blocks`;
    }
  }
  return null;
}

/** The first problem with a request's params, named the way the API names fields; null when valid. */
export function problemWithParams(params: unknown, userProfileId: string | undefined): string | null {
  if (!isObject(params)) return 'params: Input should be an object';
  const { model, max_tokens: maxTokens } = params;
  if (model === undefined) return 'model: Field required';
  if (typeof model !== 'string' || model.trim() === '') return 'model: Input should be a non-empty string';
  if (maxTokens === undefined) return 'max_tokens: Field required';
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens)) return 'max_tokens: Input should be a valid integer';
  if (maxTokens < 1) {
    return 'max_tokens: Input should be greater than or equal to 1 (cache pre-warming with max_tokens: 0 is not supported in batches)';
  }
  const messagesProblem = problemWithMessages(params.messages);
  if (messagesProblem !== null) return messagesProblem;
  if (params.stream !== undefined && params.stream !== false) {
    return 'stream: streaming is not supported in the Message Batches API (results are a file, not a stream)';
  }
  for (const [name, reason] of Object.entries(UNSUPPORTED)) {
    if (params[name] !== undefined && params[name] !== null) {
      return `${name}: not supported in the Message Batches API (${reason})`;
    }
  }
  if (params.research_preview_2026_02 === 'active') {
    return 'research_preview_2026_02: "active" is not supported in the Message Batches API';
  }
  const system = params.system;
  if (system !== undefined && typeof system !== 'string' && !(Array.isArray(system) && system.every(isObject))) {
    return 'system: Input should be a string or a list of text blocks';
  }
  if (params.tools !== undefined && !(Array.isArray(params.tools) && params.tools.every(isObject))) {
    return 'tools: Input should be a list of tool definitions';
  }
  if (userProfileId !== undefined && params.user_profile_id !== undefined && params.user_profile_id !== userProfileId) {
    return 'user_profile_id: conflicts with the anthropic-user-profile-id header of the batch';
  }
  return null;
}

interface PromptBlock {
  /** Stable text of the block (cache_control removed) that the prefix hash covers. */
  canonical: string;
  chars: number;
  cacheControl: unknown;
}

function withoutCacheControl(block: Record<string, unknown>): Record<string, unknown> {
  const { cache_control: _omitted, ...rest } = block;
  return rest;
}

function contentBlock(kind: string, block: Record<string, unknown>): PromptBlock {
  const rest = withoutCacheControl(block);
  const canonical = `${kind}\u0000${JSON.stringify(rest)}`;
  const chars = typeof block.text === 'string' ? block.text.length : JSON.stringify(rest).length;
  return { canonical, chars, cacheControl: block.cache_control };
}

/** The prompt in the order the API caches it: tools, then system, then messages. */
function promptBlocks(params: Record<string, unknown>): PromptBlock[] {
  const blocks: PromptBlock[] = [];
  for (const tool of (params.tools as Record<string, unknown>[] | undefined) ?? []) {
    blocks.push(contentBlock('tool', tool));
  }
  const system = params.system as string | Record<string, unknown>[] | undefined;
  if (typeof system === 'string') {
    blocks.push({ canonical: `system\u0000${system}`, chars: system.length, cacheControl: undefined });
  } else {
    for (const block of system ?? []) blocks.push(contentBlock('system', block));
  }
  for (const message of params.messages as Array<{ role: string; content: string | Record<string, unknown>[] }>) {
    if (typeof message.content === 'string') {
      blocks.push({ canonical: `${message.role}\u0000${message.content}`, chars: message.content.length, cacheControl: undefined });
    } else {
      for (const block of message.content) blocks.push(contentBlock(message.role, block));
    }
  }
  return blocks;
}

function ttlOf(cacheControl: unknown): CacheTtl | null {
  if (!isObject(cacheControl)) return null;
  return cacheControl.ttl === '1h' ? '1h' : '5m';
}

export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

const modelHashes = new Map<string, Buffer>();

/** The start of every prefix chain; models are few, so each is hashed once per process. */
function modelHash(model: string): Buffer {
  let hash = modelHashes.get(model);
  if (hash === undefined) {
    hash = createHash('sha256').update(model).digest();
    if (modelHashes.size < 1000) modelHashes.set(model, hash);
  }
  return hash;
}

/** Reduces a request to what its result needs. `params` must already have passed problemWithParams. */
function digestValid(customId: string, params: Record<string, unknown>): RequestDigest {
  const model = params.model as string;
  const blocks = promptBlocks(params);
  // Automatic caching (top-level cache_control) marks the end of the prompt.
  const topLevelTtl = ttlOf(params.cache_control);
  const breakpoints: CacheBreakpoint[] = [];
  let chain = modelHash(model);
  let tokens = 0;
  blocks.forEach((block, i) => {
    chain = createHash('sha256').update(chain).update(block.canonical).digest();
    tokens += estimateTokens(block.chars);
    const ttl = ttlOf(block.cacheControl) ?? (i === blocks.length - 1 ? topLevelTtl : null);
    if (ttl !== null) breakpoints.push({ key: `${model}:${chain.toString('hex', 0, 16)}`, tokens, ttl });
  });
  return {
    customId,
    model,
    maxTokens: params.max_tokens as number,
    promptHash: chain.toString('hex', 0, 12),
    inputTokens: Math.max(1, tokens),
    breakpoints,
    inferenceGeo: typeof params.inference_geo === 'string' ? params.inference_geo : null,
    invalid: null,
  };
}

/**
 * `models`: the models served. The params are checked first, then the model, as the API answers a
 * malformed request 400 before it looks for the model (404, with the message `model: <id>`).
 */
export function digestRequest(customId: string, params: unknown, userProfileId: string | undefined, models: ModelCatalog = KNOWN_MODELS): RequestDigest {
  const problem = problemWithParams(params, userProfileId);
  const model = isObject(params) && typeof params.model === 'string' ? params.model : '';
  const invalid: RequestDigest['invalid'] =
    problem !== null
      ? { type: 'invalid_request_error', message: problem }
      : models.allows(model)
        ? null
        : { type: 'not_found_error', message: `model: ${model}` };
  if (invalid === null) return digestValid(customId, params as Record<string, unknown>);
  return { customId, model, maxTokens: 0, promptHash: '', inputTokens: 0, breakpoints: [], inferenceGeo: null, invalid };
}
