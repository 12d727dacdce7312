/**
 * Forwarding database: which port a MAC lives behind, per VNI.
 *
 * The mapping
 *   (vni, mac) -> port. Each VNI is its own L2 segment, so the same MAC in two
 *   VNIs is two unrelated entries. The port is an opaque u32: the datapath
 *   decides whether it names a local pod TAP or a remote VTEP; the FDB never
 *   looks inside it. The key is three u32 words (vni, mac hi16, mac lo32) in a
 *   FlatTable; port and expiry live in parallel typed arrays indexed by entry
 *   id. MACs are read straight from the frame (buf, off), never as strings.
 *
 * Learning
 *   The source MAC of every frame entering a port is learned on that port.
 *   Nearly every frame comes from a MAC already known on the same port, so
 *   learn() checks that case first and only writes the new expiry. A MAC seen
 *   on a different port has moved (a pod migrated, a VM failed over, or
 *   someone is spoofing): the entry follows it and the move is counted, so a
 *   MAC flapping between ports shows up in metrics. Group MACs (multicast,
 *   broadcast) can never be a source and are never learned, and lookup()
 *   answers -1 for them without probing: flooding is the caller's business.
 *   The all-zero MAC is not a valid station address either (as in Linux's
 *   is_valid_ether_addr) and is not learned.
 *
 * Aging
 *   A learned entry expires `ageMs` after the last frame from it. Expired
 *   entries are removed in batches by sweep(now), which the agent calls on a
 *   timer, not per packet. Between sweeps an expired entry counts as absent:
 *   lookup() removes it when it meets it, and learn() treats it as new. Time
 *   is always a parameter (ms on a monotonic clock); the FDB never reads a
 *   clock. An entry is live while now < expiry.
 *
 * Static entries
 *   Configured by the control plane (for example the MAC of a pod the agent
 *   created). Their expiry is the sentinel Infinity, so aging never removes
 *   them and nothing else needs a flag. Learning never moves a static entry:
 *   a frame claiming a static MAC from another port is the signature of
 *   spoofing, so the move is refused and counted (StaticMoveRefused). A
 *   static entry overrides a learned one for the same key.
 *
 * Limits
 *   MAC flooding (one source inventing addresses) must not evict real
 *   stations nor grow memory without bound. The table has a hard size, and
 *   optional caps per VNI (one tenant cannot fill the table for others) and
 *   per port (one pod cannot either). Open vSwitch evicts from the port with
 *   most entries when full; we refuse instead: when a cap is hit nothing new
 *   is learned and the refusal is counted, while entries already known keep
 *   being refreshed and looked up, so established traffic keeps flowing and
 *   only unknown destinations are flooded. A move counts against the new
 *   port's cap too (otherwise a port could own more than its share by
 *   claiming MACs), and a refused move leaves the entry where it was. Caps
 *   apply to learning only: addStatic() is configuration and is refused only
 *   when the table is full. Sizes include expired entries not yet swept.
 *
 * Hashing
 *   The table is seeded (random unless a seed is given) so that which MACs
 *   collide cannot be worked out in advance; the limits bound what a flood
 *   can cost even so.
 *
 * Counters
 *   `counters` is a Float64Array indexed by FdbCounter, bumped where the event
 *   happens; metrics read it at scrape time without a call. Moves are also
 *   published on diagnostics_channel `tapestry:fdb:moved` (free when nobody
 *   subscribes).
 *
 * Memory
 *   Per entry: key 12 B + free stack 4 B + live flag 1 B + index 8 B (load
 *   <= 0.5) + port 4 B + expiry 8 B = 37 B of typed arrays, plus up to 2x
 *   slack while the slab is half full just after it doubled. Measured with
 *   1,048,576 learned entries in 8 VNIs behind 64 ports (maxEntries 1 << 20;
 *   process.memoryUsage().arrayBuffers after gc, before and after filling):
 *   37.0 B per entry. The per-VNI and per-port count tables add about 21 B
 *   per distinct VNI or port.
 */
import * as diagnostics from 'node:diagnostics_channel'
import { FlatTable, FLAT_TABLE_MAX_ENTRIES, growF64, growU32 } from '../lib/flat-table'
import { CountTable } from '../lib/count-table'
import { macFormat } from '../wire/addr'

/** Default learned-entry lifetime, as in Linux bridge and Open vSwitch (300 s). */
export const FDB_DEFAULT_AGE_MS = 300_000
export const FDB_DEFAULT_MAX_ENTRIES = 1 << 20

/** What learn() did with a source MAC. */
export enum LearnResult {
  /** Known on the same port: expiry refreshed (static: nothing to do). */
  Refreshed,
  /** New entry. */
  Learned,
  /** Known on another port: now on this one. Counted. */
  Moved,
  /** Static on another port: left alone, refusal counted. */
  StaticKept,
  /** Group (multicast/broadcast) source: never learned. */
  Multicast,
  /** All-zero source: not a station address, never learned. */
  Invalid,
  /** Table full: nothing learned, counted. */
  LimitTable,
  /** VNI at maxPerVni: nothing learned, counted. */
  LimitVni,
  /** Port at maxPerPort: nothing learned or moved, counted. */
  LimitPort,
}

export enum FdbCounter {
  /** New entries learned. */
  Learned,
  /** Learned entries moved to another port. */
  Moved,
  /** Learned entries removed after expiry (by sweep or by lookup/learn meeting them). */
  Aged,
  /** Moves of static entries refused. */
  StaticMoveRefused,
  LimitTable,
  LimitVni,
  LimitPort,
  /** Entries dropped by removePort/removeVni. */
  Flushed,
}
export const FDB_COUNTER_COUNT = FdbCounter.Flushed + 1

export interface FdbOptions {
  /** Learned-entry lifetime in ms (> 0, finite). */
  ageMs?: number
  /** Hard cap on entries, static ones included. */
  maxEntries?: number
  /** Cap on learned entries per VNI; 0 = unlimited. */
  maxPerVni?: number
  /** Cap on learned entries per port; 0 = unlimited. */
  maxPerPort?: number
  /** Hash seed; random when absent. */
  seed?: number
}

/** One row of `tapestry fdb show`. */
export interface FdbEntry {
  vni: number
  mac: string
  port: number
  isStatic: boolean
  /** ms since the MAC was last seen; 0 for static entries. */
  ageMs: number
}

export interface FdbMovedMessage {
  vni: number
  mac: string
  fromPort: number
  toPort: number
}

const movedChannel = diagnostics.channel('tapestry:fdb:moved')

const KEY_VNI = 0
const KEY_HI = 1
const KEY_LO = 2

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`fdb ${name} must be an integer in [${min}, ${max}] (got ${v})`)
  }
}

function checkMac(hi: number, lo: number): void {
  checkInt('mac hi16', hi, 0, 0xffff)
  checkInt('mac lo32', lo, 0, 0xffffffff)
  if ((hi & 0x100) !== 0) throw new RangeError(`fdb: ${macFormat(hi, lo)} is a group MAC; only unicast MACs can be static`)
  if (hi === 0 && lo === 0) throw new RangeError('fdb: 00:00:00:00:00:00 is not a station MAC')
}

export class Fdb {
  readonly ageMs: number
  readonly maxEntries: number
  readonly maxPerVni: number
  readonly maxPerPort: number
  /** Event counts, indexed by FdbCounter. */
  readonly counters = new Float64Array(FDB_COUNTER_COUNT)

  private readonly table: FlatTable
  private readonly key: Uint32Array
  private port: Uint32Array
  /** ms; Infinity marks a static entry. */
  private expiry: Float64Array
  private readonly perVni: CountTable
  private readonly perPort: CountTable

  constructor(opts: FdbOptions = {}) {
    const ageMs = opts.ageMs ?? FDB_DEFAULT_AGE_MS
    if (!(ageMs > 0 && Number.isFinite(ageMs))) throw new RangeError(`fdb ageMs must be a positive finite number (got ${ageMs})`)
    this.ageMs = ageMs
    this.maxEntries = opts.maxEntries ?? FDB_DEFAULT_MAX_ENTRIES
    checkInt('maxEntries', this.maxEntries, 1, FLAT_TABLE_MAX_ENTRIES)
    this.maxPerVni = opts.maxPerVni ?? 0
    checkInt('maxPerVni', this.maxPerVni, 0, 0xffffffff)
    this.maxPerPort = opts.maxPerPort ?? 0
    checkInt('maxPerPort', this.maxPerPort, 0, 0xffffffff)
    const seed = opts.seed ?? (Math.random() * 0x100000000) >>> 0
    this.table = new FlatTable({
      keyWords: 3,
      maxEntries: this.maxEntries,
      initialCapacity: Math.min(1024, this.maxEntries),
      seed,
      onGrow: (n) => {
        this.port = growU32(this.port, n)
        this.expiry = growF64(this.expiry, n)
      },
    })
    this.key = this.table.key
    this.port = new Uint32Array(this.table.capacity)
    this.expiry = new Float64Array(this.table.capacity)
    this.perVni = new CountTable(this.maxEntries, seed ^ 0x5bd1e995)
    this.perPort = new CountTable(this.maxEntries, seed ^ 0x27d4eb2f)
  }

  /** Entries in the table, static ones and expired ones not yet swept included. */
  get size(): number { return this.table.size }
  sizeOfVni(vni: number): number { return this.perVni.get(vni) }
  sizeOfPort(port: number): number { return this.perPort.get(port) }

  /**
   * Learns the source MAC at buf[macOff..macOff+6) as living behind `port` in
   * `vni`. Hot path: allocates nothing. Returns a LearnResult.
   */
  learn(vni: number, buf: Uint8Array, macOff: number, port: number, nowMs: number): LearnResult {
    const b0 = buf[macOff]
    if ((b0 & 1) !== 0) return LearnResult.Multicast
    const hi = (b0 << 8) | buf[macOff + 1]
    const lo = ((buf[macOff + 2] << 24) | (buf[macOff + 3] << 16) | (buf[macOff + 4] << 8) | buf[macOff + 5]) >>> 0
    const key = this.key
    key[KEY_VNI] = vni
    key[KEY_HI] = hi
    key[KEY_LO] = lo
    const id = this.table.find()
    if (id >= 0) {
      const exp = this.expiry[id]
      if (exp > nowMs) {
        const old = this.port[id]
        if (old === port) {
          if (exp !== Infinity) this.expiry[id] = nowMs + this.ageMs
          return LearnResult.Refreshed
        }
        if (exp === Infinity) {
          this.counters[FdbCounter.StaticMoveRefused]++
          return LearnResult.StaticKept
        }
        if (this.maxPerPort !== 0 && this.perPort.get(port) >= this.maxPerPort) {
          this.counters[FdbCounter.LimitPort]++
          return LearnResult.LimitPort
        }
        this.perPort.decrement(old)
        this.perPort.increment(port)
        this.port[id] = port
        this.expiry[id] = nowMs + this.ageMs
        this.counters[FdbCounter.Moved]++
        if (movedChannel.hasSubscribers) {
          movedChannel.publish({ vni, mac: macFormat(hi, lo), fromPort: old, toPort: port } satisfies FdbMovedMessage)
        }
        return LearnResult.Moved
      }
      // Expired but not swept yet: it counts as absent. The key scratch is
      // untouched by removal, so the insert below reuses it.
      this.removeId(id)
      this.counters[FdbCounter.Aged]++
    }
    if (hi === 0 && lo === 0) return LearnResult.Invalid
    if (this.table.size >= this.maxEntries) {
      this.counters[FdbCounter.LimitTable]++
      return LearnResult.LimitTable
    }
    if (this.maxPerVni !== 0 && this.perVni.get(vni) >= this.maxPerVni) {
      this.counters[FdbCounter.LimitVni]++
      return LearnResult.LimitVni
    }
    if (this.maxPerPort !== 0 && this.perPort.get(port) >= this.maxPerPort) {
      this.counters[FdbCounter.LimitPort]++
      return LearnResult.LimitPort
    }
    const nid = this.table.insert()
    if (nid < 0) {
      this.counters[FdbCounter.LimitTable]++
      return LearnResult.LimitTable
    }
    this.port[nid] = port
    this.expiry[nid] = nowMs + this.ageMs
    this.perVni.increment(vni)
    this.perPort.increment(port)
    this.counters[FdbCounter.Learned]++
    return LearnResult.Learned
  }

  /**
   * Port for the destination MAC at buf[macOff..macOff+6) in `vni`, or -1 if
   * unknown, expired or a group MAC (the caller floods). Hot path.
   */
  lookup(vni: number, buf: Uint8Array, macOff: number, nowMs: number): number {
    const b0 = buf[macOff]
    if ((b0 & 1) !== 0) return -1
    const key = this.key
    key[KEY_VNI] = vni
    key[KEY_HI] = (b0 << 8) | buf[macOff + 1]
    key[KEY_LO] = (buf[macOff + 2] << 24) | (buf[macOff + 3] << 16) | (buf[macOff + 4] << 8) | buf[macOff + 5]
    const id = this.table.find()
    if (id < 0) return -1
    if (this.expiry[id] > nowMs) return this.port[id]
    this.removeId(id)
    this.counters[FdbCounter.Aged]++
    return -1
  }

  /** Same as lookup() with the MAC as (hi16, lo32). Not for the hot path. */
  lookupMac(vni: number, hi: number, lo: number, nowMs: number): number {
    if ((hi & 0x100) !== 0) return -1
    const id = this.findMac(vni, hi, lo)
    if (id < 0 || !(this.expiry[id] > nowMs)) return -1
    return this.port[id]
  }

  /**
   * Pins (vni, mac) to `port`, replacing a learned or static entry. Static
   * entries never expire and learning never moves them. Returns false when
   * the key is new and the table is full. Throws RangeError for a group or
   * zero MAC (a static one could never be used).
   */
  addStatic(vni: number, hi: number, lo: number, port: number): boolean {
    checkInt('vni', vni, 0, 0xffffffff)
    checkInt('port', port, 0, 0xffffffff)
    checkMac(hi, lo)
    const key = this.key
    key[KEY_VNI] = vni
    key[KEY_HI] = hi
    key[KEY_LO] = lo
    const id = this.table.findOrInsert()
    if (id < 0) return false
    if (this.table.lastInserted) {
      this.perVni.increment(vni)
      this.perPort.increment(port)
    } else if (this.port[id] !== port) {
      this.perPort.decrement(this.port[id])
      this.perPort.increment(port)
    }
    this.port[id] = port
    this.expiry[id] = Infinity
    return true
  }

  /** Removes the static entry for (vni, mac); false if there is none (a learned entry is left alone). */
  removeStatic(vni: number, hi: number, lo: number): boolean {
    const id = this.findMac(vni, hi, lo)
    if (id < 0 || this.expiry[id] !== Infinity) return false
    this.removeId(id)
    return true
  }

  /** Drops every entry (static ones too) behind `port`, e.g. a deleted pod or a gone peer. Returns how many. */
  removePort(port: number): number {
    let left = this.perPort.get(port)
    const n = left
    if (left === 0) return 0
    this.table.forEach((id) => {
      if (left > 0 && this.port[id] === port) {
        this.removeId(id)
        left--
      }
    })
    this.counters[FdbCounter.Flushed] += n
    return n
  }

  /** Drops every entry (static ones too) of `vni`. Returns how many. */
  removeVni(vni: number): number {
    let left = this.perVni.get(vni)
    const n = left
    if (left === 0) return 0
    this.table.forEach((id) => {
      if (left > 0 && this.table.keyWord(id, KEY_VNI) === vni) {
        this.removeId(id)
        left--
      }
    })
    this.counters[FdbCounter.Flushed] += n
    return n
  }

  /** Removes learned entries expired at `nowMs`; returns how many. Call on a timer, not per packet. */
  sweep(nowMs: number): number {
    let n = 0
    this.table.forEach((id) => {
      if (this.expiry[id] <= nowMs) {
        this.removeId(id)
        n++
      }
    })
    this.counters[FdbCounter.Aged] += n
    return n
  }

  /** Live entries sorted by VNI then MAC, for `tapestry fdb show`. Allocates; not for the hot path. */
  entries(nowMs: number): FdbEntry[] {
    const rows: { vni: number; hi: number; lo: number; id: number }[] = []
    this.table.forEach((id) => {
      if (this.expiry[id] > nowMs) {
        rows.push({ vni: this.table.keyWord(id, KEY_VNI), hi: this.table.keyWord(id, KEY_HI), lo: this.table.keyWord(id, KEY_LO), id })
      }
    })
    rows.sort((a, b) => a.vni - b.vni || a.hi - b.hi || a.lo - b.lo)
    return rows.map(({ vni, hi, lo, id }) => {
      const exp = this.expiry[id]
      const isStatic = exp === Infinity
      return { vni, mac: macFormat(hi, lo), port: this.port[id], isStatic, ageMs: isStatic ? 0 : nowMs - (exp - this.ageMs) }
    })
  }

  private findMac(vni: number, hi: number, lo: number): number {
    const key = this.key
    key[KEY_VNI] = vni
    key[KEY_HI] = hi
    key[KEY_LO] = lo
    return this.table.find()
  }

  private removeId(id: number): void {
    this.perVni.decrement(this.table.keyWord(id, KEY_VNI))
    this.perPort.decrement(this.port[id])
    this.table.remove(id)
  }
}
