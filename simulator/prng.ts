/**
 * Seeded randomness. Every random choice the simulator makes (outcomes, completion times, result
 * order, fault rates, derived ids) comes from a stream built here, so a run with the same seed
 * repeats exactly. Not for secrets: the hash and generator are chosen for speed, since results
 * lines of a 100,000-request batch each draw from their own stream.
 */

/** Returns numbers in [0, 1). */
export type Random = () => number;

/** cyrb128: a fast 128-bit string hash, enough to seed the generator. */
function hash128(text: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < text.length; i += 1) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/**
 * A stream keyed by the seed and labels (e.g. `seed, 'batch', 3, 'outcomes'`): streams with different
 * labels are independent, so drawing more from one never shifts another.
 */
export function seededRandom(seed: number, ...labels: Array<string | number>): Random {
  let [a, b, c, d] = hash128(JSON.stringify([seed, ...labels]));
  // sfc32: small, fast, and good enough for simulation.
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i += 1) next(); // mix the seed state before the first real draw
  return next;
}

/** Fisher–Yates, in place. */
export function shuffle<T extends { length: number; [index: number]: unknown }>(items: T, random: Random): T {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    const held = items[i];
    items[i] = items[j];
    items[j] = held;
  }
  return items;
}
