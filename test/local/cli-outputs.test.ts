import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidLinesExcerpt } from '../../cli/outputs';

describe('the invalid lines under a summary', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'batchline-excerpt-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('shows the first five reasons and counts the rest, naming the file', async () => {
    const file = path.join(dir, 'invalid.jsonl');
    const lines = Array.from({ length: 1_234 }, (_, i) => JSON.stringify({ line: i + 1, code: 'invalid_json', reason: `line ${i + 1} is not valid JSON` }));
    await writeFile(file, `${lines.join('\n')}\n`);
    expect(await invalidLinesExcerpt(file, 'out/invalid.jsonl')).toBe(
      [
        'Invalid lines (1,234):',
        '  line 1 is not valid JSON',
        '  line 2 is not valid JSON',
        '  line 3 is not valid JSON',
        '  line 4 is not valid JSON',
        '  line 5 is not valid JSON',
        '  … and 1,229 more in out/invalid.jsonl',
      ].join('\n'),
    );
  });

  it('says nothing for an empty report or none at all', async () => {
    const empty = path.join(dir, 'empty.jsonl');
    await writeFile(empty, '');
    expect(await invalidLinesExcerpt(empty, 'empty.jsonl')).toBeUndefined();
    expect(await invalidLinesExcerpt(path.join(dir, 'missing.jsonl'), 'missing.jsonl')).toBeUndefined();
  });
});
