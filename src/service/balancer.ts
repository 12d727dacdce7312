/**
 * Balancer: picks the endpoint of one service that a new connection goes to.
 *
 * Candidates
 *   Only Eligible endpoints (ready and not terminating, see endpoint-slots.ts)
 *   get new connections. `update()` takes every endpoint slot of the service,
 *   keeps the eligible ones sorted by IP (so the result does not depend on the
 *   order the control plane listed them) and rebuilds what the algorithm
 *   needs, only if the eligible set changed.
 *
 * Algorithms
 *   maglev            table[flowHash % M] (maglev.ts). The 5-tuple hash is
 *                     seeded with a constant, so every agent and the same
 *                     agent after a restart send a flow to the same endpoint:
 *                     a TCP flow whose conntrack entry is gone (restart,
 *                     eviction) is picked up where it was. The default.
 *   random            a xorshift32 draw per connection.
 *   roundRobin        a cursor over the candidates: exactly even.
 *   leastConnections  the candidate with the fewest conntrack entries
 *                     (EndpointSlots.conns, kept by conntrack's create and
 *                     close hooks); ties go round robin so equal endpoints
 *                     share evenly. O(candidates) per new connection.
 *   Only maglev keeps a flow on its endpoint without a conntrack entry; with
 *   the others a flow picked up after a restart may land elsewhere (and is
 *   reset by that endpoint).
 *
 * ClientIP affinity
 *   With an affinity timeout, a client IP's last endpoint is reused while it
 *   is eligible and the entry is fresh (each use refreshes it); otherwise the
 *   algorithm picks and the choice is remembered. The table is shared by all
 *   services and keyed by (service id, client IP) (affinity.ts).
 *
 * Hot path: `pick` allocates nothing and returns an endpoint slot or -1.
 */
import { AffinityTable } from './affinity'
import { EndpointSlots, EndpointState } from './endpoint-slots'
import { maglevFill } from './maglev'

export enum Algorithm { Maglev = 0, Random = 1, RoundRobin = 2, LeastConnections = 3 }

/** Kubernetes-style names as the service model spells them. */
export const ALGORITHM_NAMES: Readonly<Record<string, Algorithm>> = {
  maglev: Algorithm.Maglev,
  random: Algorithm.Random,
  roundRobin: Algorithm.RoundRobin,
  leastConnections: Algorithm.LeastConnections,
}

/** Maglev tables hold candidate indices as Uint16: more candidates than this are not used. */
export const BALANCER_MAX_MAGLEV_CANDIDATES = 0xffff

export interface BalancerOptions {
  algorithm?: Algorithm
  /** Maglev table size, a prime. Default 16381 (see service-table.ts). */
  maglevSize?: number
  /** ClientIP affinity timeout in ms; 0 (default) turns affinity off. */
  affinityTimeoutMs?: number
  /** Where affinity is remembered; needed when affinityTimeoutMs > 0. */
  affinity?: AffinityTable | null
  /** Seed of the random algorithm's generator (nonzero). Default: random. */
  seed?: number
}

export const BALANCER_DEFAULT_MAGLEV_SIZE = 16381

const EMPTY_SLOTS = new Int32Array(0)
const EMPTY_TABLE = new Uint16Array(0)

export class Balancer {
  readonly algorithm: Algorithm
  readonly maglevSize: number
  affinityTimeoutMs: number
  /** Eligible endpoint slots, sorted by IP. */
  private cand: Int32Array = EMPTY_SLOTS
  private candCount = 0
  private maglev: Uint16Array = EMPTY_TABLE
  private cursor = 0
  private rng: number
  private readonly affinity: AffinityTable | null
  /** Times the Maglev table was rebuilt (for tests and stats). */
  rebuilds = 0

  constructor(readonly svcId: number, readonly eps: EndpointSlots, opts: BalancerOptions = {}) {
    this.algorithm = opts.algorithm ?? Algorithm.Maglev
    this.maglevSize = opts.maglevSize ?? BALANCER_DEFAULT_MAGLEV_SIZE
    this.affinityTimeoutMs = opts.affinityTimeoutMs ?? 0
    this.affinity = opts.affinity ?? null
    if (this.affinityTimeoutMs > 0 && this.affinity === null) {
      throw new TypeError('a Balancer with ClientIP affinity needs an AffinityTable')
    }
    this.rng = (opts.seed ?? (Math.random() * 0xffffffff) + 1) >>> 0 || 0x2545f491
  }

  /** Eligible endpoints. */
  get candidates(): number { return this.candCount }

  /** The eligible endpoint slots, sorted by IP (a copy; not for the hot path). */
  candidateSlots(): number[] { return Array.from(this.cand.subarray(0, this.candCount)) }

  /**
   * Takes every endpoint slot of the service (any state) and rebuilds the
   * candidates from the eligible ones. Returns true if the candidate set
   * changed.
   */
  update(slots: ArrayLike<number>): boolean {
    const eps = this.eps
    const next: number[] = []
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i]
      if (eps.state[s] === EndpointState.Eligible && eps.svc[s] === this.svcId) next.push(s)
    }
    next.sort((a, b) => (eps.ip[a] - eps.ip[b]) || (a - b))
    let same = next.length === this.candCount
    for (let i = 0; same && i < next.length; i++) same = next[i] === this.cand[i]
    if (same) return false
    this.cand = Int32Array.from(next)
    this.candCount = next.length
    if (this.cursor >= this.candCount) this.cursor = 0
    if (this.algorithm === Algorithm.Maglev) this.buildMaglev()
    return true
  }

  private buildMaglev(): void {
    const n = Math.min(this.candCount, BALANCER_MAX_MAGLEV_CANDIDATES)
    if (n === 0) { this.maglev = EMPTY_TABLE; return }
    const ips = new Uint32Array(n)
    for (let i = 0; i < n; i++) ips[i] = this.eps.ip[this.cand[i]]
    const table = new Uint16Array(this.maglevSize)
    maglevFill(ips, table)
    this.maglev = table
    this.rebuilds++
  }

  /**
   * The endpoint slot for a new connection from `clientIp` whose 5-tuple
   * hashes to `flowHash` (unsigned), or -1 if no endpoint is eligible.
   */
  pick(flowHash: number, clientIp: number, now: number): number {
    const n = this.candCount
    if (n === 0) return -1
    const t = this.affinityTimeoutMs
    if (t > 0) {
      const aff = this.affinity as AffinityTable
      const s = aff.lookup(this.svcId, clientIp, now, t)
      if (s >= 0) {
        const eps = this.eps
        if (eps.state[s] === EndpointState.Eligible && eps.svc[s] === this.svcId) return s
        aff.delete(this.svcId, clientIp)
      }
      const slot = this.choose(flowHash, n)
      aff.set(this.svcId, clientIp, slot, now, t)
      return slot
    }
    return this.choose(flowHash, n)
  }

  private choose(flowHash: number, n: number): number {
    switch (this.algorithm) {
      case Algorithm.Maglev:
        return this.cand[this.maglev[(flowHash >>> 0) % this.maglevSize]]
      case Algorithm.Random: {
        // xorshift32 (Marsaglia 2003): never 0 from a nonzero state.
        let x = this.rng
        x ^= x << 13
        x ^= x >>> 17
        x ^= x << 5
        this.rng = x >>> 0
        return this.cand[this.rng % n]
      }
      case Algorithm.RoundRobin: {
        const i = this.cursor
        this.cursor = i + 1 === n ? 0 : i + 1
        return this.cand[i]
      }
      case Algorithm.LeastConnections: {
        const conns = this.eps.conns
        const start = this.cursor
        let best = this.cand[start]
        let bestConns = conns[best]
        for (let k = 1; k < n; k++) {
          let i = start + k
          if (i >= n) i -= n
          const s = this.cand[i]
          if (conns[s] < bestConns) { best = s; bestConns = conns[s] }
        }
        this.cursor = start + 1 === n ? 0 : start + 1
        return best
      }
    }
    return -1
  }
}
