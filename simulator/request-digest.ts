/**
 * What the simulator keeps of each request: enough to derive its result (model, max_tokens, a
 * hash and token estimate of the prompt, its cache breakpoints), never the prompt text itself.
 *
 * Validation follows docs/api-reference.md §3: problems with the batch as a whole (bad or duplicate
 * custom_id, an item that is not `{custom_id, params}`) are thrown as InvalidBody, answered
 * synchronously; problems inside `params` are kept and come back as an `errored` result
 * (invalid_request_error), as does a model the API does not serve (not_found_error). The same
 * checks answer a synchronous Messages call (`mode: 'messages'`) with a 400 or 404.
 *
 * Token counts come from the one set of rules the estimator also uses (shared/cost/tokens.ts).
 */
import { createHash } from 'node:crypto';
import { countPrompt, minCacheableTokens } from '../shared/cost/tokens';
import { KNOWN_MODELS, type ModelCatalog } from '../shared/validation/models';
import { InvalidBody } from './create-body';
import { seededRandom } from './prng';
import { valueFor } from './tool-input';

export type CacheTtl = '5m' | '1h';

/** A `cache_control` mark: the prompt prefix up to and including the marked block. */
export interface CacheBreakpoint {
  /** Model + hash of the prefix: the key the prompt cache is looked up by. */
  key: string;
  /** Input tokens of the prefix. */
  tokens: number;
  ttl: CacheTtl;
}

export interface RequestDigest {
  customId: string;
  model: string;
  maxTokens: number;
  /** Hash of model + whole prompt; the reply is derived from it. */
  promptHash: string;
  /** Input tokens of the whole prompt (shared/cost/tokens.ts). */
  inputTokens: number;
  /** Cache breakpoints whose prefix is long enough for the model to cache, shortest first. */
  breakpoints: CacheBreakpoint[];
  /** What the reply holds beyond text. */
  reply: ReplyPlan;
  inferenceGeo: string | null;
  /** Why the request cannot be served (its result is errored with this error), or null. */
  invalid: { type: 'invalid_request_error' | 'not_found_error'; message: string } | null;
}

/** The parts of a reply the request asks for: a thinking block, a tool call. */
export interface ReplyPlan {
  /** Most thinking tokens (budget_tokens, or half of max_tokens for adaptive thinking); null without thinking. */
  thinkingBudget: number | null;
  /** The tool call to make, its input generated from the tool's input_schema; null for a text reply. */
  tool: { name: string; input: unknown } | null;
  /** Whether a short text comes before the tool call (tool_choice auto; any and tool prefill the call). */
  toolPreamble: boolean;
  /** `usage.speed`: 'fast' for a Messages call in fast mode. */
  speed: 'standard' | 'fast';
}

export type DigestMode = 'batch' | 'messages';

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

function problemWithSampling(params: Record<string, unknown>): string | null {
  const { temperature, top_p: topP, top_k: topK } = params;
  if (temperature !== undefined && temperature !== null) {
    if (typeof temperature !== 'number') return 'temperature: Input should be a valid number';
    if (temperature < 0 || temperature > 1) return 'temperature: Input should be greater than or equal to 0 and less than or equal to 1';
  }
  if (topP !== undefined && topP !== null) {
    if (typeof topP !== 'number') return 'top_p: Input should be a valid number';
    if (topP < 0 || topP > 1) return 'top_p: Input should be greater than or equal to 0 and less than or equal to 1';
  }
  if (topK !== undefined && topK !== null && (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 0)) {
    return 'top_k: Input should be an integer greater than or equal to 0';
  }
  return null;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,128}$/;

function problemWithTools(params: Record<string, unknown>): string | null {
  const tools = params.tools;
  if (tools !== undefined && !(Array.isArray(tools) && tools.every(isObject))) return 'tools: Input should be a list of tool definitions';
  const names = new Set<string>();
  for (const [i, tool] of ((tools as Record<string, unknown>[] | undefined) ?? []).entries()) {
    if (typeof tool.name !== 'string' || !TOOL_NAME.test(tool.name)) return `tools.${i}.name: should match pattern '^[a-zA-Z0-9_-]{1,128}$'`;
    if (names.has(tool.name)) return `tools: Tool names must be unique ("${tool.name}" is given twice)`;
    names.add(tool.name);
    const custom = tool.type === undefined || tool.type === null || tool.type === 'custom';
    if (custom && !isObject(tool.input_schema)) return `tools.${i}.input_schema: Field required`;
  }
  const choice = params.tool_choice;
  if (choice === undefined || choice === null) return null;
  if (!isObject(choice) || !['auto', 'any', 'tool', 'none'].includes(choice.type as string)) {
    return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'";
  }
  if (choice.type !== 'none' && names.size === 0) return 'tool_choice: may only be specified while providing tools';
  if (choice.type === 'tool' && (typeof choice.name !== 'string' || !names.has(choice.name))) {
    return `tool_choice.name: no tool named ${JSON.stringify(choice.name)} in tools`;
  }
  return null;
}

/** Extended thinking and what it rules out (extended-thinking docs; docs/api-reference.md §10). */
function problemWithThinking(params: Record<string, unknown>): string | null {
  const thinking = params.thinking;
  if (thinking === undefined || thinking === null) return null;
  if (!isObject(thinking) || !['enabled', 'disabled', 'adaptive'].includes(thinking.type as string)) {
    return "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'";
  }
  if (thinking.type === 'disabled') return null;
  if (thinking.type === 'enabled') {
    const budget = thinking.budget_tokens;
    if (budget === undefined) return 'thinking.enabled.budget_tokens: Field required';
    if (typeof budget !== 'number' || !Number.isInteger(budget) || budget < 1024) {
      return 'thinking.enabled.budget_tokens: Input should be an integer greater than or equal to 1024';
    }
    if ((params.max_tokens as number) <= budget) return 'max_tokens: must be greater than thinking.budget_tokens';
  }
  if (typeof params.temperature === 'number' && params.temperature !== 1) return 'temperature: may only be set to 1 when thinking is enabled';
  if (params.top_k !== undefined && params.top_k !== null) return 'top_k: may not be set when thinking is enabled';
  if (typeof params.top_p === 'number' && params.top_p < 0.95) return 'top_p: must be between 0.95 and 1 when thinking is enabled';
  const choice = params.tool_choice;
  if (isObject(choice) && (choice.type === 'any' || choice.type === 'tool')) {
    return 'tool_choice: Thinking may not be enabled when tool_choice forces tool use';
  }
  return null;
}

/**
 * The first problem with a request's params, named the way the API names fields; null when valid.
 * `mode` 'batch' adds the batch path's own restrictions (§3); a Messages call may stream (which the
 * simulator does not serve), use fast mode, or pre-warm the cache with max_tokens 0.
 */
export function problemWithParams(params: unknown, userProfileId: string | undefined, mode: DigestMode = 'batch'): string | null {
  if (!isObject(params)) return 'params: Input should be an object';
  const { model, max_tokens: maxTokens } = params;
  if (model === undefined) return 'model: Field required';
  if (typeof model !== 'string' || model.trim() === '') return 'model: Input should be a non-empty string';
  if (maxTokens === undefined) return 'max_tokens: Field required';
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens)) return 'max_tokens: Input should be a valid integer';
  if (mode === 'messages' && maxTokens < 0) return 'max_tokens: Input should be greater than or equal to 0';
  if (mode === 'batch' && maxTokens < 1) {
    return 'max_tokens: Input should be greater than or equal to 1 (cache pre-warming with max_tokens: 0 is not supported in batches)';
  }
  const messagesProblem = problemWithMessages(params.messages);
  if (messagesProblem !== null) return messagesProblem;
  if (params.stream !== undefined && params.stream !== false) {
    return mode === 'batch'
      ? 'stream: streaming is not supported in the Message Batches API (results are a file, not a stream)'
      : 'stream: the simulator answers non-streaming Messages calls only';
  }
  if (mode === 'batch') {
    for (const [name, reason] of Object.entries(UNSUPPORTED)) {
      if (params[name] !== undefined && params[name] !== null) {
        return `${name}: not supported in the Message Batches API (${reason})`;
      }
    }
    if (params.research_preview_2026_02 === 'active') {
      return 'research_preview_2026_02: "active" is not supported in the Message Batches API';
    }
  }
  const system = params.system;
  if (system !== undefined && typeof system !== 'string' && !(Array.isArray(system) && system.every(isObject))) {
    return 'system: Input should be a string or a list of text blocks';
  }
  const problem = problemWithSampling(params) ?? problemWithTools(params) ?? problemWithThinking(params);
  if (problem !== null) return problem;
  if (userProfileId !== undefined && params.user_profile_id !== undefined && params.user_profile_id !== userProfileId) {
    return 'user_profile_id: conflicts with the anthropic-user-profile-id header of the batch';
  }
  return null;
}

function withoutCacheControl(block: Record<string, unknown>): Record<string, unknown> {
  const { cache_control: _omitted, ...rest } = block;
  return rest;
}

/** Stable text of a prompt unit (cache_control removed) that the prefix hash covers. */
function canonical(part: string, block: unknown): string {
  if (typeof block === 'string') return `${part}\u0000${block}`;
  return `${part}\u0000${JSON.stringify(isObject(block) ? withoutCacheControl(block) : block)}`;
}

function ttlOf(cacheControl: unknown): CacheTtl | null {
  if (!isObject(cacheControl)) return null;
  return cacheControl.ttl === '1h' ? '1h' : '5m';
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

/**
 * The reply a valid request gets beyond text: thinking when enabled; a tool call when tools are
 * given and tool_choice allows one — forced by any/tool, and with auto unless the last user turn
 * brings a tool result (then the model answers in text).
 */
function replyPlan(params: Record<string, unknown>, promptHash: string, mode: DigestMode): ReplyPlan {
  const thinking = isObject(params.thinking) ? params.thinking : undefined;
  const maxTokens = params.max_tokens as number;
  const thinkingBudget = thinking?.type === 'enabled' ? (thinking.budget_tokens as number) : thinking?.type === 'adaptive' ? Math.floor(maxTokens / 2) : null;
  const speed = mode === 'messages' && params.speed === 'fast' ? 'fast' : 'standard';
  const tools = ((params.tools as Record<string, unknown>[] | undefined) ?? []).filter((tool) => isObject(tool.input_schema));
  const choice = isObject(params.tool_choice) ? params.tool_choice : { type: 'auto' };
  const messages = params.messages as Array<{ role: string; content: unknown }>;
  const last = messages.at(-1);
  const answersToolResult = Array.isArray(last?.content) && last.content.some((block) => isObject(block) && block.type === 'tool_result');
  const wantsTool = choice.type === 'any' || choice.type === 'tool' || (choice.type === 'auto' && !answersToolResult);
  if (tools.length === 0 || !wantsTool || last?.role !== 'user') return { thinkingBudget, tool: null, toolPreamble: false, speed };
  const random = seededRandom(0, 'tool', promptHash);
  const tool = choice.type === 'tool' ? tools.find((t) => t.name === choice.name) : tools[Math.floor(random() * tools.length)];
  // A server tool (web search, code execution, ...) has no input_schema: the simulator does not run them and answers in text.
  if (tool === undefined) return { thinkingBudget, tool: null, toolPreamble: false, speed };
  return { thinkingBudget, tool: { name: tool.name as string, input: valueFor(tool.input_schema, random) }, toolPreamble: choice.type === 'auto', speed };
}

/** Reduces a request to what its result needs. `params` must already have passed problemWithParams. */
function digestValid(customId: string, params: Record<string, unknown>, mode: DigestMode): RequestDigest {
  const model = params.model as string;
  const { units, total } = countPrompt(params);
  // Automatic caching (top-level cache_control) marks the end of the prompt.
  const topLevelTtl = ttlOf(params.cache_control);
  const minimum = minCacheableTokens(model);
  const breakpoints: CacheBreakpoint[] = [];
  let chain = modelHash(model);
  let tokens = 0;
  units.forEach((unit, i) => {
    chain = createHash('sha256').update(chain).update(canonical(unit.part, unit.block)).digest();
    tokens += unit.tokens;
    const ttl = ttlOf(unit.cacheControl) ?? (i === units.length - 1 ? topLevelTtl : null);
    // A prefix shorter than the model's minimum is not cached at all.
    if (ttl !== null && tokens >= minimum) breakpoints.push({ key: `${model}:${chain.toString('hex', 0, 16)}`, tokens, ttl });
  });
  const promptHash = chain.toString('hex', 0, 12);
  return {
    customId,
    model,
    maxTokens: params.max_tokens as number,
    promptHash,
    inputTokens: total,
    breakpoints,
    reply: replyPlan(params, promptHash, mode),
    inferenceGeo: typeof params.inference_geo === 'string' ? params.inference_geo : null,
    invalid: null,
  };
}

const NO_REPLY: ReplyPlan = { thinkingBudget: null, tool: null, toolPreamble: false, speed: 'standard' };

/**
 * `models`: the models served. The params are checked first, then the model, as the API answers a
 * malformed request 400 before it looks for the model (404, with the message `model: <id>`).
 */
export function digestRequest(
  customId: string,
  params: unknown,
  userProfileId: string | undefined,
  models: ModelCatalog = KNOWN_MODELS,
  mode: DigestMode = 'batch',
): RequestDigest {
  const problem = problemWithParams(params, userProfileId, mode);
  const model = isObject(params) && typeof params.model === 'string' ? params.model : '';
  const invalid: RequestDigest['invalid'] =
    problem !== null
      ? { type: 'invalid_request_error', message: problem }
      : models.allows(model)
        ? null
        : { type: 'not_found_error', message: `model: ${model}` };
  if (invalid === null) return digestValid(customId, params as Record<string, unknown>, mode);
  return { customId, model, maxTokens: 0, promptHash: '', inputTokens: 0, breakpoints: [], reply: NO_REPLY, inferenceGeo: null, invalid };
}
