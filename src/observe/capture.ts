/**
 * Packet capture from inside the dataplane, written as a pcap stream.
 *
 * A CaptureSession is the datapath's CaptureHook: it picks the frames of its
 * points, port and VNI that pass its filter, and copies each into its own ring
 * as a whole pcap record. A reader (the API's HTTP response) drains the ring
 * after the batch, in a setImmediate, so the data path never waits for it.
 *
 *   datapath --frame()--> session: point/port/vni/filter --> record --> ring
 *                                                                        |
 *                          setImmediate after the batch: drain --> sink.write(whole records)
 *
 * The ring is a byte buffer of fixed size (bufferBytes), filled at `head` and
 * emptied at `tail` (both count bytes since the start; used = head - tail, a
 * record is written only if it fits whole in capacity - used). When the reader
 * is slow (its sink returned false and has not resumed) the ring fills and new
 * frames are dropped and counted: memory stays bounded whatever the traffic.
 *
 * What a record holds:
 * - pod points: the Ethernet frame. When the pod's kernel left a partial
 *   checksum (virtio-net NEEDS_CSUM), it is completed in the COPY, so Wireshark
 *   sees a valid checksum; the datapath's buffer is never written.
 * - underlay points, outerHeaders on (--underlay): outer Ethernet + IPv4 + UDP
 *   rebuilt in front of the VXLAN payload (writeUnderlayHeaders), so tools
 *   decode "VXLAN, VNI n" and the inner frame.
 * - underlay points, outerHeaders off (--vni): the inner frame alone.
 *
 * Rules:
 * - frame() never allocates (the ring, scratch and timestamp array are made
 *   once) and never detaches a hook: the datapath reads `capture` again for each
 *   frame of a loop, so hooks change only from timers and I/O callbacks.
 * - With no capture running, datapath.capture is null and the datapath's cost is
 *   one field comparison per frame (see CaptureHub).
 *
 * Cost, measured with bench/lib/micro-cases' "datapath pod batch -> VXLAN" case
 * (64 x 1400 B frames a batch, a setImmediate between batches as the drain
 * needs; medians of 5, one core of the dev VM, Node 20): no capture 132-137 ns
 * a frame, the same before and after a capture ran (no lasting deopt); a
 * capture attached that rejects every frame (another pod) +18 ns; capturing
 * every underlay datagram (copy into the ring, outer headers, the drain's copy)
 * +520 ns.
 */
import { CaptureHook, CapturePoint } from '../datapath/datapath'
import { SLOT_SUPER } from '../lib/batch'
import { ETH_HLEN, ETHERTYPE_IPV4, ethWriteHeader } from '../wire/ethernet'
import { IPV4_HLEN_MIN, IPV4_TTL_DEFAULT, PROTO_UDP, ipv4WriteHeader } from '../wire/ipv4'
import { UDP_HLEN, udpWriteHeader } from '../wire/udp'
import { VXLAN_HLEN } from '../wire/vxlan'
import { VNET_F_NEEDS_CSUM, vnetCompleteChecksum, vnetCsumOffset, vnetCsumStart, vnetFlags } from '../wire/vnet'
import { FramePredicate } from './filter'
import { LINKTYPE_ETHERNET, PCAP_DEFAULT_SNAPLEN, PCAP_REC_HLEN, pcapFileHeader, pcapTimestamp, pcapWriteRecordHeader } from './pcap'

/** Outer headers rebuilt in front of a VXLAN payload: Ethernet 14 + IPv4 20 + UDP 8. */
export const UNDERLAY_HLEN = ETH_HLEN + IPV4_HLEN_MIN + UDP_HLEN
/** High 16 bits of the placeholder MACs of rebuilt outer headers: 02:00 (locally administered) then the IPv4 address. */
export const UNDERLAY_MAC_HI = 0x0200

export const CAPTURE_DEFAULT_BUFFER_BYTES = 4 << 20
export const CAPTURE_MIN_BUFFER_BYTES = 64 << 10
export const CAPTURE_MAX_BUFFER_BYTES = 256 << 20
/** Largest frame the datapath hands over (a TSO super-frame in a SLOT_SUPER slot). */
const MAX_FRAME = SLOT_SUPER

/** Bit of a CapturePoint in CaptureOptions.points. */
export function pointBit(p: CapturePoint): number {
  return 1 << p
}
export const POD_POINTS = pointBit(CapturePoint.PodRx) | pointBit(CapturePoint.PodTx)
export const UNDERLAY_POINTS = pointBit(CapturePoint.UnderlayRx) | pointBit(CapturePoint.UnderlayTx)

/**
 * Writes outer Ethernet, IPv4 and UDP headers (UNDERLAY_HLEN bytes, every byte
 * set) for a UDP payload of `payloadLen` bytes from src:sport to dst:dport.
 * The dataplane never sees the underlay's real MACs (the kernel routes its UDP
 * socket), so the MACs are placeholders 02:00:<IPv4 address>. IPv4: no
 * options, DF clear, TTL 64, ID 0, header checksum computed. UDP checksum 0
 * ("none", allowed over IPv4 by RFC 768 and RFC 7348 §5, and what our sockets send).
 */
export function writeUnderlayHeaders(buf: Uint8Array, off: number, src: number, sport: number, dst: number, dport: number, payloadLen: number): number {
  ethWriteHeader(buf, off, UNDERLAY_MAC_HI, dst, UNDERLAY_MAC_HI, src, ETHERTYPE_IPV4)
  const ip = off + ETH_HLEN
  const udpLen = UDP_HLEN + payloadLen
  ipv4WriteHeader(buf, ip, IPV4_HLEN_MIN + udpLen, 0, false, IPV4_TTL_DEFAULT, PROTO_UDP, src >>> 0, dst >>> 0)
  udpWriteHeader(buf, ip + IPV4_HLEN_MIN, sport, dport, udpLen, 0)
  return UNDERLAY_HLEN
}

/** Why a capture ended. */
export type CaptureEnd = 'count' | 'duration' | 'closed' | 'shutdown' | 'stopped'

/** Where a session's pcap stream goes (an HTTP response, a file, a test array). */
export interface CaptureSink {
  /** Takes whole pcap bytes; returns false to pause until the session's resume(). */
  write(chunk: Buffer): boolean
  /** Called once after the last write, unless the capture was aborted. */
  end(reason: CaptureEnd): void
}

export interface CaptureOptions {
  /** Bitmask of pointBit(CapturePoint). */
  points: number
  /** Datapath port id, or -1 for any. */
  port?: number
  /** VNI, or -1 for any. */
  vni?: number
  filter?: FramePredicate | null
  /** Stop after this many records; 0 = no limit. */
  count?: number
  /** Stop after this many seconds; 0 = no limit. */
  durationS?: number
  snaplen?: number
  bufferBytes?: number
  /** Underlay points: rebuild outer headers (true) or record the inner frame (false). */
  outerHeaders?: boolean
  /** Our underlay IPv4 address, for rebuilt outer headers. */
  localAddr?: number
  /** Wall clock in ms since the epoch (injected by tests). */
  now?: () => number
}

/** Copies [sourceStart, sourceEnd) of `this` into target at targetStart, with no view allocated (works on any Uint8Array). */
const copyBytes = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number

export class CaptureSession implements CaptureHook {
  /** Records written to the ring. */
  captured = 0
  /** Records lost because the ring was full (the reader was slower than the traffic). */
  dropped = 0
  /** Why it ended, once it has. */
  endReason: CaptureEnd | null = null

  readonly points: number
  readonly port: number
  readonly vni: number
  readonly count: number
  readonly snaplen: number
  private readonly filter: FramePredicate | null
  private readonly outer: boolean
  private readonly localAddr: number
  private readonly now: () => number
  private readonly ring: Uint8Array
  private head = 0
  private tail = 0
  private readonly hdr = new Uint8Array(PCAP_REC_HLEN + UNDERLAY_HLEN)
  private readonly fix = new Uint8Array(MAX_FRAME)
  private readonly ts = new Uint32Array(2)
  private accepting = true
  private paused = false
  private scheduled = false
  private finishing: CaptureEnd | null = null
  private timer: NodeJS.Timeout | null = null
  private readonly onImmediate = (): void => this.drain()

  constructor(opts: CaptureOptions, private readonly sink: CaptureSink, private readonly detach: (s: CaptureSession) => void) {
    this.points = opts.points
    this.port = opts.port ?? -1
    this.vni = opts.vni ?? -1
    this.filter = opts.filter ?? null
    this.count = opts.count ?? 0
    this.snaplen = opts.snaplen ?? PCAP_DEFAULT_SNAPLEN
    this.outer = opts.outerHeaders ?? true
    this.localAddr = (opts.localAddr ?? 0) >>> 0
    this.now = opts.now ?? (() => performance.timeOrigin + performance.now())
    this.ring = new Uint8Array(Math.min(CAPTURE_MAX_BUFFER_BYTES, Math.max(CAPTURE_MIN_BUFFER_BYTES, opts.bufferBytes ?? CAPTURE_DEFAULT_BUFFER_BYTES)))
    this.sink.write(pcapFileHeader(this.snaplen, LINKTYPE_ETHERNET))
    if (opts.durationS && opts.durationS > 0) {
      this.timer = setTimeout(() => this.finish('duration'), opts.durationS * 1000)
    }
  }

  get running(): boolean {
    return this.endReason === null
  }

  /** The CaptureHook: see CaptureHook in datapath.ts for the arguments. */
  frame(point: CapturePoint, port: number, vni: number, buf: Uint8Array, off: number, len: number,
    vnetOff: number, addr: number, udpPort: number, localPort: number): void {
    if (!this.accepting || (this.points & (1 << point)) === 0) return
    if ((this.port >= 0 && port !== this.port) || (this.vni >= 0 && vni !== this.vni)) return
    const underlay = point === CapturePoint.UnderlayRx || point === CapturePoint.UnderlayTx
    // The filter always looks at the Ethernet frame: for underlay points the inner one.
    const fOff = underlay ? off + VXLAN_HLEN : off
    const fLen = underlay ? len - VXLAN_HLEN : len
    if (this.filter !== null && !this.filter(buf, fOff, fLen, vni)) return
    let hlen = PCAP_REC_HLEN
    let src = buf
    let srcOff = fOff
    let srcLen = fLen
    if (underlay && this.outer) {
      const tx = point === CapturePoint.UnderlayTx
      // tx: from us (the socket's port) to the peer; rx: from the peer to us.
      writeUnderlayHeaders(this.hdr, hlen, tx ? this.localAddr : addr, tx ? localPort : udpPort,
        tx ? addr : this.localAddr, tx ? udpPort : localPort, len)
      hlen += UNDERLAY_HLEN
      srcOff = off
      srcLen = len
    } else if (vnetOff >= 0 && (vnetFlags(buf, vnetOff) & VNET_F_NEEDS_CSUM) !== 0 && fLen <= MAX_FRAME) {
      copyBytes.call(buf, this.fix, 0, fOff, fOff + fLen)
      vnetCompleteChecksum(this.fix, 0, fLen, vnetCsumStart(buf, vnetOff), vnetCsumOffset(buf, vnetOff))
      src = this.fix
      srcOff = 0
    }
    if (srcLen <= 0) return
    const origLen = hlen - PCAP_REC_HLEN + srcLen
    const inclLen = origLen < this.snaplen ? origLen : this.snaplen
    const recLen = PCAP_REC_HLEN + inclLen
    if (recLen > this.ring.length - (this.head - this.tail)) { this.dropped++; return }
    pcapTimestamp(this.now(), this.ts)
    pcapWriteRecordHeader(this.hdr, 0, this.ts[0], this.ts[1], inclLen, origLen)
    const fromHdr = hlen < recLen ? hlen : recLen
    this.put(this.hdr, 0, fromHdr)
    if (recLen > fromHdr) this.put(src, srcOff, recLen - fromHdr)
    this.captured++
    if (this.count > 0 && this.captured >= this.count) {
      this.accepting = false
      this.finishing = 'count'
    }
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.onImmediate)
    }
  }

  /** The sink can take more (after it returned false). */
  resume(): void {
    if (!this.paused) return
    this.paused = false
    this.drain()
  }

  /**
   * Ends the capture: no more frames, every record in the ring goes to the sink
   * (ignoring backpressure: at most bufferBytes), then sink.end(reason).
   */
  finish(reason: CaptureEnd): void {
    if (this.endReason !== null) return
    this.endReason = reason
    this.accepting = false
    this.stopTimer()
    this.detach(this)
    const rest = this.take()
    if (rest !== null) this.sink.write(rest)
    this.sink.end(reason)
  }

  /** Ends the capture without writing anything more (the reader is gone). */
  abort(): void {
    if (this.endReason !== null) return
    this.endReason = 'closed'
    this.accepting = false
    this.stopTimer()
    this.detach(this)
    this.tail = this.head
  }

  private drain(): void {
    this.scheduled = false
    if (this.endReason !== null) return
    if (this.finishing !== null) { this.finish(this.finishing); return }
    if (this.paused) return
    const chunk = this.take()
    if (chunk !== null && !this.sink.write(chunk)) this.paused = true
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }

  private put(src: Uint8Array, srcOff: number, n: number): void {
    const cap = this.ring.length
    const pos = this.head % cap
    const first = n < cap - pos ? n : cap - pos
    copyBytes.call(src, this.ring, pos, srcOff, srcOff + first)
    if (first < n) copyBytes.call(src, this.ring, 0, srcOff + first, srcOff + n)
    this.head += n
  }

  /** Everything in the ring as one Buffer (whole records), or null when empty. */
  private take(): Buffer | null {
    const used = this.head - this.tail
    if (used === 0) return null
    const cap = this.ring.length
    const pos = this.tail % cap
    const out = Buffer.allocUnsafe(used)
    const first = used < cap - pos ? used : cap - pos
    copyBytes.call(this.ring, out, 0, pos, pos + first)
    if (first < used) copyBytes.call(this.ring, out, first, 0, used - first)
    this.tail = this.head
    return out
  }
}

/** What a hub attaches to: the datapath's `capture` field. */
export interface CaptureTarget {
  capture: CaptureHook | null
}

/**
 * Attaches captures to the datapath: none running -> `capture = null` (the
 * datapath pays one comparison per frame); one -> that session itself; several
 * -> the hub, which hands each frame to every session. The session list is
 * replaced, never mutated, so a frame loop always sees a stable array.
 */
export class CaptureHub implements CaptureHook {
  private sessions: readonly CaptureSession[] = []

  constructor(private readonly target: CaptureTarget, private readonly localAddr: number) {}

  get size(): number {
    return this.sessions.length
  }

  /** Starts a capture: writes the pcap file header to the sink and attaches. */
  start(opts: CaptureOptions, sink: CaptureSink): CaptureSession {
    const s = new CaptureSession({ localAddr: this.localAddr, ...opts }, sink, (x) => this.remove(x))
    this.sessions = [...this.sessions, s]
    this.attach()
    return s
  }

  /** Ends every running capture (agent shutdown): each sink gets its last records and end(reason). */
  stopAll(reason: CaptureEnd): void {
    for (const s of this.sessions) s.finish(reason)
  }

  frame(point: CapturePoint, port: number, vni: number, buf: Uint8Array, off: number, len: number,
    vnetOff: number, addr: number, udpPort: number, localPort: number): void {
    const ss = this.sessions
    for (let i = 0; i < ss.length; i++) ss[i].frame(point, port, vni, buf, off, len, vnetOff, addr, udpPort, localPort)
  }

  private remove(s: CaptureSession): void {
    this.sessions = this.sessions.filter((x) => x !== s)
    this.attach()
  }

  private attach(): void {
    const n = this.sessions.length
    this.target.capture = n === 0 ? null : n === 1 ? this.sessions[0] : this
  }
}
