/**
 * The pipeline of the allocation benchmark (bench/alloc.ts), all in memory: a
 * Datapath with five pods on counting TAP doubles, two peer VTEPs behind a
 * counting underlay socket (UDP GSO on, as the agent opens it when it can),
 * and a service VIP balanced over two local and two remote endpoints. Then
 * the traffic mixes that go through it.
 *
 *   VNI 4200, gateway 10.97.0.1, router MAC 02:74:61:70:00:01
 *   local pods (TAPs with virtio-net headers, port security, MTU 1500):
 *     p1 10.97.0.2   client, source of most mixes
 *     p2 10.97.0.3   destination of local and decap traffic
 *     p3 10.97.0.4   service endpoint
 *     p4 10.97.0.5   service endpoint
 *     p5 10.97.0.6   bystander (receives floods)
 *   peers 192.0.2.2 (pod r1 10.97.1.3, endpoint) and 192.0.2.3 (pod r2 10.97.1.4, endpoint)
 *   service web 10.96.0.10:80/TCP -> 8080 on p3, p4, r1, r2 (Maglev)
 *
 * The doubles allocate nothing: a pod's write() and the socket's send() only
 * count (frames, bytes, segments of GSO runs), and rx batches are filled by
 * restoring prebuilt frames into the port's own slab with TypedArray.set from
 * views made once at set-up. The datapath rewrites frames in place (VXLAN over
 * the vnet header, NAT, ARP answers, checksum completion), so every batch is
 * restored from its template before it is delivered, as a fresh read would
 * fill it.
 *
 * Every frame is built with the project's writers, checksums included, so no
 * mix measures a drop path: each mix states what one round must produce
 * (frames written to pods, datagrams and segments sent, ARP answers, NAT
 * rewrites) and the benchmark checks that every round of the measured window
 * produced exactly that, with no drop counter moving.
 */
import { Batch, BATCH_FRAMES, HEADROOM, SLOT_SUPER, TxList } from '../../src/lib/batch'
import { Datapath, DatagramIo, FrameIo, PodPort, ROUTER_MAC_HI, ROUTER_MAC_LO } from '../../src/datapath/datapath'
import { DROP_COUNT, DROP_NAMES } from '../../src/datapath/drops'
import { ETH_HLEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ethWriteHeader } from '../../src/wire/ethernet'
import { IPV4_HLEN_MIN, PROTO_TCP, PROTO_UDP, ipv4WriteHeader } from '../../src/wire/ipv4'
import { TCP_ACK, TCP_HLEN_MIN, TCP_OFF_CSUM, TCP_PSH, tcpFillChecksumV4, tcpWriteHeader } from '../../src/wire/tcp'
import { UDP_HLEN, udpFillChecksumV4, udpWriteHeader } from '../../src/wire/udp'
import { ARP_LEN, ARP_OP_REPLY, ARP_OP_REQUEST, arpWrite } from '../../src/wire/arp'
import { VXLAN_HLEN, vxlanWrite } from '../../src/wire/vxlan'
import { VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_HLEN, vnetWrite, vnetWriteNone } from '../../src/wire/vnet'
import { csumFold, csumPseudoV4 } from '../../src/wire/checksum'
import { ipv4Parse } from '../../src/wire/addr'
import { CT_DIR_ORIG, CtCounter } from '../../src/service/conntrack'
import { ServiceDrop, ServiceStat, SERVICE_DROP_COUNT } from '../../src/service/service-path'

export const VNI = 4200
export const VXLAN_PORT = 4789
/** Largest IP packet of a pod (its MTU) and the TCP MSS that fills it. */
export const MTU = 1500
export const MSS = MTU - IPV4_HLEN_MIN - TCP_HLEN_MIN
/** UDP frames: 1400 bytes, as the micro benchmarks (room for VXLAN in a 1500 underlay). */
export const UDP_FRAME_LEN = 1400
/** TSO super-frames: this many MSS-sized segments each. */
export const TSO_SEGMENTS = 8
/** GRO: segments per UDP GRO datagram from the underlay (one inner TCP flow each). */
export const GRO_SEGMENTS = 8

interface Host { name: string; hi: number; lo: number; ip: number }

const mac = (n: number): { hi: number; lo: number } => ({ hi: 0x0200, lo: (0x0a610000 + n) >>> 0 })
const host = (name: string, n: number, ip: string): Host => ({ name, ...mac(n), ip: ipv4Parse(ip) })

export const P1 = host('p1', 0x0002, '10.97.0.2')
export const P2 = host('p2', 0x0003, '10.97.0.3')
export const P3 = host('p3', 0x0004, '10.97.0.4')
export const P4 = host('p4', 0x0005, '10.97.0.5')
export const P5 = host('p5', 0x0006, '10.97.0.6')
export const R1 = host('r1', 0x0103, '10.97.1.3')
export const R2 = host('r2', 0x0104, '10.97.1.4')
export const GATEWAY = ipv4Parse('10.97.0.1')
export const PEER_1 = ipv4Parse('192.0.2.2')
export const PEER_2 = ipv4Parse('192.0.2.3')
export const PEER_SPORT = 51234
export const VIP = ipv4Parse('10.96.0.10')
export const VIP_PORT = 80
export const TARGET_PORT = 8080
const BCAST = { hi: 0xffff, lo: 0xffffffff }
const ROUTER = { hi: ROUTER_MAC_HI, lo: ROUTER_MAC_LO }

// ---- in-memory ports that allocate nothing ----

/** A pod TAP: rx is filled by the bench, write() counts. */
export class CountingFrameIo implements FrameIo {
  /** `rx`: the datapath's shared pod batch (as the agent gives its TAPs), or one of its own. */
  constructor(readonly rx: Batch = new Batch(BATCH_FRAMES, SLOT_SUPER)) {}
  readonly txCounters = new Float64Array(3)
  frames = 0
  bytes = 0
  writes = 0
  private onBatch: (n: number) => void = noBatch
  start(onBatch: (n: number) => void): void { this.onBatch = onBatch }
  stop(): void { this.onBatch = noBatch }
  /** Runs the datapath's callback as a TAP read of `n` frames would. */
  deliver(n: number): void { this.onBatch(n) }
  write(_buf: Uint8Array, _offs: Uint32Array, lens: Uint32Array, n: number): number {
    let b = 0
    for (let j = 0; j < n; j++) b += lens[j]
    this.writes++
    this.frames += n
    this.bytes += b
    return n
  }
}

function noBatch(_n: number): void { throw new Error('port not started') }

/** Linux's limits on one UDP GSO send (UDP_MAX_SEGMENTS, 65535 - 20 - 8). */
const UDP_MAX_SEGMENTS = 64
const UDP_MAX_PAYLOAD_V4 = 65507

/** The underlay socket: rx is filled by the bench; send() counts datagrams and the segments of GSO runs. */
export class CountingDatagramIo implements DatagramIo {
  constructor(readonly rx: Batch = new Batch(BATCH_FRAMES, SLOT_SUPER)) {}
  readonly txCounters = new Float64Array(3)
  readonly port = VXLAN_PORT
  readonly gsoEnabled = true
  /** Entries of tx lists sent (a GSO run is one), wire datagrams they make, bytes. */
  sends = 0
  datagrams = 0
  segments = 0
  bytes = 0
  private onBatch: (n: number) => void = noBatch
  start(onBatch: (n: number) => void): void { this.onBatch = onBatch }
  stop(): void { this.onBatch = noBatch }
  deliver(n: number): void { this.onBatch(n) }
  send(_buf: Uint8Array, tx: TxList): number {
    this.sends++
    let ok = 0
    for (let j = 0; j < tx.count; j++) {
      const len = tx.lens[j]
      const gso = tx.dst[3 * j + 2]
      const segs = gso > 0 ? Math.ceil(len / gso) : 1
      // Refused as the kernel would (EMSGSIZE, EINVAL): counted, so the datapath drops them as tx errors.
      if (len > UDP_MAX_PAYLOAD_V4 || segs > UDP_MAX_SEGMENTS) {
        this.txCounters[1]++
        continue
      }
      this.datagrams++
      this.segments += segs
      this.bytes += len
      ok++
    }
    return ok
  }
}

// ---- frames ----

/** Scratch for building one frame (the largest is a TSO super-frame). */
const build = new Uint8Array(HEADROOM + VNET_HLEN + 65536)

function payload(buf: Uint8Array, off: number, n: number, seed: number): void {
  for (let i = 0; i < n; i++) buf[off + i] = (i * 31 + seed) & 0xff
}

/** Ethernet + IPv4 + UDP at `off`, checksums filled; returns the frame length. */
function writeUdp(buf: Uint8Array, off: number, src: Host, dstMac: { hi: number; lo: number }, dstIp: number,
  sport: number, dport: number, frameLen: number): number {
  const l3 = off + ETH_HLEN
  const l4 = l3 + IPV4_HLEN_MIN
  const data = frameLen - ETH_HLEN - IPV4_HLEN_MIN - UDP_HLEN
  ethWriteHeader(buf, off, dstMac.hi, dstMac.lo, src.hi, src.lo, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + UDP_HLEN + data, sport, true, 64, PROTO_UDP, src.ip, dstIp)
  udpWriteHeader(buf, l4, sport, dport, UDP_HLEN + data, 0)
  payload(buf, l4 + UDP_HLEN, data, sport)
  udpFillChecksumV4(buf, l3, l4)
  return frameLen
}

interface TcpSpec {
  srcMac: { hi: number; lo: number }
  dstMac: { hi: number; lo: number }
  src: number
  dst: number
  sport: number
  dport: number
  seq: number
  ack: number
  flags: number
  data: number
  /** Leave the checksum partial (pseudo-header sum), as a kernel hands a GSO frame to its TAP. */
  partial?: boolean
}

/** Ethernet + IPv4 + TCP at `off` with `data` payload bytes; returns the frame length. */
function writeTcp(buf: Uint8Array, off: number, t: TcpSpec): number {
  const l3 = off + ETH_HLEN
  const l4 = l3 + IPV4_HLEN_MIN
  const l4len = TCP_HLEN_MIN + t.data
  ethWriteHeader(buf, off, t.dstMac.hi, t.dstMac.lo, t.srcMac.hi, t.srcMac.lo, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + l4len, t.sport & 0xffff, true, 64, PROTO_TCP, t.src, t.dst)
  tcpWriteHeader(buf, l4, t.sport, t.dport, t.seq >>> 0, t.ack >>> 0, t.flags, 502)
  payload(buf, l4 + TCP_HLEN_MIN, t.data, t.seq)
  if (t.partial) {
    const p = csumFold(csumPseudoV4(t.src, t.dst, PROTO_TCP, l4len))
    buf[l4 + TCP_OFF_CSUM] = p >>> 8
    buf[l4 + TCP_OFF_CSUM + 1] = p & 255
  } else {
    tcpFillChecksumV4(buf, l3, l4, l4len)
  }
  return ETH_HLEN + IPV4_HLEN_MIN + l4len
}

/** An ARP frame at `off`; returns its length. */
function writeArp(buf: Uint8Array, off: number, op: number, src: { hi: number; lo: number }, spa: number,
  dstMac: { hi: number; lo: number }, tha: { hi: number; lo: number }, tpa: number): number {
  ethWriteHeader(buf, off, dstMac.hi, dstMac.lo, src.hi, src.lo, ETHERTYPE_ARP)
  arpWrite(buf, off + ETH_HLEN, op, src.hi, src.lo, spa, tha.hi, tha.lo, tpa)
  return ETH_HLEN + ARP_LEN
}

/** One frame of a template: what a slot holds from its start (headroom included) to the frame's end. */
interface Slot {
  bytes: Uint8Array
  len: number
  addr: number
  port: number
  gso: number
}

/** Bytes of `build` from 0 to HEADROOM + len, as a slot's contents. */
function takeSlot(len: number, addr = 0, port = 0, gso = 0): Slot {
  return { bytes: build.slice(0, HEADROOM + len), len, addr, port, gso }
}

/** A pod frame: virtio-net header (none unless `vnet` writes one) then the frame from `write`. */
function podSlot(write: (buf: Uint8Array, off: number) => number, vnet?: (buf: Uint8Array, off: number) => void): Slot {
  build.fill(0, 0, HEADROOM + VNET_HLEN)
  const len = write(build, HEADROOM + VNET_HLEN)
  if (vnet) vnet(build, HEADROOM)
  else vnetWriteNone(build, HEADROOM)
  return takeSlot(VNET_HLEN + len)
}

/** A datagram from a peer: `count` VXLAN packets (a UDP GRO run when count > 1, all of `write`'s length). */
function underlaySlot(peer: number, count: number, write: (buf: Uint8Array, off: number, k: number) => number): Slot {
  build.fill(0, 0, HEADROOM)
  let o = HEADROOM
  let seg = 0
  for (let k = 0; k < count; k++) {
    vxlanWrite(build, o, VNI)
    const len = VXLAN_HLEN + write(build, o + VXLAN_HLEN, k)
    if (k === 0) seg = len
    else if (len !== seg) throw new Error('a GRO run of unequal segments')
    o += len
  }
  return takeSlot(o - HEADROOM, peer, PEER_SPORT, count > 1 ? seg : 0)
}

/**
 * One batch as a port's read would leave it, kept as views made once, so that
 * restoring it into the port's slab (TypedArray.set of each slot) allocates
 * nothing.
 */
export class BatchTemplate {
  readonly n: number
  private readonly bytes: Uint8Array[]
  private readonly starts: Uint32Array
  private readonly lens: Uint32Array
  private readonly meta: Uint32Array
  /** Frames (MTU-sized packets: a GRO run or a TSO super-frame counts its segments) in this batch. */
  readonly frames: number

  constructor(readonly to: CountingFrameIo | CountingDatagramIo, slots: Slot[], frames: number) {
    if (slots.length === 0 || slots.length > to.rx.slots) throw new Error(`a batch of ${slots.length} frames`)
    this.n = slots.length
    this.bytes = slots.map((s) => s.bytes)
    this.starts = Uint32Array.from(slots, (_, i) => to.rx.off(i) - HEADROOM)
    this.lens = Uint32Array.from(slots, (s) => s.len)
    this.meta = new Uint32Array(slots.length * 3)
    slots.forEach((s, i) => { this.meta[3 * i] = s.addr; this.meta[3 * i + 1] = s.port; this.meta[3 * i + 2] = s.gso })
    for (const s of slots) if (s.bytes.length > to.rx.slotSize) throw new Error(`a frame of ${s.len} bytes does not fit a slot`)
    this.frames = frames
  }

  /** Fills the port's rx batch and runs the datapath's callback. */
  deliver(): void {
    const rx = this.to.rx
    const data = rx.data
    const n = this.n
    for (let i = 0; i < n; i++) {
      data.set(this.bytes[i], this.starts[i])
      rx.len[i] = this.lens[i]
      rx.meta[3 * i] = this.meta[3 * i]
      rx.meta[3 * i + 1] = this.meta[3 * i + 1]
      rx.meta[3 * i + 2] = this.meta[3 * i + 2]
    }
    rx.count = n
    this.to.deliver(n)
  }

  /** The header bytes of slot i's frame (for the control mixes, which copy them). */
  slotBytes(i: number): Uint8Array { return this.bytes[i] }
}

// ---- the pipeline ----

/** Counters one round of a mix changes; equal rounds change them equally. */
export const COUNTER_NAMES = [
  'pod frames written', 'pod bytes written', 'pod writes', 'underlay datagrams sent', 'underlay segments sent',
  'underlay bytes sent', 'ARP answered', 'service forwarded', 'service reversed', 'service new connections',
  'conntrack created', 'datapath drops', 'service drops', 'frames read',
] as const
export const C_POD_FRAMES = 0
export const C_UNDERLAY_SEGMENTS = 4
export const C_UNDERLAY_DATAGRAMS = 3
export const C_ARP = 6
export const C_FORWARDED = 7
export const C_REVERSED = 8
export const C_NEW = 9
export const C_DROPS = 11
export const C_SVC_DROPS = 12
export const C_READ = 13

export class Pipeline {
  readonly dp: Datapath
  readonly underlay: CountingDatagramIo
  readonly pods: { host: Host; io: CountingFrameIo; port: PodPort }[] = []
  readonly io: Record<'p1' | 'p2' | 'p3' | 'p4' | 'p5', CountingFrameIo>

  constructor() {
    this.dp = new Datapath({ vxlanPort: VXLAN_PORT, fdb: { seed: 11 }, services: { seed: 7 }, conntrack: { seed: 5 } })
    this.dp.addNetwork(VNI, GATEWAY)
    // The ports read into the datapath's arena, as the agent's TAPs and socket do.
    this.underlay = new CountingDatagramIo(this.dp.underlayRx)
    for (const h of [P1, P2, P3, P4, P5]) {
      const io = new CountingFrameIo(this.dp.podRx)
      const port = this.dp.addPod({ name: h.name, vni: VNI, macHi: h.hi, macLo: h.lo, ip: h.ip, mtu: MTU, portSecurity: true, vnetHdr: true }, io)
      this.pods.push({ host: h, io, port })
    }
    this.io = { p1: this.pods[0].io, p2: this.pods[1].io, p3: this.pods[2].io, p4: this.pods[3].io, p5: this.pods[4].io }
    this.dp.attachUnderlay(this.underlay, [this.underlay])
    this.dp.addPeer(PEER_1)
    this.dp.addPeer(PEER_2)
    if (!this.dp.addRemotePod(VNI, R1.hi, R1.lo, R1.ip, PEER_1) || !this.dp.addRemotePod(VNI, R2.hi, R2.lo, R2.ip, PEER_2)) {
      throw new Error('set-up: remote pods not added')
    }
    this.dp.services.upsert({
      name: 'web', namespace: 'bench', clusterIP: '10.96.0.10',
      ports: [{ name: 'http', port: VIP_PORT, targetPort: TARGET_PORT, protocol: 'TCP' }],
      endpoints: [P3, P4, R1, R2].map((h) => ({ ip: ipv4Format(h.ip) })),
    })
  }

  /** Writes every counter into `out` (a Float64Array of COUNTER_NAMES.length); allocates nothing. */
  snapshot(out: Float64Array): void {
    let frames = 0
    let bytes = 0
    let writes = 0
    for (let k = 0; k < this.pods.length; k++) {
      const io = this.pods[k].io
      frames += io.frames
      bytes += io.bytes
      writes += io.writes
    }
    const u = this.underlay
    const sp = this.dp.servicePath
    let drops = 0
    for (let i = 0; i < DROP_COUNT; i++) drops += this.dp.drops[i]
    let sdrops = 0
    for (let i = 0; i < SERVICE_DROP_COUNT; i++) sdrops += sp.drops[i]
    out[0] = frames
    out[1] = bytes
    out[2] = writes
    out[3] = u.datagrams
    out[4] = u.segments
    out[5] = u.bytes
    out[6] = this.dp.arpAnswered
    out[7] = sp.stats[ServiceStat.Forwarded]
    out[8] = sp.stats[ServiceStat.Reversed]
    out[9] = sp.stats[ServiceStat.NewConnections]
    out[10] = this.dp.conntrack.counters[CtCounter.Created]
    out[11] = drops
    out[12] = sdrops
    out[13] = this.dp.batchFrames
  }

  /** Nonzero drop counters by name (for error messages; allocates). */
  dropSummary(): string {
    const parts: string[] = []
    for (let i = 0; i < DROP_COUNT; i++) if (this.dp.drops[i] !== 0) parts.push(`${DROP_NAMES[i]}=${this.dp.drops[i]}`)
    const sd = this.dp.servicePath.drops
    for (let i = 0; i < SERVICE_DROP_COUNT; i++) if (sd[i] !== 0) parts.push(`service ${ServiceDrop[i]}=${sd[i]}`)
    if (this.underlay.txCounters[1] !== 0) parts.push(`underlay refused=${this.underlay.txCounters[1]}`)
    return parts.join(' ') || 'none'
  }
}

function ipv4Format(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`
}

// ---- traffic mixes ----

export interface Mix {
  name: string
  /** What one round is, for the report. */
  what: string
  /** A control allocates per frame on purpose; the benchmark must see it. */
  control: 'garbage' | 'retained' | null
  /** Frames (MTU-sized packets) in one round. */
  framesPerRound: number
  /** One round: every batch of the mix, in order. */
  round(): void
  /**
   * Checks one round's counter deltas (COUNTER_NAMES order) against what the
   * mix must do; returns an error or null. Called on the set-up round.
   */
  expect(d: Float64Array): string | null
  /** Called after the measured window (controls drop what they kept). */
  release?(): void
}

function roundOf(batches: BatchTemplate[]): { round(): void; frames: number } {
  const n = batches.length
  return {
    round() { for (let b = 0; b < n; b++) batches[b].deliver() },
    frames: batches.reduce((s, b) => s + b.frames, 0),
  }
}

function want(d: Float64Array, checks: Array<[number, number]>): string | null {
  const bad = checks.filter(([c, v]) => d[c] !== v).map(([c, v]) => `${COUNTER_NAMES[c]} ${d[c]} (expected ${v})`)
  if (d[C_DROPS] !== 0 || d[C_SVC_DROPS] !== 0) bad.push(`drops ${d[C_DROPS]}, service drops ${d[C_SVC_DROPS]}`)
  return bad.length > 0 ? bad.join('; ') : null
}

const N = BATCH_FRAMES
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

/** p1 -> p2: UDP, 64 flows, in place from one TAP to the other. */
function podToPod(pl: Pipeline): Mix {
  const t = new BatchTemplate(pl.io.p1, range(N).map((i) =>
    podSlot((b, o) => writeUdp(b, o, P1, P2, P2.ip, 40000 + i, 5201, UDP_FRAME_LEN))), N)
  const r = roundOf([t])
  return {
    name: 'pod -> pod (local)', what: `p1 -> p2: 1 batch of ${N} UDP frames of ${UDP_FRAME_LEN} B, 64 flows`, control: null,
    framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [[C_POD_FRAMES, N], [C_UNDERLAY_DATAGRAMS, 0]]),
  }
}

/** p1 -> r1: VXLAN encapsulation in place, one send. */
function encap(pl: Pipeline): BatchTemplate {
  return new BatchTemplate(pl.io.p1, range(N).map((i) =>
    podSlot((b, o) => writeUdp(b, o, P1, R1, R1.ip, 40000 + i, 5201, UDP_FRAME_LEN))), N)
}

function podToVxlan(pl: Pipeline): Mix {
  const r = roundOf([encap(pl)])
  return {
    name: 'pod -> VXLAN (encap)', what: `p1 -> r1 behind peer 1: 1 batch of ${N} UDP frames of ${UDP_FRAME_LEN} B`, control: null,
    framesPerRound: r.frames, round: r.round,
    // Coalesced into UDP GSO runs of at most 65507 bytes (Datapath.coalesce).
    expect: (d) => want(d, [[C_UNDERLAY_SEGMENTS, N], [C_UNDERLAY_DATAGRAMS, Math.ceil(N / Math.floor(65507 / (8 + UDP_FRAME_LEN)))], [C_POD_FRAMES, 0]]),
  }
}

/** r1 -> p2: one VXLAN datagram per frame (UDP inside: not merged, delivered one by one). */
function vxlanToPod(pl: Pipeline): Mix {
  const t = new BatchTemplate(pl.underlay, range(N).map((i) =>
    underlaySlot(PEER_1, 1, (b, o) => writeUdp(b, o, R1, P2, P2.ip, 40000 + i, 5201, UDP_FRAME_LEN))), N)
  const r = roundOf([t])
  return {
    name: 'VXLAN -> pod (decap)', what: `r1 -> p2: 1 batch of ${N} VXLAN datagrams, UDP frames of ${UDP_FRAME_LEN} B`, control: null,
    framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [[C_POD_FRAMES, N], [C_UNDERLAY_DATAGRAMS, 0], [C_READ, N]]),
  }
}

/** r1 -> p2: UDP GRO datagrams of GRO_SEGMENTS VXLAN packets, each run a TCP flow's in-order segments: merged. */
function vxlanGro(pl: Pipeline): Mix {
  const runs = N / GRO_SEGMENTS
  const t = new BatchTemplate(pl.underlay, range(runs).map((f) =>
    underlaySlot(PEER_1, GRO_SEGMENTS, (b, o, k) => writeTcp(b, o, {
      srcMac: R1, dstMac: P2, src: R1.ip, dst: P2.ip, sport: 41000 + f, dport: 5201,
      seq: 0x10000000 + f * 0x100000 + k * MSS, ack: 777, flags: TCP_ACK | (k === GRO_SEGMENTS - 1 ? TCP_PSH : 0), data: MSS,
    }))), N)
  const r = roundOf([t])
  return {
    name: 'VXLAN -> pod, GRO merge', what: `r1 -> p2: 1 batch of ${runs} UDP GRO datagrams x ${GRO_SEGMENTS} VXLAN/TCP segments (MSS ${MSS}), merged per flow`,
    control: null, framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [[C_POD_FRAMES, runs], [C_READ, runs]]),
  }
}

/** p1 -> r1: TSO super-frames (partial checksum), segmented into VXLAN packets sent as UDP GSO runs. */
function tso(pl: Pipeline): Mix {
  const count = N / TSO_SEGMENTS
  const hdr = ETH_HLEN + IPV4_HLEN_MIN + TCP_HLEN_MIN
  const t = new BatchTemplate(pl.io.p1, range(count).map((f) =>
    podSlot(
      (b, o) => writeTcp(b, o, {
        srcMac: P1, dstMac: R1, src: P1.ip, dst: R1.ip, sport: 42000 + f, dport: 5201,
        seq: 0x20000000 + f * 0x100000, ack: 777, flags: TCP_ACK | TCP_PSH, data: TSO_SEGMENTS * MSS, partial: true,
      }),
      (b, o) => vnetWrite(b, o, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, hdr, MSS, ETH_HLEN + IPV4_HLEN_MIN, TCP_OFF_CSUM),
    )), N)
  const r = roundOf([t])
  return {
    name: 'TSO super-frame -> VXLAN', what: `p1 -> r1: 1 batch of ${count} TSO super-frames of ${TSO_SEGMENTS} x ${MSS} B, segmented, sent as UDP GSO runs`,
    control: null, framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [[C_UNDERLAY_SEGMENTS, N], [C_UNDERLAY_DATAGRAMS, count], [C_READ, count]]),
  }
}

/**
 * Service traffic on established connections: p1 sends TCP segments to
 * VIP:80 (DNAT to an endpoint: p3/p4 locally, r1/r2 over VXLAN), and the
 * endpoints answer (reverse NAT before p1 gets them): local endpoints from
 * their TAPs, remote ones through the underlay.
 */
function service(pl: Pipeline): Mix {
  const flows = N
  const out = new BatchTemplate(pl.io.p1, range(flows).map((i) =>
    podSlot((b, o) => writeTcp(b, o, {
      srcMac: P1, dstMac: ROUTER, src: P1.ip, dst: VIP, sport: 43000 + i, dport: VIP_PORT,
      seq: 0x30000000 + i * 0x100000, ack: 0x40000000 + i * 0x100000, flags: TCP_ACK, data: 200,
    }))), flows)
  // One round trip picks every flow's endpoint (mid-stream pickup: a connection each); then build the answers.
  out.deliver()
  const ct = pl.dp.conntrack
  const byEndpoint = new Map<number, number[]>()
  for (let i = 0; i < flows; i++) {
    const e = ct.lookup(P1.ip, VIP, 43000 + i, VIP_PORT, PROTO_TCP, performance.now())
    if (e < 0 || ct.dirOf(e) !== CT_DIR_ORIG) throw new Error(`service set-up: flow ${i} not tracked (${pl.dropSummary()})`)
    ct.translate(e)
    const ep = ct.natDst
    byEndpoint.set(ep, [...(byEndpoint.get(ep) ?? []), i])
  }
  const reply = (ep: Host, i: number) => (b: Uint8Array, o: number): number => writeTcp(b, o, {
    srcMac: ep, dstMac: P1, src: ep.ip, dst: P1.ip, sport: TARGET_PORT, dport: 43000 + i,
    seq: 0x40000000 + i * 0x100000, ack: 0x30000000 + i * 0x100000 + 200, flags: TCP_ACK, data: 1000,
  })
  const batches = [out]
  const parts: string[] = []
  for (const ep of [P3, P4]) {
    const fs = byEndpoint.get(ep.ip) ?? []
    if (fs.length === 0) continue
    batches.push(new BatchTemplate(ep === P3 ? pl.io.p3 : pl.io.p4, fs.map((i) => podSlot(reply(ep, i))), fs.length))
    parts.push(`${fs.length} from ${ep.name}`)
  }
  const remote: Slot[] = []
  for (const [ep, peer] of [[R1, PEER_1], [R2, PEER_2]] as const) {
    const fs = byEndpoint.get(ep.ip) ?? []
    for (const i of fs) remote.push(underlaySlot(peer, 1, reply(ep, i)))
    if (fs.length > 0) parts.push(`${fs.length} from ${ep.name} over VXLAN`)
  }
  if (remote.length > 0) batches.push(new BatchTemplate(pl.underlay, remote, remote.length))
  const toRemote = remote.length
  const r = roundOf(batches)
  return {
    name: 'service DNAT + reverse NAT', what: `p1 -> VIP:80 (${flows} TCP connections, 200 B segments) DNAT to p3/p4/r1/r2, answers of 1000 B reverse-NATed (${parts.join(', ')})`,
    control: null, framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [
      [C_FORWARDED, flows], [C_REVERSED, flows], [C_NEW, 0], [C_UNDERLAY_SEGMENTS, toRemote],
      [C_POD_FRAMES, (flows - toRemote) + flows],
    ]),
  }
}

/**
 * ARP: p1 asks for the gateway, for local pods and for remote pods (all
 * answered by the agent, in place), and the peers' hosts answer agent probes
 * (ARP replies to the router MAC: learned, not delivered).
 */
function arp(pl: Pipeline): Mix {
  const targets = [GATEWAY, P2.ip, P3.ip, P4.ip, P5.ip, R1.ip, R2.ip]
  const zero = { hi: 0, lo: 0 }
  const ask = new BatchTemplate(pl.io.p1, range(N).map((i) =>
    podSlot((b, o) => writeArp(b, o, ARP_OP_REQUEST, P1, P1.ip, BCAST, zero, targets[i % targets.length]))), N)
  const answers = new BatchTemplate(pl.underlay, range(N).map((i) => {
    const from = i % 2 === 0 ? R1 : R2
    return underlaySlot(i % 2 === 0 ? PEER_1 : PEER_2, 1, (b, o) => writeArp(b, o, ARP_OP_REPLY, from, from.ip, ROUTER, ROUTER, GATEWAY))
  }), N)
  const r = roundOf([ask, answers])
  return {
    name: 'ARP', what: `p1: ${N} requests (gateway, local and remote pods: all answered by the agent); underlay: ${N} replies to agent probes`,
    control: null, framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [[C_ARP, N], [C_POD_FRAMES, N], [C_UNDERLAY_DATAGRAMS, 0]]),
  }
}

/** Broadcast: p1 floods to the 4 other pods and both peers; r1 floods to the 5 local pods. */
function flood(pl: Pipeline): Mix {
  const len = 256
  const bcastIp = ipv4Parse('10.97.255.255')
  const fromPod = new BatchTemplate(pl.io.p1, range(N).map((i) =>
    podSlot((b, o) => writeUdp(b, o, P1, BCAST, bcastIp, 44000 + i, 5353, len))), N)
  const fromPeer = new BatchTemplate(pl.underlay, range(N).map((i) =>
    underlaySlot(PEER_1, 1, (b, o) => writeUdp(b, o, R1, BCAST, bcastIp, 45000 + i, 5353, len))), N)
  const r = roundOf([fromPod, fromPeer])
  return {
    name: 'broadcast flood', what: `p1: ${N} broadcasts of ${len} B to 4 pods + 2 peers; r1: ${N} broadcasts to 5 pods`,
    control: null, framesPerRound: r.frames, round: r.round,
    expect: (d) => want(d, [[C_POD_FRAMES, 4 * N + 5 * N], [C_UNDERLAY_SEGMENTS, 2 * N]]),
  }
}

/** Every mix above, one round each, interleaved: the steady state of a host doing all of it. */
function interleaved(mixes: Mix[]): Mix {
  const n = mixes.length
  return {
    name: 'all of the above, interleaved', what: 'one round of each mix above in turn', control: null,
    framesPerRound: mixes.reduce((s, m) => s + m.framesPerRound, 0),
    round() { for (let k = 0; k < n; k++) mixes[k].round() },
    expect: (d) => (d[C_DROPS] !== 0 || d[C_SVC_DROPS] !== 0 ? `drops ${d[C_DROPS]}, service drops ${d[C_SVC_DROPS]}` : null),
  }
}

/** Sink for the controls, so their allocations cannot be optimised away. */
export const controlSink = { value: 0 }

/** The encap mix plus a Buffer.from of each frame's first 64 bytes, dropped at once: garbage per frame. */
function controlGarbage(pl: Pipeline): Mix {
  const t = encap(pl)
  const heads = range(N).map((i) => t.slotBytes(i).subarray(HEADROOM, HEADROOM + 64))
  return {
    name: 'control: Buffer.from per frame', what: 'pod -> VXLAN (encap) + Buffer.from(64 B) per frame, discarded', control: 'garbage',
    framesPerRound: N,
    round() {
      t.deliver()
      let s = 0
      for (let i = 0; i < N; i++) s += Buffer.from(heads[i])[i & 63]
      controlSink.value ^= s
    },
    expect: (d) => want(d, [[C_UNDERLAY_SEGMENTS, N]]),
  }
}

/** The encap mix plus one number kept per frame (an array that only grows): heap growth per frame. */
function controlRetained(pl: Pipeline): Mix {
  const t = encap(pl)
  let kept: number[] = []
  return {
    name: 'control: kept per frame', what: 'pod -> VXLAN (encap) + one array element kept per frame', control: 'retained',
    framesPerRound: N,
    round() {
      t.deliver()
      for (let i = 0; i < N; i++) kept.push(i)
    },
    expect: (d) => want(d, [[C_UNDERLAY_SEGMENTS, N]]),
    release() {
      controlSink.value ^= kept.length
      kept = []
    },
  }
}

/** The real mixes in report order, the interleaved one, then the controls. */
export function buildMixes(pl: Pipeline): Mix[] {
  const real = [podToPod(pl), podToVxlan(pl), vxlanToPod(pl), vxlanGro(pl), tso(pl), service(pl), arp(pl), flood(pl)]
  return [...real, interleaved(real), controlGarbage(pl), controlRetained(pl)]
}
