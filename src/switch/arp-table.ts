/**
 * The ARP table behind ARP suppression: (VNI, IPv4) -> MAC. Filled with static
 * entries for the agent's own pods and, from ARP traffic, with what other hosts'
 * pods announce (learned entries expire like FDB entries). With it, an ARP
 * request for a known address is answered by the agent instead of flooded to
 * every host.
 */
import { FlatTable, growU32, growF64 } from '../lib/flat-table'

export interface ArpEntry { vni: number; ip: number; macHi: number; macLo: number; isStatic: boolean }

export class ArpTable {
  private readonly table: FlatTable
  private readonly key: Uint32Array
  private hi: Uint32Array
  private lo: Uint32Array
  private expiry: Float64Array
  /** Result of the last successful lookup (avoids returning an object). */
  foundHi = 0
  foundLo = 0

  constructor(readonly ageMs: number, maxEntries: number) {
    this.table = new FlatTable({
      keyWords: 2, maxEntries, initialCapacity: Math.min(1024, maxEntries), seed: (Math.random() * 2 ** 32) >>> 0,
      onGrow: (n) => { this.hi = growU32(this.hi, n); this.lo = growU32(this.lo, n); this.expiry = growF64(this.expiry, n) },
    })
    this.key = this.table.key
    this.hi = new Uint32Array(this.table.capacity)
    this.lo = new Uint32Array(this.table.capacity)
    this.expiry = new Float64Array(this.table.capacity)
  }

  get size(): number { return this.table.size }

  /** Learns or refreshes; a static entry is never replaced by learning. */
  learn(vni: number, ip: number, hi: number, lo: number, nowMs: number): void {
    this.set(vni, ip, hi, lo, nowMs, false)
  }

  addStatic(vni: number, ip: number, hi: number, lo: number): void {
    this.set(vni, ip, hi, lo, Infinity, true)
  }

  remove(vni: number, ip: number): void {
    this.key[0] = vni
    this.key[1] = ip
    const id = this.table.find()
    if (id >= 0) this.table.remove(id)
  }

  /** Sets foundHi/foundLo and returns true when (vni, ip) is known and fresh. */
  lookup(vni: number, ip: number, nowMs: number): boolean {
    this.key[0] = vni
    this.key[1] = ip
    const id = this.table.find()
    if (id < 0) return false
    if (this.expiry[id] < nowMs) {
      this.table.remove(id)
      return false
    }
    this.foundHi = this.hi[id]
    this.foundLo = this.lo[id]
    return true
  }

  entries(): ArpEntry[] {
    const out: ArpEntry[] = []
    this.table.forEach((id) => {
      out.push({ vni: this.table.keys[id * 2], ip: this.table.keys[id * 2 + 1], macHi: this.hi[id], macLo: this.lo[id], isStatic: this.expiry[id] === Infinity })
    })
    return out
  }

  /**
   * `from` is the learning time (the entry expires ageMs later) or Infinity for a
   * static entry. The sum is made here, stored straight into the Float64Array:
   * passed as an argument it would be a new heap number per ARP packet.
   */
  private set(vni: number, ip: number, hi: number, lo: number, from: number, isStatic: boolean): void {
    this.key[0] = vni
    this.key[1] = ip
    let id = this.table.find()
    if (id >= 0) {
      if (this.expiry[id] === Infinity && !isStatic) return
    } else {
      id = this.table.insert()
      if (id < 0) return
    }
    this.hi[id] = hi
    this.lo[id] = lo
    this.expiry[id] = from + this.ageMs
  }
}
