/**
 * Frame builders and readers for the offload and datapath tests (not a test
 * file itself). Builders write every header byte by hand from the RFC layouts
 * (Ethernet II + 802.1Q, RFC 791 §3.1, RFC 8200 §3, RFC 9293 §3.1, RFC 768,
 * RFC 826, RFC 7348 §5, struct virtio_net_hdr) rather than through the codecs
 * under test, so a codec bug cannot hide behind the same bug in the fixture.
 * Checksums use csumAdd/csumFinish (tested on their own in checksum.test.ts).
 *
 * Decoded objects and allocation are fine here: this is test code.
 */
import { csumAdd, csumFinish, csumFold, csumPseudoV4, csumPseudoV6 } from '../../../src/wire/checksum'
import { mulberry32 } from './fuzz'

// ---- addresses ----

/** "aa:bb:cc:dd:ee:ff" -> 6 bytes. */
export function macBytes(text: string): Uint8Array {
  const parts = text.split(':')
  if (parts.length !== 6) throw new Error(`bad MAC ${text}`)
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)))
}

/** MAC text -> the (hi16, lo32) pair the datapath uses. */
export function macPair(text: string): { hi: number; lo: number } {
  const b = macBytes(text)
  return { hi: (b[0] << 8) | b[1], lo: ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) >>> 0 }
}

/** Dotted quad -> unsigned u32. */
export function ip4(text: string): number {
  const p = text.split('.').map(Number)
  if (p.length !== 4 || p.some((x) => !(x >= 0 && x <= 255))) throw new Error(`bad IPv4 ${text}`)
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0
}

/** IPv6 text (with at most one "::") -> 16 bytes. */
export function ip6(text: string): Uint8Array {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const words = (s: string | undefined): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : [])
  const h = words(head)
  const t = words(tail)
  const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t]
  if (all.length !== 8) throw new Error(`bad IPv6 ${text}`)
  const out = new Uint8Array(16)
  all.forEach((w, i) => { out[2 * i] = w >>> 8; out[2 * i + 1] = w & 255 })
  return out
}

// ---- byte helpers ----

function put16(b: Uint8Array, o: number, v: number): void { b[o] = (v >>> 8) & 255; b[o + 1] = v & 255 }
function put32(b: Uint8Array, o: number, v: number): void { put16(b, o, v >>> 16); put16(b, o + 2, v & 0xffff) }
export function get16(b: Uint8Array, o: number): number { return (b[o] << 8) | b[o + 1] }
export function get32(b: Uint8Array, o: number): number { return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0 }
function le16(b: Uint8Array, o: number): number { return b[o] | (b[o + 1] << 8) }

/** `n` deterministic pseudo-random bytes (so a payload mix-up shows in a compare). */
export function pattern(n: number, seed = 1): Uint8Array {
  const rng = mulberry32(seed)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = rng() & 255
  return out
}

// ---- builders ----

export const ETHERTYPE_IPV4 = 0x0800
export const ETHERTYPE_ARP = 0x0806
export const ETHERTYPE_IPV6 = 0x86dd
export const ETHERTYPE_VLAN = 0x8100

export const MAC_1 = '02:00:00:00:00:01'
export const MAC_2 = '02:00:00:00:00:02'
export const BROADCAST = 'ff:ff:ff:ff:ff:ff'

export interface EthOpts {
  ethDst?: string
  ethSrc?: string
  /** Insert one 802.1Q tag with this VID. */
  vlan?: number
}

/** Ethernet II header (+ optional 802.1Q tag) and payload. */
export function ethFrame(o: EthOpts, type: number, payload: Uint8Array): Uint8Array {
  const tag = o.vlan !== undefined ? 4 : 0
  const f = new Uint8Array(14 + tag + payload.length)
  f.set(macBytes(o.ethDst ?? MAC_2), 0)
  f.set(macBytes(o.ethSrc ?? MAC_1), 6)
  if (o.vlan !== undefined) { put16(f, 12, ETHERTYPE_VLAN); put16(f, 14, o.vlan & 0xfff) }
  put16(f, 12 + tag, type)
  f.set(payload, 14 + tag)
  return f
}

export interface IpOpts {
  v6?: boolean
  /** IPv4 dotted quad or IPv6 text; defaults 10.0.0.1 -> 10.0.0.2 or 2001:db8::1 -> 2001:db8::2. */
  src?: string
  dst?: string
  ttl?: number
  /** IPv4 TOS, or IPv6 traffic class. */
  tos?: number
  /** IPv4 identification. */
  id?: number
  /** IPv4 DF (default true, as Linux TCP sends). */
  df?: boolean
  /** IPv4 MF flag and fragment offset in 8-byte units (both default 0). */
  mf?: boolean
  fragOffset?: number
  /** IPv4 options (a multiple of 4 bytes). */
  ipOptions?: Uint8Array
  /** IPv6 next header to write instead of the L4 protocol (to fake an extension header). */
  nextHeader?: number
}

/** IP header + L4 bytes (the L4 checksum is filled by `fill` once addresses are known). */
function ipPacket(o: IpOpts, proto: number, l4: Uint8Array, fill: (pkt: Uint8Array, l4Off: number, pseudo: number) => void): { type: number; pkt: Uint8Array } {
  if (o.v6) {
    const pkt = new Uint8Array(40 + l4.length)
    put32(pkt, 0, ((6 << 28) | ((o.tos ?? 0) << 20)) >>> 0)
    put16(pkt, 4, l4.length)
    pkt[6] = o.nextHeader ?? proto
    pkt[7] = o.ttl ?? 64
    pkt.set(ip6(o.src ?? '2001:db8::1'), 8)
    pkt.set(ip6(o.dst ?? '2001:db8::2'), 24)
    pkt.set(l4, 40)
    fill(pkt, 40, csumPseudoV6(pkt, 8, 24, proto, l4.length))
    return { type: ETHERTYPE_IPV6, pkt }
  }
  const opt = o.ipOptions ?? new Uint8Array(0)
  if (opt.length % 4 !== 0) throw new Error('IPv4 options must be a multiple of 4 bytes')
  const ihl = 20 + opt.length
  const tot = ihl + l4.length
  if (tot > 65535) throw new Error(`IPv4 packet of ${tot} bytes`)
  const pkt = new Uint8Array(tot)
  pkt[0] = 0x40 | (ihl >>> 2)
  pkt[1] = o.tos ?? 0
  put16(pkt, 2, tot)
  put16(pkt, 4, o.id ?? 0x1234)
  put16(pkt, 6, ((o.df ?? true) ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff))
  pkt[8] = o.ttl ?? 64
  pkt[9] = proto
  const src = ip4(o.src ?? '10.0.0.1')
  const dst = ip4(o.dst ?? '10.0.0.2')
  put32(pkt, 12, src)
  put32(pkt, 16, dst)
  pkt.set(opt, 20)
  put16(pkt, 10, csumFinish(csumAdd(pkt, 0, ihl, 0)))
  pkt.set(l4, ihl)
  fill(pkt, ihl, csumPseudoV4(src, dst, proto, l4.length))
  return { type: ETHERTYPE_IPV4, pkt }
}

/**
 * How the L4 checksum field is filled: 'full' (a receiver verifies it),
 * 'partial' (the folded pseudo-header sum, as a kernel leaves it for
 * VIRTIO_NET_HDR_F_NEEDS_CSUM), or a literal 16-bit value.
 */
export type CsumMode = 'full' | 'partial' | number

export interface TcpOpts extends EthOpts, IpOpts {
  sport?: number
  dport?: number
  seq?: number
  ack?: number
  /** Flags byte; default ACK (0x10). */
  flags?: number
  window?: number
  urgent?: number
  /** TCP options (a multiple of 4 bytes). */
  tcpOptions?: Uint8Array
  payload?: Uint8Array
  csum?: CsumMode
}

export const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08
export const TCP_ACK = 0x10, TCP_URG = 0x20, TCP_ECE = 0x40, TCP_CWR = 0x80

/** RFC 7323 timestamps option padded with two NOPs (12 bytes), as Linux sends on every segment. */
export function tsOption(tsval: number, tsecr: number): Uint8Array {
  const o = new Uint8Array(12)
  o[0] = 1; o[1] = 1; o[2] = 8; o[3] = 10
  put32(o, 4, tsval)
  put32(o, 8, tsecr)
  return o
}

function fillCsum(pkt: Uint8Array, field: number, l4Off: number, pseudo: number, mode: CsumMode, isUdp: boolean): void {
  if (typeof mode === 'number') { put16(pkt, field, mode); return }
  if (mode === 'partial') { put16(pkt, field, csumFold(pseudo)); return }
  put16(pkt, field, 0)
  let c = csumFinish(csumAdd(pkt, l4Off, pkt.length - l4Off, pseudo))
  if (isUdp && c === 0) c = 0xffff // RFC 768: 0 means "no checksum"
  put16(pkt, field, c)
}

/** An Ethernet + IPv4/IPv6 + TCP frame. */
export function tcpFrame(o: TcpOpts = {}): Uint8Array {
  const opts = o.tcpOptions ?? new Uint8Array(0)
  if (opts.length % 4 !== 0) throw new Error('TCP options must be a multiple of 4 bytes')
  const payload = o.payload ?? new Uint8Array(0)
  const thl = 20 + opts.length
  const l4 = new Uint8Array(thl + payload.length)
  put16(l4, 0, o.sport ?? 40000)
  put16(l4, 2, o.dport ?? 5201)
  put32(l4, 4, o.seq ?? 1000)
  put32(l4, 8, o.ack ?? 777)
  l4[12] = (thl >>> 2) << 4
  l4[13] = o.flags ?? TCP_ACK
  put16(l4, 14, o.window ?? 502)
  put16(l4, 18, o.urgent ?? 0)
  l4.set(opts, 20)
  l4.set(payload, thl)
  const { type, pkt } = ipPacket(o, 6, l4, (p, off, pseudo) => fillCsum(p, off + 16, off, pseudo, o.csum ?? 'full', false))
  return ethFrame(o, type, pkt)
}

export interface UdpOpts extends EthOpts, IpOpts {
  sport?: number
  dport?: number
  payload?: Uint8Array
  csum?: CsumMode
}

/** An Ethernet + IPv4/IPv6 + UDP frame. */
export function udpFrame(o: UdpOpts = {}): Uint8Array {
  const payload = o.payload ?? new Uint8Array(0)
  const l4 = new Uint8Array(8 + payload.length)
  put16(l4, 0, o.sport ?? 40000)
  put16(l4, 2, o.dport ?? 5201)
  put16(l4, 4, l4.length)
  l4.set(payload, 8)
  const { type, pkt } = ipPacket(o, 17, l4, (p, off, pseudo) => fillCsum(p, off + 6, off, pseudo, o.csum ?? 'full', true))
  return ethFrame(o, type, pkt)
}

/**
 * A frame with ICMP (or ICMPv6 with o.v6) as its IP protocol: a UDP frame of
 * o's with the protocol byte changed. Its L4 bytes are not a valid ICMP message;
 * for tests that look only at headers (steering, switching).
 */
export function icmpLikeFrame(o: UdpOpts = {}): Uint8Array {
  const f = udpFrame(o)
  const tag = o.vlan !== undefined ? 4 : 0
  f[14 + tag + (o.v6 ? 6 : 9)] = o.v6 ? 58 : 1
  return f
}

export interface ArpOpts extends EthOpts {
  op?: number
  sha?: string
  spa?: string
  tha?: string
  tpa: string
}

/** An Ethernet/IPv4 ARP frame (RFC 826); a request to broadcast by default. */
export function arpFrame(o: ArpOpts): Uint8Array {
  const a = new Uint8Array(28)
  put16(a, 0, 1)
  put16(a, 2, ETHERTYPE_IPV4)
  a[4] = 6
  a[5] = 4
  put16(a, 6, o.op ?? 1)
  a.set(macBytes(o.sha ?? o.ethSrc ?? MAC_1), 8)
  put32(a, 14, ip4(o.spa ?? '0.0.0.0'))
  a.set(macBytes(o.tha ?? '00:00:00:00:00:00'), 18)
  put32(a, 24, ip4(o.tpa))
  return ethFrame({ ethDst: BROADCAST, ...o }, ETHERTYPE_ARP, a)
}

/** RFC 7348 §5 VXLAN header (flags 0x08 unless given) + inner frame. */
export function vxlanPacket(vni: number, inner: Uint8Array, flags = 0x08): Uint8Array {
  const p = new Uint8Array(8 + inner.length)
  p[0] = flags
  put32(p, 4, (vni << 8) >>> 0)
  p.set(inner, 8)
  return p
}

export const VNET_F_NEEDS_CSUM = 1
export const VNET_GSO_NONE = 0
export const VNET_GSO_TCPV4 = 1
export const VNET_GSO_UDP = 3
export const VNET_GSO_TCPV6 = 4
export const VNET_GSO_UDP_L4 = 5

export interface VnetFields {
  flags?: number
  gsoType?: number
  hdrLen?: number
  gsoSize?: number
  csumStart?: number
  csumOffset?: number
}

/** struct virtio_net_hdr: flags, gso_type, then four little-endian u16s. */
export function vnetHeader(v: VnetFields = {}): Uint8Array {
  const h = new Uint8Array(10)
  h[0] = v.flags ?? 0
  h[1] = v.gsoType ?? 0
  const w = [v.hdrLen ?? 0, v.gsoSize ?? 0, v.csumStart ?? 0, v.csumOffset ?? 0]
  w.forEach((x, i) => { h[2 + 2 * i] = x & 255; h[3 + 2 * i] = x >>> 8 })
  return h
}

export function readVnet(b: Uint8Array, o = 0): Required<VnetFields> {
  return { flags: b[o], gsoType: b[o + 1], hdrLen: le16(b, o + 2), gsoSize: le16(b, o + 4), csumStart: le16(b, o + 6), csumOffset: le16(b, o + 8) }
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

// ---- readers ----

/** Where things are in an Ethernet + IPv4/IPv6 + TCP/UDP frame, and the fields the tests look at. */
export interface FrameView {
  ethLen: number
  v6: boolean
  ipOff: number
  ipHlen: number
  proto: number
  l4Off: number
  l4Hlen: number
  /** L4 header + payload, from the frame length. */
  l4Len: number
  payloadOff: number
  payload: Uint8Array
  /** IPv4 total length / IPv6 payload length field. */
  ipLenField: number
  ipId: number
  seq: number
  flags: number
  udpLen: number
  l4Csum: number
}

export function view(f: Uint8Array, off = 0, len = f.length - off): FrameView {
  const b = f.subarray(off, off + len)
  let ethLen = 14
  if (get16(b, 12) === ETHERTYPE_VLAN) ethLen = 18
  const type = get16(b, ethLen - 2)
  const v6 = type === ETHERTYPE_IPV6
  if (!v6 && type !== ETHERTYPE_IPV4) throw new Error(`not IP: ethertype ${type.toString(16)}`)
  const ipOff = ethLen
  const ipHlen = v6 ? 40 : (b[ipOff] & 15) * 4
  const proto = v6 ? b[ipOff + 6] : b[ipOff + 9]
  const l4Off = ipOff + ipHlen
  const l4Hlen = proto === 6 ? (b[l4Off + 12] >>> 4) * 4 : 8
  const payloadOff = l4Off + l4Hlen
  return {
    ethLen, v6, ipOff, ipHlen, proto, l4Off, l4Hlen,
    l4Len: b.length - l4Off,
    payloadOff,
    payload: b.slice(payloadOff),
    ipLenField: get16(b, ipOff + (v6 ? 4 : 2)),
    ipId: v6 ? 0 : get16(b, ipOff + 4),
    seq: proto === 6 ? get32(b, l4Off + 4) : 0,
    flags: proto === 6 ? b[l4Off + 13] : 0,
    udpLen: proto === 17 ? get16(b, l4Off + 4) : 0,
    l4Csum: get16(b, l4Off + (proto === 6 ? 16 : 6)),
  }
}

/** Pseudo-header + whole L4 (header and data) summed from scratch: folds to 0xffff when the checksum verifies. */
export function l4ChecksumFold(f: Uint8Array, off = 0, len = f.length - off): number {
  const v = view(f, off, len)
  const b = f.subarray(off, off + len)
  const pseudo = v.v6
    ? csumPseudoV6(b, v.ipOff + 8, v.ipOff + 24, v.proto, v.l4Len)
    : csumPseudoV4(get32(b, v.ipOff + 12), get32(b, v.ipOff + 16), v.proto, v.l4Len)
  return csumFold(csumAdd(b, v.l4Off, v.l4Len, pseudo))
}

export function l4ChecksumOk(f: Uint8Array, off = 0, len = f.length - off): boolean {
  return l4ChecksumFold(f, off, len) === 0xffff
}

/** IPv4 header checksum verifies (RFC 791 §3.1); always true for IPv6, which has none. */
export function ipv4HeaderOk(f: Uint8Array, off = 0, len = f.length - off): boolean {
  const v = view(f, off, len)
  if (v.v6) return true
  return csumFold(csumAdd(f, off + v.ipOff, v.ipHlen, 0)) === 0xffff
}

export function hexOf(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ')
}
