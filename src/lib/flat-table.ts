/**
 * FlatTable: an open-addressing hash table over typed arrays that maps a
 * fixed-width key of K u32 words to a stable entry id. The FDB and conntrack
 * share it; they keep their values in their own typed arrays indexed by id.
 *
 *   key scratch      slab (entry id -> key)           index (slot -> entry id)
 *   +---------+      +------+------+------+------+    +----+----+----+----+----
 *   | w0 .. wK|      | id 0 | id 1 | id 2 |  ..  |    | -1 |  2 |  0 | -1 | ..
 *   +---------+      +------+------+------+------+    +----+----+----+----+----
 *   table.key        keys: Uint32Array(cap * K)       index: Int32Array(2^n)
 *                    live: Uint8Array(cap)            -1 = empty slot
 *                    free: Int32Array(cap) stack
 *
 * - An entry id is stable from insert() until remove(id): the index moves ids
 *   around, never keys. Users keep values in parallel arrays (`ports[id]`).
 * - The index is a power of two, at least twice the slab capacity, so the
 *   load stays <= 0.5. Lookup is linear probing from `hash(key) & mask`.
 * - Deletion shifts the rest of the cluster back into the hole (no
 *   tombstones), so probe lengths never degrade under churn and a table never
 *   needs a cleanup rehash.
 * - Freed ids go on a free stack and are reused first; ids are handed out
 *   below the high-water mark otherwise.
 * - Growth: when the slab is full it doubles (capped at maxEntries), the index
 *   rehashes if it must, then `onGrow(newCap)` runs so users can grow their
 *   value arrays (see growU32/growF64/growU8) before the new id is returned.
 *   `keys` is a new array after growth: never keep a reference across insert.
 *
 * Hot path: write the key into `table.key`, then call find(), insert() or
 * findOrInsert(). None of them allocates (except growth, which is amortised
 * and bounded by maxEntries). remove(id) does not touch `table.key`.
 *
 * The hash is murmur3's 32-bit block and finaliser steps over the key words,
 * seeded per table so collision sets cannot be computed offline. It is not a
 * keyed PRF: callers that face adversarial keys (MAC flooding) must also bound
 * what one source can insert, as the FDB limits do.
 *
 * Memory per entry, with N = maxEntries reached: 4K (keys) + 4 (free stack)
 * + 1 (live) + 4 * indexSize / N (8 when N is a power of two, up to 16).
 * For a 3-word FDB key that is about 25 bytes per entry before values.
 */

/** Largest maxEntries: the index then has 2^28 slots (1 GiB of Int32). */
export const FLAT_TABLE_MAX_ENTRIES = 1 << 27
const DEFAULT_INITIAL_CAPACITY = 16
const EMPTY = -1

export interface FlatTableOptions {
  /** K: number of u32 words in a key (>= 1). */
  keyWords: number
  /** Hard cap on live entries; insert() returns -1 beyond it. Default FLAT_TABLE_MAX_ENTRIES. */
  maxEntries?: number
  /** Slab capacity to start with (clamped to maxEntries). Default 16. */
  initialCapacity?: number
  /** Hash seed. Default: random per table. Tests pass one for determinism. */
  seed?: number
  /** Called after the slab grew to `newCap` entries, before the insert that caused it returns. */
  onGrow?: (newCap: number) => void
}

/**
 * Hashes K words of `a` from `base` (murmur3 x86_32 over u32 blocks). Returns
 * a signed 32-bit number; callers mask it.
 */
export function flatHash(a: Uint32Array, base: number, words: number, seed: number): number {
  let h = seed | 0
  for (let i = 0; i < words; i++) {
    let k = Math.imul(a[base + i], 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, 0x1b873593)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  h ^= words << 2
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h
}

function randomSeed(): number {
  return (Math.random() * 0x100000000) >>> 0
}

function indexSizeFor(cap: number): number {
  let n = 16
  while (n < cap * 2) n *= 2
  return n
}

function checkCount(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}] (got ${v})`)
  }
}

export class FlatTable {
  readonly keyWords: number
  readonly maxEntries: number
  readonly seed: number
  /** Key scratch: write the key here before find/insert/findOrInsert. */
  readonly key: Uint32Array
  /** Slab of keys, entry `id` at [id*K, id*K+K). Replaced on growth. */
  keys: Uint32Array
  /** True when the last findOrInsert() inserted a new entry. */
  lastInserted = false
  onGrow: ((newCap: number) => void) | null

  private index: Int32Array
  private mask: number
  private live: Uint8Array
  private free: Int32Array
  private freeTop = 0
  private highWater = 0
  private cap: number
  private count = 0

  constructor(opts: FlatTableOptions) {
    const maxEntries = opts.maxEntries ?? FLAT_TABLE_MAX_ENTRIES
    checkCount('keyWords', opts.keyWords, 1, 1024)
    checkCount('maxEntries', maxEntries, 1, FLAT_TABLE_MAX_ENTRIES)
    const initial = opts.initialCapacity ?? DEFAULT_INITIAL_CAPACITY
    checkCount('initialCapacity', initial, 1, FLAT_TABLE_MAX_ENTRIES)
    this.keyWords = opts.keyWords
    this.maxEntries = maxEntries
    this.seed = (opts.seed ?? randomSeed()) >>> 0
    this.onGrow = opts.onGrow ?? null
    this.key = new Uint32Array(this.keyWords)
    this.cap = Math.min(initial, maxEntries)
    this.keys = new Uint32Array(this.cap * this.keyWords)
    this.live = new Uint8Array(this.cap)
    this.free = new Int32Array(this.cap)
    this.index = new Int32Array(indexSizeFor(this.cap)).fill(EMPTY)
    this.mask = this.index.length - 1
  }

  /** Live entries. */
  get size(): number { return this.count }
  /** Slab capacity: every live id is below it; value arrays need this length. */
  get capacity(): number { return this.cap }
  /** Index slots (for memory accounting). */
  get indexSize(): number { return this.index.length }

  /** Entry id whose key equals `table.key`, or -1. */
  find(): number {
    const K = this.keyWords
    const key = this.key
    const keys = this.keys
    const index = this.index
    const mask = this.mask
    let i = flatHash(key, 0, K, this.seed) & mask
    for (;;) {
      const id = index[i]
      if (id === EMPTY) return -1
      const base = id * K
      let w = 0
      while (w < K && keys[base + w] === key[w]) w++
      if (w === K) return id
      i = (i + 1) & mask
    }
  }

  /**
   * Inserts `table.key`, which the caller knows is absent, and returns its new
   * entry id, or -1 when maxEntries entries are live.
   */
  insert(): number {
    const id = this.allocId()
    if (id < 0) return -1
    this.copyKey(id)
    this.place(id, flatHash(this.key, 0, this.keyWords, this.seed))
    return id
  }

  /**
   * Returns the id for `table.key`, inserting it if absent; sets
   * `lastInserted`. Returns -1 (lastInserted false) when the key is absent and
   * the table is full.
   */
  findOrInsert(): number {
    const K = this.keyWords
    const key = this.key
    const keys = this.keys
    const index = this.index
    const mask = this.mask
    const h = flatHash(key, 0, K, this.seed)
    let i = h & mask
    for (;;) {
      const id = index[i]
      if (id === EMPTY) break
      const base = id * K
      let w = 0
      while (w < K && keys[base + w] === key[w]) w++
      if (w === K) { this.lastInserted = false; return id }
      i = (i + 1) & mask
    }
    const id = this.allocId()
    if (id < 0) { this.lastInserted = false; return -1 }
    this.copyKey(id)
    // Growth may have rehashed into a new index, so probe again from home.
    if (index === this.index) { index[i] = id } else { this.place(id, h) }
    this.lastInserted = true
    return id
  }

  /** True if `id` is a live entry. */
  has(id: number): boolean {
    return id >= 0 && id < this.highWater && this.live[id] === 1
  }

  /** Word `w` of the key of entry `id`. */
  keyWord(id: number, w: number): number {
    return this.keys[id * this.keyWords + w]
  }

  /**
   * Removes entry `id`; returns false if it was not live. The id goes on the
   * free stack and may be returned by the next insert.
   */
  remove(id: number): boolean {
    if (!this.has(id)) return false
    const K = this.keyWords
    const keys = this.keys
    const index = this.index
    const mask = this.mask
    let hole = flatHash(keys, id * K, K, this.seed) & mask
    while (index[hole] !== id) hole = (hole + 1) & mask
    // Backward shift: walk the rest of the cluster; an entry at j whose home
    // slot is not cyclically in (hole, j] may move back into the hole.
    let j = hole
    for (;;) {
      j = (j + 1) & mask
      const e = index[j]
      if (e === EMPTY) break
      const home = flatHash(keys, e * K, K, this.seed) & mask
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        index[hole] = e
        hole = j
      }
    }
    index[hole] = EMPTY
    this.live[id] = 0
    this.free[this.freeTop++] = id
    this.count--
    return true
  }

  /** Removes every entry; keeps the capacity. */
  clear(): void {
    this.index.fill(EMPTY)
    this.live.fill(0, 0, this.highWater)
    this.highWater = 0
    this.freeTop = 0
    this.count = 0
  }

  /**
   * Calls `cb(id)` for each live entry, in id order. Not for the hot path.
   * `cb` may remove any entry (removed ones not yet reached are skipped);
   * entries inserted during the walk may or may not be visited.
   */
  forEach(cb: (id: number) => void): void {
    for (let id = 0; id < this.highWater; id++) {
      if (this.live[id] === 1) cb(id)
    }
  }

  /**
   * Checks the index invariants (every live id reachable from its home slot
   * without crossing an empty slot, counts agree). O(capacity): for tests.
   * Throws an Error describing the first violation.
   */
  selfCheck(): void {
    const K = this.keyWords
    const mask = this.mask
    let seen = 0
    for (let s = 0; s <= mask; s++) {
      const id = this.index[s]
      if (id === EMPTY) continue
      seen++
      if (!this.has(id)) throw new Error(`slot ${s} holds dead id ${id}`)
      for (let i = flatHash(this.keys, id * K, K, this.seed) & mask; i !== s; i = (i + 1) & mask) {
        if (this.index[i] === EMPTY) throw new Error(`id ${id} at slot ${s} is cut off from its home by empty slot ${i}`)
      }
    }
    let live = 0
    for (let id = 0; id < this.highWater; id++) live += this.live[id]
    if (seen !== this.count || live !== this.count) {
      throw new Error(`size ${this.count}, index holds ${seen}, slab holds ${live}`)
    }
    if (live + this.freeTop !== this.highWater) throw new Error('free stack out of step with the slab')
  }

  private allocId(): number {
    if (this.freeTop > 0) {
      const id = this.free[--this.freeTop]
      this.live[id] = 1
      this.count++
      return id
    }
    if (this.highWater === this.cap) {
      if (this.cap === this.maxEntries) return -1
      this.grow()
    }
    const id = this.highWater++
    this.live[id] = 1
    this.count++
    return id
  }

  private copyKey(id: number): void {
    const K = this.keyWords
    const keys = this.keys
    const base = id * K
    for (let w = 0; w < K; w++) keys[base + w] = this.key[w]
  }

  /** Puts `id` into the first empty slot from `h`'s home. */
  private place(id: number, h: number): void {
    const index = this.index
    const mask = this.mask
    let i = h & mask
    while (index[i] !== EMPTY) i = (i + 1) & mask
    index[i] = id
  }

  private grow(): void {
    const cap = Math.min(this.cap * 2, this.maxEntries)
    this.keys = growU32(this.keys, cap * this.keyWords)
    this.live = growU8(this.live, cap)
    this.free = growI32(this.free, cap)
    this.cap = cap
    const size = indexSizeFor(cap)
    if (size > this.index.length) {
      this.index = new Int32Array(size).fill(EMPTY)
      this.mask = size - 1
      const K = this.keyWords
      for (let id = 0; id < this.highWater; id++) {
        if (this.live[id] === 1) this.place(id, flatHash(this.keys, id * K, K, this.seed))
      }
    }
    if (this.onGrow !== null) this.onGrow(cap)
  }
}

/** Returns a copy of `arr` with length `n` (zero-filled tail), or `arr` itself if it is already that long. */
export function growU32(arr: Uint32Array, n: number): Uint32Array {
  if (n <= arr.length) return arr
  const out = new Uint32Array(n)
  out.set(arr)
  return out
}

export function growI32(arr: Int32Array, n: number): Int32Array {
  if (n <= arr.length) return arr
  const out = new Int32Array(n)
  out.set(arr)
  return out
}

export function growF64(arr: Float64Array, n: number): Float64Array {
  if (n <= arr.length) return arr
  const out = new Float64Array(n)
  out.set(arr)
  return out
}

export function growU8(arr: Uint8Array, n: number): Uint8Array {
  if (n <= arr.length) return arr
  const out = new Uint8Array(n)
  out.set(arr)
  return out
}
