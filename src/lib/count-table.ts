import { FlatTable, growU32 } from './flat-table'

/**
 * CountTable: u32 key -> positive count, over a one-word FlatTable. A key
 * whose count drops to zero is removed, so the table holds only keys in use.
 * The FDB uses it for per-VNI and per-port entry counts (a port number is
 * opaque and may be large, so a plain array indexed by it will not do).
 * Nothing here allocates except growth.
 */
export class CountTable {
  private readonly table: FlatTable
  private counts: Uint32Array

  /** `maxKeys` bounds distinct keys; size it to the number of things counted. */
  constructor(maxKeys: number, seed?: number) {
    this.table = new FlatTable({
      keyWords: 1,
      maxEntries: maxKeys,
      seed,
      onGrow: (n) => { this.counts = growU32(this.counts, n) },
    })
    this.counts = new Uint32Array(this.table.capacity)
  }

  /** Distinct keys with a non-zero count. */
  get size(): number { return this.table.size }

  get(key: number): number {
    this.table.key[0] = key
    const id = this.table.find()
    return id < 0 ? 0 : this.counts[id]
  }

  /** Adds one to `key`'s count and returns it, or -1 if `maxKeys` distinct keys are in use. */
  increment(key: number): number {
    this.table.key[0] = key
    const id = this.table.findOrInsert()
    if (id < 0) return -1
    if (this.table.lastInserted) this.counts[id] = 0
    return ++this.counts[id]
  }

  /** Takes one from `key`'s count (removing the key at zero) and returns it; 0 if absent. */
  decrement(key: number): number {
    this.table.key[0] = key
    const id = this.table.find()
    if (id < 0) return 0
    const n = --this.counts[id]
    if (n === 0) this.table.remove(id)
    return n
  }

  clear(): void {
    this.table.clear()
  }
}
