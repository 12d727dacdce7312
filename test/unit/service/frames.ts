/**
 * Frame builders and readers for the service tests (not a test file itself).
 * Frames are built with the wire codecs at a non-zero offset inside a larger
 * 0xa5-filled buffer (room behind for in-place answers), so every read and
 * write goes through offsets.
 */
import assert from 'node:assert/strict'
import { ipv4Format, ipv4Parse, macFormat, macParse } from '../../../src/wire/addr'
import { csumAdd, csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import { ETH_HLEN, ETH_OFF_DST, ETH_OFF_SRC, ETHERTYPE_IPV4, ethWriteHeader, macHi, macLo } from '../../../src/wire/ethernet'
import { ICMP_HLEN, icmpChecksumOk, icmpWriteHeader, icmpFillChecksum } from '../../../src/wire/icmp'
import {
  IPV4_HLEN_MIN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipv4Dst, ipv4HeaderChecksumOk, ipv4Ihl, ipv4Proto, ipv4Src,
  ipv4TotalLen, ipv4WriteHeader,
} from '../../../src/wire/ipv4'
import {
  TCP_HLEN_MIN, tcpAck, tcpChecksumOkV4, tcpDstPort, tcpFillChecksumV4, tcpFlags, tcpSeq, tcpSrcPort, tcpWriteHeader,
  TCP_OFF_CSUM,
} from '../../../src/wire/tcp'
import { UDP_HLEN, UDP_OFF_CSUM, udpChecksumOkV4, udpDstPort, udpFillChecksumV4, udpSrcPort, udpWriteHeader } from '../../../src/wire/udp'
import { putU16 } from '../../../src/wire/byteorder'

export const ROUTER_MAC = '02:74:61:70:00:01'
export const FRAME_OFF = 64
export const BUF_LEN = 2048

export const ip = (t: string): number => {
  const a = ipv4Parse(t)
  if (a < 0) throw new Error(`bad IPv4 in test: ${t}`)
  return a
}

export interface PktSpec {
  proto: 'tcp' | 'udp'
  src: string
  dst: string
  sport: number
  dport: number
  /** TCP flags (TCP_SYN ...); default ACK. */
  flags?: number
  seq?: number
  ack?: number
  payload?: number[] | Uint8Array
  srcMac?: string
  dstMac?: string
  /** UDP: send checksum 0 ("none"). */
  noCsum?: boolean
  /** Leave the L4 checksum as a partial (pseudo-header sum only, virtio NEEDS_CSUM). */
  partial?: boolean
  ttl?: number
}

export interface Frame { buf: Uint8Array; off: number; l3: number; len: number }

function mac(text: string): { hi: number; lo: number } {
  const m = macParse(text)
  if (m === null) throw new Error(`bad MAC in test: ${text}`)
  return m
}

/** An Ethernet + IPv4 + TCP/UDP frame at FRAME_OFF in a BUF_LEN buffer. */
export function frame(p: PktSpec): Frame {
  const buf = new Uint8Array(BUF_LEN).fill(0xa5)
  const off = FRAME_OFF
  const d = mac(p.dstMac ?? ROUTER_MAC)
  const s = mac(p.srcMac ?? '02:00:00:00:00:0c')
  ethWriteHeader(buf, off, d.hi, d.lo, s.hi, s.lo, ETHERTYPE_IPV4)
  const l3 = off + ETH_HLEN
  const payload = p.payload instanceof Uint8Array ? p.payload : Uint8Array.from(p.payload ?? [])
  const l4len = (p.proto === 'tcp' ? TCP_HLEN_MIN : UDP_HLEN) + payload.length
  ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + l4len, 0x1234, true, p.ttl ?? 64,
    p.proto === 'tcp' ? PROTO_TCP : PROTO_UDP, ip(p.src), ip(p.dst))
  const l4 = l3 + IPV4_HLEN_MIN
  if (p.proto === 'tcp') {
    tcpWriteHeader(buf, l4, p.sport, p.dport, p.seq ?? 1000, p.ack ?? 0, p.flags ?? 0x10, 65535)
    buf.set(payload, l4 + TCP_HLEN_MIN)
    if (p.partial) putU16(buf, l4 + TCP_OFF_CSUM, csumFold(csumPseudoV4(ip(p.src), ip(p.dst), PROTO_TCP, l4len)))
    else tcpFillChecksumV4(buf, l3, l4, l4len)
  } else {
    udpWriteHeader(buf, l4, p.sport, p.dport, l4len, 0)
    buf.set(payload, l4 + UDP_HLEN)
    if (p.partial) putU16(buf, l4 + UDP_OFF_CSUM, csumFold(csumPseudoV4(ip(p.src), ip(p.dst), PROTO_UDP, l4len)))
    else if (!p.noCsum) udpFillChecksumV4(buf, l3, l4)
  }
  return { buf, off, l3, len: ETH_HLEN + IPV4_HLEN_MIN + l4len }
}

export interface Decoded {
  dstMac: string
  srcMac: string
  proto: number
  src: string
  dst: string
  sport: number
  dport: number
  flags: number
  seq: number
  ack: number
  ipCsumOk: boolean
  l4CsumOk: boolean
  totalLen: number
}

/** Reads back a TCP/UDP frame and verifies its checksums from scratch. */
export function decode(f: Frame, len = f.len): Decoded {
  const { buf, off, l3 } = f
  const proto = ipv4Proto(buf, l3)
  const l4 = l3 + ipv4Ihl(buf, l3)
  const l4len = ipv4TotalLen(buf, l3) - ipv4Ihl(buf, l3)
  assert.equal(off + len, l3 + ipv4TotalLen(buf, l3), 'frame length agrees with the IPv4 total length')
  const tcp = proto === PROTO_TCP
  return {
    dstMac: macFormat(macHi(buf, off + ETH_OFF_DST), macLo(buf, off + ETH_OFF_DST)),
    srcMac: macFormat(macHi(buf, off + ETH_OFF_SRC), macLo(buf, off + ETH_OFF_SRC)),
    proto,
    src: ipv4Format(ipv4Src(buf, l3)),
    dst: ipv4Format(ipv4Dst(buf, l3)),
    sport: tcp ? tcpSrcPort(buf, l4) : udpSrcPort(buf, l4),
    dport: tcp ? tcpDstPort(buf, l4) : udpDstPort(buf, l4),
    flags: tcp ? tcpFlags(buf, l4) : 0,
    seq: tcp ? tcpSeq(buf, l4) : 0,
    ack: tcp ? tcpAck(buf, l4) : 0,
    ipCsumOk: ipv4HeaderChecksumOk(buf, l3),
    l4CsumOk: tcp ? tcpChecksumOkV4(buf, l3, l4, l4len) : proto === PROTO_UDP ? udpChecksumOkV4(buf, l3, l4) : icmpChecksumOk(buf, l4, l4len),
    totalLen: ipv4TotalLen(buf, l3),
  }
}

/**
 * An ICMP error (type/code) from `src` to `dst` embedding the first `quote`
 * bytes of the IPv4 packet of `about` (default: IP header + 8 bytes).
 */
export function icmpErrorFrame(src: string, dst: string, type: number, code: number, about: Frame, quote?: number, rest = 0): Frame {
  const buf = new Uint8Array(BUF_LEN).fill(0xa5)
  const off = FRAME_OFF
  const d = mac(ROUTER_MAC)
  const s = mac('02:00:00:00:00:0b')
  ethWriteHeader(buf, off, d.hi, d.lo, s.hi, s.lo, ETHERTYPE_IPV4)
  const l3 = off + ETH_HLEN
  const q = quote ?? ipv4Ihl(about.buf, about.l3) + 8
  ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + ICMP_HLEN + q, 7, false, 64, PROTO_ICMP, ip(src), ip(dst))
  const icmp = l3 + IPV4_HLEN_MIN
  icmpWriteHeader(buf, icmp, type, code, rest)
  buf.set(about.buf.subarray(about.l3, about.l3 + q), icmp + ICMP_HLEN)
  icmpFillChecksum(buf, icmp, ICMP_HLEN + q)
  return { buf, off, l3, len: ETH_HLEN + IPV4_HLEN_MIN + ICMP_HLEN + q }
}

/** The embedded packet of an ICMP error frame, as a Frame view (l3 = embedded header). */
export function embedded(f: Frame): Frame {
  const icmp = f.l3 + ipv4Ihl(f.buf, f.l3)
  return { buf: f.buf, off: icmp + ICMP_HLEN - ETH_HLEN, l3: icmp + ICMP_HLEN, len: 0 }
}

/** Full verification of an ICMP message's checksum in frame `f`. */
export function icmpOk(f: Frame): boolean {
  const ihl = ipv4Ihl(f.buf, f.l3)
  return icmpChecksumOk(f.buf, f.l3 + ihl, ipv4TotalLen(f.buf, f.l3) - ihl)
}

/** The folded pseudo-header sum a partial checksum field must hold for the frame as it is now. */
export function expectedPartial(f: Frame): number {
  const { buf, l3 } = f
  const ihl = ipv4Ihl(buf, l3)
  return csumFold(csumPseudoV4(ipv4Src(buf, l3), ipv4Dst(buf, l3), ipv4Proto(buf, l3), ipv4TotalLen(buf, l3) - ihl))
}

/** Completes a partial checksum as a NIC would: sum [l4, end) including the field, store the complement. */
export function completePartial(f: Frame, csumField: number): void {
  const { buf, l3 } = f
  const ihl = ipv4Ihl(buf, l3)
  const l4 = l3 + ihl
  const c = (~csumFold(csumAdd(buf, l4, ipv4TotalLen(buf, l3) - ihl, 0)) & 0xffff) || 0xffff
  putU16(buf, l4 + csumField, c)
}
