/** The shared token-counting rules (shared/cost/tokens.ts): what the estimator and the simulator both count. */
import { describe, expect, it } from 'vitest';
import {
  countInputTokens,
  countPrompt,
  HIGH_VISION,
  imageDimensions,
  imageTokens,
  minCacheableTokens,
  pdfPages,
  resizedDimensions,
  STANDARD_VISION,
  textTokens,
  visionTier,
} from '../../shared/cost/tokens';
import { gifBase64, jpegBase64, pdfBase64, pngBase64, webpBase64 } from '../fixtures/media';

describe('text', () => {
  it('counts ASCII at 4 characters a token, rounded up', () => {
    expect(textTokens('')).toBe(0);
    expect(textTokens('Hello, world')).toBe(3);
    expect(textTokens('x'.repeat(401))).toBe(101);
  });

  it('counts Korean, Chinese and Japanese at a token a character, far more than characters / 4', () => {
    expect(textTokens('안녕하세요')).toBe(5);
    expect(textTokens('你好世界')).toBe(4);
    expect(textTokens('こんにちは')).toBe(5);
    expect(textTokens('Привет')).toBe(3); // Cyrillic: 2 characters a token
    expect(textTokens('👋👋')).toBe(3); // outside the BMP: 1.5 each
  });
});

describe('images', () => {
  it('reads the size from the header of PNG, JPEG, GIF and WebP', () => {
    expect(imageDimensions(pngBase64(1092, 1092))).toEqual({ width: 1092, height: 1092 });
    expect(imageDimensions(jpegBase64(1920, 1080))).toEqual({ width: 1920, height: 1080 });
    expect(imageDimensions(gifBase64(200, 150))).toEqual({ width: 200, height: 150 });
    expect(imageDimensions(webpBase64(1000, 500))).toEqual({ width: 1000, height: 500 });
    expect(imageDimensions('A'.repeat(1000))).toBeUndefined();
  });

  it('prices an image at (width × height) / 750 on the standard tier, as the vision docs’ table does', () => {
    expect(imageTokens(200, 200, STANDARD_VISION)).toBe(54);
    expect(imageTokens(1000, 1000, STANDARD_VISION)).toBe(1334);
    expect(imageTokens(1092, 1092, STANDARD_VISION)).toBe(1590);
  });

  it('scales a large image down, aspect kept, within 1,568 px and about 1,600 tokens', () => {
    const size = resizedDimensions(4000, 3000, STANDARD_VISION);
    expect(Math.max(size.width, size.height)).toBeLessThanOrEqual(1568);
    expect(size.width / size.height).toBeCloseTo(4 / 3, 1);
    expect(imageTokens(4000, 3000, STANDARD_VISION)).toBeGreaterThan(1500);
    expect(imageTokens(4000, 3000, STANDARD_VISION)).toBeLessThanOrEqual(1600);
  });

  it('uses the high tier (28-px patches, 2,576 px, 4,784 tokens) for Opus 4.7 and later and Sonnet 5', () => {
    expect(visionTier('claude-sonnet-5')).toBe(HIGH_VISION);
    expect(visionTier('claude-opus-4-7')).toBe(HIGH_VISION);
    expect(visionTier('claude-sonnet-4-5')).toBe(STANDARD_VISION);
    expect(imageTokens(960, 540, HIGH_VISION)).toBe(35 * 20);
    expect(imageTokens(6000, 4000, HIGH_VISION)).toBeLessThanOrEqual(4784);
  });

  it('counts a 300 KB base64 image by its pixels, not its base64 text', () => {
    const data = pngBase64(1024, 768) + 'A'.repeat(300_000);
    const params = {
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data } }] }],
    };
    // 3 (message) + 3 (image block) + 1,049 (1024 × 768 / 750) + 4 (request).
    expect(countInputTokens(params)).toBe(3 + 3 + 1049 + 4);
  });
});

describe('documents', () => {
  it('counts a PDF’s pages by its page objects', () => {
    expect(pdfPages(pdfBase64(3))).toBe(3);
    expect(pdfPages(pdfBase64(1))).toBe(1);
  });

  it('counts each PDF page as text and as an image, and a plain-text document as its text', () => {
    const pdf = { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdfBase64(2) } };
    const plain = { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x'.repeat(400) } };
    const count = (block: unknown) => countInputTokens({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: [block] }] });
    expect(count(pdf)).toBe(3 + 3 + 2 * (1500 + 1600) + 4);
    expect(count(plain)).toBe(3 + 3 + 100 + 4);
  });
});

describe('requests', () => {
  it('gives "Hello, world" 10 input tokens, as the batch guide’s real result does', () => {
    expect(countInputTokens({ model: 'claude-opus-5', max_tokens: 1024, messages: [{ role: 'user', content: 'Hello, world' }] })).toBe(10);
  });

  it('adds the tool-use system prompt once: 346 with tool_choice auto, 313 when it forces a tool', () => {
    const tool = { name: 'get_weather', description: 'Weather.', input_schema: { type: 'object' } };
    const base = { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] };
    const without = countInputTokens(base);
    const toolJson = textTokens(JSON.stringify(tool));
    expect(countInputTokens({ ...base, tools: [tool] })).toBe(without + 346 + toolJson);
    expect(countInputTokens({ ...base, tools: [tool], tool_choice: { type: 'any' } })).toBe(without + 313 + toolJson);
    const other = { ...tool, name: 'get_weather_2' };
    expect(countInputTokens({ ...base, tools: [tool, other] })).toBe(without + 346 + toolJson + textTokens(JSON.stringify(other)));
  });

  it('does not count thinking blocks of earlier turns, which the API strips', () => {
    const turn = (content: unknown[]) => countInputTokens({ model: 'claude-sonnet-4-5', messages: [{ role: 'assistant', content }] });
    expect(
      turn([
        { type: 'thinking', thinking: 'x'.repeat(4000), signature: 'sig' },
        { type: 'text', text: 'ok' },
      ]),
    ).toBe(turn([{ type: 'text', text: 'ok' }]));
  });

  it('lists the prompt in cache order with each unit’s tokens, which add up to the total', () => {
    const params = {
      model: 'claude-sonnet-4-5',
      tools: [{ name: 't', input_schema: { type: 'object' } }],
      system: [{ type: 'text', text: 's'.repeat(40), cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: 'q' }],
    };
    const { units, total } = countPrompt(params);
    expect(units.map((unit) => unit.part)).toEqual(['tool', 'system', 'user']);
    expect(units[1]!.cacheControl).toEqual({ type: 'ephemeral' });
    expect(units.reduce((sum, unit) => sum + unit.tokens, 4)).toBe(total);
  });
});

describe('prompt caching', () => {
  it('knows each model’s minimum cacheable length', () => {
    expect(minCacheableTokens('claude-opus-5')).toBe(512);
    expect(minCacheableTokens('claude-sonnet-5')).toBe(1024);
    expect(minCacheableTokens('claude-sonnet-4-5-20250929')).toBe(1024);
    expect(minCacheableTokens('claude-opus-4-7')).toBe(2048);
    expect(minCacheableTokens('claude-opus-4-6')).toBe(4096);
    expect(minCacheableTokens('claude-haiku-4-5')).toBe(4096);
  });
});
