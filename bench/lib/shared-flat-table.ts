/**
 * SharedFlatTable: FlatTable's layout (open addressing, linear probing,
 * backward-shift deletion, stable entry ids; src/lib/flat-table.ts) in one
 * SharedArrayBuffer that several threads use at once. It is the "shared
 * tables" design the datapath workers could have had, built so that it can be
 * measured against the partitioned design they have (bench/shared-tables.ts).
 * The datapath does not use it.
 *
 * Segments and seqlocks
 *   The key's hash picks one of S segments; each segment is a fixed-capacity
 *   table of its own (fixed capacity, with slack) with a lock word and a
 *   sequence word:
 *   - writers (findOrInsert's insert, remove) take the segment's lock with a
 *     compareExchange spin, make the sequence odd, change the segment, make
 *     the sequence even again and release the lock;
 *   - readers (find, and findOrInsert's first probe) read the sequence, probe
 *     without the lock and read the sequence again; if it was odd or changed
 *     they probe again (a lookup that had to is counted in `retries`). A
 *     lookup writes no shared word.
 *   S = 1 is one table behind one lock. Each segment header has a 64-byte
 *   cache line of its own, so two segments' locks never share a line.
 *
 * Ids are global (segment * segmentCapacity + local id), so callers keep
 * values in shared typed arrays indexed by id, as the conntrack and FDB do
 * with FlatTable. A segment that is full refuses inserts (-1): there is no
 * growth, since growing would mean replacing the buffer under other threads.
 *
 *   SharedArrayBuffer, Int32 words, per segment:
 *   | header (16 words) | index (indexSize) | keys (cap * K) | free (cap) | live (cap) |
 *   header: lock, seq, count, freeTop, highWater, 11 words of padding
 */
import { flatHash } from '../../src/lib/flat-table'

const EMPTY = -1
const HDR_WORDS = 16
const H_LOCK = 0
const H_SEQ = 1
const H_COUNT = 2
const H_FREE_TOP = 3
const H_HIGH_WATER = 4

/** What another thread needs to attach to the same table. */
export interface SharedFlatTableShape {
  buffer: SharedArrayBuffer
  keyWords: number
  segments: number
  segmentCapacity: number
  indexSize: number
  seed: number
}

export interface SharedFlatTableOptions {
  keyWords: number
  /** Entries the table must hold; each segment gets its share with slack (see create()). */
  maxEntries: number
  /** Power of two >= 1. */
  segments: number
  seed?: number
}

function pow2AtLeast(n: number): number {
  let p = 16
  while (p < n) p *= 2
  return p
}

export class SharedFlatTable {
  readonly keyWords: number
  readonly segments: number
  readonly segmentCapacity: number
  readonly seed: number
  /** Key scratch of this thread: write the key here before find/findOrInsert. */
  readonly key: Uint32Array
  /** True when the last findOrInsert() inserted the key. */
  lastInserted = false
  /** Lookups that waited for a writer or probed again because one changed the segment meanwhile (this thread's). */
  retries = 0
  /** Failed attempts to take a segment lock (this thread's; one per spin). */
  spins = 0

  private readonly shape: SharedFlatTableShape
  private readonly w: Int32Array
  private readonly u: Uint32Array
  private readonly indexSize: number
  private readonly mask: number
  private readonly segWords: number
  private readonly segShift: number
  private readonly offIndex: number
  private readonly offKeys: number
  private readonly offFree: number
  private readonly offLive: number

  static create(opts: SharedFlatTableOptions): SharedFlatTable {
    const { keyWords, maxEntries, segments } = opts
    if (!Number.isInteger(segments) || segments < 1 || (segments & (segments - 1)) !== 0) {
      throw new RangeError(`segments must be a power of two >= 1 (got ${segments})`)
    }
    if (!Number.isInteger(keyWords) || keyWords < 1) throw new RangeError(`keyWords must be >= 1 (got ${keyWords})`)
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries must be >= 1 (got ${maxEntries})`)
    // Keys spread over segments by hash, so a segment's count wanders around the
    // mean as connections come and go; the slack (half the mean plus eight
    // standard deviations) keeps a full segment out of reach of the bench's churn.
    const mean = maxEntries / segments
    const segmentCapacity = segments === 1 ? maxEntries : Math.ceil(mean * 1.5 + 8 * Math.sqrt(mean)) + 16
    const indexSize = pow2AtLeast(segmentCapacity * 2)
    const segWords = HDR_WORDS + indexSize + segmentCapacity * (keyWords + 2)
    const buffer = new SharedArrayBuffer(segWords * segments * 4)
    const seed = (opts.seed ?? Math.random() * 0x100000000) >>> 0
    const t = new SharedFlatTable({ buffer, keyWords, segments, segmentCapacity, indexSize, seed })
    for (let s = 0; s < segments; s++) t.w.fill(EMPTY, s * segWords + t.offIndex, s * segWords + t.offIndex + indexSize)
    return t
  }

  /** The same table, seen from this thread (its own key scratch and counters). */
  static attach(shape: SharedFlatTableShape): SharedFlatTable {
    return new SharedFlatTable(shape)
  }

  private constructor(shape: SharedFlatTableShape) {
    this.shape = shape
    this.keyWords = shape.keyWords
    this.segments = shape.segments
    this.segmentCapacity = shape.segmentCapacity
    this.indexSize = shape.indexSize
    this.seed = shape.seed
    this.mask = shape.indexSize - 1
    this.key = new Uint32Array(shape.keyWords)
    this.w = new Int32Array(shape.buffer)
    this.u = new Uint32Array(shape.buffer)
    this.offIndex = HDR_WORDS
    this.offKeys = this.offIndex + shape.indexSize
    this.offFree = this.offKeys + shape.segmentCapacity * shape.keyWords
    this.offLive = this.offFree + shape.segmentCapacity
    this.segWords = this.offLive + shape.segmentCapacity
    this.segShift = 32 - Math.log2(shape.segments)
  }

  /** Pass this to another thread (postMessage) and attach() it there. */
  get description(): SharedFlatTableShape { return this.shape }

  /** Live entries over all segments. */
  get size(): number {
    let n = 0
    for (let s = 0; s < this.segments; s++) n += Atomics.load(this.w, s * this.segWords + H_COUNT)
    return n
  }

  /** Segment of a hash: its top bits after one more multiply (the index uses the low bits). */
  private segmentOf(h: number): number {
    return this.segments === 1 ? 0 : Math.imul(h, 0x9e3779b1) >>> this.segShift
  }

  /** Global id whose key equals `key`, or -1. */
  find(): number {
    const h = flatHash(this.key, 0, this.keyWords, this.seed)
    const s = this.segmentOf(h)
    const seq = s * this.segWords + H_SEQ
    for (let tries = 0; ; tries++) {
      const v = Atomics.load(this.w, seq)
      if ((v & 1) === 0) {
        const id = this.probe(s, h)
        if (id !== -2 && Atomics.load(this.w, seq) === v) {
          if (tries > 0) this.retries++
          return id < 0 ? -1 : s * this.segmentCapacity + id
        }
      }
    }
  }

  /**
   * Returns the global id of `key`, inserting it if absent (sets
   * lastInserted); -1 when it is absent and its segment is full.
   */
  findOrInsert(): number {
    const found = this.find()
    if (found >= 0) { this.lastInserted = false; return found }
    const h = flatHash(this.key, 0, this.keyWords, this.seed)
    const s = this.segmentOf(h)
    const base = s * this.segWords
    this.lock(base)
    // Another thread may have inserted the same key since the unlocked probe.
    const again = this.probe(s, h)
    let id = -1
    if (again >= 0) {
      this.lastInserted = false
      id = again
    } else {
      id = this.allocId(base)
      if (id >= 0) {
        const keys = this.u
        const k = base + this.offKeys + id * this.keyWords
        for (let i = 0; i < this.keyWords; i++) keys[k + i] = this.key[i]
        const index = this.w
        const ix = base + this.offIndex
        const mask = this.mask
        let i = h & mask
        while (index[ix + i] !== EMPTY) i = (i + 1) & mask
        index[ix + i] = id
        this.lastInserted = true
      } else {
        this.lastInserted = false
      }
    }
    this.unlock(base)
    return id < 0 ? -1 : s * this.segmentCapacity + id
  }

  /** Removes entry `gid`; false if it was not live. */
  remove(gid: number): boolean {
    const s = Math.floor(gid / this.segmentCapacity)
    if (gid < 0 || s >= this.segments) return false
    const id = gid - s * this.segmentCapacity
    const base = s * this.segWords
    const w = this.w
    const K = this.keyWords
    this.lock(base)
    if (w[base + this.offLive + id] !== 1) { this.unlock(base); return false }
    const ix = base + this.offIndex
    const keysAt = base + this.offKeys
    const mask = this.mask
    let hole = flatHash(this.u, keysAt + id * K, K, this.seed) & mask
    while (w[ix + hole] !== id) hole = (hole + 1) & mask
    let j = hole
    for (;;) {
      j = (j + 1) & mask
      const e = w[ix + j]
      if (e === EMPTY) break
      const home = flatHash(this.u, keysAt + e * K, K, this.seed) & mask
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        w[ix + hole] = e
        hole = j
      }
    }
    w[ix + hole] = EMPTY
    w[base + this.offLive + id] = 0
    w[base + this.offFree + w[base + H_FREE_TOP]++] = id
    w[base + H_COUNT]--
    this.unlock(base)
    return true
  }

  /** Word `i` of the key of entry `gid` (read it only while the entry is live). */
  keyWord(gid: number, i: number): number {
    const s = Math.floor(gid / this.segmentCapacity)
    return this.u[s * this.segWords + this.offKeys + (gid - s * this.segmentCapacity) * this.keyWords + i]
  }

  /**
   * Checks every segment's invariants as FlatTable.selfCheck does (every live
   * id reachable from its home slot, counts agree). Only with no writer
   * running: for tests. Throws on the first violation.
   */
  selfCheck(): void {
    const K = this.keyWords
    const mask = this.mask
    const w = this.w
    for (let s = 0; s < this.segments; s++) {
      const base = s * this.segWords
      const ix = base + this.offIndex
      let seen = 0
      for (let slot = 0; slot <= mask; slot++) {
        const id = w[ix + slot]
        if (id === EMPTY) continue
        seen++
        if (w[base + this.offLive + id] !== 1) throw new Error(`segment ${s} slot ${slot} holds dead id ${id}`)
        for (let i = flatHash(this.u, base + this.offKeys + id * K, K, this.seed) & mask; i !== slot; i = (i + 1) & mask) {
          if (w[ix + i] === EMPTY) throw new Error(`segment ${s}: id ${id} at slot ${slot} is cut off from its home by empty slot ${i}`)
        }
      }
      let live = 0
      const hw = w[base + H_HIGH_WATER]
      for (let id = 0; id < hw; id++) live += w[base + this.offLive + id]
      if (seen !== w[base + H_COUNT] || live !== seen) throw new Error(`segment ${s}: count ${w[base + H_COUNT]}, index ${seen}, live ${live}`)
      if (live + w[base + H_FREE_TOP] !== hw) throw new Error(`segment ${s}: free stack out of step`)
      if (w[base + H_LOCK] !== 0 || (w[base + H_SEQ] & 1) !== 0) throw new Error(`segment ${s}: left locked`)
    }
  }

  /**
   * Local id of `key` in segment `s` (-1 when absent), or -2 when the probe
   * ran the whole index without meeting an empty slot (a writer was moving
   * entries under it; the caller probes again).
   */
  private probe(s: number, h: number): number {
    const K = this.keyWords
    const key = this.key
    const w = this.w
    const u = this.u
    const base = s * this.segWords
    const ix = base + this.offIndex
    const keysAt = base + this.offKeys
    const cap = this.segmentCapacity
    const mask = this.mask
    let i = h & mask
    for (let n = 0; n <= mask; n++) {
      const id = w[ix + i]
      if (id === EMPTY) return -1
      if (id >= 0 && id < cap) {
        const k = keysAt + id * K
        let j = 0
        while (j < K && u[k + j] === key[j]) j++
        if (j === K) return id
      }
      i = (i + 1) & mask
    }
    return -2
  }

  private lock(base: number): void {
    while (Atomics.compareExchange(this.w, base + H_LOCK, 0, 1) !== 0) this.spins++
    Atomics.add(this.w, base + H_SEQ, 1)
  }

  private unlock(base: number): void {
    Atomics.add(this.w, base + H_SEQ, 1)
    Atomics.store(this.w, base + H_LOCK, 0)
  }

  /** A free local id of the segment (lock held), or -1 when it is full. */
  private allocId(base: number): number {
    const w = this.w
    let id: number
    if (w[base + H_FREE_TOP] > 0) id = w[base + this.offFree + --w[base + H_FREE_TOP]]
    else if (w[base + H_HIGH_WATER] < this.segmentCapacity) id = w[base + H_HIGH_WATER]++
    else return -1
    w[base + this.offLive + id] = 1
    w[base + H_COUNT]++
    return id
  }
}
