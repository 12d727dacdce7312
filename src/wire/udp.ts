/**
 * UDP header (RFC 768):
 *
 *    0      7 8     15 16    23 24    31
 *   +--------+--------+--------+--------+
 *   |   Source Port   |  Dest. Port     |  0
 *   |     Length      |    Checksum     |  4
 *   +--------+--------+--------+--------+
 *
 * Length covers header + data. Checksum 0 means "none" over IPv4 (RFC 768);
 * over IPv6 it is mandatory (RFC 8200 §8.1) except for tunnels that opt in
 * under RFC 6935/6936 (Linux VXLAN's udp6zerocsumtx/udp6zerocsumrx options).
 *
 * Hot path: no allocation, no exceptions.
 */
import { Malformed } from './malformed'
import { putU16, u16, u32 } from './byteorder'
import { csumAdd, csumPseudoV4, csumPseudoV6, csumVerify, udpCsumFinish } from './checksum'
import { IPV4_OFF_DST, IPV4_OFF_SRC, PROTO_UDP } from './ipv4'
import { IPV6_OFF_DST, IPV6_OFF_SRC } from './ipv6'

export const UDP_OFF_SPORT = 0
export const UDP_OFF_DPORT = UDP_OFF_SPORT + 2
export const UDP_OFF_LEN = UDP_OFF_DPORT + 2
export const UDP_OFF_CSUM = UDP_OFF_LEN + 2
export const UDP_HLEN = UDP_OFF_CSUM + 2

/**
 * Returns UDP_HLEN, `Truncated` (fewer than 8 bytes) or `BadLength` (length
 * field < 8 or > len). Pass the bytes the IP header says the datagram has
 * (total length - IHL), not the frame remainder, to catch a UDP length that
 * spills into Ethernet padding.
 */
export function udpCheck(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < UDP_HLEN) return Malformed.Truncated
  const ulen = u16(buf, off + UDP_OFF_LEN)
  if (ulen < UDP_HLEN || ulen > len) return Malformed.BadLength
  return UDP_HLEN
}

export function udpSrcPort(buf: Uint8Array, off: number): number {
  return u16(buf, off + UDP_OFF_SPORT)
}

export function udpDstPort(buf: Uint8Array, off: number): number {
  return u16(buf, off + UDP_OFF_DPORT)
}

/** The length field: header + data, in bytes. */
export function udpLen(buf: Uint8Array, off: number): number {
  return u16(buf, off + UDP_OFF_LEN)
}

export function udpChecksum(buf: Uint8Array, off: number): number {
  return u16(buf, off + UDP_OFF_CSUM)
}

export function setUdpSrcPort(buf: Uint8Array, off: number, port: number): void {
  putU16(buf, off + UDP_OFF_SPORT, port)
}

export function setUdpDstPort(buf: Uint8Array, off: number, port: number): void {
  putU16(buf, off + UDP_OFF_DPORT, port)
}

export function setUdpLen(buf: Uint8Array, off: number, len: number): void {
  putU16(buf, off + UDP_OFF_LEN, len)
}

export function setUdpChecksum(buf: Uint8Array, off: number, csum: number): void {
  putU16(buf, off + UDP_OFF_CSUM, csum)
}

/** Writes all 8 bytes; returns UDP_HLEN. Pass csum 0 for "none" or to fill later. */
export function udpWriteHeader(
  buf: Uint8Array, off: number, sport: number, dport: number, len: number, csum: number,
): number {
  putU16(buf, off + UDP_OFF_SPORT, sport)
  putU16(buf, off + UDP_OFF_DPORT, dport)
  putU16(buf, off + UDP_OFF_LEN, len)
  putU16(buf, off + UDP_OFF_CSUM, csum)
  return UDP_HLEN
}

/**
 * Computes and stores the checksum over the IPv4 pseudo-header and the
 * `udpLen` bytes at `udpOff` (RFC 768); a computed 0 is stored as 0xffff.
 */
export function udpFillChecksumV4(buf: Uint8Array, ipOff: number, udpOff: number): void {
  const l4len = u16(buf, udpOff + UDP_OFF_LEN)
  putU16(buf, udpOff + UDP_OFF_CSUM, 0)
  const sum = csumPseudoV4(u32(buf, ipOff + IPV4_OFF_SRC), u32(buf, ipOff + IPV4_OFF_DST), PROTO_UDP, l4len)
  putU16(buf, udpOff + UDP_OFF_CSUM, udpCsumFinish(csumAdd(buf, udpOff, l4len, sum)))
}

/** True if the checksum is 0 (none sent, RFC 768) or verifies over IPv4. */
export function udpChecksumOkV4(buf: Uint8Array, ipOff: number, udpOff: number): boolean {
  if (u16(buf, udpOff + UDP_OFF_CSUM) === 0) return true
  const l4len = u16(buf, udpOff + UDP_OFF_LEN)
  const sum = csumPseudoV4(u32(buf, ipOff + IPV4_OFF_SRC), u32(buf, ipOff + IPV4_OFF_DST), PROTO_UDP, l4len)
  return csumVerify(buf, udpOff, l4len, sum)
}

/** As `udpFillChecksumV4` over the IPv6 pseudo-header (RFC 8200 §8.1). */
export function udpFillChecksumV6(buf: Uint8Array, ip6Off: number, udpOff: number): void {
  const l4len = u16(buf, udpOff + UDP_OFF_LEN)
  putU16(buf, udpOff + UDP_OFF_CSUM, 0)
  const sum = csumPseudoV6(buf, ip6Off + IPV6_OFF_SRC, ip6Off + IPV6_OFF_DST, PROTO_UDP, l4len)
  putU16(buf, udpOff + UDP_OFF_CSUM, udpCsumFinish(csumAdd(buf, udpOff, l4len, sum)))
}

/**
 * True if the checksum verifies over IPv6. A zero checksum fails here: RFC
 * 8200 §8.1 requires receivers to discard it, and the RFC 6936 tunnel
 * exception is the caller's decision, not the codec's.
 */
export function udpChecksumOkV6(buf: Uint8Array, ip6Off: number, udpOff: number): boolean {
  if (u16(buf, udpOff + UDP_OFF_CSUM) === 0) return false
  const l4len = u16(buf, udpOff + UDP_OFF_LEN)
  const sum = csumPseudoV6(buf, ip6Off + IPV6_OFF_SRC, ip6Off + IPV6_OFF_DST, PROTO_UDP, l4len)
  return csumVerify(buf, udpOff, l4len, sum)
}
