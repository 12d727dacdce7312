/**
 * ICMP echo probes to peer VTEPs over a raw socket (the `raw-socket` addon):
 * the peer's kernel answers, so no software is needed on the other side (a
 * kernel VXLAN host answers too).
 *
 * Every probe leaves with Don't Fragment set. The socket uses
 * IP_MTU_DISCOVER = IP_PMTUDISC_PROBE, as tracepath does: DF on every packet,
 * and a packet larger than the outgoing interface's MTU is refused at once
 * (EMSGSIZE), but the kernel's cached path MTU of the destination is not
 * applied, so each probe tests the path as it is now and a path that has
 * recovered is seen at the next probe (with IP_PMTUDISC_DO a learned path MTU
 * would refuse probes for up to 10 minutes). Where the kernel lacks PROBE,
 * IP_PMTUDISC_DO is used.
 *
 * A probe ends exactly once: an echo reply from the peer, an ICMP error about
 * it (fragmentation needed: too big, with the next-hop MTU; other
 * unreachables), a send error, its timeout, or close() (aborted).
 *
 * Nothing here touches the datapath: the socket only receives ICMP (an
 * ICMP_FILTER passes echo replies, destination unreachable and time exceeded)
 * and sends a few packets per peer and interval.
 */
import {
  ICMP_CODE_FRAG_NEEDED, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HLEN, ICMP_TIME_EXCEEDED,
  icmpCode, icmpEchoId, icmpEchoSeq, icmpFillChecksum, icmpMtu, icmpType, icmpWriteEcho,
} from '../wire/icmp'
import { IPV4_HLEN_MIN, PROTO_ICMP, ipv4Dst, ipv4Ihl, ipv4Proto, ipv4Src } from '../wire/ipv4'
import { ipv4Format } from '../wire/addr'

/** The outcome of one probe. */
export type ProbeResult =
  | { ok: true; rttMs: number }
  | { ok: false; why: 'timeout' }
  /** Too big for the path: refused by this host (from null: an interface MTU here is smaller) or ICMP "fragmentation needed" from `from`. */
  | { ok: false; why: 'too-big'; mtu: number | null; from: string | null }
  /** ICMP destination unreachable (other than too big) or time exceeded, or a send error. */
  | { ok: false; why: 'unreachable'; detail: string }
  /** The transport closed before the probe ended: not a result about the peer. */
  | { ok: false; why: 'aborted' }

/** What the prober needs from a transport (a fake one in unit tests). */
export interface EchoTransport {
  /** Sends an echo request whose IP packet is `size` bytes, DF set; `done` is called once. */
  send(addr: number, size: number, timeoutMs: number, done: (r: ProbeResult) => void): void
  /** False once the socket is gone (an error closed it): the prober opens another. */
  readonly open: boolean
  /** Ends every pending probe as aborted and closes the socket. */
  close(): void
}

// ---- Packets

/** IPv4 header (no options) + ICMP header: what an echo request of `size` IP bytes carries besides its payload. */
export const ECHO_OVERHEAD = IPV4_HLEN_MIN + ICMP_HLEN
/** Payload of our echo requests starts with this, then a 32-bit probe number. */
export const PROBE_MAGIC = 0x54505931 // "TPY1"
/** The smallest probe we send: headers plus magic and probe number. */
export const ECHO_MIN_SIZE = ECHO_OVERHEAD + 8

/**
 * Writes an echo request of `size` IP bytes (the ICMP message is size - 20
 * bytes: the kernel adds the IPv4 header) into a new buffer.
 */
export function buildEchoRequest(size: number, id: number, seq: number, token: number): Buffer {
  const len = Math.max(size, ECHO_MIN_SIZE) - IPV4_HLEN_MIN
  const buf = Buffer.alloc(len)
  icmpWriteEcho(buf, 0, ICMP_ECHO_REQUEST, id, seq)
  buf.writeUInt32BE(PROBE_MAGIC, ICMP_HLEN)
  buf.writeUInt32BE(token >>> 0, ICMP_HLEN + 4)
  icmpFillChecksum(buf, 0, len)
  return buf
}

/** An ICMP packet as the raw socket hands it over (IPv4 header included), reduced to what matching needs. */
export type IcmpIn =
  | { kind: 'echo-reply'; from: number; id: number; seq: number; token: number | null }
  /** An error quoting one of our echo requests: `to` its destination, `mtu` the next-hop MTU (frag needed) or 0. */
  | { kind: 'error'; from: number; type: number; code: number; mtu: number; to: number; id: number; seq: number }

/** Parses a received IPv4 packet; null when it is not an echo reply nor an ICMP error about an echo request. */
export function parseIcmpPacket(buf: Uint8Array, len: number): IcmpIn | null {
  if (len > buf.length) len = buf.length
  if (len < IPV4_HLEN_MIN || buf[0] >> 4 !== 4) return null
  const ihl = ipv4Ihl(buf, 0)
  if (ihl < IPV4_HLEN_MIN || ipv4Proto(buf, 0) !== PROTO_ICMP || len < ihl + ICMP_HLEN) return null
  const from = ipv4Src(buf, 0)
  const type = icmpType(buf, ihl)
  if (type === ICMP_ECHO_REPLY) {
    const p = ihl + ICMP_HLEN
    const token = len >= p + 8 && buf[p] === 0x54 && buf[p + 1] === 0x50 && buf[p + 2] === 0x59 && buf[p + 3] === 0x31
      ? ((buf[p + 4] << 24) | (buf[p + 5] << 16) | (buf[p + 6] << 8) | buf[p + 7]) >>> 0 : null
    return { kind: 'echo-reply', from, id: icmpEchoId(buf, ihl), seq: icmpEchoSeq(buf, ihl), token }
  }
  if (type !== ICMP_DEST_UNREACH && type !== ICMP_TIME_EXCEEDED) return null
  // The quoted datagram: our IPv4 header and at least the first 8 bytes of our ICMP header (RFC 792).
  const inner = ihl + ICMP_HLEN
  if (len < inner + IPV4_HLEN_MIN || buf[inner] >> 4 !== 4) return null
  const innerIhl = ipv4Ihl(buf, inner)
  if (innerIhl < IPV4_HLEN_MIN || ipv4Proto(buf, inner) !== PROTO_ICMP || len < inner + innerIhl + ICMP_HLEN) return null
  const q = inner + innerIhl
  if (icmpType(buf, q) !== ICMP_ECHO_REQUEST) return null
  const code = icmpCode(buf, ihl)
  return {
    kind: 'error', from, type, code,
    mtu: type === ICMP_DEST_UNREACH && code === ICMP_CODE_FRAG_NEEDED ? icmpMtu(buf, ihl) : 0,
    to: ipv4Dst(buf, inner), id: icmpEchoId(buf, q), seq: icmpEchoSeq(buf, q),
  }
}

const UNREACH_CODES: Record<number, string> = {
  0: 'network unreachable', 1: 'host unreachable', 2: 'protocol unreachable', 3: 'port unreachable',
  5: 'source route failed', 6: 'destination network unknown', 7: 'destination host unknown',
  9: 'network administratively prohibited', 10: 'host administratively prohibited',
  13: 'communication administratively prohibited',
}

/** What an ICMP error about a probe means for it. */
export function errorResult(e: Extract<IcmpIn, { kind: 'error' }>): ProbeResult {
  const from = ipv4Format(e.from)
  if (e.type === ICMP_DEST_UNREACH && e.code === ICMP_CODE_FRAG_NEEDED) {
    return { ok: false, why: 'too-big', mtu: e.mtu > 0 ? e.mtu : null, from }
  }
  if (e.type === ICMP_TIME_EXCEEDED) return { ok: false, why: 'unreachable', detail: `ICMP time exceeded from ${from}` }
  return { ok: false, why: 'unreachable', detail: `ICMP ${UNREACH_CODES[e.code] ?? `destination unreachable (code ${e.code})`} from ${from}` }
}

/** A send error: EMSGSIZE means an interface MTU on this host is below the probe's size. */
export function sendErrorResult(err: Error): ProbeResult {
  const m = err.message
  if (/message too long/i.test(m) || (err as NodeJS.ErrnoException).code === 'EMSGSIZE') return { ok: false, why: 'too-big', mtu: null, from: null }
  return { ok: false, why: 'unreachable', detail: `send failed: ${m}` }
}

// ---- The raw socket

/** The part of the raw-socket module used here (it ships no types). */
interface RawSocketModule {
  createSocket(opts: { protocol: number; addressFamily?: number; bufferSize?: number }): RawSocket
  Protocol: { ICMP: number }
}
interface RawSocket {
  on(ev: 'message', fn: (buf: Buffer, source: string) => void): unknown
  on(ev: 'error', fn: (err: Error) => void): unknown
  on(ev: 'close', fn: () => void): unknown
  send(buf: Buffer, off: number, len: number, addr: string, after: (err: Error | null, bytes: number) => void): unknown
  setOption(level: number, option: number, value: number): void
  close(): unknown
}

/** <linux/in.h> */
const IPPROTO_IP = 0
const IP_MTU_DISCOVER = 10
const IP_PMTUDISC_DO = 2
const IP_PMTUDISC_PROBE = 3
/** <linux/icmp.h>: ICMP_FILTER on SOL_RAW, a mask of ICMP types to drop. */
const SOL_RAW = 255
const ICMP_FILTER = 1
/** Read size: enough for headers and our payload's first bytes (a longer reply is truncated, which is fine). */
const RECV_BUFFER = 2048

interface Pending {
  addr: number
  token: number
  queuedAt: number
  sentAt: number
  timer: NodeJS.Timeout
  done: (r: ProbeResult) => void
}

/** Loads the addon; throws an Error that says what is missing. */
function loadRawSocket(): RawSocketModule {
  try {
    return require('raw-socket') as RawSocketModule
  } catch (err) {
    throw new Error(`the raw-socket addon did not load (${(err as Error).message.split('\n')[0]}); run \`npm ci\` with its install script allowed (scripts/setup.sh builds it)`)
  }
}

export class RawIcmpTransport implements EchoTransport {
  private readonly sock: RawSocket
  private readonly pending = new Map<number, Pending>()
  private readonly id: number
  private seq = 0
  private token = 0
  private alive = true
  /** How DF is set: 'probe' (IP_PMTUDISC_PROBE) or 'do' (IP_PMTUDISC_DO). */
  readonly pmtuMode: 'probe' | 'do'

  /**
   * Opens the socket (needs CAP_NET_RAW); throws an Error saying why not.
   * `onError` hears socket errors after opening (the prober logs them).
   */
  constructor(private readonly onError: (err: Error) => void = () => undefined, private readonly now: () => number = () => performance.now()) {
    const raw = loadRawSocket()
    try {
      this.sock = raw.createSocket({ protocol: raw.Protocol.ICMP, bufferSize: RECV_BUFFER })
    } catch (err) {
      throw new Error(`cannot open an ICMP raw socket: ${(err as Error).message} (the agent needs CAP_NET_RAW)`)
    }
    let mode: 'probe' | 'do' = 'probe'
    try {
      this.sock.setOption(IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    } catch {
      try {
        this.sock.setOption(IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        mode = 'do'
      } catch (err) {
        this.sock.close()
        throw new Error(`cannot set Don't Fragment on the ICMP socket: ${(err as Error).message}`)
      }
    }
    this.pmtuMode = mode
    try {
      // Only echo replies and the errors about our requests reach this socket.
      const keep = (1 << ICMP_ECHO_REPLY) | (1 << ICMP_DEST_UNREACH) | (1 << ICMP_TIME_EXCEEDED)
      this.sock.setOption(SOL_RAW, ICMP_FILTER, ~keep >>> 0)
    } catch {
      /* without the filter every ICMP packet is read and ignored */
    }
    this.id = (process.pid ^ Math.floor(Math.random() * 0x10000)) & 0xffff
    this.sock.on('message', (buf) => this.receive(buf))
    this.sock.on('error', (err) => this.onError(err))
    this.sock.on('close', () => { this.alive = false; this.abortAll() })
  }

  get open(): boolean {
    return this.alive
  }

  send(addr: number, size: number, timeoutMs: number, done: (r: ProbeResult) => void): void {
    if (!this.alive) { done({ ok: false, why: 'aborted' }); return }
    this.seq = (this.seq + 1) & 0xffff
    this.token = (this.token + 1) >>> 0
    const seq = this.seq
    const old = this.pending.get(seq)
    if (old) this.finish(seq, old, { ok: false, why: 'timeout' })
    const p: Pending = {
      addr, token: this.token, queuedAt: this.now(), sentAt: -1, done,
      timer: setTimeout(() => this.finish(seq, p, { ok: false, why: 'timeout' }), timeoutMs),
    }
    p.timer.unref()
    this.pending.set(seq, p)
    const pkt = buildEchoRequest(size, this.id, seq, p.token)
    this.sock.send(pkt, 0, pkt.length, ipv4Format(addr), (err) => {
      if (err) this.finish(seq, p, sendErrorResult(err))
      else p.sentAt = this.now()
    })
  }

  close(): void {
    if (!this.alive) return
    this.alive = false
    this.abortAll()
    try { this.sock.close() } catch { /* already closed */ }
  }

  private abortAll(): void {
    for (const [seq, p] of [...this.pending]) this.finish(seq, p, { ok: false, why: 'aborted' })
  }

  private finish(seq: number, p: Pending, r: ProbeResult): void {
    if (this.pending.get(seq) !== p) return
    this.pending.delete(seq)
    clearTimeout(p.timer)
    p.done(r)
  }

  private receive(buf: Buffer): void {
    const m = parseIcmpPacket(buf, buf.length)
    if (!m || m.id !== this.id) return
    const p = this.pending.get(m.seq)
    if (!p) return
    if (m.kind === 'echo-reply') {
      if (m.from !== p.addr || (m.token !== null && m.token !== p.token)) return
      const t = this.now()
      this.finish(m.seq, p, { ok: true, rttMs: t - (p.sentAt >= 0 ? p.sentAt : p.queuedAt) })
    } else {
      if (m.to !== p.addr) return
      this.finish(m.seq, p, errorResult(m))
    }
  }
}
