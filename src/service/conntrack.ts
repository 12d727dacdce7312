/**
 * Connection tracking for service NAT: which endpoint each connection to a
 * service VIP was balanced to, so every later packet of it (both ways) is
 * rewritten the same way, and when the mapping can be forgotten.
 *
 * The mapping
 *   A connection is filed under both directions, as Open vSwitch and Linux
 *   file theirs: the original tuple as the client sent it and the reply tuple
 *   as the endpoint sends back, each a 4-word key (src IPv4, dst IPv4,
 *   sport << 16 | dport, protocol) in one FlatTable:
 *
 *     original  client:cport -> VIP:vport          (what the client sends)
 *     reply     backend:bport -> snat:sport        (what the endpoint sends)
 *
 *   `snat` is the client itself, or the network's gateway for a hairpin
 *   connection (the client is the endpoint; see service-path.ts); `sport` is
 *   the client's port unless that reply tuple was taken (two VIPs in front of
 *   the same endpoint port, reached from the same client port) or, with
 *   datapath workers, would be read by another worker (pin()), when a free
 *   port below the ephemeral ranges is chosen instead (counted
 *   PortRemapped). The NAT of a packet that matched one direction is "make
 *   the tuple the reverse of the other direction's key": nothing else needs
 *   storing. Table entries point at a
 *   connection record (entConn); records live in their own slab, so a
 *   lookup-and-rewrite touches the table, one record and the other key.
 *
 * Per connection (typed arrays indexed by connection id)
 *   orig/reply entry ids, service id, endpoint slot, last-seen time, LRU
 *   links, state, flags, free stack: 38 bytes; the two table entries add
 *   2 x 33 (key 16, free stack 4, live 1, index 8, entConn 4). Measured with
 *   1,000,000 connections (maxConnections 1e6; process.memoryUsage() array
 *   buffers + heap after gc, before and after filling): 104.6 B per
 *   connection (conntrack-memory.test.ts).
 *
 * TCP states (RFC 9293 §3.3.2 seen from the middle, as nf_conntrack does)
 *   SYN from the client: SYN_SENT. SYN+ACK back: SYN_RECV. The client's ACK:
 *   ESTABLISHED (and assured). A FIN from either side: FIN_WAIT (the side is
 *   remembered); the other side's ACK: CLOSE_WAIT; the other side's FIN:
 *   LAST_ACK; then the first side's ACK: TIME_WAIT. RST from either side:
 *   CLOSE. A connection first seen mid-stream (no SYN: the agent restarted,
 *   or the entry was evicted) is picked up as ESTABLISHED but stays
 *   unassured until the endpoint answers. Sequence numbers and windows are
 *   not tracked (no "invalid" packets): this table only steers NAT.
 *   A SYN in TIME_WAIT or CLOSE starts a new connection (the caller removes
 *   the old entry and balances again).
 *
 * Timeouts (nf_conntrack's defaults, configurable; ms on the caller's clock)
 *   syn_sent 120 s, syn_recv 60 s, established 432000 s (5 days), fin_wait
 *   120 s, close_wait 60 s, last_ack 30 s, time_wait 120 s, close 10 s; an
 *   unassured TCP connection never lives longer than 300 s without traffic
 *   (nf_conntrack's tcp_timeout_unacknowledged role: a flood of mid-stream ACKs
 *   cannot park 5-day entries). UDP: 30 s until a reply is seen, then 120 s
 *   and assured. A connection lives while now < lastSeen + timeout(state);
 *   lookup() removes an expired one it meets, sweep(now) removes the rest in
 *   batches. Time is always a parameter.
 *
 * Limits and eviction
 *   At most maxConnections records. When full, a new connection evicts, in
 *   this order: the least recently used assured connection if it expired;
 *   else the least recently used "cheap" one (unassured: half-open TCP, UDP
 *   without a reply, mid-stream pickups; or TCP in TIME_WAIT/CLOSE); else the
 *   least recently used assured one idle for at least evictAssuredIdleS (60 s);
 *   else nothing, and the new connection is refused (counted Full). Two LRU
 *   lists (cheap, assured) kept in touch order make each choice O(1). So a
 *   SYN flood recycles its own half-open entries and never evicts an
 *   established connection that carried traffic in the last minute; and an
 *   evicted idle Maglev connection is picked up on its next packet anyway.
 *
 * Hooks and counters
 *   onCreate(endpointSlot) and onClose(endpointSlot) run when a record is
 *   made and removed, whatever the reason (close, expiry, eviction, flush):
 *   the service table keeps per-endpoint connection counts with them
 *   (leastConnections, and freeing removed endpoints). `counters` is a
 *   Float64Array indexed by CtCounter.
 *
 * Hot path: lookup, create, update and translate take numbers, allocate
 * nothing (growth aside, bounded by maxConnections) and never throw.
 */
import { FlatTable, growF64, growI32, growU8 } from '../lib/flat-table'
import { ipv4Format } from '../wire/addr'
import { PROTO_TCP, PROTO_UDP } from '../wire/ipv4'
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../wire/tcp'
import { steerWorkerV4 } from '../wire/steer-hash'

/** Connection states; TCP and UDP share one numbering so one timeout array serves both. */
export enum CtState {
  None = 0,
  TcpSynSent = 1,
  TcpSynRecv = 2,
  TcpEstablished = 3,
  TcpFinWait = 4,
  TcpCloseWait = 5,
  TcpLastAck = 6,
  TcpTimeWait = 7,
  TcpClose = 8,
  UdpUnreplied = 9,
  UdpReplied = 10,
}
export const CT_STATE_COUNT = CtState.UdpReplied + 1
export const CT_STATE_NAMES: readonly string[] = [
  'NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE',
  'UNREPLIED', 'REPLIED',
]

/** Direction of a packet relative to its connection. */
export const CT_DIR_ORIG = 0
export const CT_DIR_REPLY = 1

/** Connection flags. */
export const CT_F_ASSURED = 0x01
export const CT_F_SEEN_REPLY = 0x02
export const CT_F_FIN_ORIG = 0x04
export const CT_F_FIN_REPLY = 0x08
/** The reply side sent the first FIN (else the original side did). */
export const CT_F_FIRST_FIN_REPLY = 0x10
/** Internal: the connection is on the assured LRU list (else the cheap one). */
const CT_F_LIST_ASSURED = 0x80

export enum CtCounter {
  /** Connections created. */
  Created,
  /** Removed because their timeout passed (lookup, sweep or eviction). */
  Expired,
  /** Removed to make room for a new one. */
  Evicted,
  /** New connection refused: table full and nothing evictable. */
  Full,
  /** Removed by flush() or flushEndpoint(). */
  Flushed,
  /** Removed by the caller (a SYN reopening a TIME_WAIT/CLOSE tuple). */
  Deleted,
  /** Reply tuple taken: another source port was chosen. */
  PortRemapped,
  /** Reply tuple taken and no free port found: connection refused. */
  Clash,
  /** create() for an original tuple that already exists (caller bug). */
  Exists,
}
export const CT_COUNTER_COUNT = CtCounter.Exists + 1
export const CT_COUNTER_NAMES: readonly string[] = [
  'created', 'expired', 'evicted', 'full', 'flushed', 'deleted', 'port_remapped', 'clash', 'exists',
]

/** Timeouts in seconds, named after nf_conntrack's sysctls. */
export interface ConntrackTimeouts {
  tcpSynSentS: number
  tcpSynRecvS: number
  tcpEstablishedS: number
  tcpFinWaitS: number
  tcpCloseWaitS: number
  tcpLastAckS: number
  tcpTimeWaitS: number
  tcpCloseS: number
  /** Cap on any TCP state while the connection is unassured. */
  tcpUnassuredS: number
  udpS: number
  udpAssuredS: number
}

/** nf_conntrack's defaults (net/netfilter/nf_conntrack_proto_{tcp,udp}.c). */
export const CONNTRACK_DEFAULT_TIMEOUTS: Readonly<ConntrackTimeouts> = Object.freeze({
  tcpSynSentS: 120,
  tcpSynRecvS: 60,
  tcpEstablishedS: 432000,
  tcpFinWaitS: 120,
  tcpCloseWaitS: 60,
  tcpLastAckS: 30,
  tcpTimeWaitS: 120,
  tcpCloseS: 10,
  tcpUnassuredS: 300,
  udpS: 30,
  udpAssuredS: 120,
})

export const CONNTRACK_DEFAULT_MAX = 262144
export const CONNTRACK_DEFAULT_EVICT_ASSURED_IDLE_S = 60
/**
 * Ports a remapped reply tuple takes: 1024-32767, below Linux's default
 * ephemeral range (32768-60999) and IANA's (49152-65535). Only service
 * connections are tracked here, so a remapped port from the ephemeral range
 * could be one the client also uses for a direct connection to the same
 * endpoint port: the endpoint would see one tuple for two connections, and the
 * direct one's replies would be translated as the service's. The client picks
 * its own source ports from its ephemeral range; a remapped port does not.
 */
export const REMAP_PORT_MIN = 1024
export const REMAP_PORT_END = 32768
const REMAP_PORT_SPAN = REMAP_PORT_END - REMAP_PORT_MIN
const REMAP_TRIES = 32

export interface ConntrackOptions {
  /** Most connections kept (each is two table entries). Default 262144. */
  maxConnections?: number
  timeouts?: Partial<ConntrackTimeouts>
  /** An assured connection idle this long may be evicted when the table is full. Default 60. */
  evictAssuredIdleS?: number
  /** Records to allocate up front (grows by doubling). Default 1024. */
  initialCapacity?: number
  /** Table hash seed. Default random. */
  seed?: number
  onCreate?: ((endpointSlot: number) => void) | null
  onClose?: ((endpointSlot: number) => void) | null
}

/** One connection, decoded for the CLI and tests (allocates: not for the hot path). */
export interface ConnInfo {
  id: number
  proto: 'tcp' | 'udp' | number
  state: string
  assured: boolean
  /** Client address and port as the client sent them. */
  client: string
  /** Service address and port the client sent to. */
  vip: string
  /** Endpoint address and port the connection was balanced to. */
  backend: string
  /** Source the endpoint sees (the client, or the gateway for hairpin). */
  source: string
  serviceId: number
  endpointSlot: number
  idleMs: number
  /** Left before expiry at the `now` given to list(); NaN without one. */
  expiresInMs: number
}

const LIST_CHEAP = 0
const LIST_ASSURED = 1

function checkPositive(name: string, v: number): void {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    throw new RangeError(`${name} must be a positive number (got ${v})`)
  }
}

export class Conntrack {
  readonly maxConnections: number
  readonly counters = new Float64Array(CT_COUNTER_COUNT)
  /** Datapath workers and this table's own (pin()); 1 and 0 without workers. */
  private pinWorkers = 1
  private pinWorker = 0
  /** Timeout per CtState, ms. */
  readonly timeoutMs = new Float64Array(CT_STATE_COUNT)
  /** Cap on the timeout of an unassured TCP connection, ms. */
  readonly unassuredMaxMs: number
  readonly evictAssuredIdleMs: number
  onCreate: ((endpointSlot: number) => void) | null
  onClose: ((endpointSlot: number) => void) | null

  /** Result of translate(): the tuple a packet must carry after NAT. */
  natSrc = 0
  natDst = 0
  natSport = 0
  natDport = 0

  private readonly table: FlatTable
  private readonly key: Uint32Array
  private entConn: Int32Array
  private cOrig: Int32Array
  private cReply: Int32Array
  private cSvc: Int32Array
  private cEp: Int32Array
  private cSeen: Float64Array
  private cPrev: Int32Array
  private cNext: Int32Array
  private cState: Uint8Array
  private cFlags: Uint8Array
  private cFree: Int32Array
  private freeTop = 0
  private highWater = 0
  private cap: number
  private count = 0
  private readonly head = new Int32Array([-1, -1])
  private readonly tail = new Int32Array([-1, -1])
  private sweepCursor = 0

  constructor(opts: ConntrackOptions = {}) {
    const max = opts.maxConnections ?? CONNTRACK_DEFAULT_MAX
    if (!Number.isInteger(max) || max < 1 || max > (1 << 26)) {
      throw new RangeError(`maxConnections must be an integer in [1, ${1 << 26}] (got ${max})`)
    }
    this.maxConnections = max
    const t: ConntrackTimeouts = { ...CONNTRACK_DEFAULT_TIMEOUTS, ...(opts.timeouts ?? {}) }
    for (const [k, v] of Object.entries(t)) checkPositive(`timeouts.${k}`, v)
    const tm = this.timeoutMs
    tm[CtState.None] = t.tcpSynSentS * 1000
    tm[CtState.TcpSynSent] = t.tcpSynSentS * 1000
    tm[CtState.TcpSynRecv] = t.tcpSynRecvS * 1000
    tm[CtState.TcpEstablished] = t.tcpEstablishedS * 1000
    tm[CtState.TcpFinWait] = t.tcpFinWaitS * 1000
    tm[CtState.TcpCloseWait] = t.tcpCloseWaitS * 1000
    tm[CtState.TcpLastAck] = t.tcpLastAckS * 1000
    tm[CtState.TcpTimeWait] = t.tcpTimeWaitS * 1000
    tm[CtState.TcpClose] = t.tcpCloseS * 1000
    tm[CtState.UdpUnreplied] = t.udpS * 1000
    tm[CtState.UdpReplied] = t.udpAssuredS * 1000
    this.unassuredMaxMs = t.tcpUnassuredS * 1000
    const idle = opts.evictAssuredIdleS ?? CONNTRACK_DEFAULT_EVICT_ASSURED_IDLE_S
    if (!(idle >= 0)) throw new RangeError(`evictAssuredIdleS must be >= 0 (got ${idle})`)
    this.evictAssuredIdleMs = idle * 1000
    this.onCreate = opts.onCreate ?? null
    this.onClose = opts.onClose ?? null

    const initial = Math.min(opts.initialCapacity ?? 1024, max)
    this.table = new FlatTable({
      keyWords: 4, maxEntries: 2 * max, initialCapacity: 2 * initial, seed: opts.seed,
      onGrow: (n) => { this.entConn = growI32(this.entConn, n) },
    })
    this.key = this.table.key
    this.entConn = new Int32Array(this.table.capacity)
    this.cap = initial
    this.cOrig = new Int32Array(initial).fill(-1)
    this.cReply = new Int32Array(initial)
    this.cSvc = new Int32Array(initial)
    this.cEp = new Int32Array(initial)
    this.cSeen = new Float64Array(initial)
    this.cPrev = new Int32Array(initial)
    this.cNext = new Int32Array(initial)
    this.cState = new Uint8Array(initial)
    this.cFlags = new Uint8Array(initial)
    this.cFree = new Int32Array(initial)
  }

  /** Live connections. */
  get size(): number { return this.count }
  /** Table entries (two per connection). */
  get entries(): number { return this.table.size }

  // ---- hot path -------------------------------------------------------------

  /**
   * The table entry of the packet tuple (src, dst, sport, dport, proto), or
   * -1. An expired connection met here is removed and reported absent.
   */
  lookup(src: number, dst: number, sport: number, dport: number, proto: number, now: number): number {
    if (this.count === 0) return -1
    const key = this.key
    key[0] = src
    key[1] = dst
    key[2] = ((sport << 16) | dport) >>> 0
    key[3] = proto
    const e = this.table.find()
    if (e < 0) return -1
    const c = this.entConn[e]
    if (now - this.cSeen[c] >= this.timeoutOf(c)) {
      this.removeConn(c, CtCounter.Expired)
      return -1
    }
    return e
  }

  /** The connection a table entry belongs to. */
  connOf(entry: number): number { return this.entConn[entry] }

  /** CT_DIR_ORIG or CT_DIR_REPLY: the direction of packets matching `entry`. */
  dirOf(entry: number): number { return this.cOrig[this.entConn[entry]] === entry ? CT_DIR_ORIG : CT_DIR_REPLY }

  state(conn: number): CtState { return this.cState[conn] }
  /** CT_F_* flags of a connection. */
  flags(conn: number): number { return this.cFlags[conn] & ~CT_F_LIST_ASSURED }
  serviceOf(conn: number): number { return this.cSvc[conn] }
  endpointOf(conn: number): number { return this.cEp[conn] }
  lastSeen(conn: number): number { return this.cSeen[conn] }
  origEntry(conn: number): number { return this.cOrig[conn] }
  replyEntry(conn: number): number { return this.cReply[conn] }
  /** Word w of a table entry's key (0 src, 1 dst, 2 sport << 16 | dport, 3 proto). */
  keyWord(entry: number, w: number): number { return this.table.keyWord(entry, w) }

  /** True if `conn` is a live connection id. */
  has(conn: number): boolean { return conn >= 0 && conn < this.highWater && this.cOrig[conn] >= 0 }

  /**
   * Sets natSrc/natDst/natSport/natDport to the tuple a packet that matched
   * `entry` must carry after NAT: the reverse of the other direction's key.
   */
  translate(entry: number): void {
    const c = this.entConn[entry]
    const other = this.cOrig[c] === entry ? this.cReply[c] : this.cOrig[c]
    const t = this.table
    this.natSrc = t.keyWord(other, 1)
    this.natDst = t.keyWord(other, 0)
    const ports = t.keyWord(other, 2)
    this.natSport = ports & 0xffff
    this.natDport = ports >>> 16
  }

  /**
   * Creates a connection: original tuple client:cport -> vip:vport, balanced
   * to backend:bport, seen by the backend as coming from snat (the client or
   * the gateway). `tcpFlags` of the first packet set the TCP state; pass 0
   * for UDP. Returns the connection id, or -1 (table full and nothing to
   * evict, reply tuple clash, or the original tuple exists). After success
   * the reply entry's key gives the source port the backend will see.
   */
  create(
    client: number, vip: number, cport: number, vport: number, proto: number,
    backend: number, bport: number, snat: number,
    svc: number, ep: number, tcpFlags: number, now: number,
  ): number {
    const t = this.table
    const key = this.key
    key[0] = client
    key[1] = vip
    key[2] = ((cport << 16) | vport) >>> 0
    key[3] = proto
    if (this.count >= this.maxConnections) {
      // Full: make sure the connection would be created before evicting for it
      // (eviction removes table entries by id and leaves the probe key as it is).
      if (t.find() >= 0) {
        this.counters[CtCounter.Exists]++
        return -1
      }
      if (!this.evictOne(now)) {
        this.counters[CtCounter.Full]++
        return -1
      }
    }
    const orig = t.findOrInsert()
    if (!t.lastInserted) {
      this.counters[CtCounter.Exists]++
      return -1
    }
    key[0] = backend
    key[1] = snat
    key[2] = ((bport << 16) | cport) >>> 0
    key[3] = proto
    const workers = this.pinWorkers
    let reply = -1
    // With workers, the reply must hash to this worker (pin()), or another thread would read it.
    if (workers <= 1 || steerWorkerV4(backend, snat, bport, cport, workers) === this.pinWorker) {
      reply = t.findOrInsert()
      if (!t.lastInserted) reply = -1
    }
    if (reply < 0) {
      // Reply tuple taken, or read by another worker: pick another source port, from a
      // hash so retries of the same client port try the same sequence.
      let p = REMAP_PORT_MIN + ((Math.imul(cport ^ vport ^ vip, 0x9e3779b1) >>> 0) % REMAP_PORT_SPAN)
      for (let i = 0, tries = 0; i < REMAP_TRIES * workers && tries < REMAP_TRIES; i++) {
        const ok = workers <= 1 || steerWorkerV4(backend, snat, bport, p, workers) === this.pinWorker
        if (ok) {
          tries++
          key[2] = ((bport << 16) | p) >>> 0
          const r = t.findOrInsert()
          if (t.lastInserted) { reply = r; break }
        }
        p = p + 1 === REMAP_PORT_END ? REMAP_PORT_MIN : p + 1
      }
      if (reply < 0) {
        t.remove(orig)
        this.counters[CtCounter.Clash]++
        return -1
      }
      this.counters[CtCounter.PortRemapped]++
    }
    const c = this.allocConn()
    this.entConn[orig] = c
    this.entConn[reply] = c
    this.cOrig[c] = orig
    this.cReply[c] = reply
    this.cSvc[c] = svc
    this.cEp[c] = ep
    this.cSeen[c] = now
    this.cFlags[c] = 0
    this.cState[c] = proto === PROTO_TCP ? CtState.None : CtState.UdpUnreplied
    this.count++
    this.counters[CtCounter.Created]++
    this.link(c, LIST_CHEAP)
    if (proto === PROTO_TCP) this.tcpStep(c, CT_DIR_ORIG, tcpFlags)
    if (this.onCreate !== null) this.onCreate(ep)
    return c
  }

  /**
   * This table belongs to datapath worker `worker` of `workers` (config
   * workers): create() gives each connection a reply tuple whose steering hash
   * (wire/steer-hash.ts) picks this worker, remapping the source port the
   * endpoint sees when the client's own does not (counted PortRemapped), so
   * the replies are read by the thread that holds the entry. The tuple is
   * chosen by a hash of the connection, so a restarted agent with the same
   * workers picks the same port again (Maglev pick-up).
   */
  pin(workers: number, worker: number): void {
    if (!Number.isInteger(workers) || workers < 1 || !Number.isInteger(worker) || worker < 0 || worker >= workers) {
      throw new RangeError(`worker ${worker} of ${workers}`)
    }
    this.pinWorkers = workers
    this.pinWorker = worker
  }

  /**
   * A packet of `conn` went in direction `dir` (CT_DIR_ORIG/REPLY) with TCP
   * flags `tcpFlags` (0 for UDP): steps the state machine and refreshes the
   * connection's idle time.
   */
  update(conn: number, dir: number, tcpFlags: number, now: number): void {
    const st = this.cState[conn]
    if (st >= CtState.UdpUnreplied) {
      if (dir === CT_DIR_REPLY && st === CtState.UdpUnreplied) {
        this.cState[conn] = CtState.UdpReplied
        this.cFlags[conn] |= CT_F_SEEN_REPLY | CT_F_ASSURED
      }
    } else {
      this.tcpStep(conn, dir, tcpFlags)
    }
    this.cSeen[conn] = now
    this.unlink(conn)
    this.link(conn, this.listOf(conn))
  }

  /** Removes a connection (counted Deleted). */
  delete(conn: number): void {
    if (this.has(conn)) this.removeConn(conn, CtCounter.Deleted)
  }

  /** Timeout of `conn` in its current state, ms. */
  timeoutOf(conn: number): number {
    const st = this.cState[conn]
    const t = this.timeoutMs[st]
    if ((this.cFlags[conn] & CT_F_ASSURED) === 0 && st < CtState.UdpUnreplied && t > this.unassuredMaxMs) {
      return this.unassuredMaxMs
    }
    return t
  }

  // ---- batch and control plane ----------------------------------------------

  /**
   * Removes expired connections, visiting at most `maxVisits` record slots
   * from where the last sweep stopped (default: all). Returns how many it
   * removed.
   */
  sweep(now: number, maxVisits: number = Infinity): number {
    let removed = 0
    const hw = this.highWater
    if (hw === 0) return 0
    let visits = Math.min(maxVisits, hw)
    let c = this.sweepCursor
    while (visits-- > 0) {
      if (c >= hw) c = 0
      if (this.cOrig[c] >= 0 && now - this.cSeen[c] >= this.timeoutOf(c)) {
        this.removeConn(c, CtCounter.Expired)
        removed++
      }
      c++
    }
    this.sweepCursor = c
    return removed
  }

  /** Removes every connection; returns how many. */
  flush(): number {
    let n = 0
    for (let c = 0; c < this.highWater; c++) {
      if (this.cOrig[c] >= 0) { this.removeConn(c, CtCounter.Flushed); n++ }
    }
    return n
  }

  /**
   * Removes the connections of protocol `proto` (default UDP) balanced to
   * endpoint address `ip` (and of service `svc` unless -1): a UDP "flow" to
   * an endpoint that went away would otherwise keep black-holing until it
   * idles out, as kube-proxy's conntrack cleanup prevents. Returns how many.
   */
  flushEndpoint(ip: number, proto: number = PROTO_UDP, svc = -1): number {
    let n = 0
    ip = ip >>> 0
    for (let c = 0; c < this.highWater; c++) {
      const r = this.cReply[c]
      if (this.cOrig[c] < 0) continue
      if (this.table.keyWord(r, 0) !== ip || this.table.keyWord(r, 3) !== proto) continue
      if (svc >= 0 && this.cSvc[c] !== svc) continue
      this.removeConn(c, CtCounter.Flushed)
      n++
    }
    return n
  }

  /** Removes the connections of protocol `proto` whose endpoint slot is in `slots`. Returns how many. */
  flushEndpointSlots(slots: ReadonlySet<number>, proto: number = PROTO_UDP): number {
    if (slots.size === 0) return 0
    let n = 0
    for (let c = 0; c < this.highWater; c++) {
      if (this.cOrig[c] < 0 || !slots.has(this.cEp[c])) continue
      if (this.table.keyWord(this.cOrig[c], 3) !== proto) continue
      this.removeConn(c, CtCounter.Flushed)
      n++
    }
    return n
  }

  /** Every connection, decoded (allocates; for the CLI and tests). */
  list(now = NaN): ConnInfo[] {
    const out: ConnInfo[] = []
    const t = this.table
    const ep = (ip: number, port: number): string => `${ipv4Format(ip)}:${port}`
    for (let c = 0; c < this.highWater; c++) {
      const o = this.cOrig[c]
      if (o < 0) continue
      const r = this.cReply[c]
      const proto = t.keyWord(o, 3)
      out.push({
        id: c,
        proto: proto === PROTO_TCP ? 'tcp' : proto === PROTO_UDP ? 'udp' : proto,
        state: CT_STATE_NAMES[this.cState[c]],
        assured: (this.cFlags[c] & CT_F_ASSURED) !== 0,
        client: ep(t.keyWord(o, 0), t.keyWord(o, 2) >>> 16),
        vip: ep(t.keyWord(o, 1), t.keyWord(o, 2) & 0xffff),
        backend: ep(t.keyWord(r, 0), t.keyWord(r, 2) >>> 16),
        source: ep(t.keyWord(r, 1), t.keyWord(r, 2) & 0xffff),
        serviceId: this.cSvc[c],
        endpointSlot: this.cEp[c],
        idleMs: now - this.cSeen[c],
        expiresInMs: this.cSeen[c] + this.timeoutOf(c) - now,
      })
    }
    return out
  }

  // ---- internals ------------------------------------------------------------

  private tcpStep(c: number, dir: number, f: number): void {
    let st = this.cState[c]
    let fl = this.cFlags[c]
    if (dir === CT_DIR_REPLY) fl |= CT_F_SEEN_REPLY
    const fin = (f & TCP_FIN) !== 0
    const ack = (f & (TCP_SYN | TCP_ACK)) === TCP_ACK // a plain ACK (no SYN)
    const first = (fl & CT_F_FIRST_FIN_REPLY) !== 0 ? CT_DIR_REPLY : CT_DIR_ORIG
    const finBit = dir === CT_DIR_ORIG ? CT_F_FIN_ORIG : CT_F_FIN_REPLY
    if ((f & TCP_RST) !== 0) {
      st = CtState.TcpClose
    } else {
      switch (st) {
        case CtState.None:
          // First packet. A SYN opens; anything else is a pickup mid-stream.
          if ((f & (TCP_SYN | TCP_ACK)) === TCP_SYN) {
            st = CtState.TcpSynSent
          } else if (fin) {
            st = CtState.TcpFinWait
            fl = this.firstFin(fl, dir)
          } else {
            st = CtState.TcpEstablished
          }
          break
        case CtState.TcpSynSent:
          if (dir === CT_DIR_REPLY && (f & TCP_SYN) !== 0) st = CtState.TcpSynRecv
          break
        case CtState.TcpSynRecv:
        case CtState.TcpEstablished:
          if (fin) {
            st = CtState.TcpFinWait
            fl = this.firstFin(fl, dir)
          } else if (st === CtState.TcpSynRecv && dir === CT_DIR_ORIG && ack) {
            st = CtState.TcpEstablished
          }
          break
        case CtState.TcpFinWait: // one side sent FIN; the other answers
          if (dir === first) break
          if (fin) {
            st = CtState.TcpLastAck
            fl |= finBit
          } else if ((f & TCP_ACK) !== 0) {
            st = CtState.TcpCloseWait
          }
          break
        case CtState.TcpCloseWait: // half closed; the other side's FIN ends it
          if (dir !== first && fin) {
            st = CtState.TcpLastAck
            fl |= finBit
          }
          break
        case CtState.TcpLastAck: // the first side acks the second FIN
          if (dir === first && (f & TCP_ACK) !== 0) st = CtState.TcpTimeWait
          break
        default:
          break
      }
    }
    // Assured once the endpoint answered and the connection is established
    // (the handshake completed, or a pickup got its reply).
    if (st === CtState.TcpEstablished && (fl & CT_F_SEEN_REPLY) !== 0) fl |= CT_F_ASSURED
    this.cState[c] = st
    this.cFlags[c] = fl
  }

  private firstFin(fl: number, dir: number): number {
    return dir === CT_DIR_ORIG ? fl | CT_F_FIN_ORIG : fl | CT_F_FIN_REPLY | CT_F_FIRST_FIN_REPLY
  }

  /** Which LRU list a connection belongs on: assured and open, or cheap to evict. */
  private listOf(c: number): number {
    if ((this.cFlags[c] & CT_F_ASSURED) === 0) return LIST_CHEAP
    const st = this.cState[c]
    return st === CtState.TcpTimeWait || st === CtState.TcpClose ? LIST_CHEAP : LIST_ASSURED
  }

  private evictOne(now: number): boolean {
    let c = this.head[LIST_ASSURED]
    if (c >= 0 && now - this.cSeen[c] >= this.timeoutOf(c)) {
      this.removeConn(c, CtCounter.Expired)
      return true
    }
    const cheap = this.head[LIST_CHEAP]
    if (cheap >= 0) {
      this.removeConn(cheap, now - this.cSeen[cheap] >= this.timeoutOf(cheap) ? CtCounter.Expired : CtCounter.Evicted)
      return true
    }
    c = this.head[LIST_ASSURED]
    if (c >= 0 && now - this.cSeen[c] >= this.evictAssuredIdleMs) {
      this.removeConn(c, CtCounter.Evicted)
      return true
    }
    return false
  }

  private removeConn(c: number, why: CtCounter): void {
    this.unlink(c)
    this.table.remove(this.cOrig[c])
    this.table.remove(this.cReply[c])
    this.cOrig[c] = -1
    this.cFree[this.freeTop++] = c
    this.count--
    this.counters[why]++
    if (this.onClose !== null) this.onClose(this.cEp[c])
  }

  private allocConn(): number {
    if (this.freeTop > 0) return this.cFree[--this.freeTop]
    if (this.highWater === this.cap) this.growConns()
    return this.highWater++
  }

  private growConns(): void {
    const n = Math.min(this.cap * 2, this.maxConnections)
    const old = this.cap
    this.cOrig = growI32(this.cOrig, n)
    this.cOrig.fill(-1, old)
    this.cReply = growI32(this.cReply, n)
    this.cSvc = growI32(this.cSvc, n)
    this.cEp = growI32(this.cEp, n)
    this.cSeen = growF64(this.cSeen, n)
    this.cPrev = growI32(this.cPrev, n)
    this.cNext = growI32(this.cNext, n)
    this.cState = growU8(this.cState, n)
    this.cFlags = growU8(this.cFlags, n)
    this.cFree = growI32(this.cFree, n)
    this.cap = n
  }

  /**
   * Appends c at the tail (most recently used end) of LRU list l; -1 ends a
   * list. Which list c is on is kept in the flags' top bit (CT_F_LIST_ASSURED).
   */
  private link(c: number, l: number): void {
    const t = this.tail[l]
    this.cPrev[c] = t
    this.cNext[c] = -1
    if (t >= 0) this.cNext[t] = c
    else this.head[l] = c
    this.tail[l] = c
    this.cFlags[c] = (this.cFlags[c] & ~CT_F_LIST_ASSURED) | (l << 7)
  }

  private unlink(c: number): void {
    const l = (this.cFlags[c] & CT_F_LIST_ASSURED) >>> 7
    const p = this.cPrev[c]
    const n = this.cNext[c]
    if (p >= 0) this.cNext[p] = n
    else this.head[l] = n
    if (n >= 0) this.cPrev[n] = p
    else this.tail[l] = p
  }
}
