/**
 * Property testing for `*Check` functions (not a test file itself), after
 * STYLE.md §4: random bytes and every truncation; a check never throws,
 * returns a `Malformed` code or a length in (0, len], and never reads outside
 * [off, off+len) (it answers the same on an exact copy of those bytes).
 */
import assert from 'node:assert/strict'
import { Malformed } from '../../../src/wire/malformed'

export type CheckFn = (buf: Uint8Array, off: number, len: number) => number

/** mulberry32: a tiny seeded PRNG (public domain), so failures replay. Returns u32. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/** Uniform integer in [0, n). */
export function below(rng: () => number, n: number): number {
  return Math.floor((rng() / 4294967296) * n)
}

export function randomBytes(rng: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = rng() & 0xff
  return out
}

/** Asserts the safety property for one call and returns the result. */
export function assertCheckSafe(check: CheckFn, buf: Uint8Array, off: number, len: number): number {
  const where = `off ${off} len ${len} buf.length ${buf.length}`
  const r = check(buf, off, len)
  assert.ok(Number.isInteger(r), `non-integer result ${r} (${where})`)
  assert.notEqual(r, 0, `zero length (${where})`)
  if (r < 0) {
    assert.ok(Malformed[r] !== undefined, `unknown code ${r} (${where})`)
  } else {
    assert.ok(r <= len, `length ${r} > len (${where})`)
    assert.ok(r <= buf.length - off, `length ${r} past the buffer (${where})`)
  }
  // Reads only [off, off+len): an exact copy of those bytes gives the same answer.
  const avail = Math.max(0, Math.min(len, buf.length - off))
  const exact = buf.slice(off, off + avail)
  assert.equal(check(exact, 0, exact.length), r, `reads outside [off, off+len) (${where})`)
  return r
}

/**
 * Runs `cases` random cases against `check` (plus every truncation of every
 * valid packet, at offset 0 and embedded in garbage). Returns how many
 * random cases the check accepted, so a test can assert the fuzzer reached
 * the accepting path at all.
 */
export function fuzzCheck(check: CheckFn, valid: Uint8Array[], seed: number, cases = 20000): number {
  const rng = mulberry32(seed)
  for (const pkt of valid) {
    assert.ok(check(pkt, 0, pkt.length) > 0, 'a "valid" fixture does not check')
    for (let k = 0; k <= pkt.length; k++) {
      assertCheckSafe(check, pkt, 0, k)
      const inGarbage = new Uint8Array(k + 16)
      for (let i = 0; i < inGarbage.length; i++) inGarbage[i] = rng() & 0xff
      inGarbage.set(pkt.subarray(0, k), 5)
      assertCheckSafe(check, inGarbage, 5, k)
    }
  }
  let accepted = 0
  for (let c = 0; c < cases; c++) {
    let buf: Uint8Array
    let off: number
    let len: number
    const mode = c % 3
    if (mode === 0 || valid.length === 0) {
      // Pure random bytes, random window, len sometimes past the buffer.
      buf = randomBytes(rng, below(rng, 96))
      off = below(rng, buf.length + 1)
      len = below(rng, buf.length - off + 9)
    } else {
      // A valid packet with a few random bytes changed, in random surroundings.
      const pkt = valid[below(rng, valid.length)]
      const pre = below(rng, 8)
      buf = randomBytes(rng, pre + pkt.length + below(rng, 8))
      buf.set(pkt, pre)
      const flips = 1 + below(rng, 3)
      for (let f = 0; f < flips; f++) buf[pre + below(rng, pkt.length)] = rng() & 0xff
      off = pre
      len = mode === 1 ? pkt.length : below(rng, buf.length - pre + 9)
    }
    if (assertCheckSafe(check, buf, off, len) > 0) accepted++
  }
  return accepted
}
