/**
 * Realistic input files for the benchmarks, written to disk as a stream (never whole in memory):
 * `{custom_id, params}` lines of about 1 KB on average (1,000,000 rows ≈ 1 GB), with system
 * prompts (some cached), one- and three-turn conversations, a mix of models and max_tokens, and a
 * sprinkling of multi-byte text, so line splitting and UTF-8 decoding do real work. Seeded: the
 * same arguments give the same bytes.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

export interface InputFile {
  path: string;
  rows: number;
  bytes: number;
}

const WORDS = (
  'the a an of to in for on with by from about into over after before under between through during without ' +
  'customer order invoice refund account password shipping delivery package tracking number payment card ' +
  'subscription plan upgrade downgrade cancel renew charge receipt support ticket issue problem error bug ' +
  'feature request feedback review rating product service quality price discount coupon code email phone ' +
  'address city country region language summary report analysis document article paragraph sentence word ' +
  'please could would should can will might must need want like help thanks hello question answer explain ' +
  'describe classify translate summarize extract list compare rewrite improve check verify confirm update ' +
  'today yesterday tomorrow week month year morning evening quickly slowly carefully clearly briefly again ' +
  'data model result value table column row field record file folder image video audio link page site app'
).split(' ');

/** Words outside ASCII, two to four bytes each in UTF-8 (one in about twenty words). */
const WIDE_WORDS = ['café', 'naïve', 'Zürich', 'São Paulo', 'résumé', 'über', '東京', 'データ', 'Ελλάδα', 'Привет', '😀', '数据分析'];

const SYSTEM_PROMPTS = [
  'You classify customer support tickets for an online software store. Reply with JSON only: {"category": one of "billing", "bug", "account", "shipping", "feature_request", "other", "urgency": one of "low", "medium", "high"}.',
  "You are a careful summarizer. Summarize the user's text in at most three sentences, keeping names, numbers and dates exactly as written. Do not add opinions.",
  "You translate product reviews into plain English. Keep the reviewer's tone. If the review is already in English, correct only spelling mistakes and return it.",
  'You extract structured data from free-text order notes: the product names, quantities, delivery instructions and any deadline. Answer as a JSON object with those four keys; use null for anything missing. Never invent values that are not in the note.',
  'You are a support assistant for a bank. Answer briefly and politely. Never ask for a full card number or a password. If the question needs a human, say so and suggest the secure message form.',
];

const MODELS: Array<[string, number]> = [
  ['claude-haiku-4-5', 0.6],
  ['claude-sonnet-4-5', 0.35],
  ['claude-opus-4-5', 0.05],
];
const MAX_TOKENS = [64, 128, 256, 512, 1024];

/** mulberry32: small, fast and good enough to vary text. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

function text(random: () => number, minWords: number, maxWords: number): string {
  const count = minWords + Math.floor(random() * (maxWords - minWords + 1));
  const words: string[] = [];
  for (let i = 0; i < count; i++) {
    const word = random() < 0.05 ? pick(random, WIDE_WORDS) : pick(random, WORDS);
    words.push(i === 0 ? word[0]!.toUpperCase() + word.slice(1) : word);
    if (random() < 0.08) words[words.length - 1] += random() < 0.1 ? '.\n' : '.';
  }
  return `${words.join(' ')}?`;
}

function model(random: () => number): string {
  let roll = random();
  for (const [id, weight] of MODELS) {
    if (roll < weight) return id;
    roll -= weight;
  }
  return MODELS[0]![0];
}

export function customIdFor(index: number, prefix = 'req'): string {
  return `${prefix}-${String(index).padStart(7, '0')}`;
}

/** One request line (no terminator). */
export function requestLine(index: number, random: () => number, prefix = 'req'): string {
  const params: Record<string, unknown> = { model: model(random), max_tokens: pick(random, MAX_TOKENS) };
  const systemRoll = random();
  if (systemRoll < 0.2) {
    params.system = [{ type: 'text', text: pick(random, SYSTEM_PROMPTS), cache_control: { type: 'ephemeral' } }];
  } else if (systemRoll < 0.75) {
    params.system = pick(random, SYSTEM_PROMPTS);
  }
  params.messages =
    random() < 0.75
      ? [{ role: 'user', content: text(random, 50, 170) }]
      : [
          { role: 'user', content: text(random, 20, 80) },
          { role: 'assistant', content: text(random, 15, 60) },
          { role: 'user', content: text(random, 10, 50) },
        ];
  if (random() < 0.3) params.temperature = Math.round(random() * 10) / 10;
  if (random() < 0.1) params.metadata = { user_id: `user-${Math.floor(random() * 100_000)}` };
  return JSON.stringify({ custom_id: customIdFor(index, prefix), params });
}

/** Writes `rows` request lines to `path`, streaming with backpressure. */
export async function writeInputFile(path: string, rows: number, options: { seed?: number; prefix?: string } = {}): Promise<InputFile> {
  const random = seededRandom(options.seed ?? 20_260_101);
  const out = createWriteStream(path);
  let bytes = 0;
  let batch: string[] = [];
  let batchBytes = 0;
  const flush = async () => {
    const chunk = batch.join('');
    batch = [];
    batchBytes = 0;
    if (!out.write(chunk)) await once(out, 'drain');
  };
  try {
    for (let i = 0; i < rows; i++) {
      const line = requestLine(i, random, options.prefix) + '\n';
      const size = Buffer.byteLength(line);
      bytes += size;
      batch.push(line);
      batchBytes += size;
      if (batchBytes >= 256 * 1024) await flush();
    }
    await flush();
    out.end();
    await once(out, 'finish');
  } catch (error) {
    out.destroy();
    throw error;
  }
  return { path, rows, bytes };
}
