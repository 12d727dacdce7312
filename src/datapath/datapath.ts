/**
 * The batch pipeline: frames from pod TAPs and from the underlay socket are
 * switched per VNI and sent on in batches.
 *
 *   pod TAP rx batch --> port security --> ARP (gateway, suppression) --> learn src MAC
 *        --> FDB lookup --> local pod tx list | VXLAN encap -> underlay tx list | flood
 *   underlay rx batch --> peer check --> VXLAN check --> VNI --> learn src MAC
 *        --> FDB lookup --> local pod tx list | flood to local pods only (split horizon)
 *
 * Rules of this file:
 * - Nothing keeps a slot past its batch: every tx list is flushed before the
 *   callback returns, and the rx slab is reused by the next read.
 * - Nothing is allocated per frame: tx lists, scratch slabs and counters are made
 *   when ports are added. Time is read once per batch.
 * - Errors are drop reasons (drops.ts), never exceptions.
 *
 * Frame layout in a slot (pod TAPs carry a virtio-net header):
 *   [ headroom | vnet hdr (10) | Ethernet frame ... ]
 * Encapsulation writes the 8-byte VXLAN header in front of the Ethernet frame
 * (over the vnet header, already parsed), so a unicast to a peer is not copied.
 * A flood that goes both to local pods (which need the vnet header) and to peers
 * (which need VXLAN in the same place) is copied once into a scratch slab for
 * the peers.
 */
import { Batch, BATCH_FRAMES, SLOT_PLAIN, SLOT_SUPER, TxList } from '../lib/batch'
import { copyInto } from '../wire/bytes'
import { TokenBucket } from '../lib/token-bucket'
import {
  ETH_HLEN, ETH_OFF_DST, ETH_OFF_SRC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ethCheck, ethTypeAfterTags, ethWriteHeader,
  macHi, macLo, macIs, macIsMulticast, macWrite, macCopy,
} from '../wire/ethernet'
import { ARP_OFF_SHA, ARP_OP_REPLY, ARP_OP_REQUEST, arpCheck, arpOp, arpSpa, arpTpa, arpWrite } from '../wire/arp'
import { IPV4_OFF_PROTO, PROTO_ICMP, ipv4Check, ipv4Src } from '../wire/ipv4'
import { VXLAN_HLEN, vxlanCheck, vxlanVni, vxlanWrite } from '../wire/vxlan'
import { Malformed } from '../wire/malformed'
import { flowHash } from '../wire/flowhash'
import {
  VNET_HLEN, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, vnetWrite, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4, VNET_GSO_ECN,
  vnetFlags, vnetGsoType, vnetGsoSize, vnetCsumStart, vnetCsumOffset, vnetCompleteChecksum, vnetWriteNone,
} from '../wire/vnet'
import { TSO, tsoSegmentFast } from '../wire/tso'
import { groEligible, groCanAppend, groFinish, groChecksum, vnetWriteForDelivery, GRO_MAX_IP_LEN, GRO_CSUM_BAD } from '../wire/gro'
import { groUdpEligible, groUdpCanAppend, groUdpChecksum, groUdpFinish, groUdpId, GRO_UDP_MAX_SEGMENTS } from '../wire/gro-udp'
import { TCP_OFF_SEQ, TCP_OFF_FLAGS, TCP_PSH } from '../wire/tcp'
import { Fdb, FdbOptions } from '../switch/fdb'
import { csumFold, csumPseudoV4 } from '../wire/checksum'
import { ArpTable } from '../switch/arp-table'
import { PeerTable, PEER_PORT_BASE, isPeerPort } from '../overlay/peers'
import { Drop, Offload } from './drops'
import { ServiceTable, ServiceTableOptions } from '../service/service-table'
import { Conntrack, ConntrackOptions } from '../service/conntrack'
import { ServicePath, ServiceStat, Verdict } from '../service/service-path'
import { icmpErrorWorker } from '../service/nat'
import { DatapathCounters, MAX_PORTS, MISC_ARP_ANSWERED, MISC_BATCHES, MISC_BATCH_FRAMES, MISC_CT_SIZE } from './counters'
import { ARP_LEN } from '../wire/arp'

/** Something that reads frames in batches and writes them (a TAP, or a test double). */
export interface FrameIo {
  readonly rx: Batch
  readonly txCounters: Float64Array
  start(onBatch: (n: number) => void): void
  stop(): void
  write(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number): number
}

/** Something that receives and sends datagrams in batches (the underlay UDP socket). */
export interface DatagramIo {
  readonly rx: Batch
  readonly txCounters: Float64Array
  readonly port: number
  /** Whether sends may carry a GSO segment size. */
  readonly gsoEnabled: boolean
  start(onBatch: (n: number) => void): void
  stop(): void
  send(buf: Uint8Array, tx: TxList): number
}

/** Where a capture sees frames. */
export enum CapturePoint {
  /** Frames a pod sent, as read from its TAP. */
  PodRx,
  /** Frames delivered to a pod. */
  PodTx,
  /** VXLAN datagrams received from the underlay (UDP payload). */
  UnderlayRx,
  /** VXLAN datagrams sent to the underlay (UDP payload). */
  UnderlayTx,
}

/**
 * Receives a copy-free view of every frame at the capture points while a capture
 * runs; the datapath checks one field per frame when none runs. The view is valid
 * only during the call: a capture copies what it keeps.
 *
 * For pod points `buf[off, off+len)` is the Ethernet frame and `vnetOff` the
 * offset of its virtio-net header or -1 (a partial checksum must be completed in
 * the copy). For underlay points it is the UDP payload (VXLAN header first) and
 * `addr`/`udpPort` the remote VTEP; `localPort` is the local UDP port.
 */
export interface CaptureHook {
  frame(point: CapturePoint, port: number, vni: number, buf: Uint8Array, off: number, len: number,
    vnetOff: number, addr: number, udpPort: number, localPort: number): void
}

export interface PodSpec {
  name: string
  vni: number
  macHi: number
  macLo: number
  ip: number
  /** Largest IP packet the pod may send (its interface MTU). */
  mtu: number
  portSecurity: boolean
  /** Whether frames on this port carry a virtio-net header. */
  vnetHdr: boolean
  /** Whether the port takes UDP GSO frames (virtio-net GSO_UDP_L4; a TAP with TUN_F_USO4): UDP datagrams are merged for it. */
  uso?: boolean
}

export interface DatapathOptions {
  vxlanPort: number
  fdb?: FdbOptions
  arpSuppression?: boolean
  learnPeers?: boolean
  /** The anycast gateway's MAC, the same on every host. */
  routerMacHi?: number
  routerMacLo?: number
  /** Monotonic clock in ms (injected for tests). */
  now?: () => number
  /** Service load balancing: the table's and connection tracking's options. */
  services?: ServiceTableOptions
  conntrack?: ConntrackOptions
  /** Storm control: flooded frames a pod may send per second (0 = unlimited), and the burst allowed. */
  floodPerSecond?: number
  floodBurst?: number
  /** Count into this set (a worker's shared one) instead of a new one. */
  counters?: DatapathCounters
  /** This datapath is worker `worker` of `workers` (config workers): conntrack pins replies to it. */
  steer?: { workers: number; worker: number }
  /** Called for every ARP entry learned from traffic (the main thread passes them to the workers). */
  onArpLearn?: (vni: number, ip: number, macHi: number, macLo: number) => void
  /**
   * With steer: an ICMP error about a flow of another worker (`worker`),
   * which holds the flow's NAT entry: one for local pod `podId`, or one that
   * pod sent to the gateway (`fromPod`). The frame (a copy, Ethernet header
   * first) goes no further here; the caller passes it to that worker's
   * deliverHandedOver().
   */
  onHandOver?: (worker: number, podId: number, frame: Uint8Array, fromPod: boolean) => void
}

/**
 * ICMP errors a worker hands to other workers per second (and its burst): a
 * service connection's port unreachable or fragmentation-needed needs one;
 * Linux itself sends at most 1,000 ICMP messages a second by default.
 */
export const HANDOVER_PER_SECOND = 1000

/**
 * Whether a UDP GRO datagram is one VXLAN packet whose inner frame is a
 * TCP/IPv4 super-frame filling the whole datagram (tunnel GSO from a Linux
 * sender), rather than a run of VXLAN packets.
 */
/**
 * For an untagged TCP/IPv4 frame filling `len` whose checksum field holds the
 * pseudo-header sum (partial, as a Linux GSO packet carries it), the MSS that
 * makes IP packets of `mtu` bytes; otherwise 0.
 */
function tcpSuperFrameMss(buf: Uint8Array, frame: number, len: number, mtu: number): number {
  if (len < ETH_HLEN + 40 || buf[frame + 12] !== 0x08 || buf[frame + 13] !== 0x00) return 0
  const ip = frame + ETH_HLEN
  if ((buf[ip] >>> 4) !== 4 || buf[ip + 9] !== 6) return 0
  const ihl = (buf[ip] & 15) * 4
  const tot = (buf[ip + 2] << 8) | buf[ip + 3]
  if (tot !== len - ETH_HLEN || ((buf[ip + 6] & 0x3f) | buf[ip + 7]) !== 0) return 0
  const tcp = ip + ihl
  const thl = (buf[tcp + 12] >>> 4) * 4
  if (thl < 20 || ihl + thl >= tot) return 0
  const src = ((buf[ip + 12] << 24) | (buf[ip + 13] << 16) | (buf[ip + 14] << 8) | buf[ip + 15]) >>> 0
  const dst = ((buf[ip + 16] << 24) | (buf[ip + 17] << 16) | (buf[ip + 18] << 8) | buf[ip + 19]) >>> 0
  const stored = (buf[tcp + 16] << 8) | buf[tcp + 17]
  if (stored !== csumFold(csumPseudoV4(src, dst, 6, tot - ihl))) return 0
  const mss = mtu - ihl - thl
  return mss > 0 ? mss : 0
}

/** Default anycast gateway MAC: 02:74:61:70:00:01, locally administered. */
export const ROUTER_MAC_HI = 0x0274
export const ROUTER_MAC_LO = 0x61700001

export { MAX_PORTS }
/** Per-port counters: 4 slots each. */
export const STAT_RX_FRAMES = 0
export const STAT_RX_BYTES = 1
export const STAT_TX_FRAMES = 2
export const STAT_TX_BYTES = 3
/** Port number used for the underlay in per-port statistics. */
export const UNDERLAY_PORT = 0

/**
 * Scratch space of one batch: flood copies, TSO segments and GRO merges. A batch
 * of 64 TSO super-frames segments into about 4.4 MB.
 */
const SCRATCH_BYTES = 8 << 20
const UDP_TX_CAPACITY = 4096
/** Largest UDP payload of one GSO send over IPv4, and the kernel's segment limit (UDP_MAX_SEGMENTS). */
const GSO_MAX_BYTES = 65507
const GSO_MAX_SEGMENTS = 64
/** Most segments chained into merges in one batch (64 datagrams of up to 64 GRO segments). */
const GRO_CHAIN_MAX = 64 * 64

export class PodPort {
  /** Frames to write that live in the current rx slab. */
  readonly tx: TxList
  /** Frames to write that live in the datapath's scratch slab (written after tx). */
  readonly txScratch: TxList
  /**
   * Open GRO merge for this pod: its first segment's offset in the rx slab (-1:
   * none), and the chain of payloads that follow (see Datapath.groChain*).
   */
  groFirst = -1
  groHead = -1
  groTail = -1
  groLen = 0
  groHdr = 0
  groMss = 0
  groSegs = 0
  groNextSeq = 0
  groPsh = false
  /** The open merge is of UDP datagrams (wire/gro-udp.ts); the IP id the next one must have. */
  groUdp = false
  groNextId = 0
  /** Storm control: flood frames this port may still send (set by addPod). */
  flood = new TokenBucket(0, 0)
  /** Bytes of virtio-net header in front of each frame on this port. */
  readonly vnetLen: number
  /** The TAP's priority queue (overlay/steering.ts podLaneProgram), read beside io; frames go out through io. */
  prio: FrameIo | null = null
  /** Frames and bytes read from the priority queue. */
  readonly prioRx = new Float64Array(2)
  constructor(readonly id: number, readonly spec: PodSpec, readonly io: FrameIo) {
    this.vnetLen = spec.vnetHdr ? VNET_HLEN : 0
    this.tx = new TxList(Math.max(256, io.rx.slots * 4))
    this.txScratch = new TxList(4096)
  }
}

class Network {
  /** Local pod port ids in this VNI (dense, rebuilt on change). */
  ports = new Int32Array(0)
  /** Largest IP packet a pod of this network takes (its pods' MTU; 65535 with no pod). */
  mtu = 65535
  constructor(readonly vni: number, readonly gatewayIp: number) {}
}

/**
 * A source port of the transmit pool with its tx lists: datagrams in the rx slab
 * (encapsulated in place), and in the scratch slab (flood copies, plain or as
 * GSO runs of segments). `gso` is a second socket on the same port with UDP
 * checksums on (UDP GSO needs them; `io` may send checksum 0), or null.
 */
class TxSocket {
  readonly inPlace = new TxList(UDP_TX_CAPACITY)
  readonly copied = new TxList(UDP_TX_CAPACITY)
  readonly gsoList = new TxList(UDP_TX_CAPACITY)
  /** inPlace's datagrams copied together into runs for the GSO socket (see Datapath.coalesce). */
  readonly runs = new TxList(UDP_TX_CAPACITY)
  constructor(readonly io: DatagramIo, readonly gso: DatagramIo | null) {}
}

/** A broadcast ARP request (who has `tpa`, tell `spa` at MAC hi:lo) as a whole Ethernet frame at `f`. */
function writeArpBroadcast(b: Uint8Array, f: number, hi: number, lo: number, spa: number, tpa: number): void {
  ethWriteHeader(b, f, 0xffff, 0xffffffff, hi, lo, ETHERTYPE_ARP)
  arpWrite(b, f + ETH_HLEN, ARP_OP_REQUEST, hi, lo, spa, 0, 0, tpa)
}

export class Datapath {
  readonly fdb: Fdb
  readonly arp: ArpTable
  /** Service VIPs, connection tracking and the per-packet service path (DNAT/reverse NAT). */
  readonly services: ServiceTable
  readonly conntrack: Conntrack
  readonly servicePath: ServicePath
  /**
   * Optional local responder for frames to the router MAC that are not service
   * traffic (DNS): rewrites the frame into its reply in place and returns its
   * length, 0 when the frame is not for it, or -1 when it was for it but is
   * dropped (counted as dns_invalid).
   */
  responder: ((buf: Uint8Array, frame: number, l3: number, len: number, capacity: number) => number) | null = null
  readonly peers = new PeerTable()
  /** Every counter below in one buffer (shared with the main thread in a worker). */
  readonly counters: DatapathCounters
  readonly drops: Float64Array
  /** What the offloads did, indexed by Offload (drops.ts). */
  readonly offloads: Float64Array
  readonly stats: Float64Array
  /** Counters of the datapaths running in worker threads beside this one (see totals()). */
  readonly workerCounters: DatapathCounters[] = []
  private readonly summed = new DatapathCounters()
  readonly vxlanPort: number
  floodPerSecond: number
  floodBurst: number
  arpSuppression: boolean
  learnPeers: boolean
  readonly routerMacHi: number
  readonly routerMacLo: number
  /** Frames answered by the agent itself (ARP for the gateway or suppressed ARP). */
  arpAnswered = 0
  /** See DatapathOptions.onArpLearn. */
  private readonly onArpLearn: ((vni: number, ip: number, macHi: number, macLo: number) => void) | null
  /** See DatapathOptions.onHandOver; null unless this is one of several workers. */
  private readonly onHandOver: ((worker: number, podId: number, frame: Uint8Array, fromPod: boolean) => void) | null
  /** One slot for a handed-over frame a pod sent (deliverHandedOver), with the batches' headroom for encapsulation. */
  private readonly handRx = new Batch(1, SLOT_PLAIN)
  /** Hand-overs left (HANDOVER_PER_SECOND): each costs a copy and a message through the main thread. */
  private readonly handOvers = new TokenBucket(HANDOVER_PER_SECOND, 0)
  /** This datapath's worker index and the worker count (steer), 0 and 1 without workers. */
  private readonly steerWorker: number
  private readonly steerWorkers: number
  /** Set while a capture runs; null costs one comparison per frame. */
  capture: CaptureHook | null = null
  /** Batches processed, and frames in them (batch size = frames / batches). */
  batches = 0
  batchFrames = 0

  private readonly pods: (PodPort | null)[] = new Array(MAX_PORTS).fill(null)
  private readonly nets = new Map<number, Network>()
  private readonly dirty = new Int32Array(MAX_PORTS)
  private dirtyCount = 0
  private underlay: DatagramIo | null = null
  /** The priority lane's socket (overlay/steering.ts), or null. */
  private priority: DatagramIo | null = null
  /** Datagrams and bytes read from the priority lane. */
  readonly priorityRx: Float64Array
  private txSockets: TxSocket[] = []
  /**
   * One ArrayBuffer for the rx batch every pod TAP reads into, the underlay's rx
   * batch and the scratch slab (at its end), so that copies between them are
   * copyWithin, not a view object per frame (wire/bytes.ts). Ports that read into
   * batches of their own still work; their copies go through set().
   */
  readonly arena: Uint8Array
  /** The rx batch to give every pod and host TAP of this datapath (TapOptions.rx). */
  readonly podRx: Batch
  /** The rx batch to give the underlay socket (UdpOptions.rx). */
  readonly underlayRx: Batch
  /** The whole arena: scratch offsets are arena offsets from scratchBase on. */
  private readonly scratch: Uint8Array
  private readonly scratchBase: number
  private scratchUsed: number
  /** MTU of the pod whose batch is being processed. */
  private batchMtu = 65535
  /** GRO payload chains of this batch: rx slab offset, length, next index. */
  private readonly groChainOff = new Int32Array(GRO_CHAIN_MAX)
  private readonly groChainLen = new Int32Array(GRO_CHAIN_MAX)
  private readonly groChainNext = new Int32Array(GRO_CHAIN_MAX)
  private groChainCount = 0
  /** The rx slab the open merges point into. */
  private groBuf: Uint8Array = new Uint8Array(0)
  /** Pods with an open GRO merge in this batch. */
  private readonly groOpen = new Int32Array(MAX_PORTS)
  private groCount = 0
  /** Reused list of peer indices a segmented frame goes to. */
  private readonly oneTarget = new Int32Array(1)
  /** Where the last underlay frame went by unicast, for the next segment of its GRO datagram (see onUnderlayBatch), or null. */
  private lastRxPod: PodPort | null = null
  private readonly now: () => number
  /** An int32 (flowHash takes `seed | 0`): a field of 2^31 or more would be a heap number, boxed anew per call. */
  private readonly hashSeed = (Math.random() * 2 ** 32) | 0

  constructor(opts: DatapathOptions) {
    this.counters = opts.counters ?? new DatapathCounters()
    this.stats = this.counters.stats
    this.drops = this.counters.drops
    this.offloads = this.counters.offloads
    this.priorityRx = this.counters.priorityRx
    const rxBytes = BATCH_FRAMES * SLOT_SUPER
    this.arena = new Uint8Array(2 * rxBytes + SCRATCH_BYTES)
    this.podRx = new Batch(BATCH_FRAMES, SLOT_SUPER, this.arena.subarray(0, rxBytes))
    this.underlayRx = new Batch(BATCH_FRAMES, SLOT_SUPER, this.arena.subarray(rxBytes, 2 * rxBytes))
    this.scratch = this.arena
    this.scratchBase = 2 * rxBytes
    this.scratchUsed = this.scratchBase
    this.vxlanPort = opts.vxlanPort
    this.fdb = new Fdb(opts.fdb)
    this.arp = new ArpTable(this.fdb.ageMs, this.fdb.maxEntries)
    this.arpSuppression = opts.arpSuppression ?? true
    this.learnPeers = opts.learnPeers ?? false
    this.routerMacHi = opts.routerMacHi ?? ROUTER_MAC_HI
    this.routerMacLo = opts.routerMacLo ?? ROUTER_MAC_LO
    this.now = opts.now ?? (() => performance.now())
    this.services = new ServiceTable(opts.services)
    this.conntrack = new Conntrack(opts.conntrack)
    this.servicePath = new ServicePath(this.services, this.conntrack, { routerMacHi: this.routerMacHi, routerMacLo: this.routerMacLo })
    if (opts.steer !== undefined) this.conntrack.pin(opts.steer.workers, opts.steer.worker)
    this.onArpLearn = opts.onArpLearn ?? null
    this.steerWorkers = opts.steer?.workers ?? 1
    this.steerWorker = opts.steer?.worker ?? 0
    this.onHandOver = this.steerWorkers > 1 ? opts.onHandOver ?? null : null
    this.floodPerSecond = opts.floodPerSecond ?? 0
    this.floodBurst = opts.floodBurst ?? Math.max(1, this.floodPerSecond)
  }

  /**
   * Storm control: takes one token from the pod's flood bucket, refilled at
   * floodPerSecond; false (drop, counted) when the bucket is empty.
   */
  private floodAllowed(pod: PodPort, now: number): boolean {
    const rate = this.floodPerSecond
    return rate <= 0 || pod.flood.take(now, rate, this.floodBurst)
  }

  // ---- control-plane operations (not per packet) ----

  addNetwork(vni: number, gatewayIp: number): void {
    if (!this.nets.has(vni)) this.nets.set(vni, new Network(vni, gatewayIp >>> 0))
  }

  removeNetwork(vni: number): void {
    this.nets.delete(vni)
    this.fdb.removeVni(vni)
  }

  hasNetwork(vni: number): boolean {
    return this.nets.has(vni)
  }

  /**
   * Adds a pod port and starts reading from it. `id` is given by a worker's
   * datapath, which numbers ports as the main thread's does.
   */
  addPod(spec: PodSpec, io: FrameIo, prio: FrameIo | null = null, id = -1): PodPort {
    const net = this.nets.get(spec.vni)
    if (!net) throw new Error(`pod ${spec.name}: no network with VNI ${spec.vni}`)
    if (id >= 0 && (id === 0 || id >= MAX_PORTS || this.pods[id] !== null)) throw new Error(`pod ${spec.name}: port ${id} is not free`)
    for (let i = 1; id < 0 && i < MAX_PORTS; i++) if (this.pods[i] === null) id = i
    if (id < 0) throw new Error(`no free port for pod ${spec.name} (at most ${MAX_PORTS - 1})`)
    const pod = new PodPort(id, spec, io)
    pod.flood = new TokenBucket(this.floodBurst, this.now())
    this.pods[id] = pod
    this.rebuildNet(net)
    this.fdb.removePort(id)
    this.fdb.addStatic(spec.vni, spec.macHi, spec.macLo, id)
    this.arp.addStatic(spec.vni, spec.ip, spec.macHi, spec.macLo)
    this.servicePath.setGateway(id, net.gatewayIp)
    for (let s = 0; s < 4; s++) this.stats[id * 4 + s] = 0
    pod.prio = prio
    io.start((n) => this.onPodBatch(pod, n))
    prio?.start((n) => this.onPodPriorityBatch(pod, n))
    return pod
  }

  /**
   * Gratuitous ARP for a new pod, to the other local pods and every peer: agents
   * and kernels that still map its IP to an earlier pod's MAC (an address handed
   * out again) learn the new one at once.
   */
  announce(pod: PodPort): void {
    const net = this.nets.get(pod.spec.vni)
    if (!net) return
    const frameLen = ETH_HLEN + ARP_LEN
    const b = new Uint8Array(2 * (VNET_HLEN + VXLAN_HLEN + frameLen))
    const local = VNET_HLEN
    const remote = local + frameLen + VXLAN_HLEN
    writeArpBroadcast(b, local, pod.spec.macHi, pod.spec.macLo, pod.spec.ip, pod.spec.ip)
    writeArpBroadcast(b, remote, pod.spec.macHi, pod.spec.macLo, pod.spec.ip, pod.spec.ip)
    const one = new TxList(1)
    for (let k = 0; k < net.ports.length; k++) {
      const q = this.pods[net.ports[k]]
      if (q === null || q === pod) continue
      one.count = 0
      if (q.vnetLen > 0) one.push(local - VNET_HLEN, VNET_HLEN + frameLen)
      else one.push(local, frameLen)
      q.io.write(b, one.offs, one.lens, 1)
    }
    if (this.txSockets.length === 0 || this.peers.active.length === 0) return
    vxlanWrite(b, remote - VXLAN_HLEN, net.vni)
    const tx = new TxList(this.peers.active.length)
    for (const p of this.peers.active) tx.pushTo(remote - VXLAN_HLEN, VXLAN_HLEN + frameLen, this.peers.addr[p], this.vxlanPort, 0)
    this.txSockets[0].io.send(b, tx)
  }

  removePod(id: number): void {
    const pod = this.pods[id]
    if (!pod) return
    pod.io.stop()
    pod.prio?.stop()
    this.pods[id] = null
    this.fdb.removeStatic(pod.spec.vni, pod.spec.macHi, pod.spec.macLo)
    this.fdb.removePort(id)
    this.arp.remove(pod.spec.vni, pod.spec.ip)
    const net = this.nets.get(pod.spec.vni)
    if (net) this.rebuildNet(net)
  }

  pod(id: number): PodPort | null {
    return this.pods[id] ?? null
  }

  podList(): PodPort[] {
    return this.pods.filter((p): p is PodPort => p !== null)
  }

  /**
   * Attaches the underlay: `rx` receives VXLAN on the VXLAN port; `tx` is the
   * transmit pool (each socket bound to its own source port; a flow's hash picks
   * one, so the underlay can spread flows). `rx` itself may be the only tx socket.
   */
  attachUnderlay(rx: DatagramIo, tx: DatagramIo[], gsoTx: (DatagramIo | null)[] = [], priority: DatagramIo | null = null): void {
    this.underlay = rx
    this.priority = priority
    const pool = tx.length > 0 ? tx : [rx]
    this.txSockets = pool.map((io, k) => new TxSocket(io, io.gsoEnabled ? io : gsoTx[k] ?? null))
    rx.start((n) => this.onUnderlayBatch(n))
    priority?.start((n) => this.onPriorityBatch(n))
  }

  detachUnderlay(): void {
    this.underlay?.stop()
    this.priority?.stop()
    this.underlay = null
    this.priority = null
    this.txSockets = []
  }

  addPeer(addr: number): number {
    return this.peers.add(addr >>> 0, true)
  }

  removePeer(addr: number): void {
    const i = this.peers.remove(addr >>> 0)
    if (i >= 0) this.fdb.removePort(PEER_PORT_BASE + i)
  }

  /**
   * A pod on another host known ahead of traffic (cluster store): static FDB
   * entry to its host's VTEP and ARP entry. False when the host is not a peer.
   */
  addRemotePod(vni: number, macHi: number, macLo: number, ip: number, peerAddr: number): boolean {
    const peer = this.peers.indexOf(peerAddr >>> 0)
    if (peer < 0) return false
    this.fdb.addStatic(vni, macHi, macLo, PEER_PORT_BASE + peer)
    if (ip !== 0) this.arp.addStatic(vni, ip >>> 0, macHi, macLo)
    return true
  }

  removeRemotePod(vni: number, macHi: number, macLo: number, ip: number): void {
    this.fdb.removeStatic(vni, macHi, macLo)
    if (ip !== 0) this.arp.remove(vni, ip >>> 0)
  }

  /** An ARP entry the main thread learned (a worker's datapath is told them: ARP is read there). */
  arpLearned(vni: number, ip: number, macHi: number, macLo: number): void {
    this.arp.learn(vni, ip >>> 0, macHi, macLo, this.now())
  }

  /** Ages the FDB and ARP table; call every second or so. */
  sweep(): number {
    const now = this.now()
    this.servicePath.sweep(now)
    return this.fdb.sweep(now)
  }

  /** Copies the plain-field totals and the FDB's counters into `counters` (for a reader in another thread, or totals()). */
  syncCounters(): void {
    const m = this.counters.misc
    m[MISC_BATCHES] = this.batches
    m[MISC_BATCH_FRAMES] = this.batchFrames
    m[MISC_ARP_ANSWERED] = this.arpAnswered
    m[MISC_CT_SIZE] = this.conntrack.size
    this.counters.fdb.set(this.fdb.counters)
    this.counters.ct.set(this.conntrack.counters)
    this.counters.svcDrops.set(this.servicePath.drops)
    this.counters.svcStats.set(this.servicePath.stats)
  }

  /** This datapath's counters plus those of the workers beside it (a set reused by the next call). */
  totals(): DatapathCounters {
    this.syncCounters()
    if (this.workerCounters.length === 0) return this.counters
    return this.summed.sum([this.counters, ...this.workerCounters])
  }

  /** Source UDP ports of the transmit pool. */
  sourcePorts(): number[] {
    return this.txSockets.map((s) => s.io.port)
  }

  // ---- data path ----

  /** One batch from a pod's TAP. */
  onPodBatch(pod: PodPort, n: number): void {
    this.podBatch(pod, pod.io.rx, n, null)
  }

  /** One batch from the pod's priority queue: the same path, counted apart. */
  onPodPriorityBatch(pod: PodPort, n: number): void {
    if (pod.prio !== null) this.podBatch(pod, pod.prio.rx, n, pod.prioRx)
  }

  /** `lane`: where a priority queue's batch is also counted (frames, bytes), or null. */
  private podBatch(pod: PodPort, rx: Batch, n: number, lane: Float64Array | null): void {
    if (n <= 0) return
    const now = this.now()
    this.batchMtu = pod.spec.mtu
    const buf = rx.data
    const spec = pod.spec
    const vni = spec.vni
    const net = this.nets.get(vni)
    if (!net) return
    const vnetLen = pod.vnetLen
    const st = pod.id * 4
    this.batches++
    this.batchFrames += n
    this.scratchUsed = this.scratchBase
    let rxBytes = 0
    for (let i = 0; i < n; i++) {
      const base = rx.off(i)
      const total = rx.len[i]
      rxBytes += total
      const frame = base + vnetLen
      const len = total - vnetLen
      if (this.capture !== null) this.capture.frame(CapturePoint.PodRx, pod.id, vni, buf, frame, len, vnetLen > 0 ? base : -1, 0, 0, 0)
      const hlen = ethCheck(buf, frame, len)
      if (hlen < 0) { this.drops[Drop.Malformed]++; continue }
      // Port security: the pod sends only as itself.
      if (spec.portSecurity && !macIs(buf, frame + ETH_OFF_SRC, spec.macHi, spec.macLo)) { this.drops[Drop.Spoofed]++; continue }
      const type = ethTypeAfterTags(buf, frame, hlen)
      const l3 = frame + hlen
      let gsoType = VNET_GSO_NONE
      if (vnetLen > 0) {
        gsoType = vnetGsoType(buf, base)
        if (gsoType === VNET_GSO_NONE ? len - hlen > spec.mtu : vnetGsoSize(buf, base) + 40 > spec.mtu) { this.drops[Drop.Mtu]++; continue }
      } else if (len - hlen > spec.mtu) { this.drops[Drop.Mtu]++; continue }
      if (type === ETHERTYPE_ARP) {
        if (arpCheck(buf, l3, len - hlen) < 0) { this.drops[Drop.Malformed]++; continue }
        const spa = arpSpa(buf, l3)
        if (spec.portSecurity && (!macIs(buf, l3 + ARP_OFF_SHA, spec.macHi, spec.macLo) || (spa !== spec.ip && spa !== 0))) {
          this.drops[Drop.Spoofed]++
          continue
        }
        if (arpOp(buf, l3) === ARP_OP_REQUEST && this.answerArp(net, buf, frame, l3, now)) {
          if (vnetLen > 0) vnetWriteNone(buf, base)
          this.queuePod(pod, base, total, false)
          continue
        }
        if (macIs(buf, frame + ETH_OFF_DST, this.routerMacHi, this.routerMacLo)) {
          // An answer to an agent's ARP probe (service endpoint resolution). The
          // router MAC is every agent's, so the asking agent may be another one:
          // learn it here and pass it to the peers, never to local pods.
          if (spa !== 0) this.learnArp(vni, spa, spec.macHi, spec.macLo, now)
          this.floodPeers(net, buf, base, frame, len, vnetLen, gsoType)
          continue
        }
      } else if (type === ETHERTYPE_IPV4 && spec.portSecurity) {
        const ihl = ipv4Check(buf, l3, len - hlen)
        if (ihl < 0) { this.drops[Drop.Malformed]++; continue }
        const src = ipv4Src(buf, l3)
        if (src !== spec.ip && src !== 0) { this.drops[Drop.Spoofed]++; continue }
      }
      // Limits and statics are the FDB's business: its counters record what it refused.
      this.fdb.learn(vni, buf, frame + ETH_OFF_SRC, pod.id, now)
      // Destination.
      if (macIsMulticast(buf, frame + ETH_OFF_DST)) {
        if (!this.floodAllowed(pod, now)) { this.drops[Drop.Storm]++; continue }
        this.flood(net, pod.id, buf, base, frame, len, vnetLen, gsoType, true, now)
        continue
      }
      if (macIs(buf, frame + ETH_OFF_DST, this.routerMacHi, this.routerMacLo)) {
        if (type === ETHERTYPE_IPV4 && hlen === ETH_HLEN) this.route(net, pod, buf, base, frame, len, gsoType, now)
        else this.drops[Drop.NoRoute]++
        continue
      }
      const port = this.fdb.lookup(vni, buf, frame + ETH_OFF_DST, now)
      if (port < 0) {
        if (!this.floodAllowed(pod, now)) { this.drops[Drop.Storm]++; continue }
        this.flood(net, pod.id, buf, base, frame, len, vnetLen, gsoType, true, now)
      } else if (isPeerPort(port)) {
        this.toPeer(port - PEER_PORT_BASE, vni, buf, base, frame, len, vnetLen, gsoType)
      } else if (port === pod.id) {
        this.drops[Drop.SamePort]++
      } else {
        const q = this.pods[port]
        if (q === null) { this.drops[Drop.NotLocal]++; continue }
        this.toLocal(q, buf, base, frame, len, vnetLen, gsoType, now)
      }
    }
    this.stats[st + STAT_RX_FRAMES] += n
    this.stats[st + STAT_RX_BYTES] += rxBytes
    if (lane !== null) { lane[0] += n; lane[1] += rxBytes }
    this.flush(buf)
  }

  /** One batch of datagrams from the underlay socket. */
  onUnderlayBatch(n: number): void {
    if (this.underlay !== null) this.underlayBatch(this.underlay, n, null)
  }

  /** One batch from the priority lane's socket: the same path, counted apart. */
  onPriorityBatch(n: number): void {
    if (this.priority !== null) this.underlayBatch(this.priority, n, this.priorityRx)
  }

  /** `lane`: where the priority socket's batch is also counted (datagrams, bytes), or null. */
  private underlayBatch(u: DatagramIo, n: number, lane: Float64Array | null): void {
    if (n <= 0) return
    const now = this.now()
    const rx = u.rx
    this.groBuf = rx.data
    this.groChainCount = 0
    const buf = rx.data
    const meta = rx.meta
    this.batches++
    this.batchFrames += n
    this.scratchUsed = this.scratchBase
    let rxBytes = 0
    for (let i = 0; i < n; i++) {
      const off0 = rx.off(i)
      const len0 = rx.len[i]
      rxBytes += len0
      if (len0 === 0) { this.drops[Drop.Malformed]++; continue }
      const gso = meta[3 * i + 2]
      // With UDP GRO one datagram may carry several of the sender's segments, each a VXLAN packet.
      const seg = gso > 0 ? gso : len0
      const end = off0 + len0
      for (let off = off0; off < end; off += seg) {
        const l = off + seg <= end ? seg : end - off
        // A later segment of the datagram with the same VXLAN and Ethernet headers as the one
        // before (same sender, VNI, MACs, IPv4) has the same fate: its peer, VNI and FDB work
        // (a learn that changes nothing, the same lookup) is skipped. Never with a capture.
        const q = this.lastRxPod
        if (off !== off0 && q !== null && l >= VXLAN_HLEN + ETH_HLEN && this.capture === null && sameHead(buf, off - seg, off)) {
          this.underlayToPod(q, buf, off + VXLAN_HLEN, l - VXLAN_HLEN, now)
        } else {
          this.underlayFrame(buf, off, l, meta[3 * i] | 0, meta[3 * i + 1], u.port, now)
        }
      }
      this.lastRxPod = null
    }
    this.groCloseAll()
    this.stats[UNDERLAY_PORT * 4 + STAT_RX_FRAMES] += n
    this.stats[UNDERLAY_PORT * 4 + STAT_RX_BYTES] += rxBytes
    if (lane !== null) { lane[0] += n; lane[1] += rxBytes }
    this.flush(buf)
  }

  /** One VXLAN packet from the underlay (a datagram, or one segment of a GRO datagram). */
  /** `src` is the sender's IPv4 address as an int32 (`| 0`: a small integer, never boxed). */
  private underlayFrame(buf: Uint8Array, off: number, len: number, src: number, sport: number, localPort: number, now: number): void {
    this.lastRxPod = null
    if (this.capture !== null) this.capture.frame(CapturePoint.UnderlayRx, UNDERLAY_PORT, len >= 8 ? vxlanVni(buf, off) : 0, buf, off, len, -1, src >>> 0, sport, localPort)
    let peer = this.peers.indexOf(src)
    if (peer < 0 && !this.learnPeers) { this.drops[Drop.UnknownPeer]++; return }
    const vh = vxlanCheck(buf, off, len)
    if (vh < 0) { this.drops[vh === Malformed.VxlanNoIFlag ? Drop.VxlanNoIFlag : Drop.Malformed]++; return }
    const vni = vxlanVni(buf, off)
    const net = this.nets.get(vni)
    if (net === undefined) { this.drops[Drop.UnknownVni]++; return }
    const frame = off + VXLAN_HLEN
    const flen = len - VXLAN_HLEN
    const hlen = ethCheck(buf, frame, flen)
    if (hlen < 0) { this.drops[Drop.Malformed]++; return }
    // Larger than any pod of the network may receive (a peer's pods have the same MTU).
    let superMss = 0
    if (flen - hlen > net.mtu) {
      // A Linux VXLAN sender whose underlay is a veth hands over its tunnel GSO
      // packet whole: one VXLAN header and a TCP super-frame with a partial
      // checksum. It goes to the pod as a GSO frame of MTU-sized segments;
      // anything else larger than the pods' MTU is dropped.
      superMss = tcpSuperFrameMss(buf, frame, flen, net.mtu)
      if (superMss === 0) { this.drops[Drop.Mtu]++; return }
    }
    if (peer < 0) {
      // learnPeers: only a sender of valid VXLAN for one of our networks becomes a peer.
      peer = this.peers.add(src, false)
      if (peer < 0) { this.drops[Drop.UnknownPeer]++; return }
    }
    const peerPort = PEER_PORT_BASE + peer
    // The router MAC is every agent's (anycast): never learned behind a peer.
    if (!macIs(buf, frame + ETH_OFF_SRC, this.routerMacHi, this.routerMacLo)) this.fdb.learn(vni, buf, frame + ETH_OFF_SRC, peerPort, now)
    if (ethTypeAfterTags(buf, frame, hlen) === ETHERTYPE_ARP && arpCheck(buf, frame + hlen, flen - hlen) > 0) {
      const spa = arpSpa(buf, frame + hlen)
      if (spa !== 0) {
        const sha = frame + hlen + ARP_OFF_SHA
        this.learnArp(vni, spa, macHi(buf, sha), macLo(buf, sha), now)
      }
    }
    if (macIsMulticast(buf, frame + ETH_OFF_DST)) {
      this.floodFromUnderlay(net, buf, frame, flen)
      return
    }
    // To the router MAC: ARP answers to a probe, learned above; nothing for local pods.
    if (macIs(buf, frame + ETH_OFF_DST, this.routerMacHi, this.routerMacLo)) return
    const port = this.fdb.lookup(vni, buf, frame + ETH_OFF_DST, now)
    if (port < 0) {
      this.floodFromUnderlay(net, buf, frame, flen)
    } else if (isPeerPort(port)) {
      this.drops[Drop.NotLocal]++
    } else {
      const q = this.pods[port]
      if (q === null) { this.drops[Drop.NotLocal]++; return }
      if (superMss > 0) {
        if (buf[frame + 12] === 0x08 && buf[frame + 13] === 0x00) this.servicePath.inbound(buf, frame, frame + ETH_HLEN, flen, now, true)
        this.deliverSuper(q, buf, frame, flen, superMss)
        return
      }
      this.underlayToPod(q, buf, frame, flen, now)
      // The next segment of a GRO datagram with the same headers may go straight to q.
      if (hlen === ETH_HLEN && buf[frame + 12] === 0x08 && buf[frame + 13] === 0x00) this.lastRxPod = q
    }
  }

  /** A unicast frame from the underlay, within the pod MTU, to local pod q: reverse NAT, then GRO or the queue. */
  private underlayToPod(q: PodPort, buf: Uint8Array, frame: number, flen: number, now: number): void {
    if (buf[frame + 12] === 0x08 && buf[frame + 13] === 0x00 &&
        !this.servicePath.inbound(buf, frame, frame + ETH_HLEN, flen, now, false) && this.handOver(q.id, buf, frame, flen, false, now)) return
    if (q.vnetLen > 0) this.groAdd(q, buf, frame, flen)
    else this.queuePod(q, frame, flen, false)
  }

  /**
   * A frame a pod sent to the anycast gateway: service traffic is DNATed and
   * forwarded to the chosen endpoint (or answered with a RST / port
   * unreachable), DNS to the local responder; anything else has no route.
   */
  private route(net: Network, pod: PodPort, buf: Uint8Array, base: number, frame: number, len: number, gsoType: number, now: number): void {
    const vnetLen = pod.vnetLen
    const l3 = frame + ETH_HLEN
    // An ICMP error about a reply of another worker's service connection: that worker translates it.
    if (this.onHandOver !== null && buf[l3 + IPV4_OFF_PROTO] === PROTO_ICMP && this.handOver(pod.id, buf, frame, len, true, now)) return
    const partial = vnetLen > 0 && (vnetFlags(buf, base) & VNET_F_NEEDS_CSUM) !== 0
    const v = this.servicePath.outbound(buf, frame, l3, len, pod.id, now, partial)
    if (v === Verdict.Forward) {
      const hop = this.servicePath.nextHopIp
      if (!this.arp.lookup(net.vni, hop, now)) {
        // The endpoint's MAC is not known yet: ask for it; the client retransmits.
        this.arpProbe(net, hop)
        this.drops[Drop.NoRoute]++
        return
      }
      macWrite(buf, frame + ETH_OFF_DST, this.arp.foundHi, this.arp.foundLo)
      const port = this.fdb.lookup(net.vni, buf, frame + ETH_OFF_DST, now)
      if (port < 0) this.flood(net, pod.id, buf, base, frame, len, vnetLen, gsoType, true, now)
      else if (isPeerPort(port)) this.toPeer(port - PEER_PORT_BASE, net.vni, buf, base, frame, len, vnetLen, gsoType)
      else {
        const q = this.pods[port]
        if (q === null) { this.drops[Drop.NotLocal]++; return }
        this.toLocal(q, buf, base, frame, len, vnetLen, gsoType, now)
      }
      return
    }
    if (v === Verdict.Reply) {
      if (vnetLen > 0) vnetWriteNone(buf, base)
      this.queuePod(pod, base, vnetLen + this.servicePath.replyLen, false)
      return
    }
    if (v === Verdict.NotService && this.responder !== null) {
      const slot = pod.io.rx.slotSize
      const n = this.responder(buf, frame, l3, len, Math.floor(frame / slot) * slot + slot - frame)
      if (n > 0) {
        if (vnetLen > 0) vnetWriteNone(buf, base)
        this.queuePod(pod, base, vnetLen + n, false)
        return
      }
      if (n < 0) { this.drops[Drop.DnsInvalid]++; return }
    }
    if (v === Verdict.NotService) this.drops[Drop.NoRoute]++
  }

  /** Learns an ARP entry from traffic, and tells onArpLearn (workers learn from the main thread: ARP is read there). */
  private learnArp(vni: number, ip: number, hi: number, lo: number, now: number): void {
    this.arp.learn(vni, ip, hi, lo, now)
    if (this.onArpLearn !== null) this.onArpLearn(vni, ip, hi, lo)
  }

  /** Broadcasts an ARP request for `ip` from the gateway into the VNI (local pods and peers). */
  private arpProbe(net: Network, ip: number): void {
    const frameLen = ETH_HLEN + ARP_LEN
    const need = 2 * (VNET_HLEN + VXLAN_HLEN + frameLen)
    if (this.scratchUsed + need > this.scratch.length || net.gatewayIp === 0) return
    const out = this.scratch
    const local = this.scratchUsed + VNET_HLEN
    const remote = local + frameLen + VXLAN_HLEN
    this.scratchUsed += need
    writeArpBroadcast(out, local, this.routerMacHi, this.routerMacLo, net.gatewayIp, ip)
    writeArpBroadcast(out, remote, this.routerMacHi, this.routerMacLo, net.gatewayIp, ip)
    vnetWriteNone(out, local - VNET_HLEN)
    const ports = net.ports
    for (let k = 0; k < ports.length; k++) {
      const q = this.pods[ports[k]]
      if (q === null) continue
      if (q.vnetLen > 0) this.queuePod(q, local - VNET_HLEN, VNET_HLEN + frameLen, true)
      else this.queuePod(q, local, frameLen, true)
    }
    const active = this.peers.active
    if (active.length === 0 || this.txSockets.length === 0) return
    vxlanWrite(out, remote - VXLAN_HLEN, net.vni)
    const sock = this.txSockets[0]
    for (let k = 0; k < active.length; k++) sock.copied.pushTo(remote - VXLAN_HLEN, VXLAN_HLEN + frameLen, this.peers.addr[active[k]], this.vxlanPort, 0)
  }

  /**
   * Answers an ARP request in place (turning it into the reply) when it asks for
   * the gateway, or for an address the ARP table knows (suppression).
   */
  private answerArp(net: Network, buf: Uint8Array, frame: number, l3: number, now: number): boolean {
    const tpa = arpTpa(buf, l3)
    let hi: number
    let lo: number
    if (tpa === net.gatewayIp && tpa !== 0) {
      hi = this.routerMacHi
      lo = this.routerMacLo
    } else if (this.arpSuppression && this.arp.lookup(net.vni, tpa, now)) {
      hi = this.arp.foundHi
      lo = this.arp.foundLo
    } else {
      return false
    }
    const spa = arpSpa(buf, l3)
    const shaHi = macHi(buf, l3 + ARP_OFF_SHA)
    const shaLo = macLo(buf, l3 + ARP_OFF_SHA)
    if (shaHi === hi && shaLo === lo) return false // a probe for its own address: let it flood
    arpWrite(buf, l3, ARP_OP_REPLY, hi, lo, tpa, shaHi, shaLo, spa)
    macCopy(buf, frame + ETH_OFF_DST, buf, frame + ETH_OFF_SRC)
    macWrite(buf, frame + ETH_OFF_SRC, hi, lo)
    this.arpAnswered++
    return true
  }

  /**
   * From one pod to another. Both carry vnet headers (the agent opens every pod
   * TAP alike), so the header passes through untouched: partial checksums and
   * TSO super-frames go straight to the other pod's kernel. A destination
   * without vnet headers gets complete frames.
   */
  private toLocal(q: PodPort, buf: Uint8Array, base: number, frame: number, len: number, srcVnet: number, gsoType: number, now: number): void {
    // Replies of service connections are reverse-NATed before the client sees them.
    if (buf[frame + 12] === 0x08 && buf[frame + 13] === 0x00 &&
        !this.servicePath.inbound(buf, frame, frame + ETH_HLEN, len, now, srcVnet > 0 && (vnetFlags(buf, base) & VNET_F_NEEDS_CSUM) !== 0) &&
        this.handOver(q.id, buf, frame, len, false, now)) return
    if (q.vnetLen > 0) {
      if (srcVnet <= 0) vnetWriteNone(buf, frame - VNET_HLEN)
      this.queuePod(q, frame - VNET_HLEN, len + VNET_HLEN, false)
      return
    }
    if (srcVnet > 0 && (vnetFlags(buf, base) & VNET_F_NEEDS_CSUM) !== 0) {
      if (gsoType !== VNET_GSO_NONE) { this.drops[Drop.BadOffload]++; return }
      // Completed in a copy: other receivers of a flood still need the partial form.
      if (this.scratchUsed + len > this.scratch.length) { this.drops[Drop.QueueFull]++; return }
      const c = this.scratchUsed
      this.scratchUsed += len
      copyInto(this.scratch, c, buf, frame, frame + len)
      if (!vnetCompleteChecksum(this.scratch, c, len, vnetCsumStart(buf, base), vnetCsumOffset(buf, base))) { this.drops[Drop.BadOffload]++; return }
      this.queuePod(q, c, len, true)
      return
    }
    if (srcVnet > 0 && gsoType !== VNET_GSO_NONE) { this.drops[Drop.BadOffload]++; return }
    this.queuePod(q, frame, len, false)
  }

  /** Completes a partial checksum the pod's kernel left (VNET_F_NEEDS_CSUM). */
  private completeChecksum(buf: Uint8Array, base: number, frame: number, len: number): boolean {
    if ((vnetFlags(buf, base) & VNET_F_NEEDS_CSUM) !== 0 &&
        !vnetCompleteChecksum(buf, frame, len, vnetCsumStart(buf, base), vnetCsumOffset(buf, base))) {
      this.drops[Drop.BadOffload]++
      return false
    }
    return true
  }

  /** Unicast to a remote VTEP: encapsulate in place, or segment a super-frame, and queue on the flow's socket. */
  private toPeer(peer: number, vni: number, buf: Uint8Array, base: number, frame: number, len: number, srcVnet: number, gsoType: number): void {
    const s = this.txSockets
    if (s.length === 0) { this.drops[Drop.NotLocal]++; return }
    const sock = s[flowHash(buf, frame, len, this.hashSeed) % s.length]
    if (srcVnet > 0 && gsoType !== VNET_GSO_NONE) {
      this.oneTarget[0] = peer
      this.segmentToPeers(sock, vni, buf, base, frame, len, gsoType, this.oneTarget, 1)
      return
    }
    if (srcVnet > 0 && !this.completeChecksum(buf, base, frame, len)) return
    const v = frame - VXLAN_HLEN
    vxlanWrite(buf, v, vni)
    if (!sock.inPlace.pushTo(v, len + VXLAN_HLEN, this.peers.addr[peer], this.vxlanPort, 0)) this.drops[Drop.QueueFull]++
  }

  /**
   * Cuts a GSO super-frame into MSS-sized frames in the scratch slab, each behind
   * its VXLAN header, and queues them for each target peer: as UDP GSO runs of
   * equal-sized datagrams where the socket can, else one datagram each.
   */
  private segmentToPeers(sock: TxSocket, vni: number, buf: Uint8Array, base: number, frame: number, len: number,
    gsoType: number, targets: Int32Array, nTargets: number): void {
    const type = gsoType & ~VNET_GSO_ECN
    if (type !== VNET_GSO_TCPV4 && type !== VNET_GSO_TCPV6 && type !== VNET_GSO_UDP_L4) { this.drops[Drop.BadOffload]++; return }
    const gsoSize = vnetGsoSize(buf, base)
    const out = this.scratch
    const at = this.scratchUsed
    // Segments need at most the frame plus one header copy (<= 128 bytes) per segment.
    if (gsoSize <= 0 || at + len + Math.ceil(len / gsoSize) * (VXLAN_HLEN + 128) > out.length) { this.drops[gsoSize <= 0 ? Drop.BadOffload : Drop.QueueFull]++; return }
    const n = tsoSegmentFast(buf, frame, len, type === VNET_GSO_UDP_L4, gsoSize, out, at, VXLAN_HLEN, 1024)
    if (n < 0) { this.drops[Drop.BadOffload]++; return }
    // Segments must fit the sending pod's MTU, whatever gso_size it claimed.
    if (TSO.hdrLen - TSO.ethLen + gsoSize > this.batchMtu) { this.drops[Drop.Mtu]++; return }
    const stride = VXLAN_HLEN + TSO.hdrLen + gsoSize
    this.scratchUsed = at + (n - 1) * stride + VXLAN_HLEN + TSO.lastLen
    this.offloads[Offload.TsoFrames]++
    this.offloads[Offload.TsoSegments] += n
    for (let k = 0; k < n; k++) vxlanWrite(out, at + k * stride, vni)
    const lastLen = VXLAN_HLEN + TSO.lastLen
    const gso = sock.gso
    const perRun = gso === null ? 1 : Math.max(1, Math.min(GSO_MAX_SEGMENTS, Math.floor(GSO_MAX_BYTES / stride)))
    const list = gso === null ? sock.copied : sock.gsoList
    for (let t = 0; t < nTargets; t++) {
      const addr = this.peers.addr[targets[t]]
      for (let k = 0; k < n; k += perRun) {
        const segs = k + perRun <= n ? perRun : n - k
        const bytes = (segs - 1) * stride + (k + segs === n ? lastLen : stride)
        if (!list.pushTo(at + k * stride, bytes, addr, this.vxlanPort, segs > 1 ? stride : 0)) { this.drops[Drop.QueueFull]++; return }
      }
    }
  }

  /**
   * Broadcast, multicast and unknown unicast from a pod: to every other local pod
   * of the VNI and to every peer (head-end replication).
   */
  private flood(net: Network, fromPort: number, buf: Uint8Array, base: number, frame: number, len: number,
    srcVnet: number, gsoType: number, toPeers: boolean, now: number): void {
    const ports = net.ports
    for (let k = 0; k < ports.length; k++) {
      const id = ports[k]
      if (id === fromPort) continue
      const q = this.pods[id]
      if (q !== null) this.toLocal(q, buf, base, frame, len, srcVnet, gsoType, now)
    }
    if (toPeers) this.floodPeers(net, buf, base, frame, len, srcVnet, gsoType)
  }

  /** Head-end replication of a pod's frame to every peer. */
  private floodPeers(net: Network, buf: Uint8Array, base: number, frame: number, len: number, srcVnet: number, gsoType: number): void {
    const active = this.peers.active
    if (active.length === 0 || this.txSockets.length === 0) return
    const sock = this.txSockets[flowHash(buf, frame, len, this.hashSeed) % this.txSockets.length]
    if (srcVnet > 0 && gsoType !== VNET_GSO_NONE) {
      this.segmentToPeers(sock, net.vni, buf, base, frame, len, gsoType, active, active.length)
      return
    }
    // One copy shared by every peer: [VXLAN | frame] in the scratch slab (the
    // local copies above still need the vnet header where VXLAN would go).
    const need = len + VXLAN_HLEN
    if (this.scratchUsed + need > this.scratch.length) { this.drops[Drop.QueueFull]++; return }
    const v = this.scratchUsed
    this.scratchUsed += need
    vxlanWrite(this.scratch, v, net.vni)
    copyInto(this.scratch, v + VXLAN_HLEN, buf, frame, frame + len)
    // A partial checksum is completed in the copy; the local pods got the original.
    if (srcVnet > 0 && (vnetFlags(buf, base) & VNET_F_NEEDS_CSUM) !== 0 &&
        !vnetCompleteChecksum(this.scratch, v + VXLAN_HLEN, len, vnetCsumStart(buf, base), vnetCsumOffset(buf, base))) {
      this.drops[Drop.BadOffload]++
      return
    }
    for (let k = 0; k < active.length; k++) {
      if (!sock.copied.pushTo(v, need, this.peers.addr[active[k]], this.vxlanPort, 0)) { this.drops[Drop.QueueFull]++; return }
    }
  }

  /** A flood from the underlay goes to local pods only (split horizon: never back to a peer). */
  private floodFromUnderlay(net: Network, buf: Uint8Array, frame: number, len: number): void {
    const ports = net.ports
    for (let k = 0; k < ports.length; k++) {
      const q = this.pods[ports[k]]
      if (q === null) continue
      if (q.vnetLen > 0) this.groAdd(q, buf, frame, len)
      else this.queuePod(q, frame, len, false)
    }
  }

  /**
   * Delivers a frame from the underlay to a pod with vnet headers through the
   * pod's GRO merge: TCP segments that continue the open merge are appended,
   * anything else closes it and is copied on its own. Every frame to such a pod
   * goes through the scratch slab, so one flow's frames keep their order.
   */
  private groAdd(q: PodPort, buf: Uint8Array, frame: number, len: number): void {
    let hdr = groEligible(buf, frame, len)
    // A segment whose checksum fails stays out of merges (it goes alone, and the pod drops it).
    if (hdr > 0 && groChecksum(buf, frame, len) === GRO_CSUM_BAD) hdr = 0
    let udp = false
    if (hdr === 0 && q.spec.uso === true) {
      hdr = groUdpEligible(buf, frame, len)
      if (hdr > 0 && groUdpChecksum(buf, frame, len) === GRO_CSUM_BAD) hdr = 0
      udp = hdr > 0
    }
    if (q.groFirst >= 0) {
      const payload = len - hdr
      if (hdr > 0 && udp === q.groUdp && payload <= q.groMss && q.groLen + payload <= ETH_HLEN + GRO_MAX_IP_LEN &&
          this.groChainCount < GRO_CHAIN_MAX &&
          (udp ? q.groSegs < GRO_UDP_MAX_SEGMENTS && groUdpCanAppend(buf, q.groFirst, q.groNextId, buf, frame)
            : groCanAppend(buf, q.groFirst, q.groHdr, q.groNextSeq, buf, frame, hdr))) {
        // Chain the payload; it is copied once, when the merge closes.
        const c = this.groChainCount++
        this.groChainOff[c] = frame + hdr
        this.groChainLen[c] = payload
        this.groChainNext[c] = -1
        if (q.groTail >= 0) this.groChainNext[q.groTail] = c
        else q.groHead = c
        q.groTail = c
        q.groLen += payload
        q.groSegs++
        if (udp) {
          q.groNextId = (q.groNextId + 1) & 0xffff
          // A shorter datagram can only be the last of a GSO run.
          if (payload < q.groMss) this.groClose(q)
          return
        }
        q.groNextSeq = (q.groNextSeq + payload) >>> 0
        const psh = (buf[frame + 34 + TCP_OFF_FLAGS] & TCP_PSH) !== 0
        // A short segment or PSH ends the merge, as in the kernel.
        if (payload < q.groMss || psh) { q.groPsh = psh; this.groClose(q) }
        return
      }
      this.groClose(q)
    }
    if (hdr > 0) {
      q.groFirst = frame
      q.groLen = len
      q.groHdr = hdr
      q.groMss = len - hdr
      q.groSegs = 1
      q.groPsh = false
      q.groHead = -1
      q.groTail = -1
      q.groUdp = udp
      this.groOpen[this.groCount++] = q.id
      if (udp) {
        q.groNextId = (groUdpId(buf, frame) + 1) & 0xffff
        return
      }
      const t = frame + 34
      q.groNextSeq = (((buf[t + TCP_OFF_SEQ] << 24) | (buf[t + TCP_OFF_SEQ + 1] << 16) | (buf[t + TCP_OFF_SEQ + 2] << 8) | buf[t + TCP_OFF_SEQ + 3]) + q.groMss) >>> 0
      if ((buf[t + TCP_OFF_FLAGS] & TCP_PSH) !== 0) this.groClose(q)
      return
    }
    const out = this.scratch
    if (this.scratchUsed + VNET_HLEN + len > out.length) { this.drops[Drop.QueueFull]++; return }
    const vnet = this.scratchUsed
    this.scratchUsed += VNET_HLEN + len
    copyInto(out, vnet + VNET_HLEN, buf, frame, frame + len)
    vnetWriteForDelivery(out, vnet, len)
    this.queuePod(q, vnet, VNET_HLEN + len, true)
  }

  /**
   * A TCP/IPv4 super-frame from the underlay (partial checksum, MSS `mss`): to a
   * pod with vnet headers as one GSO frame; a pod without them cannot take it.
   */
  private deliverSuper(q: PodPort, buf: Uint8Array, frame: number, len: number, mss: number): void {
    this.groClose(q)
    const out = this.scratch
    const ihl = (buf[frame + ETH_HLEN] & 15) * 4
    const hdr = ETH_HLEN + ihl + (buf[frame + ETH_HLEN + ihl + 12] >>> 4) * 4
    if (q.vnetLen > 0) {
      if (this.scratchUsed + VNET_HLEN + len > out.length) { this.drops[Drop.QueueFull]++; return }
      const v = this.scratchUsed
      this.scratchUsed += VNET_HLEN + len
      copyInto(out, v + VNET_HLEN, buf, frame, frame + len)
      vnetWrite(out, v, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, hdr, mss, ETH_HLEN + ihl, 16)
      this.queuePod(q, v, VNET_HLEN + len, true)
      return
    }
    // A pod without vnet headers takes frames of its MTU only.
    this.drops[Drop.Mtu]++
  }

  /**
   * Builds a merge in the scratch slab, exactly sized: the first segment whole,
   * then the chained payloads, behind the virtio-net header groFinish writes.
   */
  private groClose(q: PodPort): void {
    const first = q.groFirst
    if (first < 0) return
    q.groFirst = -1
    const out = this.scratch
    const buf = this.groBuf
    if (this.scratchUsed + VNET_HLEN + q.groLen > out.length) { this.drops[Drop.QueueFull] += q.groSegs; return }
    const vnet = this.scratchUsed
    this.scratchUsed += VNET_HLEN + q.groLen
    let o = vnet + VNET_HLEN
    const firstLen = q.groHdr + q.groMss
    copyInto(out, o, buf, first, first + firstLen)
    o += firstLen
    for (let c = q.groHead; c >= 0; c = this.groChainNext[c]) {
      const off = this.groChainOff[c]
      copyInto(out, o, buf, off, off + this.groChainLen[c])
      o += this.groChainLen[c]
    }
    if (q.groUdp) groUdpFinish(out, vnet, q.groLen, q.groMss, q.groSegs)
    else groFinish(out, vnet, q.groLen, q.groHdr, q.groMss, q.groSegs, q.groPsh)
    if (q.groSegs > 1) {
      this.offloads[q.groUdp ? Offload.GroUdpMerges : Offload.GroTcpMerges]++
      this.offloads[q.groUdp ? Offload.GroUdpDatagrams : Offload.GroTcpSegments] += q.groSegs
    }
    this.queuePod(q, vnet, VNET_HLEN + q.groLen, true)
  }

  private groCloseAll(): void {
    for (let k = 0; k < this.groCount; k++) {
      const q = this.pods[this.groOpen[k]]
      if (q !== null) this.groClose(q)
    }
    this.groCount = 0
  }

  private queuePod(q: PodPort, off: number, len: number, inScratch: boolean): void {
    if (q.tx.count === 0 && q.txScratch.count === 0) this.dirty[this.dirtyCount++] = q.id
    if (!(inScratch ? q.txScratch : q.tx).push(off, len)) this.drops[Drop.QueueFull]++
  }

  /**
   * With workers: an IPv4 frame for local pod `podId` that no NAT entry here
   * translated, or one that pod sent to the gateway (`fromPod`). If it is an
   * ICMP error about another worker's flow (the NAT entry, if any, is there),
   * hands a copy to that worker (onHandOver) and returns true: the frame goes
   * no further here. Rare (ICMP errors only); every other frame costs one
   * comparison.
   */
  private handOver(podId: number, buf: Uint8Array, frame: number, flen: number, fromPod: boolean, now: number): boolean {
    if (this.onHandOver === null || buf[frame + ETH_HLEN + IPV4_OFF_PROTO] !== PROTO_ICMP) return false
    const l3 = frame + ETH_HLEN
    const end = Math.min(frame + flen, l3 + ((buf[l3 + 2] << 8) | buf[l3 + 3]))
    const worker = icmpErrorWorker(buf, l3, end, this.steerWorkers)
    if (worker < 0 || worker === this.steerWorker) return false
    // Bounded: a pod sending ICMP errors about other workers' flows must not load the main thread's queue.
    if (!this.handOvers.take(now, HANDOVER_PER_SECOND, HANDOVER_PER_SECOND)) { this.drops[Drop.HandOverLimit]++; return true }
    this.servicePath.stats[ServiceStat.IcmpHandedOver]++
    this.onHandOver(worker, podId, buf.slice(frame, frame + flen), fromPod)
    return true
  }

  /**
   * An ICMP error another worker read about a flow of this one (onHandOver
   * there), now: for local pod `podId`, reverse NAT with this worker's
   * entries, then the pod's TAP; or sent by that pod to the gateway
   * (`fromPod`), NAT toward the endpoint and on as any frame the pod routes.
   * Called between batches.
   */
  deliverHandedOver(podId: number, frame: Uint8Array, fromPod = false): void {
    const q = podId >= 0 && podId < this.pods.length ? this.pods[podId] : null
    const net = q === null ? undefined : this.nets.get(q.spec.vni)
    const len = frame.length
    const rx = this.handRx
    if (q === null || net === undefined || len < ETH_HLEN + 20 || VNET_HLEN + len > rx.maxFrame) { this.drops[Drop.NotLocal]++; return }
    // As if just read: the frame behind room for a virtio-net header, the paths a batch's frame takes.
    const at = rx.off(0) + VNET_HLEN
    copyInto(rx.data, at, frame, 0, len)
    this.scratchUsed = this.scratchBase
    const now = this.now()
    if (fromPod) {
      if (q.vnetLen > 0) vnetWriteNone(rx.data, at - q.vnetLen)
      this.route(net, q, rx.data, at - q.vnetLen, at, len, VNET_GSO_NONE, now)
    } else {
      this.toLocal(q, rx.data, at, at, len, 0, VNET_GSO_NONE, now)
    }
    this.flush(rx.data)
    this.scratchUsed = this.scratchBase
  }

  /** Sends everything queued in this batch. */
  private flush(buf: Uint8Array): void {
    for (let k = 0; k < this.dirtyCount; k++) {
      const q = this.pods[this.dirty[k]]
      if (q === null) continue
      if (q.tx.count > 0) this.writePod(q, buf, q.tx)
      if (q.txScratch.count > 0) this.writePod(q, this.scratch, q.txScratch)
    }
    this.dirtyCount = 0
    const socks = this.txSockets
    for (let k = 0; k < socks.length; k++) {
      const s = socks[k]
      if (s.inPlace.count > 1 && s.gso !== null && this.coalesce(s, buf)) this.sendUdp(s.gso, this.scratch, s.runs)
      else if (s.inPlace.count > 0) this.sendUdp(s.io, buf, s.inPlace)
      if (s.copied.count > 0) this.sendUdp(s.io, this.scratch, s.copied)
      if (s.gsoList.count > 0) this.sendUdp(s.gso!, this.scratch, s.gsoList)
    }
  }

  /**
   * Turns a socket's single datagrams of this batch into UDP GSO runs: each
   * stretch of consecutive datagrams to the same peer of the same size (the
   * last of a stretch may be shorter) is copied into the scratch slab back to
   * back and queued as one GSO entry, the others one by one, all in their
   * order, for one sendmmsg on the GSO socket. The kernel then moves a run of
   * small frames (ACKs, small UDP) as one packet as far as it can, as it does
   * for TCP segments. A datagram that makes no run is sent from where it is
   * when the rx batch lies in the arena (as the agent's do), else copied too.
   * Returns false, leaving inPlace as it is, when the scratch slab cannot hold
   * the copies.
   */
  private coalesce(s: TxSocket, buf: Uint8Array): boolean {
    const src = s.inPlace
    const n = src.count
    let bytes = 0
    for (let k = 0; k < n; k++) bytes += src.lens[k]
    if (this.scratchUsed + bytes > this.scratch.length) return false
    const out = this.scratch
    // Where buf starts in the arena (-1: it is memory of its own).
    const inArena = buf.buffer === out.buffer ? buf.byteOffset - out.byteOffset : -1
    const runs = s.runs
    runs.count = 0
    let k = 0
    while (k < n) {
      const size = src.lens[k]
      const addr = src.dst[3 * k]
      const port = src.dst[3 * k + 1]
      let total = size
      let j = k + 1
      while (j < n && j - k < GSO_MAX_SEGMENTS && src.dst[3 * j] === addr && src.dst[3 * j + 1] === port) {
        const l = src.lens[j]
        if (l > size || total + l > GSO_MAX_BYTES) break
        total += l
        j++
        if (l < size) break
      }
      if (j - k === 1 && inArena >= 0) {
        runs.pushTo(inArena + src.offs[k], size, addr, port, 0)
      } else {
        const at = this.scratchUsed
        for (let i = k, o = at; i < j; o += src.lens[i], i++) copyInto(out, o, buf, src.offs[i], src.offs[i] + src.lens[i])
        this.scratchUsed = at + total
        runs.pushTo(at, total, addr, port, j - k > 1 ? size : 0)
      }
      if (j - k > 1) {
        this.offloads[Offload.GsoRuns]++
        this.offloads[Offload.GsoRunDatagrams] += j - k
      }
      k = j
    }
    src.count = 0
    return true
  }

  private writePod(q: PodPort, buf: Uint8Array, tx: TxList): void {
    {
      const c = q.io.txCounters
      const eagain = c[0]
      const errs = c[1]
      if (this.capture !== null) {
        const vl = q.vnetLen
        for (let j = 0; j < tx.count; j++) {
          this.capture.frame(CapturePoint.PodTx, q.id, q.spec.vni, buf, tx.offs[j] + vl, tx.lens[j] - vl, vl > 0 ? tx.offs[j] : -1, 0, 0, 0)
        }
      }
      const w = q.io.write(buf, tx.offs, tx.lens, tx.count)
      this.drops[Drop.TxBackpressure] += c[0] - eagain
      this.drops[Drop.TxError] += c[1] - errs
      const st = q.id * 4
      this.stats[st + STAT_TX_FRAMES] += w
      let bytes = 0
      for (let j = 0; j < tx.count; j++) bytes += tx.lens[j]
      this.stats[st + STAT_TX_BYTES] += bytes
      tx.count = 0
    }
  }

  private sendUdp(io: DatagramIo, buf: Uint8Array, tx: TxList): void {
    const c = io.txCounters
    const eagain = c[0]
    const errs = c[1]
    if (this.capture !== null) {
      for (let j = 0; j < tx.count; j++) {
        // A GSO run is captured as the datagrams the kernel will make of it.
        const end = tx.offs[j] + tx.lens[j]
        const seg = tx.dst[3 * j + 2] > 0 ? tx.dst[3 * j + 2] : tx.lens[j]
        for (let o = tx.offs[j]; o < end; o += seg) {
          this.capture.frame(CapturePoint.UnderlayTx, UNDERLAY_PORT, vxlanVni(buf, o), buf, o, o + seg <= end ? seg : end - o, -1, tx.dst[3 * j], tx.dst[3 * j + 1], io.port)
        }
      }
    }
    const w = io.send(buf, tx)
    this.drops[Drop.TxBackpressure] += c[0] - eagain
    this.drops[Drop.TxError] += c[1] - errs
    this.stats[UNDERLAY_PORT * 4 + STAT_TX_FRAMES] += w
    let bytes = 0
    for (let j = 0; j < tx.count; j++) bytes += tx.lens[j]
    this.stats[UNDERLAY_PORT * 4 + STAT_TX_BYTES] += bytes
    tx.count = 0
  }

  private rebuildNet(net: Network): void {
    const ids: number[] = []
    for (let i = 1; i < MAX_PORTS; i++) {
      const p = this.pods[i]
      if (p !== null && p.spec.vni === net.vni) ids.push(i)
    }
    net.ports = Int32Array.from(ids)
    net.mtu = ids.length > 0 ? Math.max(...ids.map((i) => this.pods[i]!.spec.mtu)) : 65535
  }
}

/**
 * Whether two VXLAN packets in buf have the same VXLAN header (flags, VNI),
 * destination and source MAC and EtherType: the 22 bytes that decide where a
 * frame from the underlay goes.
 */
function sameHead(buf: Uint8Array, a: number, b: number): boolean {
  for (let i = 0; i < VXLAN_HLEN + ETH_HLEN; i++) if (buf[a + i] !== buf[b + i]) return false
  return true
}
