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
import { ETH_HLEN } from '../../src/wire/ethernet'
import { IPV4_OFF_CSUM, IPV4_OFF_TTL, ipv4FillChecksum, ipv4HeaderChecksumOk } from '../../src/wire/ipv4'
import { VXLAN_HLEN, vxlanCheck, vxlanVni, vxlanWrite } from '../../src/wire/vxlan'
import { VNET_HLEN } from '../../src/wire/vnet'
import { csumAdd, csumFinish, csumUpdate16 } from '../../src/wire/checksum'
import { u16 } from '../../src/wire/byteorder'
import { flowHash } from '../../src/wire/flowhash'
import { ipv4Parse } from '../../src/wire/addr'
import { Fdb, FdbCounter, LearnResult } from '../../src/switch/fdb'
import { PEER_PORT_BASE } from '../../src/overlay/peers'
import { Datapath, DatagramIo, FrameIo } from '../../src/datapath/datapath'
import { DROP_NAMES } from '../../src/datapath/drops'
import { FlowSet, fillPodBatch, fillVxlanBatch, frameOffsets, permutation } from './frames'
import { MicroCase } from './tinybench'

/** Results of every case are xored in here; the value goes into the results file. */
const sinkBox = { value: 0 }
export function sinkValue(): number { return sinkBox.value >>> 0 }

/** Size of the FDB for the learn/lookup cases. */
export const FDB_ENTRIES = 100_000
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
  return [out, inb]
}

/** All cases, in table order. Builds the inputs (the 100k-entry FDB takes a moment). */
export function buildCases(): MicroCase[] {
  const cases = [loopOverhead(), ...vxlanCases(), ...fdbCases(), ...checksumCases(), ...datapathCases()]
  for (const c of cases) {
    const bad = c.verify?.() ?? null
    if (bad) throw new Error(`benchmark ${c.name} set-up: ${bad}`)
  }
  return cases
}
