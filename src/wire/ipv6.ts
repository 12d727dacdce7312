/**
 * IPv6 fixed header (RFC 8200 §3):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version| Traffic Class |           Flow Label                  |  0
 *   |         Payload Length        |  Next Header  |   Hop Limit   |  4
 *   |                     Source Address (16)                       |  8
 *   |                  Destination Address (16)                     | 24
 *
 * We bridge IPv6 and look at it only for flow hashing and neighbour
 * discovery, so addresses stay in the buffer: use the IPV6_OFF_SRC/DST
 * offsets. Extension headers are not walked; `ipv6NextHeader` is the first
 * one. Hot path: no allocation, no exceptions.
 */
import { Malformed } from './malformed'
import { putU16, putU32, u16, u32 } from './byteorder'

export const IPV6_OFF_VTC_FLOW = 0
export const IPV6_OFF_PAYLOAD_LEN = IPV6_OFF_VTC_FLOW + 4
export const IPV6_OFF_NEXT_HEADER = IPV6_OFF_PAYLOAD_LEN + 2
export const IPV6_OFF_HOP_LIMIT = IPV6_OFF_NEXT_HEADER + 1
export const IPV6_OFF_SRC = IPV6_OFF_HOP_LIMIT + 1
export const IPV6_OFF_DST = IPV6_OFF_SRC + 16
export const IPV6_HLEN = IPV6_OFF_DST + 16
export const IPV6_ADDR_LEN = 16

/** IANA protocol number of ICMPv6 (RFC 4443). */
export const PROTO_ICMPV6 = 58

/** ICMPv6 types (RFC 4443 §2.1, RFC 4861 §4). */
export const ICMPV6_ECHO_REQUEST = 128
export const ICMPV6_ECHO_REPLY = 129
export const ICMPV6_ROUTER_SOLICIT = 133
export const ICMPV6_ROUTER_ADVERT = 134
export const ICMPV6_NEIGHBOR_SOLICIT = 135
export const ICMPV6_NEIGHBOR_ADVERT = 136

/**
 * Returns IPV6_HLEN, or `Truncated` (fewer than 40 bytes), `BadVersion`, or
 * `BadTotalLength` when 40 + payload length exceeds `len` (less is fine:
 * Ethernet padding). A payload length of 0 passes: it is either an empty
 * payload or a jumbogram (RFC 2675), which never crosses an Ethernet link.
 */
export function ipv6Check(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < IPV6_HLEN) return Malformed.Truncated
  if (buf[off + IPV6_OFF_VTC_FLOW] >>> 4 !== 6) return Malformed.BadVersion
  if (IPV6_HLEN + u16(buf, off + IPV6_OFF_PAYLOAD_LEN) > len) return Malformed.BadTotalLength
  return IPV6_HLEN
}

export function ipv6Version(buf: Uint8Array, off: number): number {
  return buf[off + IPV6_OFF_VTC_FLOW] >>> 4
}

export function ipv6TrafficClass(buf: Uint8Array, off: number): number {
  return (u16(buf, off + IPV6_OFF_VTC_FLOW) >>> 4) & 0xff
}

/** 20-bit flow label (RFC 6437). */
export function ipv6FlowLabel(buf: Uint8Array, off: number): number {
  return u32(buf, off + IPV6_OFF_VTC_FLOW) & 0xfffff
}

export function ipv6PayloadLen(buf: Uint8Array, off: number): number {
  return u16(buf, off + IPV6_OFF_PAYLOAD_LEN)
}

export function ipv6NextHeader(buf: Uint8Array, off: number): number {
  return buf[off + IPV6_OFF_NEXT_HEADER]
}

export function ipv6HopLimit(buf: Uint8Array, off: number): number {
  return buf[off + IPV6_OFF_HOP_LIMIT]
}

/** Offset in `buf` of the source address. */
export function ipv6SrcOff(off: number): number {
  return off + IPV6_OFF_SRC
}

/** Offset in `buf` of the destination address. */
export function ipv6DstOff(off: number): number {
  return off + IPV6_OFF_DST
}

/** RFC 4291 §2.7: multicast addresses start with 0xff. */
export function ipv6IsMulticastDst(buf: Uint8Array, off: number): boolean {
  return buf[off + IPV6_OFF_DST] === 0xff
}

export function setIpv6PayloadLen(buf: Uint8Array, off: number, payloadLen: number): void {
  putU16(buf, off + IPV6_OFF_PAYLOAD_LEN, payloadLen)
}

export function setIpv6HopLimit(buf: Uint8Array, off: number, hopLimit: number): void {
  buf[off + IPV6_OFF_HOP_LIMIT] = hopLimit
}

/**
 * Writes all 40 bytes; the addresses are copied from `src[srcOff..+16]` and
 * `dst[dstOff..+16]`. Returns IPV6_HLEN.
 */
export function ipv6WriteHeader(
  buf: Uint8Array, off: number,
  trafficClass: number, flowLabel: number, payloadLen: number, nextHeader: number, hopLimit: number,
  src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number,
): number {
  putU32(buf, off + IPV6_OFF_VTC_FLOW, ((6 << 28) | ((trafficClass & 0xff) << 20) | (flowLabel & 0xfffff)) >>> 0)
  putU16(buf, off + IPV6_OFF_PAYLOAD_LEN, payloadLen)
  buf[off + IPV6_OFF_NEXT_HEADER] = nextHeader
  buf[off + IPV6_OFF_HOP_LIMIT] = hopLimit
  for (let i = 0; i < IPV6_ADDR_LEN; i++) {
    buf[off + IPV6_OFF_SRC + i] = src[srcOff + i]
    buf[off + IPV6_OFF_DST + i] = dst[dstOff + i]
  }
  return IPV6_HLEN
}
