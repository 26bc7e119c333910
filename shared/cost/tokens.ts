/**
 * The one set of token-counting rules (docs/api-reference.md §10): how many input tokens a Messages
 * request is, block by block, and which prefixes the prompt cache can hold. The estimator
 * (./cost.ts) and the simulator (simulator/request-digest.ts) both count with it, so an estimate and
 * a simulated result agree on input tokens by construction. Deterministic: the same request always
 * counts the same; nothing is decoded beyond image headers and a PDF's page markers.
 *
 * Where the API publishes a rule it is followed (the vision formula and its resize limits, the
 * tool-use system prompt, the minimum cacheable lengths); where it does not (the tokenizer itself)
 * the figures are calibrated to the public examples and marked [U] in the reference.
 */
import { createHash } from 'node:crypto';
import type { CacheTtl } from '../store/items';

/** One piece of the prompt in the order the API reads (and caches) it: tools, system, messages. */
export interface PromptUnit {
  /** `tool`, `system`, or the role of the message the block belongs to. */
  part: 'tool' | 'system' | 'user' | 'assistant';
  /** The block (or tool definition) itself; a string for a plain-string system or message. */
  block: unknown;
  /** Tokens the block adds, the overhead of starting its part included. */
  tokens: number;
  /** The block's `cache_control`, when it carries one. */
  cacheControl: unknown;
}

export interface PromptCount {
  units: PromptUnit[];
  /** All input tokens of the request: the units plus the closing overhead. */
  total: number;
}

/** Tokens that close every request (the turn handed to the assistant) [U]: "Hello, world" is 10. */
export const REQUEST_OVERHEAD_TOKENS = 4;
/** Tokens that open each message (its role marker) [U]. */
export const MESSAGE_OVERHEAD_TOKENS = 3;
/** Tokens that open the system prompt [U]. */
export const SYSTEM_OVERHEAD_TOKENS = 3;
/**
 * The tool-use system prompt the API adds when `tools` is given (pricing docs, Claude 4 models):
 * 346 tokens with tool_choice auto or none, 313 with any or tool. [U: the Claude 4 figures, not found in the stored sources]
 */
export const TOOL_SYSTEM_PROMPT_TOKENS = { auto: 346, any: 313 } as const;
/** Tokens around one image or document block (its markers) [U]. */
export const MEDIA_BLOCK_OVERHEAD_TOKENS = 3;
/** Text tokens of one PDF page (the docs: 1,500–3,000 a page; the low end, for typical pages) [U]. */
export const PDF_PAGE_TEXT_TOKENS = 1_500;
/** Pages assumed for a PDF whose bytes the request does not carry (a URL or file source) [U]. */
export const UNKNOWN_PDF_PAGES = 1;

// ---------------------------------------------------------------------------------------------
// Text

const NON_ASCII = /[\u0080-\uffff]/;

/**
 * Tokens of a text (a BPE tokenizer cannot be reproduced without its vocabulary; this is the rule
 * of thumb per script): ASCII 4 characters a token; other Latin, Greek and Cyrillic letters 2;
 * CJK ideographs, kana and Hangul syllables 1 token each; other BMP scripts (Arabic, Hebrew,
 * Devanagari, Thai, ...) 4 characters in 3; characters outside the BMP (emoji) 1.5 each. [U]
 */
export function textTokens(text: string): number {
  // Most prompts are ASCII: a native scan settles them without the per-character loop.
  if (!NON_ASCII.test(text)) return Math.ceil(text.length / 4);
  let quarters = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) quarters += 1;
    else if (code < 0x530) quarters += 2;
    else if (code >= 0xd800 && code < 0xdc00) {
      quarters += 6; // a surrogate pair: one astral character
      i += 1;
    } else if (
      (code >= 0x1100 && code < 0x1200) ||
      (code >= 0x3040 && code < 0x3100) ||
      (code >= 0x3400 && code < 0xa000) ||
      (code >= 0xac00 && code < 0xd7b0) ||
      (code >= 0xf900 && code < 0xfb00)
    ) {
      quarters += 4;
    } else quarters += 3;
  }
  return Math.ceil(quarters / 4);
}

// ---------------------------------------------------------------------------------------------
// Images

/** How a model sees images: its resize limits and its token formula. */
export interface VisionTier {
  name: 'standard' | 'high';
  /** Longest edge, in pixels, before the API scales an image down. */
  maxLongEdge: number;
  /** Most tokens an image may take before the API scales it down. */
  maxTokens: number;
  tokens(width: number, height: number): number;
}

/** Earlier models: (width × height) / 750, within 1,568 px and about 1,600 tokens (vision docs) [V]. */
export const STANDARD_VISION: VisionTier = {
  name: 'standard',
  maxLongEdge: 1568,
  maxTokens: 1600,
  tokens: (width, height) => Math.ceil((width * height) / 750),
};

/** Opus 4.7 and later, Sonnet 5 and later, Haiku 5.5, Fable, Mythos: ⌈w/28⌉ × ⌈h/28⌉, within 2,576 px and 4,784 tokens [U]. */
export const HIGH_VISION: VisionTier = {
  name: 'high',
  maxLongEdge: 2576,
  maxTokens: 4784,
  tokens: (width, height) => Math.ceil(width / 28) * Math.ceil(height / 28),
};

const HIGH_VISION_MODELS = /^claude-(opus-4-[7-9]|opus-[5-9]|sonnet-[5-9]|haiku-5|fable|mythos)/;

export function visionTier(model: string): VisionTier {
  return HIGH_VISION_MODELS.test(model) ? HIGH_VISION : STANDARD_VISION;
}

/** The size the API scales an image to: within the tier's long edge and token limit, aspect kept. */
export function resizedDimensions(width: number, height: number, tier: VisionTier): { width: number; height: number } {
  let scale = Math.min(1, tier.maxLongEdge / Math.max(width, height));
  let w = Math.max(1, Math.floor(width * scale));
  let h = Math.max(1, Math.floor(height * scale));
  // Shrink on until the token limit holds (a few steps at most: each is about 1%).
  while (tier.tokens(w, h) > tier.maxTokens) {
    scale *= 0.99;
    w = Math.max(1, Math.floor(width * scale));
    h = Math.max(1, Math.floor(height * scale));
  }
  return { width: w, height: h };
}

/** Tokens of an image of this size, after the API's resize. */
export function imageTokens(width: number, height: number, tier: VisionTier): number {
  const size = resizedDimensions(width, height, tier);
  return tier.tokens(size.width, size.height);
}

/** Base64 characters enough to hold any header read here (JPEG may need to skip EXIF segments). */
const HEADER_BASE64_CHARS = 96 * 1024;

/**
 * Width and height of a PNG, JPEG, GIF or WebP from its first bytes (the base64 text's start is
 * decoded, never the pixels); undefined when the header cannot be read.
 */
export function imageDimensions(base64: string): { width: number; height: number } | undefined {
  const head = Buffer.from(base64.slice(0, HEADER_BASE64_CHARS - (HEADER_BASE64_CHARS % 4)), 'base64');
  return pngSize(head) ?? gifSize(head) ?? webpSize(head) ?? jpegSize(head);
}

function pngSize(b: Buffer): { width: number; height: number } | undefined {
  if (b.length < 24 || b.readUInt32BE(0) !== 0x89504e47 || b.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

function gifSize(b: Buffer): { width: number; height: number } | undefined {
  if (b.length < 10 || b.toString('latin1', 0, 4) !== 'GIF8') return undefined;
  return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
}

function webpSize(b: Buffer): { width: number; height: number } | undefined {
  if (b.length < 30 || b.toString('latin1', 0, 4) !== 'RIFF' || b.toString('latin1', 8, 12) !== 'WEBP') return undefined;
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8X') return { width: 1 + b.readUIntLE(24, 3), height: 1 + b.readUIntLE(27, 3) };
  if (chunk === 'VP8L') {
    const bits = b.readUInt32LE(21);
    return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >> 14) & 0x3fff) };
  }
  if (chunk === 'VP8 ') return { width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  return undefined;
}

function jpegSize(b: Buffer): { width: number; height: number } | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let at = 2;
  while (at + 9 < b.length) {
    if (b[at] !== 0xff) return undefined;
    const marker = b[at + 1]!;
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    const length = b.readUInt16BE(at + 2);
    // Start-of-frame markers (baseline, progressive, ...) carry the size; C4, C8 and CC do not.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { width: b.readUInt16BE(at + 7), height: b.readUInt16BE(at + 5) };
    }
    at += 2 + length;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Documents

/** Pages of a PDF, counted by its page objects (`/Type /Page`, not `/Pages`); at least 1. */
export function pdfPages(base64: string): number {
  const text = Buffer.from(base64, 'base64').toString('latin1');
  const pages = text.match(/\/Type\s*\/Page(?![a-zA-Z])/g)?.length ?? 0;
  return Math.max(1, pages);
}

// ---------------------------------------------------------------------------------------------
// Blocks and requests

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function withoutCacheControl(block: Record<string, unknown>): Record<string, unknown> {
  const { cache_control: _omitted, ...rest } = block;
  return rest;
}

/** Tokens of an image block: by its header when the bytes are in the request, else the tier's most. */
function imageBlockTokens(source: Record<string, unknown>, tier: VisionTier): number {
  const size = source.type === 'base64' && typeof source.data === 'string' ? imageDimensions(source.data) : undefined;
  return MEDIA_BLOCK_OVERHEAD_TOKENS + (size === undefined ? tier.maxTokens : imageTokens(size.width, size.height, tier));
}

function documentBlockTokens(block: Record<string, unknown>, tier: VisionTier): number {
  const source = isRecord(block.source) ? block.source : {};
  let tokens = MEDIA_BLOCK_OVERHEAD_TOKENS;
  if (typeof block.title === 'string') tokens += textTokens(block.title);
  if (typeof block.context === 'string') tokens += textTokens(block.context);
  if (source.type === 'text' && typeof source.data === 'string') return tokens + textTokens(source.data);
  if (source.type === 'content') return tokens + contentTokens(source.content, tier);
  // A PDF: each page is read as text and as an image of the page.
  const pages = source.type === 'base64' && typeof source.data === 'string' ? pdfPages(source.data) : UNKNOWN_PDF_PAGES;
  return tokens + pages * (PDF_PAGE_TEXT_TOKENS + tier.maxTokens);
}

/** Tokens of one content block of a message or system prompt. */
export function blockTokens(block: unknown, tier: VisionTier): number {
  if (typeof block === 'string') return textTokens(block);
  if (!isRecord(block)) return 0;
  switch (block.type) {
    case 'text':
      return typeof block.text === 'string' ? textTokens(block.text) : 0;
    case 'image':
      return imageBlockTokens(isRecord(block.source) ? block.source : {}, tier);
    case 'document':
      return documentBlockTokens(block, tier);
    case 'tool_use':
    case 'server_tool_use':
      return textTokens(String(block.name ?? '')) + textTokens(JSON.stringify(block.input ?? {}));
    case 'tool_result':
      return MEDIA_BLOCK_OVERHEAD_TOKENS + contentTokens(block.content, tier);
    // Thinking blocks of earlier turns are stripped by the API and do not count (thinking docs).
    case 'thinking':
    case 'redacted_thinking':
      return 0;
    default:
      return textTokens(JSON.stringify(withoutCacheControl(block)));
  }
}

function contentTokens(content: unknown, tier: VisionTier): number {
  if (typeof content === 'string') return textTokens(content);
  if (!Array.isArray(content)) return 0;
  let tokens = 0;
  for (const block of content) tokens += blockTokens(block, tier);
  return tokens;
}

function toolChoiceKind(toolChoice: unknown): 'auto' | 'any' {
  return isRecord(toolChoice) && (toolChoice.type === 'any' || toolChoice.type === 'tool') ? 'any' : 'auto';
}

/**
 * The request's prompt, unit by unit, with the tokens each adds (see PromptUnit), and its total.
 * `params` need not be valid: what cannot be read counts as nothing.
 */
export function countPrompt(params: Record<string, unknown>): PromptCount {
  const tier = visionTier(typeof params.model === 'string' ? params.model : '');
  const units: PromptUnit[] = [];
  const tools = Array.isArray(params.tools) ? params.tools : [];
  tools.forEach((tool, i) => {
    const definition = isRecord(tool) ? withoutCacheControl(tool) : tool;
    const opening = i === 0 ? TOOL_SYSTEM_PROMPT_TOKENS[toolChoiceKind(params.tool_choice)] : 0;
    units.push({
      part: 'tool',
      block: tool,
      tokens: opening + textTokens(JSON.stringify(definition) ?? ''),
      cacheControl: isRecord(tool) ? tool.cache_control : undefined,
    });
  });
  const system = params.system;
  if (typeof system === 'string') {
    units.push({ part: 'system', block: system, tokens: SYSTEM_OVERHEAD_TOKENS + textTokens(system), cacheControl: undefined });
  } else if (Array.isArray(system)) {
    system.forEach((block, i) => {
      units.push({
        part: 'system',
        block,
        tokens: (i === 0 ? SYSTEM_OVERHEAD_TOKENS : 0) + blockTokens(block, tier),
        cacheControl: isRecord(block) ? block.cache_control : undefined,
      });
    });
  }
  const messages = Array.isArray(params.messages) ? params.messages : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    const part = message.role === 'assistant' ? 'assistant' : 'user';
    const content = message.content;
    if (Array.isArray(content) && content.length > 0) {
      content.forEach((block, i) => {
        units.push({
          part,
          block,
          tokens: (i === 0 ? MESSAGE_OVERHEAD_TOKENS : 0) + blockTokens(block, tier),
          cacheControl: isRecord(block) ? block.cache_control : undefined,
        });
      });
    } else {
      units.push({ part, block: content, tokens: MESSAGE_OVERHEAD_TOKENS + contentTokens(content, tier), cacheControl: undefined });
    }
  }
  let total = REQUEST_OVERHEAD_TOKENS;
  for (const unit of units) total += unit.tokens;
  return { units, total };
}

/** Input tokens of a request, as the API would count them (within the rules above). */
export function countInputTokens(params: Record<string, unknown>): number {
  return countPrompt(params).total;
}

// ---------------------------------------------------------------------------------------------
// Prompt caching

/**
 * The shortest prefix the API caches for a model (prompt-caching docs, 2026): a marked prefix
 * shorter than this is neither written nor read, and the request is billed as uncached input.
 */
export function minCacheableTokens(model: string): number {
  if (/^claude-(opus-5|fable-5|mythos-5)/.test(model)) return 512;
  if (/^claude-(opus-4-6|opus-4-5|haiku-4-5|haiku-5)/.test(model)) return 4096;
  if (/^claude-(opus-4-7|3-5-haiku|3-haiku)/.test(model)) return 2048;
  return 1024;
}

/** A marked prefix of one request that the API would cache. */
export interface Breakpoint {
  /** Model + hash of the prompt up to and including the marked block: equal keys, equal prefixes. */
  key: string;
  /** Input tokens of the prefix. */
  tokens: number;
  ttl: CacheTtl;
  /** The marked unit's place in the prompt (countPrompt's units: tools, system, messages). */
  unit: number;
  /** The mark is the request's top-level `cache_control` (automatic caching), not a block's. */
  topLevel: boolean;
}

function ttlOf(cacheControl: unknown): CacheTtl | null {
  if (!isRecord(cacheControl)) return null;
  return cacheControl.ttl === '1h' ? '1h' : '5m';
}

function canonical(part: string, block: unknown): string {
  if (typeof block === 'string') return `${part}\u0000${block}`;
  if (!isRecord(block)) return `${part}\u0000${JSON.stringify(block)}`;
  const { cache_control: _mark, ...rest } = block;
  return `${part}\u0000${JSON.stringify(rest)}`;
}

/** The request's cacheable prefixes, shortest first: marked blocks (and the top-level mark) at or past the model's minimum. */
export function breakpointsOf(params: Record<string, unknown>): Breakpoint[] {
  const model = typeof params.model === 'string' ? params.model : '';
  const { units } = countPrompt(params);
  return breakpointsOfUnits(model, units, params.cache_control);
}

/** breakpointsOf for a prompt already counted (the estimator counts each request once). */
export function breakpointsOfUnits(model: string, units: readonly PromptUnit[], topLevelMark: unknown): Breakpoint[] {
  const minimum = minCacheableTokens(model);
  const topLevel = ttlOf(topLevelMark);
  const points: Breakpoint[] = [];
  const hash = createHash('sha256').update(model);
  let tokens = 0;
  units.forEach((unit, i) => {
    hash.update(canonical(unit.part, unit.block)).update('\u0001');
    tokens += unit.tokens;
    const own = ttlOf(unit.cacheControl);
    const ttl = own ?? (i === units.length - 1 ? topLevel : null);
    if (ttl !== null && tokens >= minimum) {
      points.push({ key: `${model}:${hash.copy().digest('hex').slice(0, 32)}`, tokens, ttl, unit: i, topLevel: own === null });
    }
  });
  return points;
}
