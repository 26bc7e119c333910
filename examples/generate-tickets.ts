/**
 * Writes N ticket-classification requests (JSONL) to stdout, for trying the pipeline on a file
 * that needs several chunks:
 *
 *   npx tsx examples/generate-tickets.ts 500 > tickets-500.jsonl
 *   BATCHLINE_MAX_REQUESTS_PER_CHUNK=50 npx batchline run tickets-500.jsonl
 *
 * The rows are the tickets of classification.jsonl with varied order numbers and products, so the
 * file is the same for the same N.
 */
import { readFileSync } from 'node:fs';
import { once } from 'node:events';

const count = Number(process.argv[2] ?? 500);
if (!Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: npx tsx examples/generate-tickets.ts N   (N rows, a whole number >= 1)\n');
  process.exit(2);
}

const templates = readFileSync(new URL('./classification.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as { params: { model: string; max_tokens: number; system: string; messages: Array<{ content: string }> } });
const products = ['the desktop app', 'the iOS app', 'the Android app', 'the web dashboard', 'the browser extension'];

for (let i = 0; i < count; i++) {
  const template = templates[i % templates.length]!;
  const content = `${template.params.messages[0]!.content} (Customer ${1000 + ((i * 7919) % 9000)}, using ${products[i % products.length]}.)`;
  const row = {
    custom_id: `ticket-${String(i + 1).padStart(6, '0')}`,
    params: { ...template.params, messages: [{ role: 'user', content }] },
  };
  if (!process.stdout.write(`${JSON.stringify(row)}\n`)) await once(process.stdout, 'drain');
}
