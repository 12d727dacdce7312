/**
 * The remote VTEPs of this host: underlay IPv4 address -> peer index. A peer's
 * FDB port number is PEER_PORT_BASE + index, so the FDB stays a table of opaque
 * numbers while the datapath can tell a local pod port from a tunnel at a glance.
 *
 * Indices are reused after removal; `active` lists the live ones in a dense
 * array for head-end replication of floods.
 */
export const PEER_PORT_BASE = 0x100000
export const MAX_PEERS = 4096

export function isPeerPort(port: number): boolean {
  return port >= PEER_PORT_BASE
}

export class PeerTable {
  readonly addr = new Uint32Array(MAX_PEERS)
  /**
   * Source address -> index, keyed by the address as an int32 (`addr | 0`): no
   * strings per packet, and no heap number either (an address of 128.0.0.0 or
   * above is not a small integer as a u32, and would be boxed on every lookup).
   */
  private readonly byAddr = new Map<number, number>()
  private readonly free: number[] = []
  private next = 0
  /** Dense list of live peer indices (for flooding). */
  active = new Int32Array(0)
  /** Whether a peer came from configuration or the cluster store (false: learned from traffic). */
  readonly configured = new Uint8Array(MAX_PEERS)

  get size(): number { return this.byAddr.size }

  indexOf(addr: number): number {
    const i = this.byAddr.get(addr | 0)
    return i === undefined ? -1 : i
  }

  /** Adds a peer (or returns the existing one); -1 when MAX_PEERS are in use. */
  add(addr: number, configured: boolean): number {
    const known = this.byAddr.get(addr | 0)
    if (known !== undefined) {
      if (configured) this.configured[known] = 1
      return known
    }
    const i = this.free.length > 0 ? this.free.pop()! : this.next < MAX_PEERS ? this.next++ : -1
    if (i < 0) return -1
    this.addr[i] = addr >>> 0
    this.configured[i] = configured ? 1 : 0
    this.byAddr.set(addr | 0, i)
    this.rebuild()
    return i
  }

  /** Removes a peer; returns its index or -1. */
  remove(addr: number): number {
    const i = this.byAddr.get(addr | 0)
    if (i === undefined) return -1
    this.byAddr.delete(addr | 0)
    this.free.push(i)
    this.rebuild()
    return i
  }

  list(): number[] {
    return [...this.byAddr.keys()].map((a) => a >>> 0)
  }

  private rebuild(): void {
    this.active = Int32Array.from([...this.byAddr.values()].sort((a, b) => a - b))
  }
}
