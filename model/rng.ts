/**
 * Small, seeded, platform-independent random number generation.
 *
 * Everything here is built from 32-bit integer arithmetic (`Math.imul`, shifts, `>>> 0`), so the
 * integer streams are bit-identical on every JavaScript engine and CPU. Peers use this to agree on
 * data windows and initial weights without exchanging them: the same key always yields the same
 * numbers.
 *
 * Typical use:
 *   const rand = mulberry32(hashKey(seed, layer, paramIndex))
 *   const gauss = normalSampler(rand)
 *   const w = gauss() * std
 */
import { ConfigError } from '../common/index.js'

const TWO_POW_32 = 4294967296

/** Rotate a 32-bit integer left by `r` bits. */
function rotl32 (x: number, r: number): number {
  return (x << r) | (x >>> (32 - r))
}

/** MurmurHash3 finalizer: full avalanche of a 32-bit value. Returns a uint32. */
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Hash a list of integers to a uint32 seed (MurmurHash3_x86_32 over 32-bit words).
 *
 * Each argument must be a safe integer (negative values allowed). Every argument contributes two
 * words, its low and high 32 bits, so distinct safe integers never collide trivially, and the
 * argument count is mixed in, so `hashKey(1)` differs from `hashKey(1, 0)`. Order matters.
 * Throws ConfigError for non-integers (NaN, 1.5, Infinity, > 2^53).
 */
export function hashKey (...ints: number[]): number {
  let h = 0x9e3779b9
  for (let i = 0; i < ints.length; i++) {
    const n = ints[i]
    if (!Number.isSafeInteger(n)) {
      throw new ConfigError(`hashKey: argument ${i} must be a safe integer, got ${String(n)}`)
    }
    const lo = n >>> 0
    const hi = Math.floor(n / TWO_POW_32) >>> 0 // floor division keeps negatives consistent
    for (const word of [lo, hi]) {
      let k = Math.imul(word, 0xcc9e2d51)
      k = rotl32(k, 15)
      k = Math.imul(k, 0x1b873593)
      h ^= k
      h = rotl32(h, 13)
      h = (Math.imul(h, 5) + 0xe6546b64) | 0
    }
  }
  h ^= ints.length * 8 // byte length, as in MurmurHash3
  return fmix32(h)
}

/**
 * Mulberry32: a tiny 32-bit-state PRNG (period 2^32). Returns a function producing floats in
 * [0, 1) with 32 bits of resolution (k / 2^32, exact in a double). The seed is taken modulo 2^32.
 * Good enough for sampling offsets and initialising weights; not cryptographic.
 */
export function mulberry32 (seed: number): () => number {
  if (!Number.isFinite(seed)) throw new ConfigError(`mulberry32: seed must be finite, got ${String(seed)}`)
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / TWO_POW_32
  }
}

/** Uniform integer in [0, n) from a [0, 1) source. `n` must be a positive integer <= 2^32. */
export function randInt (rand: () => number, n: number): number {
  if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
    throw new ConfigError(`randInt: n must be an integer in [1, 2^32], got ${String(n)}`)
  }
  return Math.floor(rand() * n)
}

/**
 * Standard normal sampler (Box-Muller) driven by a [0, 1) source. Each pair of uniforms yields two
 * normals; the second is cached and returned by the next call, so the output sequence depends only
 * on the uniform sequence.
 *
 * Cross-platform note: the uniforms are bit-exact everywhere, but `Math.log`, `Math.cos` and
 * `Math.sin` are not required to be correctly rounded. V8 (Node, Chrome) uses the same fdlibm port
 * on every OS/CPU, so results agree across V8 peers; other engines may differ in the last ulp.
 */
export function normalSampler (rand: () => number): () => number {
  let spare: number | undefined
  return () => {
    if (spare !== undefined) {
      const s = spare
      spare = undefined
      return s
    }
    const u1 = 1 - rand() // (0, 1], so log is finite
    const u2 = rand()
    const r = Math.sqrt(-2 * Math.log(u1))
    const theta = 2 * Math.PI * u2
    spare = r * Math.sin(theta)
    return r * Math.cos(theta)
  }
}
