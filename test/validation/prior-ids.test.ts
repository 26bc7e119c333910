/**
 * The ids earlier segments of a resumable Prepare committed (shared/validation/prior-ids.ts), stored
 * in and read back from a real local S3 (s3rver) with ranged GETs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type LocalS3 } from '../../local/emulators';
import { CustomIdSet } from '../../shared/validation/custom-ids';
import { idHash, PriorIds, storeSegmentIds, type IdSegmentRef, type StoreSegmentOptions } from '../../shared/validation/prior-ids';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

describe('PriorIds', () => {
  let s3: LocalS3;
  const bucket = 'prior-ids-test';
  let keys = 0;
  beforeAll(async () => {
    s3 = await startS3({ buckets: [bucket] });
  });
  afterAll(async () => {
    await s3?.stop();
  });

  /** A set of `ids`, the ith on line `firstLine + i`. */
  const setOf = (ids: readonly string[], firstLine = 1) => {
    const set = new CustomIdSet();
    ids.forEach((id, i) => set.add(id, firstLine + i));
    return set;
  };
  const store = (set: CustomIdSet, options?: StoreSegmentOptions) => storeSegmentIds(s3.client, bucket, `segments/${keys++}.bin`, set, options);
  const load = (refs: readonly IdSegmentRef[], options?: { cacheBytes?: number }) => PriorIds.load(s3.client, bucket, refs, options);
  const fillers = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i.toString(36)}`);

  /** Pairs of distinct ids whose sort hashes are equal: a birthday search over generated ids. */
  const collidingPairs = (() => {
    let found: [string, string][] | undefined;
    return () => {
      if (found) return found;
      found = [];
      const seen = new Map<number, string>();
      for (let i = 0; found.length < 2; i++) {
        const id = `c-${i.toString(36)}`;
        const hash = idHash(id);
        const other = seen.get(hash);
        if (other === undefined) seen.set(hash, id);
        else found.push([other, id]);
      }
      return found;
    };
  })();

  it('answers exactly across segments: each id its own line, the earliest segment wins, absent ids undefined', async () => {
    const edgeIds = [...ALPHABET, ALPHABET, [...ALPHABET].reverse().join(''), 'A'.repeat(64), '-'.repeat(64)];
    const first = [...edgeIds, ...fillers('one-', 2_000), 'shared-id'];
    // Ids in both segments: a 1-character one and a longer one.
    const both = new Set(['shared-id', '0']);
    const second = [...fillers('two-', 1_500), 'shared-id', 'z'.repeat(64), '0', 'x9'];
    const refs = [await store(setOf(first, 1)), await store(setOf(second, 10_001), { blockEntries: 16 })];
    const prior = await load(refs);

    expect(prior.size).toBe(first.length + second.length);
    for (const [i, id] of first.entries()) {
      expect(prior.mayHave(id), id).toBe(true);
      expect(await prior.firstLine(id), id).toBe(1 + i);
    }
    for (const [i, id] of second.entries()) {
      expect(prior.mayHave(id), id).toBe(true);
      if (!both.has(id)) expect(await prior.firstLine(id), id).toBe(10_001 + i);
    }
    for (const id of both) expect(await prior.firstLine(id), id).toBe(first.indexOf(id) + 1);

    const absent = ['A'.repeat(63), 'AA', 'a'.repeat(64), ALPHABET.slice(0, 63) + 'A', 'one-zzzz', 'two-', 'shared-id-', 'Shared-id'];
    for (const id of absent) expect(await prior.firstLine(id), id).toBeUndefined();
    expect(prior.stats.falsePositives).toBeLessThanOrEqual(absent.length);
  });

  it('holds a segment with no ids, and no segments at all, answering "not seen" without reading S3', async () => {
    const empty = await store(new CustomIdSet());
    expect(empty.ids).toBe(0);
    const none = await load([]);
    const onlyEmpty = await load([empty]);
    for (const prior of [none, onlyEmpty]) {
      expect(prior.mayHave('row-1')).toBe(false);
      expect(await prior.firstLine('row-1')).toBeUndefined();
      expect(prior.stats).toEqual({ lookups: 0, blockReads: 0, falsePositives: 0 });
    }
    const withEmpty = await load([empty, await store(setOf(['row-1'], 5)), empty]);
    expect(await withEmpty.firstLine('row-1')).toBe(5);
    expect(await withEmpty.firstLine('row-2')).toBeUndefined();
  });

  it.each([
    { blockEntries: 1, below: 0, where: 'each in a block of its own' },
    { blockEntries: 4, below: 1, where: 'within one block' },
    { blockEntries: 4, below: 3, where: 'across a block boundary' },
    { blockEntries: 3, below: 2, where: 'across a boundary of blocks of 3' },
  ])('tells apart ids of equal hash $where', async ({ blockEntries, below }) => {
    const [pair, twins] = collidingPairs();
    const [a, b] = pair!;
    const [c, absentTwin] = twins!;
    expect(idHash(a)).toBe(idHash(b));
    expect(a).not.toBe(b);
    // Fillers placed so exactly `below` entries sort before the colliding pair.
    const hash = idHash(a);
    const candidates = fillers('f-', 200);
    const lower = candidates.filter((id) => idHash(id) < hash).slice(0, below);
    const higher = candidates.filter((id) => idHash(id) > hash).slice(0, 6);
    expect(lower).toHaveLength(below);
    const ids = [...higher, b, ...lower, a];
    const prior = await load([await store(setOf(ids, 100), { blockEntries }), await store(setOf([c], 900), { hashCount: 1 })]);
    for (const [i, id] of ids.entries()) expect(await prior.firstLine(id), id).toBe(100 + i);
    expect(await prior.firstLine(c)).toBe(900);
    // One probe on h1 alone: the absent twin of c passes the second segment's filter, so its block is searched.
    expect(prior.mayHave(absentTwin)).toBe(true);
    const before = prior.stats.falsePositives;
    expect(await prior.firstLine(absentTwin)).toBeUndefined();
    expect(prior.stats.falsePositives).toBe(before + 1);
  });

  it('never says no for a stored id, and says maybe for under 0.1% of absent ids (200,000 of each)', async () => {
    const stored = Array.from({ length: 200_000 }, (_, i) => `req_${i.toString(36)}-${(i * 7919).toString(36)}`);
    const prior = await load([await store(setOf(stored))]);
    const missed = stored.filter((id) => !prior.mayHave(id));
    expect(missed).toEqual([]);
    const absent = Array.from({ length: 200_000 }, (_, i) => `absent_${(i * 104729).toString(36)}`);
    const maybes = absent.filter((id) => prior.mayHave(id));
    expect(maybes.length).toBeLessThan(200);
    for (const id of maybes) expect(await prior.firstLine(id)).toBeUndefined();
    expect(prior.stats.falsePositives).toBe(maybes.length);
    for (let i = 0; i < stored.length; i += 997) expect(await prior.firstLine(stored[i]!)).toBe(i + 1);
    // The filter, 20 bits an id, and the sparse index are what a segment costs in memory.
    expect(prior.byteSize).toBeLessThan(200_000 * 2.6);
  });

  it('reads each block once when a whole segment repeats (every lookup a true duplicate) and the cache fits', async () => {
    const ids = fillers('dup-', 20_000);
    const ref = await store(setOf(ids));
    const blocks = Math.ceil(ids.length / 1024);
    const inOrder = await load([ref]);
    for (const [i, id] of ids.entries()) expect(await inOrder.firstLine(id)).toBe(i + 1);
    expect(inOrder.stats).toEqual({ lookups: ids.length, blockReads: blocks, falsePositives: 0 });

    // Lookups in flight together share one read a block.
    const together = await load([ref]);
    const lines = await Promise.all(ids.map((id) => together.firstLine(id)));
    expect(lines).toEqual(ids.map((_, i) => i + 1));
    expect(together.stats.blockReads).toBe(blocks);
  });

  it('reads at most the blocks a hash can lie in per lookup when the cache is too small', async () => {
    const ids = fillers('small-', 1_000);
    const ref = await store(setOf(ids), { blockEntries: 16 });
    const prior = await load([ref], { cacheBytes: 0 });
    let most = 0;
    for (const [i, id] of ids.entries()) {
      const before = prior.stats.blockReads;
      expect(await prior.firstLine(id)).toBe(i + 1);
      most = Math.max(most, prior.stats.blockReads - before);
    }
    expect(most).toBeGreaterThanOrEqual(1);
    expect(most).toBeLessThanOrEqual(2);
    expect(prior.stats.blockReads).toBeLessThanOrEqual(2 * ids.length);
    expect(prior.stats.blockReads).toBeGreaterThan(Math.ceil(ids.length / 16));
  });

  it('answers many ids at once reading each block once, with no cache: earliest segment wins, absent ids undefined', async () => {
    const first = fillers('many-', 3_000);
    const second = [...fillers('more-', 1_000), first[10]!];
    const prior = await load([await store(setOf(first), { blockEntries: 64 }), await store(setOf(second, 5_001), { blockEntries: 64 })], {
      cacheBytes: 0,
    });
    const asked = [...[...first].reverse(), ...second, 'never-1', 'never-2'];
    const expected = [...first.map((_, i) => first.length - i), ...second.map((id, i) => (id === first[10] ? 11 : 5_001 + i)), undefined, undefined];
    expect(await prior.firstLines(asked)).toEqual(expected);
    expect(prior.stats.blockReads).toBeLessThanOrEqual(Math.ceil(first.length / 64) + Math.ceil(second.length / 64));
    expect(prior.stats.lookups).toBe(first.length + second.length + prior.stats.falsePositives);
  });

  it('refuses a ref that does not describe the object it names', async () => {
    const ref = await store(setOf(fillers('ref-', 100)));
    await expect(load([{ ...ref, ids: 99 }])).rejects.toThrow(/is not the id segment its ref describes/);
    await expect(load([{ ...ref, filterBits: ref.filterBits + 8 }])).rejects.toThrow(/segments\/\d+\.bin/);
  });
});
