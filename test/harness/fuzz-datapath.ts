/**
 * A Datapath on checked in-memory ports for the fuzz tests (not a test file
 * itself), and the frames thrown at it.
 *
 * The world: VNI 100 with pods A1, A2 (port security on) and A3 (off), VNI 200
 * with B1 (on) and B2 (off), two peers, and a remote pod R behind PEER_1 known
 * ahead of traffic. Every VNI has at least two local pods and there are peers,
 * so a flood always reaches someone: a frame that is neither forwarded nor
 * counted as a drop cannot hide as "flooded to nobody".
 *
 * The ports check what the datapath hands them: every (offset, length) a write
 * or send names lies inside the slab, lengths are positive, and GSO sizes sane.
 * A violation throws out of the datapath callback and fails the case.
 */
import { DatagramIo, Datapath, FrameIo, PodSpec } from '../../src/datapath/datapath'
import { DROP_COUNT, DROP_NAMES } from '../../src/datapath/drops'
import { MemoryDatagramIo, MemoryFrameIo, SentDatagram } from '../../src/ports/memory-port'
import { TxList } from '../../src/lib/batch'
import { FDB_COUNTER_COUNT } from '../../src/switch/fdb'
import { arpFrame, ip4, macPair, tcpFrame, udpFrame, vnetHeader, vxlanPacket, pattern, tsOption, TCP_ACK, TCP_PSH } from '../unit/wire/frames'
import { Rng, below, chance, forEachCaseCollect, mulberry32, mutate, pick, randomBytes } from './fuzz'
import { Station, frameTemplates } from './fuzz-frames'

export const VNI_A = 100
export const VNI_B = 200
export const PEER_1 = ip4('192.168.250.2')
export const PEER_2 = ip4('192.168.250.3')
export const STRANGER = ip4('192.168.250.66')
export const GATEWAY_A = '10.1.0.1'
export const GATEWAY_B = '10.2.0.1'
export const ROUTER_MAC = '02:74:61:70:00:01'
export const VXLAN_PORT = 4789

export interface PodDef extends Station { name: string; vni: number; portSecurity: boolean }

export const POD_DEFS: PodDef[] = [
  { name: 'A1', vni: VNI_A, mac: '02:00:00:00:00:0a', ip: '10.1.0.10', portSecurity: true },
  { name: 'A2', vni: VNI_A, mac: '02:00:00:00:00:0b', ip: '10.1.0.11', portSecurity: true },
  { name: 'A3', vni: VNI_A, mac: '02:00:00:00:00:0c', ip: '10.1.0.12', portSecurity: false },
  { name: 'B1', vni: VNI_B, mac: '02:00:00:00:00:1a', ip: '10.2.0.10', portSecurity: true },
  { name: 'B2', vni: VNI_B, mac: '02:00:00:00:00:1b', ip: '10.2.0.11', portSecurity: false },
]
/** A pod on another host (behind PEER_1, VNI 100), installed as a static entry. */
export const REMOTE: Station = { mac: '02:00:00:00:01:01', ip: '10.1.0.101' }
/** A station on another host with a MAC invented per frame (the MAC bytes are randomized after). */
const INVENTED: Station = { mac: '02:00:00:00:07:07', ip: '10.1.0.150' }
/** Stations nobody knows. */
export const UNKNOWN: Station = { mac: '02:00:00:00:09:09', ip: '10.1.0.99' }

function fail(what: string): never {
  throw new Error(what)
}

/** A TAP double that refuses to write outside the slab it is given. */
export class CheckedFrameIo extends MemoryFrameIo {
  override write(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number): number {
    if (n < 0 || n > offs.length) fail(`write of ${n} frames from a list of ${offs.length}`)
    for (let i = 0; i < n; i++) {
      if (lens[i] === 0) fail(`write: frame ${i} has length 0`)
      if (offs[i] + lens[i] > buf.length) fail(`write: frame ${i} [${offs[i]}, +${lens[i]}) is past the slab (${buf.length})`)
    }
    return super.write(buf, offs, lens, n)
  }
}

/** A UDP socket double that refuses to send outside the slab it is given. */
export class CheckedDatagramIo extends MemoryDatagramIo {
  override send(buf: Uint8Array, tx: TxList): number {
    for (let j = 0; j < tx.count; j++) {
      if (tx.lens[j] === 0) fail(`send: datagram ${j} has length 0`)
      if (tx.offs[j] + tx.lens[j] > buf.length) fail(`send: datagram ${j} [${tx.offs[j]}, +${tx.lens[j]}) is past the slab (${buf.length})`)
      if (tx.dst[3 * j + 1] !== VXLAN_PORT) fail(`send: datagram ${j} to port ${tx.dst[3 * j + 1]}`)
    }
    return super.send(buf, tx)
  }
}

export interface FuzzPod { def: PodDef; id: number; io: CheckedFrameIo; spec: PodSpec; vnet: boolean }

export interface WorldOptions {
  /** Which pods carry virtio-net headers: none, all, or a random mix. */
  vnet: 'none' | 'all' | 'mixed'
  learnPeers?: boolean
  /** FDB limits (small, so the limit paths run). */
  maxPerPort?: number
  maxPerVni?: number
  maxEntries?: number
  floodPerSecond?: number
  floodBurst?: number
  gso?: boolean
}

export class World {
  now = 1000
  readonly dp: Datapath
  readonly underlay: CheckedDatagramIo
  readonly gsoTwin: CheckedDatagramIo
  readonly pods: FuzzPod[] = []
  /** Ports whose statistics are watched: the underlay (0) and every pod. */
  private readonly statPorts: number[] = [0]
  private lastDrops: Float64Array
  private lastStats: Float64Array
  private lastFdb: Float64Array

  constructor(rng: Rng, readonly opts: WorldOptions) {
    this.dp = new Datapath({
      vxlanPort: VXLAN_PORT, now: () => this.now, learnPeers: opts.learnPeers ?? false,
      fdb: { seed: 7, ageMs: 30_000, maxEntries: opts.maxEntries ?? 4096, maxPerPort: opts.maxPerPort ?? 0, maxPerVni: opts.maxPerVni ?? 0 },
      floodPerSecond: opts.floodPerSecond ?? 0, floodBurst: opts.floodBurst,
    })
    this.dp.addNetwork(VNI_A, ip4(GATEWAY_A))
    this.dp.addNetwork(VNI_B, ip4(GATEWAY_B))
    this.underlay = new CheckedDatagramIo({ port: VXLAN_PORT, gsoEnabled: opts.gso ?? false })
    this.gsoTwin = new CheckedDatagramIo({ port: VXLAN_PORT, gsoEnabled: true })
    const io: DatagramIo = this.underlay
    this.dp.attachUnderlay(io, [io], [opts.gso ? null : this.gsoTwin])
    this.dp.addPeer(PEER_1)
    this.dp.addPeer(PEER_2)
    const r = macPair(REMOTE.mac)
    if (!this.dp.addRemotePod(VNI_A, r.hi, r.lo, ip4(REMOTE.ip), PEER_1)) throw new Error('remote pod not installed')
    for (const def of POD_DEFS) {
      const vnet = opts.vnet === 'all' || (opts.vnet === 'mixed' && chance(rng, 0.5))
      const m = macPair(def.mac)
      // Half of the vnet pods take USO, so UDP GRO merges are fuzzed too.
      const uso = vnet && chance(rng, 0.5)
      const spec: PodSpec = { name: def.name, vni: def.vni, macHi: m.hi, macLo: m.lo, ip: ip4(def.ip), mtu: 1500, portSecurity: def.portSecurity, vnetHdr: vnet, uso }
      const pio = new CheckedFrameIo()
      const asFrameIo: FrameIo = pio
      const port = this.dp.addPod(spec, asFrameIo)
      this.pods.push({ def, id: port.id, io: pio, spec, vnet })
      this.statPorts.push(port.id)
    }
    this.lastDrops = this.dp.drops.slice()
    this.lastStats = this.dp.stats.slice()
    this.lastFdb = this.dp.fdb.counters.slice()
  }

  /** Sum of the drop counters since the last call; throws if any counter went down (counters only grow). */
  dropsSince(): { total: number; by: Record<string, number> } {
    const by: Record<string, number> = {}
    let total = 0
    const d = this.dp.drops
    for (let i = 0; i < DROP_COUNT; i++) {
      const delta = d[i] - this.lastDrops[i]
      if (delta < 0 || !Number.isFinite(d[i])) fail(`drop counter ${DROP_NAMES[i]} went from ${this.lastDrops[i]} to ${d[i]}`)
      if (delta > 0) { by[DROP_NAMES[i]] = delta; total += delta }
    }
    this.lastDrops.set(d)
    // Per-port stats restart at 0 when a port id is reused; this world never removes pods.
    for (const port of this.statPorts) {
      for (let s = port * 4; s < port * 4 + 4; s++) {
        if (this.dp.stats[s] < this.lastStats[s]) fail(`port ${port} statistic ${s % 4} went down`)
        this.lastStats[s] = this.dp.stats[s]
      }
    }
    const c = this.dp.fdb.counters
    for (let i = 0; i < FDB_COUNTER_COUNT; i++) if (c[i] < this.lastFdb[i]) fail(`FDB counter ${i} went down`)
    this.lastFdb.set(c)
    return { total, by }
  }

  /** Everything written since the last call: frames per pod (vnet header stripped) and underlay datagrams. */
  outputs(): { pod: FuzzPod; frame: Uint8Array; vnet: Uint8Array | null }[] {
    const out: { pod: FuzzPod; frame: Uint8Array; vnet: Uint8Array | null }[] = []
    for (const p of this.pods) {
      for (const b of p.io.take()) out.push({ pod: p, frame: p.vnet ? b.subarray(10) : b, vnet: p.vnet ? b.subarray(0, 10) : null })
    }
    return out
  }

  /** Datagrams sent since the last call, each GSO run split into the datagrams the kernel makes. */
  underlayOutputs(): SentDatagram[] {
    const all = [...this.underlay.take(), ...this.gsoTwin.take()]
    const out: SentDatagram[] = []
    for (const d of all) {
      if (d.gso === 0) { out.push(d); continue }
      for (let o = 0; o < d.bytes.length; o += d.gso) out.push({ ...d, bytes: d.bytes.subarray(o, Math.min(o + d.gso, d.bytes.length)), gso: 0 })
    }
    return out
  }

  /** Forgets outputs and counter changes left by a case that failed half way. */
  settle(): void {
    this.outputs()
    this.underlayOutputs()
    this.lastDrops.set(this.dp.drops)
    this.lastStats.set(this.dp.stats)
    this.lastFdb.set(this.dp.fdb.counters)
  }

  pod(name: string): FuzzPod {
    const p = this.pods.find((x) => x.def.name === name)
    if (!p) throw new Error(`no pod ${name}`)
    return p
  }

  /** One batch from a pod: `frames` are what a TAP read returns (vnet header included on a vnet pod). */
  fromPod(p: FuzzPod, frames: Uint8Array[]): void {
    p.io.inject(frames)
    p.io.deliver()
  }

  fromUnderlay(datagrams: { bytes: Uint8Array; addr: number; gso: number }[]): void {
    this.underlay.inject(datagrams.map((d) => ({ bytes: d.bytes, addr: d.addr, port: 51234, gso: d.gso })))
    this.underlay.deliver()
  }

  /** Moves time on (sometimes past the FDB age) and ages the tables now and then. */
  tick(rng: Rng): void {
    this.now += chance(rng, 0.01) ? 31_000 : below(rng, 50)
    if (chance(rng, 0.01)) this.dp.sweep()
  }
}

/** Destinations a pod's frame may be addressed to (local, remote, gateway, group, unknown, itself). */
function destinations(world: World, from: PodDef): Station[] {
  const same = POD_DEFS.filter((d) => d !== from && d.vni === from.vni)
  const other = POD_DEFS.filter((d) => d.vni !== from.vni)
  return [
    ...same, ...same, other[0], REMOTE, REMOTE, UNKNOWN, from,
    { mac: ROUTER_MAC, ip: from.vni === VNI_A ? GATEWAY_A : GATEWAY_B },
    { mac: 'ff:ff:ff:ff:ff:ff', ip: '255.255.255.255' },
    { mac: '01:00:5e:00:00:fb', ip: '224.0.0.251' },
  ]
}

/** Big TCP/UDP frames a pod hands over for segmentation. */
function superFrames(src: Station, dst: Station): Uint8Array[] {
  const e = { ethSrc: src.mac, ethDst: dst.mac, src: src.ip, dst: dst.ip }
  return [
    tcpFrame({ ...e, payload: pattern(4000, 1), tcpOptions: tsOption(1, 2), flags: TCP_ACK | TCP_PSH, csum: 'partial' }),
    udpFrame({ ...e, payload: pattern(3000, 2), csum: 'partial' }),
  ]
}

/** A virtio-net header for `frame`: none, a correct partial-checksum or GSO request, or garbage. */
function vnetFor(rng: Rng, frame: Uint8Array): Uint8Array {
  const k = below(rng, 8)
  const v6 = frame.length > 13 && frame[12] === 0x86 && frame[13] === 0xdd
  const ihl = v6 ? 40 : frame.length > 14 ? (frame[14] & 15) * 4 : 20
  const proto = frame.length > 23 ? (v6 ? frame[20] : frame[23]) : 6
  const csumOffset = proto === 17 ? 6 : 16
  if (k <= 2) return vnetHeader()
  if (k === 3) return vnetHeader({ flags: 1, csumStart: 14 + ihl, csumOffset })
  if (k === 4) return vnetHeader({ flags: 1, gsoType: proto === 17 ? 5 : v6 ? 4 : 1, gsoSize: pick(rng, [1448, 536, 1, 9000, 65535, 0]), hdrLen: 14 + ihl + 20, csumStart: 14 + ihl, csumOffset })
  if (k === 5) return vnetHeader({ gsoType: pick(rng, [0x81, 3, 2, 0xff, 6]), gsoSize: rng() & 0xffff })
  return randomBytes(rng, 10)
}

/** Templates between two stations, built once (building them costs more than a trip through the datapath). */
const templateCache = new Map<string, Uint8Array[]>()
function templatesBetween(src: Station, dst: Station): Uint8Array[] {
  const key = `${src.mac}/${src.ip}>${dst.mac}/${dst.ip}`
  let t = templateCache.get(key)
  if (t === undefined) {
    t = [...frameTemplates(src, dst), ...superFrames(src, dst)]
    for (const tpa of [GATEWAY_A, GATEWAY_B, '10.1.0.11', REMOTE.ip, '10.9.9.9', src.ip]) t.push(arpFrame({ ethSrc: src.mac, spa: src.ip, tpa }))
    templateCache.set(key, t)
  }
  return t
}
const GENERIC = frameTemplates()

/** Cases per world: a world lives for a while so tables fill, age and hit their limits. */
const CASES_PER_WORLD = 1000

/**
 * forEachCaseCollect for the datapath fuzz tests: runs the `regression` seeds,
 * then `n` cases, in a world renewed every CASES_PER_WORLD cases; `body` gets
 * the world of its case. A world is built from its own PRNG (seeded from the
 * case that opens the block), so a case's PRNG stream is the same whether it
 * runs in a long-lived world or alone: a regression seed replays its frames in
 * a fresh world built from that seed (exact for failures that need no table
 * state, which is all of them so far).
 */
export function fuzzWorlds(name: string, base: number, n: number, regression: readonly number[],
  opts: (rng: Rng) => WorldOptions, body: (rng: Rng, w: World) => void): void {
  const worldFor = (seed: number): World => {
    const wr = mulberry32(seed ^ 0x5eed5eed)
    return new World(wr, opts(wr))
  }
  let world: World | null = null
  let k = -regression.length
  forEachCaseCollect(name, base, n, regression, (rng, seed) => {
    if (k < 0) { k++; body(rng, worldFor(seed)); return }
    if (world === null || k++ % CASES_PER_WORLD === 0) world = worldFor(seed)
    world.settle()
    try {
      body(rng, world)
    } catch (err) {
      // Does the case fail alone, in a fresh world (as a regression seed replays it)?
      let replayable = false
      try { body(mulberry32(seed), worldFor(seed)) } catch { replayable = true }
      throw Object.assign(err as Error, { replayable })
    }
  })
}

/**
 * A frame (as a TAP read returns it) from pod `p`: a template to some
 * destination, sometimes spoofing another pod's MAC or IP (or inventing MACs),
 * sometimes mutated; on a vnet pod behind a header of some kind.
 */
export function podFrame(rng: Rng, world: World, p: FuzzPod): Uint8Array {
  const dst = pick(rng, destinations(world, p.def))
  let src: Station = p.def
  const spoof = below(rng, 10)
  if (spoof === 0) src = pick(rng, POD_DEFS.filter((d) => d !== p.def)) // another pod's MAC and IP
  else if (spoof === 1) src = { mac: p.def.mac, ip: pick(rng, POD_DEFS.filter((d) => d !== p.def)).ip } // own MAC, stolen IP
  else if (spoof === 2) src = { mac: pick(rng, POD_DEFS.filter((d) => d !== p.def)).mac, ip: p.def.ip } // stolen MAC
  let frame: Uint8Array = pick(rng, templatesBetween(src, dst)).slice()
  if (spoof === 3 && frame.length >= 12) { frame.set(randomBytes(rng, 5), 7); frame[6] = 0x02 } // an invented MAC (MAC flooding)
  if (chance(rng, 0.5)) frame = mutate(rng, frame, pick(rng, GENERIC))
  if (!p.vnet) return frame
  const h = vnetFor(rng, frame)
  const out = new Uint8Array(10 + frame.length)
  out.set(h, 0)
  out.set(frame, 10)
  return chance(rng, 0.02) ? out.slice(0, below(rng, 12)) : out
}

/** The VXLAN payload of a datagram from the underlay: a valid packet for some VNI, mutated or not, or garbage. */
export function underlayPacket(rng: Rng): { bytes: Uint8Array; vni: number } {
  const locals = POD_DEFS.filter((d) => d.vni === VNI_A)
  const src: Station = chance(rng, 0.7) ? REMOTE : INVENTED
  const dst: Station = pick(rng, [...locals, ...locals, REMOTE, UNKNOWN, { mac: 'ff:ff:ff:ff:ff:ff', ip: '10.1.255.255' }, POD_DEFS[3]])
  const vni = pick(rng, [VNI_A, VNI_A, VNI_A, VNI_B, 300, rng() & 0xffffff])
  const inner = pick(rng, templatesBetween(src.mac === REMOTE.mac ? REMOTE : INVENTED, dst)).slice()
  if (src !== REMOTE && inner.length >= 12) inner.set(randomBytes(rng, 5), 7)
  const flags = chance(rng, 0.9) ? 0x08 : rng() & 0xff
  let bytes = vxlanPacket(vni, inner, flags)
  if (chance(rng, 0.4)) bytes = mutate(rng, bytes, pick(rng, GENERIC))
  if (chance(rng, 0.03)) bytes = randomBytes(rng, below(rng, 64))
  return { bytes, vni }
}

/** A source address: a peer most of the time, else a stranger or anyone. */
export function underlaySource(rng: Rng): number {
  const k = below(rng, 20)
  if (k === 0) return STRANGER
  if (k === 1) return rng() >>> 0
  return k < 12 ? PEER_1 : PEER_2
}

function macAt(b: Uint8Array, o: number): string {
  return Array.from(b.subarray(o, o + 6), (x) => x.toString(16).padStart(2, '0')).join(':')
}

function ip4At(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`
}

/**
 * Whether an inner frame claims only `who`'s addresses, as port security
 * promises: source MAC, and for IPv4 the source address (or 0.0.0.0), and for
 * ARP the sender MAC and address (or 0.0.0.0). Tags are walked as the datapath
 * does (at most two).
 */
export function claimsOnly(frame: Uint8Array, who: Station): string | null {
  if (frame.length < 14) return `a ${frame.length}-byte frame`
  if (macAt(frame, 6) !== who.mac) return `source MAC ${macAt(frame, 6)}`
  let o = 12
  let type = (frame[o] << 8) | frame[o + 1]
  for (let tags = 0; tags < 2 && (type === 0x8100 || type === 0x88a8) && frame.length >= o + 6; tags++) { o += 4; type = (frame[o] << 8) | frame[o + 1] }
  const l3 = o + 2
  if (type === 0x0800 && frame.length >= l3 + 20) {
    const s = ip4At(frame, l3 + 12)
    if (s !== who.ip && s !== '0.0.0.0') return `IPv4 source ${s}`
  }
  if (type === 0x0806 && frame.length >= l3 + 28) {
    if (macAt(frame, l3 + 8) !== who.mac) return `ARP sender MAC ${macAt(frame, l3 + 8)}`
    const s = ip4At(frame, l3 + 14)
    if (s !== who.ip && s !== '0.0.0.0') return `ARP sender address ${s}`
  }
  return null
}

