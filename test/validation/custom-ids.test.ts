import { describe, expect, it } from 'vitest';
import { CustomIdSet } from '../../shared/validation/custom-ids';

describe('CustomIdSet', () => {
  it('returns null for a new id and the first line for a repeated one, without recording the repeat', () => {
    const ids = new CustomIdSet();
    expect(ids.add('row-1', 1)).toBeNull();
    expect(ids.add('row-2', 2)).toBeNull();
    expect(ids.add('row-1', 7)).toBe(1);
    expect(ids.add('row-1', 9)).toBe(1);
    expect(ids.size).toBe(2);
    expect(ids.lineOf('row-2')).toBe(2);
    expect(ids.lineOf('row-3')).toBeUndefined();
    expect(ids.has('row-1')).toBe(true);
    expect(ids.has('not valid!')).toBe(false);
  });

  it('tells apart ids that pack to similar bytes: lengths, padding, case, every alphabet symbol', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
    const distinct = [
      'A',
      'AA',
      'AAA',
      'AAAA',
      'AAAAA',
      'a',
      'aa',
      'B',
      'BA',
      'AB',
      '-',
      '_',
      '--',
      '0',
      '00',
      ...[...alphabet].map((c) => `x${c}`),
      alphabet,
      alphabet.slice(1) + 'A',
      'A'.repeat(64),
      'A'.repeat(63),
      '-'.repeat(64),
    ];
    const ids = new CustomIdSet();
    distinct.forEach((id, i) => expect(ids.add(id, i + 1), id).toBeNull());
    distinct.forEach((id, i) => expect(ids.add(id, 1000), id).toBe(i + 1));
    expect(ids.size).toBe(distinct.length);
  });

  it('stays exact across growth: 300,000 ids, each found again with its line', () => {
    const ids = new CustomIdSet();
    const id = (i: number) => `req_${i.toString(36)}-${(i * 7919).toString(36)}`;
    const wronglySeen: string[] = [];
    for (let i = 0; i < 300_000; i++) if (ids.add(id(i), i + 1) !== null) wronglySeen.push(id(i));
    const wrongLine: string[] = [];
    for (let i = 0; i < 300_000; i++) if (ids.add(id(i), 0) !== i + 1) wrongLine.push(id(i));
    expect(wronglySeen).toEqual([]);
    expect(wrongLine).toEqual([]);
    expect(ids.size).toBe(300_000);
    expect(ids.lineOf('req_never-seen')).toBeUndefined();
  });

  it('holds 100,000 ids of 64 characters in about 69 bytes each (packed 6 bits a character)', () => {
    const ids = new CustomIdSet();
    for (let i = 0; i < 100_000; i++) ids.add(String(i).padStart(64, 'x'), i + 1);
    // 48 packed bytes + 13 bytes of entry arrays + 8 of index per id, in arrays that grow by doubling.
    expect(ids.byteSize).toBeLessThan(100_000 * 69 * 1.4);
    expect(ids.byteSize).toBeGreaterThan(100_000 * 48);
  });

  it('lists its ids in the order first added, each with its line, by index and by entries()', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
    const added = ['A', '-', 'x_9', alphabet, 'z'.repeat(64), '_'.repeat(63), ...[...alphabet].map((c) => `${c}${c}${c}`)];
    const ids = new CustomIdSet();
    added.forEach((id, i) => ids.add(id, 10 * i + 3));
    ids.add('A', 999);
    expect([...ids.entries()]).toEqual(added.map((id, i) => [id, 10 * i + 3]));
    const bytes = new Uint8Array(70);
    added.forEach((id, i) => {
      expect(ids.idAt(i)).toBe(id);
      expect(ids.lineAt(i)).toBe(10 * i + 3);
      expect(ids.lengthAt(i)).toBe(id.length);
      expect(ids.copyId(i, bytes, 5)).toBe(id.length);
      expect(Buffer.from(bytes.subarray(5, 5 + id.length)).toString('latin1')).toBe(id);
    });
    expect(() => ids.idAt(added.length)).toThrow(RangeError);
    expect(() => ids.lineAt(-1)).toThrow(RangeError);
  });

  it('relabels an id it holds (a repeat then names the new line) and refuses one it does not', () => {
    const ids = new CustomIdSet();
    ids.add('row-1', 40);
    ids.add('row-2', 41);
    expect(ids.relabel('row-1', 7)).toBe(true);
    expect(ids.add('row-1', 90)).toBe(7);
    expect(ids.lineOf('row-1')).toBe(7);
    expect(ids.lineOf('row-2')).toBe(41);
    expect(ids.relabel('row-3', 1)).toBe(false);
    expect(ids.relabel('not valid!', 1)).toBe(false);
    expect(ids.has('row-3')).toBe(false);
    expect(ids.size).toBe(2);
  });

  it.each([
    { id: '', message: 'a custom_id has 1 to 64 characters, got 0' },
    { id: 'x'.repeat(65), message: 'a custom_id has 1 to 64 characters, got 65' },
    { id: 'a.b', message: 'a custom_id holds only letters, digits, "_" and "-" (position 2)' },
    { id: 'é', message: 'a custom_id holds only letters, digits, "_" and "-" (position 1)' },
  ])('refuses an id that is not a valid custom_id ($id)', ({ id, message }) => {
    expect(() => new CustomIdSet().add(id, 1)).toThrow(new RangeError(message));
  });
});
