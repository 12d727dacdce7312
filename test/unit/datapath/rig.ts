/**
 * A Datapath wired to in-memory ports (not a test file itself): pods are
 * MemoryFrameIo doubles, the underlay a MemoryDatagramIo, time a number the
 * test sets. Frames come from test/unit/wire/frames.ts.
 */
import assert from 'node:assert/strict'
import { CaptureHook, CapturePoint, DatagramIo, Datapath, FrameIo, PodSpec } from '../../../src/datapath/datapath'
import { Drop, DROP_COUNT } from '../../../src/datapath/drops'
import { InboundDatagram, MemoryDatagramIo, MemoryFrameIo, SentDatagram } from '../../../src/ports/memory-port'
import { VnetFields, ip4, macPair, readVnet, vnetHeader } from '../wire/frames'

export const VXLAN_PORT = 4789
export const VNI_A = 100
export const VNI_B = 200
export const GATEWAY = '10.1.0.1'
export const ROUTER_MAC = '02:74:61:70:00:01'

export const PEER_1 = ip4('192.168.250.2')
export const PEER_2 = ip4('192.168.250.3')
export const STRANGER = ip4('192.168.250.66')
/** Source port a peer sends from (any ephemeral port: VXLAN senders hash it). */
export const PEER_SPORT = 51234

/** Local pods and a remote one (behind PEER_1) used across the tests. */
export const A = { mac: '02:00:00:00:00:0a', ip: '10.1.0.10' }
export const B = { mac: '02:00:00:00:00:0b', ip: '10.1.0.11' }
export const C = { mac: '02:00:00:00:00:0c', ip: '10.1.0.12' }
export const R = { mac: '02:00:00:00:01:01', ip: '10.1.0.101' }
export const R2 = { mac: '02:00:00:00:02:02', ip: '10.1.0.102' }

export interface PodOpts {
  mac: string
  ip: string
  vni?: number
  mtu?: number
  portSecurity?: boolean
  vnetHdr?: boolean
  /** The pod's port takes UDP GSO frames (a TAP with USO): UDP datagrams are merged for it. */
  uso?: boolean
  /** A second (priority) queue beside the pod's port, as a multi-queue TAP with the lane's steering program. */
  prio?: boolean
}

export interface Pod {
  id: number
  io: MemoryFrameIo
  /** The priority queue (PodOpts.prio), or null. */
  prio: MemoryFrameIo | null
  spec: PodSpec
}

/** A frame a pod received, split from its virtio-net header (null on a pod without). */
export interface Received {
  vnet: Required<VnetFields> | null
  frame: Uint8Array
}

export const NO_OFFLOAD: Required<VnetFields> = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }

export interface RigOptions {
  peers?: number[]
  /** Underlay socket with UDP GSO. */
  gso?: boolean
  /** A separate GSO socket for the pool (the agent's layout when the rx socket has no GSO). */
  gsoTwin?: boolean
  arpSuppression?: boolean
  learnPeers?: boolean
  vnis?: number[]
  /** Pods read into the datapath's shared rx batch (its arena), as the agent's TAPs do. */
  arena?: boolean
  /** A priority-lane socket beside the underlay socket (overlay/steering.ts), reading into the same batch as the agent's does. */
  priority?: boolean
  /** This datapath is worker `worker` of `workers`, and where it hands ICMP errors about other workers' flows. */
  steer?: { workers: number; worker: number }
  onHandOver?: (worker: number, podId: number, frame: Uint8Array, fromPod: boolean) => void
}

export class Rig {
  now = 1000
  readonly dp: Datapath
  readonly underlay: MemoryDatagramIo
  readonly gsoTwin: MemoryDatagramIo | null
  readonly priority: MemoryDatagramIo | null
  private names = 0
  private readonly arena: boolean

  constructor(o: RigOptions = {}) {
    this.arena = o.arena ?? false
    this.dp = new Datapath({
      vxlanPort: VXLAN_PORT, now: () => this.now, arpSuppression: o.arpSuppression, learnPeers: o.learnPeers, fdb: { seed: 7 },
      steer: o.steer, onHandOver: o.onHandOver,
    })
    for (const vni of o.vnis ?? [VNI_A, VNI_B]) this.dp.addNetwork(vni, ip4(GATEWAY))
    this.underlay = new MemoryDatagramIo({ port: VXLAN_PORT, gsoEnabled: o.gso ?? false })
    this.gsoTwin = o.gsoTwin ? new MemoryDatagramIo({ port: VXLAN_PORT, gsoEnabled: true }) : null
    this.priority = o.priority ? new MemoryDatagramIo({ port: VXLAN_PORT, rx: this.underlay.rx }) : null
    const io: DatagramIo = this.underlay
    this.dp.attachUnderlay(io, [io], this.gsoTwin ? [this.gsoTwin] : [], this.priority)
    for (const p of o.peers ?? [PEER_1, PEER_2]) this.dp.addPeer(p)
  }

  addPod(o: PodOpts): Pod {
    const m = macPair(o.mac)
    const spec: PodSpec = {
      name: `pod${this.names++}`, vni: o.vni ?? VNI_A, macHi: m.hi, macLo: m.lo, ip: ip4(o.ip),
      mtu: o.mtu ?? 1500, portSecurity: o.portSecurity ?? true, vnetHdr: o.vnetHdr ?? false, uso: o.uso ?? false,
    }
    const io = new MemoryFrameIo(this.arena ? { rx: this.dp.podRx } : {})
    const prio = o.prio ? new MemoryFrameIo(this.arena ? { rx: this.dp.podRx } : {}) : null
    const asFrameIo: FrameIo = io
    const port = this.dp.addPod(spec, asFrameIo, prio)
    assert.ok(io.started, 'addPod starts reading')
    if (prio) assert.ok(prio.started, 'addPod starts reading the priority queue')
    return { id: port.id, io, prio, spec }
  }

  /**
   * One batch from a pod. On a pod with vnet headers each frame gets `vnet`
   * (default: no offload) in front; pass raw: true to inject bytes as given.
   */
  fromPod(pod: Pod, frames: Uint8Array[], vnet: VnetFields = {}, raw = false): void {
    const withHdr = pod.spec.vnetHdr && !raw ? frames.map((f) => { const b = new Uint8Array(10 + f.length); b.set(vnetHeader(vnet), 0); b.set(f, 10); return b }) : frames
    pod.io.inject(withHdr)
    pod.io.deliver()
  }

  /** One batch of datagrams from the underlay. */
  fromUnderlay(datagrams: InboundDatagram[]): void {
    this.underlay.inject(datagrams)
    this.underlay.deliver()
  }

  /** One batch from a pod's priority queue. */
  fromPodPriority(pod: Pod, frames: Uint8Array[]): void {
    assert.ok(pod.prio, 'pod made with prio: true')
    pod.prio.inject(frames)
    pod.prio.deliver()
  }

  /** One batch of datagrams from the priority lane's socket. */
  fromPriority(datagrams: InboundDatagram[]): void {
    assert.ok(this.priority, 'rig made with priority: true')
    this.priority.inject(datagrams)
    this.priority.deliver()
  }

  /** Frames a pod received since the last call. */
  take(pod: Pod): Received[] {
    return pod.io.take().map((b) => pod.spec.vnetHdr ? { vnet: readVnet(b, 0), frame: b.slice(10) } : { vnet: null, frame: b })
  }

  /** Frames only, checking each came with a "no offload" header (or none). */
  takeFrames(pod: Pod): Uint8Array[] {
    return this.take(pod).map((r) => {
      if (r.vnet !== null) assert.deepEqual(r.vnet, NO_OFFLOAD, 'plain frame has a "no offload" vnet header')
      return r.frame
    })
  }

  /** Datagrams sent to the underlay since the last call (all tx sockets), sorted by peer address then order. */
  takeUnderlay(): SentDatagram[] {
    const all = [...this.underlay.take(), ...(this.gsoTwin?.take() ?? [])]
    return all.map((d, i) => ({ d, i })).sort((x, y) => x.d.addr - y.d.addr || x.i - y.i).map((x) => x.d)
  }

  /** Nonzero drop counters by Drop name, e.g. { Spoofed: 2 }. */
  drops(): Partial<Record<keyof typeof Drop, number>> {
    const out: Partial<Record<keyof typeof Drop, number>> = {}
    for (let i = 0; i < DROP_COUNT; i++) if (this.dp.drops[i] !== 0) out[Drop[i] as keyof typeof Drop] = this.dp.drops[i]
    return out
  }
}

/** A datagram from a peer carrying one VXLAN packet. */
export function fromPeer(addr: number, bytes: Uint8Array, gso = 0): InboundDatagram {
  return { bytes, addr, port: PEER_SPORT, gso }
}

/** The datagrams a (possibly GSO) send becomes on the wire. */
export function splitRun(d: SentDatagram): Uint8Array[] {
  if (d.gso === 0) return [d.bytes]
  const out: Uint8Array[] = []
  for (let o = 0; o < d.bytes.length; o += d.gso) out.push(d.bytes.slice(o, Math.min(o + d.gso, d.bytes.length)))
  return out
}

/** One capture callback, copied. */
export interface Seen {
  point: string
  port: number
  vni: number
  bytes: Uint8Array
  vnet: Uint8Array | null
  addr: number
  udpPort: number
  localPort: number
}

/** A CaptureHook that records copies of what it sees. */
export class RecordingCapture implements CaptureHook {
  readonly seen: Seen[] = []
  frame(point: CapturePoint, port: number, vni: number, buf: Uint8Array, off: number, len: number,
    vnetOff: number, addr: number, udpPort: number, localPort: number): void {
    this.seen.push({
      point: CapturePoint[point], port, vni, bytes: buf.slice(off, off + len),
      vnet: vnetOff >= 0 ? buf.slice(vnetOff, vnetOff + 10) : null, addr, udpPort, localPort,
    })
  }
}
