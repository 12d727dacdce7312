/**
 * ClientIP session affinity (Kubernetes `sessionAffinity: ClientIP`): the
 * endpoint slot a client IP was last balanced to, per service, until a timeout
 * (`sessionAffinityConfig.clientIP.timeoutSeconds`, default 10800 s).
 *
 * The key is (service id, client IPv4) in a FlatTable; the slot and the
 * expiry live in parallel arrays. Every use refreshes the expiry (as the
 * iptables `recent --update` rule of kube-proxy does), so a client that keeps
 * talking stays put; a client silent for the timeout is balanced afresh.
 * Entries are checked against the endpoint on use (the caller drops an entry
 * whose endpoint no longer takes connections) and swept in batches.
 *
 * Hot path: `lookup` and `set` take numbers and allocate nothing (growth of
 * the table aside, bounded by maxEntries). `now` is in ms.
 */
import { FlatTable, growF64, growI32 } from '../lib/flat-table'

export const AFFINITY_DEFAULT_MAX_ENTRIES = 1 << 20

export class AffinityTable {
  private readonly table: FlatTable
  private readonly key: Uint32Array
  private slot: Int32Array
  private expiry: Float64Array

  constructor(maxEntries: number = AFFINITY_DEFAULT_MAX_ENTRIES, seed?: number) {
    this.table = new FlatTable({
      keyWords: 2, maxEntries, initialCapacity: Math.min(256, maxEntries), seed,
      onGrow: (n) => { this.slot = growI32(this.slot, n); this.expiry = growF64(this.expiry, n) },
    })
    this.key = this.table.key
    this.slot = new Int32Array(this.table.capacity)
    this.expiry = new Float64Array(this.table.capacity)
  }

  get size(): number { return this.table.size }

  /**
   * The endpoint slot remembered for (svc, clientIp), with its expiry pushed
   * to now + timeoutMs; -1 if none or expired (an expired entry is removed).
   */
  lookup(svc: number, clientIp: number, now: number, timeoutMs: number): number {
    const key = this.key
    key[0] = svc
    key[1] = clientIp
    const id = this.table.find()
    if (id < 0) return -1
    if (now >= this.expiry[id]) {
      this.table.remove(id)
      return -1
    }
    this.expiry[id] = now + timeoutMs
    return this.slot[id]
  }

  /** Remembers `slot` for (svc, clientIp) until now + timeoutMs. False when the table is full. */
  set(svc: number, clientIp: number, slot: number, now: number, timeoutMs: number): boolean {
    const key = this.key
    key[0] = svc
    key[1] = clientIp
    const id = this.table.findOrInsert()
    if (id < 0) return false
    this.slot[id] = slot
    this.expiry[id] = now + timeoutMs
    return true
  }

  /** Forgets (svc, clientIp). */
  delete(svc: number, clientIp: number): void {
    this.key[0] = svc
    this.key[1] = clientIp
    const id = this.table.find()
    if (id >= 0) this.table.remove(id)
  }

  /** Removes expired entries; returns how many. Not per packet. */
  sweep(now: number): number {
    let n = 0
    this.table.forEach((id) => {
      if (now >= this.expiry[id]) { this.table.remove(id); n++ }
    })
    return n
  }

  /** Removes every entry of service `svc` (the service went away). */
  purgeService(svc: number): number {
    let n = 0
    this.table.forEach((id) => {
      if (this.table.keyWord(id, 0) === svc) { this.table.remove(id); n++ }
    })
    return n
  }

  clear(): void { this.table.clear() }
}
