/**
 * Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
 * Software Network Load Balancer", NSDI 2016, §3.4).
 *
 * The lookup table
 *   A table of M slots (M prime) maps a flow hash to a backend:
 *   `backend = table[hash % M]`. Each backend i has a preference list, a
 *   permutation of the slots: offset_i = h1(name_i) mod M,
 *   skip_i = h2(name_i) mod (M - 1) + 1, permutation_i[j] = (offset_i + j *
 *   skip_i) mod M (a full permutation because M is prime and skip < M).
 *   Population (the paper's Pseudocode 1): backends take turns, each claiming
 *   the next slot of its own list that is still free, until all M slots are
 *   taken. Every backend ends up with M/N slots give or take one, and removing
 *   one backend mostly hands its slots to the others while the rest keep
 *   theirs: about 1/N of the flows move (the paper measures the extra churn at
 *   a few percent for M >= 100 N).
 *
 * Determinism
 *   The result depends only on the set of backend names, never on the order
 *   the caller lists them in: names are hashed (murmur3 over the name, two
 *   fixed seeds), and the turn order is the names' sorted order. Every agent,
 *   and the same agent after a restart, builds the same table from the same
 *   endpoint set, so a flow hashed by its 5-tuple keeps its backend (that is
 *   what lets established TCP flows survive an agent restart). The table holds
 *   indices into the caller's array as given.
 *
 * Cost
 *   Filling takes about M ln M probes in total (a backend near the end of the
 *   fill skips over taken slots), so M = 65537 costs about 0.7 M steps
 *   whatever N is, and M bytes-per-entry of memory. See service-table.ts for
 *   the size the service layer uses.
 *
 * Names are strings (hashed as UTF-16 code units) or unsigned 32-bit ids (an
 * IPv4 address as a number: one word, no allocation). Weights are not
 * supported; every backend gets an equal share.
 */
import { flatHash } from '../lib/flat-table'

/** The paper's default table size for a few hundred backends. */
export const MAGLEV_DEFAULT_SIZE = 65537
/** Seeds of the two name hashes (fixed: every agent must agree). */
const SEED_OFFSET = 0x4d61676c // 'Magl'
const SEED_SKIP = 0x65762121 // 'ev!!'

/** A few primes for tests and small tables (each is the largest prime below a power of two). */
export const MAGLEV_PRIMES: readonly number[] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537]

/** True if n is prime (trial division; n is at most a few million here). */
export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false
  if (n % 2 === 0) return n === 2
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false
  return true
}

/** Something a typed array of the caller's choice offers: the table can be Int32 or Uint16. */
export interface MaglevTable {
  readonly length: number
  [i: number]: number
}

type Name = string | number

function nameWords(name: Name): Uint32Array {
  if (typeof name === 'number') return Uint32Array.of(name >>> 0)
  const w = new Uint32Array(name.length + 1)
  w[0] = name.length
  for (let i = 0; i < name.length; i++) w[i + 1] = name.charCodeAt(i)
  return w
}

function compareNames(a: Name, b: Name): number {
  if (typeof a === 'number' && typeof b === 'number') return (a >>> 0) - (b >>> 0)
  const sa = String(a)
  const sb = String(b)
  return sa < sb ? -1 : sa > sb ? 1 : 0
}

/**
 * Fills `out` (its length is M, a prime) with indices into `names`; every
 * slot gets one. With no names every slot is -1 (an Int32 table) or the type's
 * wrap of it. Throws RangeError if the length is not prime.
 */
export function maglevFill(names: ArrayLike<Name>, out: MaglevTable): void {
  const M = out.length
  if (!isPrime(M)) throw new RangeError(`Maglev table size must be prime (got ${M})`)
  const N = names.length
  for (let i = 0; i < M; i++) out[i] = -1
  if (N === 0) return
  // Turn order: sorted names, so the caller's order does not matter.
  const order: number[] = []
  for (let i = 0; i < N; i++) order.push(i)
  order.sort((a, b) => compareNames(names[a], names[b]) || a - b)
  const pos = new Int32Array(N) // next candidate slot of backend k (in turn order)
  const skip = new Int32Array(N)
  for (let k = 0; k < N; k++) {
    const w = nameWords(names[order[k]])
    pos[k] = (flatHash(w, 0, w.length, SEED_OFFSET) >>> 0) % M
    skip[k] = ((flatHash(w, 0, w.length, SEED_SKIP) >>> 0) % (M - 1)) + 1
  }
  // `out` may be a Uint16Array, where -1 reads back as 0xffff: track fill separately.
  const taken = new Uint8Array(M)
  let filled = 0
  for (;;) {
    for (let k = 0; k < N; k++) {
      let c = pos[k]
      const s = skip[k]
      while (taken[c] === 1) { c += s; if (c >= M) c -= M }
      taken[c] = 1
      out[c] = order[k]
      c += s; if (c >= M) c -= M
      pos[k] = c
      if (++filled === M) return
    }
  }
}

/**
 * Builds a Maglev lookup table of `size` slots (prime, default 65537) for
 * `backends`: `table[hash % size]` is an index into `backends`, or -1 when
 * there are none.
 */
export function maglevBuild(backends: ArrayLike<Name>, size: number = MAGLEV_DEFAULT_SIZE): Int32Array {
  if (!isPrime(size)) throw new RangeError(`Maglev table size must be prime (got ${size})`)
  const out = new Int32Array(size)
  maglevFill(backends, out)
  return out
}

/** The slot of a flow hash (an unsigned 32-bit number) in a table of `size` slots. */
export function maglevSlot(hash: number, size: number): number {
  return (hash >>> 0) % size
}
