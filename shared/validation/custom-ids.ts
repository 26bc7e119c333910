/**
 * The custom_ids of one input file, with the line each was first seen on: duplicates must be
 * reported naming both lines, and a file may hold a million rows or more.
 *
 * Why not Map<string, number>: measured on Node 20, 1M ids of 64 characters held in a Map cost
 * ~109 MB of heap (16 characters: ~61 MB), as a million separate strings the GC keeps tracing.
 * Here ids are exact, packed 6 bits a character (the alphabet has exactly 64 symbols) into 1 MiB
 * pages, with an open-addressing index in typed arrays: ~21 bytes per id plus ⌈6·length/8⌉
 * (1M × 64 characters: ~69 MB; 1M × 16: ~33 MB), in a handful of objects. Lookups compare the
 * packed bytes, so there are no false duplicates.
 */

export const CUSTOM_ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
export const CUSTOM_ID_MAX_LENGTH = 64;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const CODE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) CODE[ALPHABET.charCodeAt(i)] = i;

const PAGE_BYTES = 1 << 20;
const MAX_PACKED_BYTES = Math.ceil((CUSTOM_ID_MAX_LENGTH * 6) / 8);
/** Addresses are page × PAGE_BYTES + offset in a Uint32: 4 GiB of packed ids (≥ 89M ids). */
const MAX_PAGES = 2 ** 32 / PAGE_BYTES;

export class CustomIdSet {
  private readonly pages: Uint8Array[] = [];
  private pageUsed = PAGE_BYTES;
  private addresses = new Uint32Array(1024);
  private lengths = new Uint8Array(1024);
  private hashes = new Int32Array(1024);
  private lines = new Uint32Array(1024);
  /** Entry index + 1; 0 is an empty slot. Kept at most half full. */
  private slots = new Int32Array(2048);
  private count = 0;
  private readonly scratch = new Uint8Array(MAX_PACKED_BYTES);

  get size(): number {
    return this.count;
  }

  /** Bytes held by the set's arrays (what it costs in memory, give or take a few objects). */
  get byteSize(): number {
    return (
      this.pages.length * PAGE_BYTES +
      this.addresses.byteLength +
      this.lengths.byteLength +
      this.hashes.byteLength +
      this.lines.byteLength +
      this.slots.byteLength
    );
  }

  /**
   * Records `id` as first seen on `line`. Returns null when the id is new, or the line it was first
   * seen on when it is a duplicate (nothing is recorded then). `id` must match CUSTOM_ID_PATTERN.
   */
  add(id: string, line: number): number | null {
    if (this.count + 1 > this.slots.length >>> 1) this.growSlots();
    const packed = this.pack(id);
    const hash = hashOf(this.scratch, packed, id.length);
    const mask = this.slots.length - 1;
    let slot = hash & mask;
    for (let entry = this.slots[slot]!; entry !== 0; entry = this.slots[slot]!) {
      if (this.matches(entry - 1, hash, id.length, packed)) return this.lines[entry - 1]!;
      slot = (slot + 1) & mask;
    }
    const index = this.count;
    if (index === this.addresses.length) this.growEntries();
    this.addresses[index] = this.store(packed);
    this.lengths[index] = id.length;
    this.hashes[index] = hash;
    this.lines[index] = line;
    this.slots[slot] = index + 1;
    this.count += 1;
    return null;
  }

  /** The line `id` was first seen on, or undefined. */
  lineOf(id: string): number | undefined {
    if (!CUSTOM_ID_PATTERN.test(id)) return undefined;
    const packed = this.pack(id);
    const hash = hashOf(this.scratch, packed, id.length);
    const mask = this.slots.length - 1;
    let slot = hash & mask;
    for (let entry = this.slots[slot]!; entry !== 0; entry = this.slots[slot]!) {
      if (this.matches(entry - 1, hash, id.length, packed)) return this.lines[entry - 1]!;
      slot = (slot + 1) & mask;
    }
    return undefined;
  }

  has(id: string): boolean {
    return this.lineOf(id) !== undefined;
  }

  /** Packs `id` into the scratch buffer; returns the packed length. */
  private pack(id: string): number {
    if (id.length === 0 || id.length > CUSTOM_ID_MAX_LENGTH) {
      throw new RangeError(`a custom_id has 1 to ${CUSTOM_ID_MAX_LENGTH} characters, got ${id.length}`);
    }
    let acc = 0;
    let bits = 0;
    let n = 0;
    for (let i = 0; i < id.length; i++) {
      const char = id.charCodeAt(i);
      const code = char < 128 ? CODE[char]! : -1;
      if (code < 0) throw new RangeError(`a custom_id holds only letters, digits, "_" and "-" (position ${i + 1})`);
      acc = (acc << 6) | code;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        this.scratch[n++] = (acc >>> bits) & 0xff;
        acc &= (1 << bits) - 1;
      }
    }
    if (bits > 0) this.scratch[n++] = (acc << (8 - bits)) & 0xff;
    return n;
  }

  private matches(entry: number, hash: number, length: number, packed: number): boolean {
    if (this.hashes[entry] !== hash || this.lengths[entry] !== length) return false;
    const address = this.addresses[entry]!;
    const page = this.pages[Math.floor(address / PAGE_BYTES)]!;
    const offset = address % PAGE_BYTES;
    for (let i = 0; i < packed; i++) {
      if (page[offset + i] !== this.scratch[i]) return false;
    }
    return true;
  }

  /** Copies the scratch bytes into the current page (ids never straddle pages); returns the address. */
  private store(packed: number): number {
    if (this.pageUsed + packed > PAGE_BYTES) {
      if (this.pages.length === MAX_PAGES) throw new RangeError('too many custom_ids for one CustomIdSet');
      this.pages.push(new Uint8Array(PAGE_BYTES));
      this.pageUsed = 0;
    }
    const pageIndex = this.pages.length - 1;
    this.pages[pageIndex]!.set(this.scratch.subarray(0, packed), this.pageUsed);
    const address = pageIndex * PAGE_BYTES + this.pageUsed;
    this.pageUsed += packed;
    return address;
  }

  private growEntries(): void {
    const capacity = this.addresses.length * 2;
    this.addresses = grown(this.addresses, new Uint32Array(capacity));
    this.lengths = grown(this.lengths, new Uint8Array(capacity));
    this.hashes = grown(this.hashes, new Int32Array(capacity));
    this.lines = grown(this.lines, new Uint32Array(capacity));
  }

  private growSlots(): void {
    const slots = new Int32Array(this.slots.length * 2);
    const mask = slots.length - 1;
    for (let index = 0; index < this.count; index++) {
      let slot = this.hashes[index]! & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = index + 1;
    }
    this.slots = slots;
  }
}

function grown<T extends Uint8Array | Int32Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** FNV-1a over the packed bytes and the length (the length disambiguates the last byte's padding). */
function hashOf(bytes: Uint8Array, packed: number, length: number): number {
  let hash = 0x811c9dc5 ^ length;
  for (let i = 0; i < packed; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  // Mix the high bits down: the index uses the low bits only.
  hash ^= hash >>> 15;
  return Math.imul(hash, 0x2c1b3c6d) ^ (hash >>> 12);
}
