/**
 * The hot functions benchmarked by micro.ts, each over frames built once.
 *
 * Every case cycles through a set of inputs (64 frames of a batch, or 100k
 * FDB keys in a shuffled order) rather than repeating one, so branch
 * predictors and caches see something like traffic, and xors its results
 * into a sink that ends up in the results file, so V8 cannot drop the work.
 * The index arithmetic that picks the next input is part of every figure;
 * the "loop overhead" row measures it alone.
 *
 * Every case has a check that runs before and after its measurement (frames
 * forwarded, not dropped; FDB hits that hit), so a figure never silently
 * describes a drop path.
 */
import { Batch, BATCH_FRAMES, SLOT_PLAIN, TxList } from '../../src/lib/batch'
import { ETH_HLEN, ETHERTYPE_IPV4, ethWriteHeader } from '../../src/wire/ethernet'
import {
  IPV4_HLEN_MIN, IPV4_OFF_CSUM, IPV4_OFF_TTL, PROTO_TCP, ipv4FillChecksum, ipv4HeaderChecksumOk, ipv4WriteHeader,
} from '../../src/wire/ipv4'
import { VXLAN_HLEN, vxlanCheck, vxlanVni, vxlanWrite } from '../../src/wire/vxlan'
import { VNET_HLEN } from '../../src/wire/vnet'
import { csumAdd, csumFinish, csumUpdate16 } from '../../src/wire/checksum'
import { u16 } from '../../src/wire/byteorder'
import { flowHash } from '../../src/wire/flowhash'
import { ipv4Parse } from '../../src/wire/addr'
import { Fdb, FdbCounter, LearnResult } from '../../src/switch/fdb'
import { PEER_PORT_BASE } from '../../src/overlay/peers'
import { CaptureHook, Datapath, DatagramIo, FrameIo } from '../../src/datapath/datapath'
import { DROP_NAMES } from '../../src/datapath/drops'
import { TCP_ACK, TCP_HLEN_MIN, tcpChecksumOkV4, tcpDstPort, tcpFillChecksumV4, tcpWriteHeader } from '../../src/wire/tcp'
import { Conntrack, CtCounter } from '../../src/service/conntrack'
import { ServiceTable } from '../../src/service/service-table'
import { ServicePath, SERVICE_ROUTER_MAC_HI, SERVICE_ROUTER_MAC_LO, Verdict } from '../../src/service/service-path'
import { FlowSet, fillPodBatch, fillVxlanBatch, frameOffsets, permutation } from './frames'
import { MicroCase } from './tinybench'

/** Results of every case are xored in here; the value goes into the results file. */
const sinkBox = { value: 0 }
export function sinkValue(): number { return sinkBox.value >>> 0 }

/** Size of the FDB for the learn/lookup cases. */
export const FDB_ENTRIES = 100_000
/** Connections in the conntrack lookup case (full mode / --short). */
export const CT_ENTRIES_FULL = 1_000_000
export const CT_ENTRIES_SHORT = 100_000
/** Inner frame length used everywhere (an MTU-sized TCP segment's frame is 1514; 1400 leaves room for VXLAN in a 1500 underlay). */
export const FRAME_LEN = 1400
const VNI = 4200
const MASK = BATCH_FRAMES - 1

// Pod side (this host) and remote side (behind a peer VTEP).
const POD_MAC_HI = 0x0200, POD_MAC_LO = 0x0a610002
const REMOTE_MAC_HI = 0x0200, REMOTE_MAC_LO = 0x0a610103
const POD_IP = ipv4Parse('10.97.0.2')
const REMOTE_IP = ipv4Parse('10.97.1.3')
const PEER_IP = ipv4Parse('192.0.2.2')

const outbound: FlowSet = {
  srcHi: POD_MAC_HI, srcLo: POD_MAC_LO, dstHi: REMOTE_MAC_HI, dstLo: REMOTE_MAC_LO,
  srcIp: POD_IP, dstIp: REMOTE_IP, frameLen: FRAME_LEN,
}
const inbound: FlowSet = {
  srcHi: REMOTE_MAC_HI, srcLo: REMOTE_MAC_LO, dstHi: POD_MAC_HI, dstLo: POD_MAC_LO,
  srcIp: REMOTE_IP, dstIp: POD_IP, frameLen: FRAME_LEN,
}

/** A pod TAP in memory: rx is filled by the bench, writes are counted. */
class MemoryFrameIo implements FrameIo {
  readonly txCounters = new Float64Array(3)
  written = 0
  constructor(readonly rx: Batch) {}
  start(): void {}
  stop(): void {}
  write(_buf: Uint8Array, _offs: Uint32Array, _lens: Uint32Array, n: number): number {
    this.written += n
    return n
  }
}

/** The underlay socket in memory: send() counts datagrams and keeps nothing. */
class CountingDatagramIo implements DatagramIo {
  readonly rx = new Batch(BATCH_FRAMES, SLOT_PLAIN)
  readonly txCounters = new Float64Array(3)
  readonly port = 4789
  /** The bench frames are plain (no TSO/USO), so no send carries a segment size. */
  readonly gsoEnabled = false
  sent = 0
  start(): void {}
  stop(): void {}
  send(_buf: Uint8Array, tx: TxList): number {
    this.sent += tx.count
    return tx.count
  }
}

function dropSummary(drops: Float64Array): string {
  const parts: string[] = []
  for (let i = 0; i < drops.length; i++) if (drops[i] !== 0) parts.push(`${DROP_NAMES[i]}=${drops[i]}`)
  return parts.join(' ')
}

function loopOverhead(): MicroCase {
  const offs = frameOffsets(new Batch(BATCH_FRAMES, SLOT_PLAIN), 0)
  let cur = 0
  return {
    name: 'loop overhead (reference)',
    op: 'pick the next of 64 inputs',
    run(ops) {
      let s = 0
      let i = cur
      for (let n = 0; n < ops; n++) {
        s ^= offs[i]
        i = (i + 1) & MASK
      }
      cur = i
      sinkBox.value ^= s
    },
  }
}

function vxlanCases(): MicroCase[] {
  const ub = new Batch(BATCH_FRAMES, SLOT_PLAIN)
  fillVxlanBatch(ub, inbound, VNI)
  const offs = frameOffsets(ub, 0)
  const lens = ub.len
  let cur = 0
  const parse: MicroCase = {
    name: 'vxlan parse',
    op: 'vxlanCheck + vxlanVni, 1 datagram',
    run(ops) {
      const buf = ub.data
      let s = 0
      let i = cur
      for (let n = 0; n < ops; n++) {
        const off = offs[i]
        if (vxlanCheck(buf, off, lens[i]) > 0) s ^= vxlanVni(buf, off)
        i = (i + 1) & MASK
      }
      cur = i
      sinkBox.value ^= s
    },
    verify() {
      for (let i = 0; i < BATCH_FRAMES; i++) {
        if (vxlanCheck(ub.data, offs[i], lens[i]) !== VXLAN_HLEN) return `slot ${i} does not check`
        if (vxlanVni(ub.data, offs[i]) !== VNI + (i & 3)) return `slot ${i} has the wrong VNI`
      }
      return null
    },
  }

  // Build: the header goes into the headroom in front of each frame, as encap does.
  const eb = new Batch(BATCH_FRAMES, SLOT_PLAIN)
  fillPodBatch(eb, outbound, false)
  const hdr = frameOffsets(eb, -VXLAN_HLEN)
  let bcur = 0
  const build: MicroCase = {
    name: 'vxlan build',
    op: 'vxlanWrite, 1 header',
    run(ops) {
      const buf = eb.data
      let s = 0
      let i = bcur
      for (let n = 0; n < ops; n++) {
        s ^= vxlanWrite(buf, hdr[i], VNI + i)
        i = (i + 1) & MASK
      }
      bcur = i
      sinkBox.value ^= s
    },
    verify() {
      for (let i = 0; i < BATCH_FRAMES; i++) {
        if (vxlanCheck(eb.data, hdr[i], VXLAN_HLEN) !== VXLAN_HLEN || vxlanVni(eb.data, hdr[i]) !== VNI + i) return `slot ${i} was not written`
      }
      return null
    },
  }
  build.run(BATCH_FRAMES) // every header written once, so the check below holds before timing too
  return [parse, build]
}

function fdbCases(): MicroCase[] {
  const N = FDB_ENTRIES
  const NOW = 1000
  // 100k stations in 8 VNIs behind 64 ports; MAC i is 02:00:<i+1 as 32 bits>.
  const macs = new Uint8Array(N * 6)
  const missing = new Uint8Array(N * 6)
  for (let i = 0; i < N; i++) {
    const lo = i + 1
    for (const [slab, b1] of [[macs, 0x00], [missing, 0x01]] as const) {
      const o = i * 6
      slab[o] = 0x02
      slab[o + 1] = b1
      slab[o + 2] = lo >>> 24
      slab[o + 3] = (lo >>> 16) & 0xff
      slab[o + 4] = (lo >>> 8) & 0xff
      slab[o + 5] = lo & 0xff
    }
  }
  const vniOf = (i: number): number => 1000 + (i & 7)
  const portOf = (i: number): number => 1 + (i % 64)
  const fdb = new Fdb({ seed: 0x9e3779b9 })
  for (let i = 0; i < N; i++) {
    const r = fdb.learn(vniOf(i), macs, i * 6, portOf(i), 0)
    if (r !== LearnResult.Learned) throw new Error(`fdb set-up: entry ${i} was not learned (${LearnResult[r]})`)
  }
  // Queries in a shuffled order: entries were allocated in insertion order,
  // so querying in that order would walk the slabs sequentially.
  const order = permutation(N, 0x5eed)
  const qOff = new Uint32Array(N)
  const qVni = new Uint32Array(N)
  const qPort = new Uint32Array(N)
  for (let j = 0; j < N; j++) {
    qOff[j] = order[j] * 6
    qVni[j] = vniOf(order[j])
    qPort[j] = portOf(order[j])
  }
  const sizeOk = (): string | null =>
    fdb.size !== N || fdb.counters[FdbCounter.Learned] !== N || fdb.counters[FdbCounter.Moved] !== 0
      ? `table changed: size ${fdb.size}, learned ${fdb.counters[FdbCounter.Learned]}, moved ${fdb.counters[FdbCounter.Moved]}`
      : null

  let lcur = 0
  let notRefreshed = 0
  const learn: MicroCase = {
    name: 'fdb learn (100k entries)',
    op: 'learn a known source MAC (refresh)',
    run(ops) {
      let s = 0
      let j = lcur
      for (let n = 0; n < ops; n++) {
        s += fdb.learn(qVni[j], macs, qOff[j], qPort[j], NOW)
        if (++j === N) j = 0
      }
      lcur = j
      // LearnResult.Refreshed is 0, and every result is >= 0: a nonzero sum means another outcome.
      if (s !== 0) notRefreshed++
    },
    verify() {
      if (notRefreshed !== 0) return `${notRefreshed} rounds had a learn that did not refresh`
      return sizeOk()
    },
  }

  let hcur = 0
  const hit: MicroCase = {
    name: 'fdb lookup hit (100k entries)',
    op: 'lookup a known destination MAC',
    run(ops) {
      let s = 0
      let j = hcur
      for (let n = 0; n < ops; n++) {
        s ^= fdb.lookup(qVni[j], macs, qOff[j], NOW)
        if (++j === N) j = 0
      }
      hcur = j
      sinkBox.value ^= s
    },
    verify() {
      for (let j = 0; j < N; j += 97) {
        const p = fdb.lookup(qVni[j], macs, qOff[j], NOW)
        if (p !== qPort[j]) return `query ${j} found port ${p}, expected ${qPort[j]}`
      }
      return sizeOk()
    },
  }

  let mcur = 0
  const miss: MicroCase = {
    name: 'fdb lookup miss (100k entries)',
    op: 'lookup an unknown destination MAC',
    run(ops) {
      let s = 0
      let j = mcur
      for (let n = 0; n < ops; n++) {
        s ^= fdb.lookup(qVni[j], missing, qOff[j], NOW)
        if (++j === N) j = 0
      }
      mcur = j
      sinkBox.value ^= s
    },
    verify() {
      for (let j = 0; j < N; j += 97) {
        const p = fdb.lookup(qVni[j], missing, qOff[j], NOW)
        if (p !== -1) return `unknown MAC of query ${j} found port ${p}`
      }
      return sizeOk()
    },
  }
  return [learn, hit, miss]
}

function checksumCases(): MicroCase[] {
  const b = new Batch(BATCH_FRAMES, SLOT_PLAIN)
  fillPodBatch(b, outbound, false)
  const frames = frameOffsets(b, 0)
  const l3 = frameOffsets(b, ETH_HLEN)

  let hcur = 0
  const header: MicroCase = {
    name: 'ipv4 header checksum',
    op: 'ipv4FillChecksum, 20 B header',
    run(ops) {
      const buf = b.data
      let i = hcur
      for (let n = 0; n < ops; n++) {
        ipv4FillChecksum(buf, l3[i])
        i = (i + 1) & MASK
      }
      hcur = i
    },
    verify() {
      for (let i = 0; i < BATCH_FRAMES; i++) if (!ipv4HeaderChecksumOk(b.data, l3[i])) return `slot ${i} header does not verify`
      return null
    },
  }

  let fcur = 0
  const full: MicroCase = {
    name: 'checksum 1400 B',
    op: 'csumAdd + csumFinish over a 1400 B frame',
    bytesPerOp: FRAME_LEN,
    run(ops) {
      const buf = b.data
      let s = 0
      let i = fcur
      for (let n = 0; n < ops; n++) {
        s ^= csumFinish(csumAdd(buf, frames[i], FRAME_LEN, 0))
        i = (i + 1) & MASK
      }
      fcur = i
      sinkBox.value ^= s
    },
  }

  // RFC 1624 update as a router patches TTL: the TTL/protocol word goes down by 0x100.
  const oldCsum = new Uint16Array(BATCH_FRAMES)
  const oldWord = new Uint16Array(BATCH_FRAMES)
  const newWord = new Uint16Array(BATCH_FRAMES)
  for (let i = 0; i < BATCH_FRAMES; i++) {
    oldCsum[i] = u16(b.data, l3[i] + IPV4_OFF_CSUM)
    oldWord[i] = u16(b.data, l3[i] + IPV4_OFF_TTL)
    newWord[i] = oldWord[i] - 0x100
  }
  let icur = 0
  const incr: MicroCase = {
    name: 'checksum incremental update',
    op: 'csumUpdate16 (RFC 1624), TTL decrement',
    run(ops) {
      let s = 0
      let i = icur
      for (let n = 0; n < ops; n++) {
        s ^= csumUpdate16(oldCsum[i], oldWord[i], newWord[i])
        i = (i + 1) & MASK
      }
      icur = i
      sinkBox.value ^= s
    },
    verify() {
      const hdr = new Uint8Array(20)
      for (let i = 0; i < BATCH_FRAMES; i++) {
        hdr.set(b.data.subarray(l3[i], l3[i] + 20))
        hdr[IPV4_OFF_TTL]--
        ipv4FillChecksum(hdr, 0)
        const want = u16(hdr, IPV4_OFF_CSUM)
        const got = csumUpdate16(oldCsum[i], oldWord[i], newWord[i])
        if (got !== want) return `slot ${i}: incremental ${got.toString(16)} != recomputed ${want.toString(16)}`
      }
      return null
    },
  }

  let hh = 0
  const lens = b.len
  const hash: MicroCase = {
    name: 'flow hash',
    op: 'flowHash of an IPv4/UDP frame',
    run(ops) {
      const buf = b.data
      let s = 0
      let i = hh
      for (let n = 0; n < ops; n++) {
        s ^= flowHash(buf, frames[i], lens[i], 0x1234567)
        i = (i + 1) & MASK
      }
      hh = i
      sinkBox.value ^= s
    },
    verify() {
      const seen = new Set<number>()
      for (let i = 0; i < BATCH_FRAMES; i++) seen.add(flowHash(b.data, frames[i], lens[i], 0x1234567))
      return seen.size < BATCH_FRAMES / 2 ? `64 flows gave only ${seen.size} hashes: not the 5-tuple path` : null
    },
  }
  return [header, full, incr, hash]
}

function datapathCases(): MicroCase[] {
  const dp = new Datapath({ vxlanPort: 4789, fdb: { seed: 1 } })
  dp.addNetwork(VNI, ipv4Parse('10.97.0.1'))
  const podIo = new MemoryFrameIo(new Batch(BATCH_FRAMES, SLOT_PLAIN))
  fillPodBatch(podIo.rx, outbound, true)
  const pod = dp.addPod({
    name: 'bench', vni: VNI, macHi: POD_MAC_HI, macLo: POD_MAC_LO, ip: POD_IP, mtu: 1500, portSecurity: true, vnetHdr: true,
  }, podIo)
  const underlay = new CountingDatagramIo()
  dp.attachUnderlay(underlay, [underlay])
  const peer = dp.addPeer(PEER_IP)
  if (!dp.fdb.addStatic(VNI, REMOTE_MAC_HI, REMOTE_MAC_LO, PEER_PORT_BASE + peer)) throw new Error('datapath set-up: FDB full')

  // Inbound: 64 VXLAN datagrams from the peer to the pod.
  const urx = underlay.rx
  fillVxlanBatch(urx, inbound, VNI)
  for (let i = 0; i < BATCH_FRAMES; i++) {
    vxlanWrite(urx.data, urx.off(i), VNI) // one VNI for all (fillVxlanBatch varies it)
    urx.meta[3 * i] = PEER_IP
  }
  const vxOffs = frameOffsets(urx, 0)

  let podBatches = 0
  let underlayBatches = 0
  const dropsOk = (): string | null => {
    const d = dropSummary(dp.drops)
    return d ? `drops: ${d}` : null
  }
  // One trial of each before timing, so a set-up mistake fails loudly instead of timing a drop path.
  dp.onPodBatch(pod, BATCH_FRAMES)
  if (underlay.sent !== BATCH_FRAMES || podIo.written !== 0 || dropsOk()) {
    throw new Error(`datapath set-up: pod batch sent ${underlay.sent} datagrams, ${podIo.written} local frames, ${dropsOk() ?? 'no drops'}`)
  }
  const v0 = podIo.rx.off(0) + VNET_HLEN - VXLAN_HLEN
  if (vxlanCheck(podIo.rx.data, v0, VXLAN_HLEN) !== VXLAN_HLEN || vxlanVni(podIo.rx.data, v0) !== VNI) throw new Error('datapath set-up: no VXLAN header written')
  dp.onUnderlayBatch(BATCH_FRAMES)
  const podFrames: number = podIo.written // (TypeScript keeps the narrowing to 0 from the check above)
  if (podFrames !== BATCH_FRAMES || dropsOk()) {
    throw new Error(`datapath set-up: underlay batch gave ${podFrames} pod frames, ${dropsOk() ?? 'no drops'}`)
  }
  underlay.sent = 0
  podIo.written = 0

  const out: MicroCase = {
    name: 'datapath pod batch -> VXLAN',
    op: 'onPodBatch: 64 x 1400 B frames to a MAC behind a peer',
    framesPerOp: BATCH_FRAMES,
    run(ops) {
      for (let n = 0; n < ops; n++) dp.onPodBatch(pod, BATCH_FRAMES)
      podBatches += ops
    },
    verify() {
      if (underlay.sent !== podBatches * BATCH_FRAMES) return `sent ${underlay.sent} datagrams for ${podBatches} batches of ${BATCH_FRAMES}`
      return dropsOk()
    },
  }
  const inb: MicroCase = {
    name: 'datapath VXLAN batch -> pod',
    op: 'onUnderlayBatch: 64 VXLAN datagrams to a local pod (+ restoring the 64 VXLAN headers decap overwrote)',
    framesPerOp: BATCH_FRAMES,
    run(ops) {
      const buf = urx.data
      for (let n = 0; n < ops; n++) {
        // Decap writes the pod's virtio-net header over the VXLAN header in place;
        // the next round needs it back, as a fresh read would provide.
        for (let i = 0; i < BATCH_FRAMES; i++) vxlanWrite(buf, vxOffs[i], VNI)
        dp.onUnderlayBatch(BATCH_FRAMES)
      }
      underlayBatches += ops
    },
    verify() {
      if (podIo.written !== underlayBatches * BATCH_FRAMES) return `wrote ${podIo.written} pod frames for ${underlayBatches} batches of ${BATCH_FRAMES}`
      return dropsOk()
    },
  }
  // The same batch with a capture hook attached that keeps nothing (as a capture
  // whose filter matches no frame): the cost of the hook call per frame. Without
  // a capture the datapath only compares `capture` with null.
  let hooked = 0
  let hookedBatches = 0
  const hook: CaptureHook = { frame() { hooked++ } }
  const withCapture: MicroCase = {
    name: 'datapath pod batch -> VXLAN, capture hook attached',
    op: 'as "datapath pod batch -> VXLAN", with a capture hook that records nothing',
    framesPerOp: BATCH_FRAMES,
    run(ops) {
      dp.capture = hook
      for (let n = 0; n < ops; n++) dp.onPodBatch(pod, BATCH_FRAMES)
      dp.capture = null
      podBatches += ops
      hookedBatches += ops
    },
    verify() {
      // Every frame passes the hook at least once (read from the pod, and sent to the underlay).
      if (hooked < hookedBatches * BATCH_FRAMES) return `the capture hook saw ${hooked} frames in ${hookedBatches} batches`
      if (underlay.sent !== podBatches * BATCH_FRAMES) return `sent ${underlay.sent} datagrams for ${podBatches} batches of ${BATCH_FRAMES}`
      return dropsOk()
    },
  }
  return [out, withCapture, inb]
}

// ---- services: conntrack, balancer, service path

const SVC_VIP = ipv4Parse('10.96.0.10')
const SVC_PORT = 80
const SVC_TARGET = 8080
const SVC_CLIENT = ipv4Parse('10.244.1.10')
const SVC_CLIENT_PORT = 3
/** 10 endpoints 10.244.2.10 .. 10.244.2.19. */
const SVC_ENDPOINTS = Array.from({ length: 10 }, (_, i) => `10.244.2.${10 + i}`)

function webService(): { services: ServiceTable; id: number } {
  const services = new ServiceTable({ seed: 7 }) // default Maglev size (16381), as the agent uses
  const r = services.upsert({
    name: 'web', namespace: 'bench', clusterIP: '10.96.0.10',
    ports: [{ name: 'http', port: SVC_PORT, targetPort: SVC_TARGET, protocol: 'TCP' }],
    endpoints: SVC_ENDPOINTS.map((ip) => ({ ip })),
  })
  return { services, id: r.id }
}

function serviceCases(ctEntries: number, short: boolean): MicroCase[] {
  // -- conntrack lookup: ctEntries TCP connections, as conntrack-memory.test.ts
  // fills them (1000 clients x ctEntries/1000 ports to one VIP, 100 backends),
  // looked up by their original tuple in a shuffled order.
  const N = ctEntries
  const ct = new Conntrack({ maxConnections: N, seed: 3 })
  const clientOf = (i: number): number => (0x0af40000 + (i % 1000)) >>> 0
  const cportOf = (i: number): number => 10000 + Math.floor(i / 1000)
  for (let i = 0; i < N; i++) {
    const client = clientOf(i)
    if (ct.create(client, SVC_VIP, cportOf(i), SVC_PORT, PROTO_TCP, (0x0af50000 + (i % 100)) >>> 0, SVC_TARGET, client, 0, i % 100, TCP_ACK, 0) < 0) {
      throw new Error(`conntrack set-up: create ${i} failed`)
    }
  }
  const order = permutation(N, 0xc0ffee)
  const qClient = new Uint32Array(N)
  const qPort = new Uint32Array(N)
  for (let j = 0; j < N; j++) {
    qClient[j] = clientOf(order[j])
    qPort[j] = cportOf(order[j])
  }
  const NOW = 1000 // 1 s after creation: far from any timeout, so no lookup expires an entry
  let ccur = 0
  let misses = 0
  const ctName = short ? `conntrack lookup (${N / 1000}k entries; --short, full mode 1M)` : `conntrack lookup (${N / 1e6}M entries)`
  const ctLookup: MicroCase = {
    name: ctName,
    op: 'Conntrack.lookup of an existing flow (original direction)',
    run(ops) {
      let s = 0
      let m = 0
      let j = ccur
      for (let n = 0; n < ops; n++) {
        const e = ct.lookup(qClient[j], SVC_VIP, qPort[j], SVC_PORT, PROTO_TCP, NOW)
        if (e < 0) m++
        s ^= e
        if (++j === N) j = 0
      }
      ccur = j
      misses += m
      sinkBox.value ^= s
    },
    verify() {
      if (misses !== 0) return `${misses} lookups of existing flows missed`
      if (ct.size !== N || ct.entries !== 2 * N) return `table changed: ${ct.size} connections, ${ct.entries} entries`
      for (let j = 0; j < N; j += 997) {
        const e = ct.lookup(qClient[j], SVC_VIP, qPort[j], SVC_PORT, PROTO_TCP, NOW)
        if (e < 0 || ct.dirOf(e) !== 0) return `flow ${j} not found in the original direction`
      }
      return null
    },
  }

  // -- Maglev pick over 10 endpoints, 1024 flow hashes.
  const { services, id } = webService()
  const bal = services.balancers[id]!
  const slots = new Set(SVC_ENDPOINTS.map((ip) => services.slotOf(id, ipv4Parse(ip))))
  const sp0 = new ServicePath(services, new Conntrack({ maxConnections: 16, seed: 1 }))
  const H = 1024
  const hashes = new Uint32Array(H)
  for (let i = 0; i < H; i++) hashes[i] = sp0.flowHash(SVC_CLIENT + (i >>> 6), SVC_VIP, 40000 + i, SVC_PORT, PROTO_TCP)
  let pcur = 0
  let badPicks = 0
  const pick: MicroCase = {
    name: 'endpoint pick (maglev, 10 endpoints)',
    op: 'Balancer.pick of a 5-tuple flow hash (Maglev table of 16381)',
    run(ops) {
      let s = 0
      let bad = 0
      let i = pcur
      for (let n = 0; n < ops; n++) {
        const slot = bal.pick(hashes[i], SVC_CLIENT, NOW)
        if (slot < 0) bad++
        s ^= slot
        i = (i + 1) & (H - 1)
      }
      pcur = i
      badPicks += bad
      sinkBox.value ^= s
    },
    verify() {
      if (badPicks !== 0) return `${badPicks} picks found no endpoint`
      const seen = new Set<number>()
      for (let i = 0; i < H; i++) {
        const s = bal.pick(hashes[i], SVC_CLIENT, NOW)
        if (!slots.has(s)) return `hash ${i} picked slot ${s}, not one of the service's`
        seen.add(s)
      }
      return seen.size !== SVC_ENDPOINTS.length ? `1024 flows reached only ${seen.size} of ${SVC_ENDPOINTS.length} endpoints` : null
    },
  }

  // -- ServicePath.outbound of a TCP segment of an existing connection:
  // 64 flows (client ports 40000..40063) to VIP:80, 1400-byte frames. Each
  // operation first restores the frame's 54 bytes of headers from a template
  // (NAT rewrites them in place; the payload is untouched), as the service
  // tests copy a template frame, then calls outbound.
  const svcPath = webService()
  const spCt = new Conntrack({ maxConnections: 1024, seed: 5 })
  const sp = new ServicePath(svcPath.services, spCt)
  const SLOT = 2048
  const OFF = 64
  const HDRS = ETH_HLEN + IPV4_HLEN_MIN + TCP_HLEN_MIN
  const l4len = FRAME_LEN - ETH_HLEN - IPV4_HLEN_MIN
  const tmpl = new Uint8Array(BATCH_FRAMES * SLOT)
  for (let i = 0; i < BATCH_FRAMES; i++) {
    const off = i * SLOT + OFF
    const l3 = off + ETH_HLEN
    const l4 = l3 + IPV4_HLEN_MIN
    ethWriteHeader(tmpl, off, SERVICE_ROUTER_MAC_HI, SERVICE_ROUTER_MAC_LO, POD_MAC_HI, POD_MAC_LO, ETHERTYPE_IPV4)
    ipv4WriteHeader(tmpl, l3, IPV4_HLEN_MIN + l4len, i, true, 64, PROTO_TCP, SVC_CLIENT, SVC_VIP)
    tcpWriteHeader(tmpl, l4, 40000 + i, SVC_PORT, 1000 + i, 5000, TCP_ACK, 65535)
    for (let k = l4 + TCP_HLEN_MIN; k < off + FRAME_LEN; k++) tmpl[k] = (k * 31) & 0xff
    tcpFillChecksumV4(tmpl, l3, l4, l4len)
  }
  const work = tmpl.slice()
  const hdrViews = Array.from({ length: BATCH_FRAMES }, (_, i) => tmpl.subarray(i * SLOT + OFF, i * SLOT + OFF + HDRS))
  const epIps = new Set(SVC_ENDPOINTS.map(ipv4Parse))
  let scur = 0
  let notForwarded = 0
  // First packet of each flow: picked up mid-stream (no SYN), creates the connection.
  for (let i = 0; i < BATCH_FRAMES; i++) {
    const off = i * SLOT + OFF
    work.set(hdrViews[i], off)
    if (sp.outbound(work, off, off + ETH_HLEN, FRAME_LEN, SVC_CLIENT_PORT, 0) !== Verdict.Forward) throw new Error(`service path set-up: flow ${i} not forwarded`)
  }
  if (spCt.size !== BATCH_FRAMES) throw new Error(`service path set-up: ${spCt.size} connections, expected ${BATCH_FRAMES}`)
  const outb: MicroCase = {
    name: 'service path outbound, existing flow',
    op: 'restore 54 B of headers + ServicePath.outbound: conntrack hit, DNAT VIP:80 -> endpoint:8080 (1400 B TCP frame)',
    framesPerOp: 1,
    run(ops) {
      let bad = 0
      let i = scur
      for (let n = 0; n < ops; n++) {
        const off = i * SLOT + OFF
        work.set(hdrViews[i], off)
        if (sp.outbound(work, off, off + ETH_HLEN, FRAME_LEN, SVC_CLIENT_PORT, NOW) !== Verdict.Forward) bad++
        i = (i + 1) & MASK
      }
      scur = i
      notForwarded += bad
    },
    verify() {
      if (notForwarded !== 0) return `${notForwarded} frames were not forwarded`
      if (spCt.size !== BATCH_FRAMES || spCt.counters[CtCounter.Created] !== BATCH_FRAMES) {
        return `conntrack changed: ${spCt.size} connections, ${spCt.counters[CtCounter.Created]} created (expected ${BATCH_FRAMES})`
      }
      for (let i = 0; i < BATCH_FRAMES; i++) {
        const off = i * SLOT + OFF
        const l3 = off + ETH_HLEN
        const l4 = l3 + IPV4_HLEN_MIN
        work.set(hdrViews[i], off)
        if (sp.outbound(work, off, l3, FRAME_LEN, SVC_CLIENT_PORT, NOW) !== Verdict.Forward) return `flow ${i} not forwarded`
        if (!epIps.has(sp.nextHopIp)) return `flow ${i} sent to ${sp.nextHopIp}, not an endpoint`
        if (tcpDstPort(work, l4) !== SVC_TARGET) return `flow ${i} has destination port ${tcpDstPort(work, l4)} after DNAT`
        if (!ipv4HeaderChecksumOk(work, l3) || !tcpChecksumOkV4(work, l3, l4, l4len)) return `flow ${i}: bad checksum after DNAT`
      }
      return null
    },
  }
  return [ctLookup, pick, outb]
}

/** All cases, in table order. Builds the inputs (the 100k-entry FDB and the conntrack fill take a moment). */
export function buildCases(opts: { short?: boolean } = {}): MicroCase[] {
  const cases = [
    loopOverhead(), ...vxlanCases(), ...fdbCases(), ...checksumCases(), ...datapathCases(),
    ...serviceCases(opts.short ? CT_ENTRIES_SHORT : CT_ENTRIES_FULL, !!opts.short),
  ]
  for (const c of cases) {
    const bad = c.verify?.() ?? null
    if (bad) throw new Error(`benchmark ${c.name} set-up: ${bad}`)
  }
  return cases
}
