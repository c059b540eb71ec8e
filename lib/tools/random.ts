/**
 * Deterministic random data shared by the model generators: a seeded PRNG,
 * per-tensor seeds (so a tensor's bytes do not depend on file order), and
 * f32 → f16 conversion.
 */

/**
 * A generator's seed option: `seed` (default 1), checked.
 * @throws RangeError for a seed that is not a uint32
 */
export function uint32Seed(seed: number | undefined): number {
  if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)) throw new RangeError(`seed must be a uint32, got ${seed}`);
  return (seed ?? 1) >>> 0;
}

/** mulberry32: a small, fast 32-bit PRNG. Returns uint32 values. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Seed for one tensor: the model seed mixed with an FNV-1a hash of the name (order-independent). */
export function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

const f32Scratch = new Float32Array(1);

const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits of `v` (round half up; values here are small and finite). */
export function f32ToF16Bits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00; // overflow → inf (NaN not produced here)
  if (exp <= 0) {
    if (exp < -10) return sign; // underflow → ±0
    mant |= 0x800000;
    const shift = 14 - exp;
    let h = mant >>> shift;
    if ((mant >>> (shift - 1)) & 1) h++;
    return sign | h;
  }
  let h = sign | (exp << 10) | (mant >>> 13);
  if (mant & 0x1000) h++; // carries into the exponent correctly
  return h;
}

/** Bytes of the scratch buffer tensor data is produced in. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/** Scales a uint32 PRNG value to [0, 2). */
export const U32_TO_UNIT = 1 / 2147483648; // uint32 → [0, 2)
