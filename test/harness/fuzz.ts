/**
 * Shared pieces of the fuzz and property tests under test/unit/fuzz/ (not a
 * test file itself).
 *
 * Budget: every parser gets `fuzzCases()` inputs, 100,000 by default so CI
 * runs each file in well under 20 s; TAPESTRY_FUZZ_N raises it for a bench-only
 * run (e.g. TAPESTRY_FUZZ_N=10000000). TAPESTRY_FUZZ_SEED changes the base seed
 * (default: fixed, so CI is reproducible).
 *
 * Replay: case i of a run draws from its own PRNG seeded with caseSeed(base, i),
 * so a failure names one 32-bit seed, and that seed alone replays the case. Keep
 * such seeds in the test file's REGRESSION_SEEDS: they run before the random
 * cases on every run.
 */
import { mulberry32 } from '../unit/wire/fuzz'

export { mulberry32 }

export type Rng = () => number

/** Inputs per parser: TAPESTRY_FUZZ_N, or `dflt` (100,000 unless told). */
export function fuzzCases(dflt = 100_000): number {
  const v = process.env.TAPESTRY_FUZZ_N
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`TAPESTRY_FUZZ_N must be a positive integer (got ${JSON.stringify(v)})`)
  return n
}

/** The base seed of a run: TAPESTRY_FUZZ_SEED (decimal or 0x hex), or `dflt`. */
export function baseSeed(dflt: number): number {
  const v = process.env.TAPESTRY_FUZZ_SEED
  if (v === undefined || v === '') return dflt >>> 0
  const n = Number(v)
  if (!Number.isInteger(n)) throw new Error(`TAPESTRY_FUZZ_SEED must be an integer (got ${JSON.stringify(v)})`)
  return n >>> 0
}

/** The seed of case i of a run: a murmur3-style mix, so neighbouring cases are unrelated. */
export function caseSeed(base: number, i: number): number {
  let h = (base ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/**
 * A coverage check (the fuzzer reached some path, so its silence means
 * something): enforced only on runs of at least 1000 cases, since a quick run
 * (TAPESTRY_FUZZ_N=10) may miss a path by chance.
 */
export function assertReached(ok: boolean, cases: number, message: string): void {
  if (!ok && cases >= 1000) throw new Error(`coverage: ${message}`)
}

/** Uniform integer in [0, n). */
export function below(rng: Rng, n: number): number {
  return Math.floor((rng() / 4294967296) * n)
}

/** True with probability p. */
export function chance(rng: Rng, p: number): boolean {
  return rng() / 4294967296 < p
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[below(rng, items.length)]
}

export function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = rng() & 0xff
  return out
}

/** Values that break length and offset fields most often. */
const WORDS16 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x5ff, 0x600, 0x7fff, 0x8000, 0xfffe, 0xffff]

/**
 * A mutation of `t` (never modified): a truncation, bit flips, bytes or a 16-bit
 * field set to a boundary value ("huge lengths"), bytes inserted or removed,
 * garbage appended, or a splice with `other`. Several may stack.
 */
export function mutate(rng: Rng, t: Uint8Array, other?: Uint8Array): Uint8Array {
  // Uint8Array.from, not slice(): on a Buffer slice() is a view of the template, not a copy.
  let b: Uint8Array = Uint8Array.from(t)
  const rounds = 1 + below(rng, 3)
  for (let r = 0; r < rounds; r++) {
    switch (below(rng, 9)) {
      case 0: // truncation
        b = b.slice(0, below(rng, b.length + 1))
        break
      case 1: { // bit flips
        const n = 1 + below(rng, 4)
        for (let k = 0; k < n && b.length > 0; k++) b[below(rng, b.length)] ^= 1 << below(rng, 8)
        break
      }
      case 2: { // random bytes
        const n = 1 + below(rng, 4)
        for (let k = 0; k < n && b.length > 0; k++) b[below(rng, b.length)] = rng() & 0xff
        break
      }
      case 3: // a 16-bit field set to a boundary value (lengths, offsets, types)
        if (b.length >= 2) {
          const o = below(rng, b.length - 1)
          const w = chance(rng, 0.8) ? pick(rng, WORDS16) : rng() & 0xffff
          b[o] = w >>> 8
          b[o + 1] = w & 0xff
        }
        break
      case 4: { // insert bytes
        const at = below(rng, b.length + 1)
        const ins = randomBytes(rng, 1 + below(rng, 8))
        const nb = new Uint8Array(b.length + ins.length)
        nb.set(b.subarray(0, at), 0)
        nb.set(ins, at)
        nb.set(b.subarray(at), at + ins.length)
        b = nb
        break
      }
      case 5: { // delete bytes
        if (b.length === 0) break
        const at = below(rng, b.length)
        const n = 1 + below(rng, Math.min(8, b.length - at))
        const nb = new Uint8Array(b.length - n)
        nb.set(b.subarray(0, at), 0)
        nb.set(b.subarray(at + n), at)
        b = nb
        break
      }
      case 6: { // garbage appended
        const tail = randomBytes(rng, 1 + below(rng, 64))
        const nb = new Uint8Array(b.length + tail.length)
        nb.set(b, 0)
        nb.set(tail, b.length)
        b = nb
        break
      }
      case 7: { // splice with another template
        if (!other || other.length === 0) break
        const cut = below(rng, b.length + 1)
        const from = below(rng, other.length)
        const nb = new Uint8Array(cut + other.length - from)
        nb.set(b.subarray(0, cut), 0)
        nb.set(other.subarray(from), cut)
        b = nb
        break
      }
      default: { // a 32-bit field set to zero or all ones
        if (b.length >= 4) {
          const o = below(rng, b.length - 3)
          const v = chance(rng, 0.5) ? 0xff : 0
          b[o] = v; b[o + 1] = v; b[o + 2] = v; b[o + 3] = v
        }
      }
    }
  }
  return b
}

/** Random bytes, a mutated template, or a bare template (the accepting path), in proportions that reach deep code. */
export function fuzzInput(rng: Rng, templates: readonly Uint8Array[], maxRandom = 128): Uint8Array {
  const m = below(rng, 10)
  if (m === 0 || templates.length === 0) return randomBytes(rng, below(rng, maxRandom + 1))
  const t = pick(rng, templates)
  if (m === 1) return Uint8Array.from(t)
  return mutate(rng, t, pick(rng, templates))
}

/** Hex of the first `max` bytes, for failure messages. */
export function hexHead(b: Uint8Array, max = 96): string {
  let s = ''
  for (let i = 0; i < Math.min(b.length, max); i++) s += b[i].toString(16).padStart(2, '0')
  return b.length > max ? `${s}... (${b.length} bytes)` : `${s} (${b.length} bytes)`
}

/**
 * Runs `body(rng, seed)` for the regression seeds, then for `n` fresh cases of
 * the run. A throw is rethrown with the case's seed, so it can be kept.
 */
export function forEachCase(name: string, base: number, n: number, regression: readonly number[], body: (rng: Rng, seed: number) => void): void {
  const run = (seed: number, what: string): void => {
    try {
      body(mulberry32(seed), seed)
    } catch (err) {
      const e = err as Error
      e.message = `${name}: ${what} seed 0x${seed.toString(16)} failed (replay: add it to REGRESSION_SEEDS): ${e.message}`
      throw e
    }
  }
  for (const s of regression) run(s >>> 0, 'regression')
  for (let i = 0; i < n; i++) run(caseSeed(base, i), `case ${i}`)
}

/** A failure kind: a leading [tag] if the message has one, else the message with numbers and hex runs blanked. */
function failureKind(message: string): string {
  const tag = /^\[[A-Za-z0-9 -]+\]/.exec(message)
  if (tag) return tag[0]
  return message.split('\n')[0].replace(/0x[0-9a-f]+|[0-9a-f]{8,}|\d+(\.\d+)*/gi, '#').slice(0, 160)
}

/**
 * As forEachCase, but a failing case does not stop the run: failures are
 * grouped by kind (first seed and count of each) and reported together at the
 * end, so one known bug does not hide the next. Throws if any case failed.
 */
export function forEachCaseCollect(name: string, base: number, n: number, regression: readonly number[],
  body: (rng: Rng, seed: number) => void, maxKinds = 20): void {
  const kinds = new Map<string, { seed: number; count: number; message: string; replayable: boolean }>()
  const run = (seed: number): void => {
    try {
      body(mulberry32(seed), seed)
    } catch (err) {
      const message = (err as Error).message
      // A body may say whether the case fails on its own seed alone (`replayable`); keep such a seed when there is one.
      const replayable = (err as { replayable?: boolean }).replayable ?? true
      const k = failureKind(message)
      const known = kinds.get(k)
      if (known) {
        known.count++
        if (!known.replayable && replayable) Object.assign(known, { seed, message, replayable })
      } else if (kinds.size < maxKinds) kinds.set(k, { seed, count: 1, message, replayable })
    }
  }
  for (const s of regression) run(s >>> 0)
  for (let i = 0; i < n; i++) run(caseSeed(base, i))
  if (kinds.size === 0) return
  const lines = [...kinds.values()].map((f) => `- ${f.count} case(s), seed 0x${f.seed.toString(16)}${f.replayable ? '' : ' (needs the state of its run)'}: ${f.message.split('\n')[0].slice(0, 600)}`)
  throw new Error(`${name}: ${[...kinds.values()].reduce((s, f) => s + f.count, 0)} failing case(s) of ${n + regression.length}, ${kinds.size} kind(s) (keep the seeds in REGRESSION_SEEDS):\n${lines.join('\n')}`)
}
