/**
 * TCP header (RFC 9293 §3.1):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |          Source Port          |       Destination Port        |  0
 *   |                        Sequence Number                        |  4
 *   |                    Acknowledgment Number                      |  8
 *   |  DOff |  Rsrvd  |C|E|U|A|P|R|S|F|          Window             | 12
 *   |           Checksum            |         Urgent Pointer        | 16
 *   |                    Options (DOff > 5)                         | 20
 *
 * We read TCP for conntrack, NAT and load balancing; options are passed
 * through (`tcpCheck` returns DOff*4 so the payload start is known).
 * Hot path: no allocation, no exceptions.
 */
import { Malformed } from './malformed'
import { putU16, putU32, u16, u32 } from './byteorder'
import { csumAdd, csumFinish, csumPseudoV4, csumPseudoV6, csumVerify } from './checksum'
import { IPV4_OFF_DST, IPV4_OFF_SRC, PROTO_TCP } from './ipv4'
import { IPV6_OFF_DST, IPV6_OFF_SRC } from './ipv6'

export const TCP_OFF_SPORT = 0
export const TCP_OFF_DPORT = TCP_OFF_SPORT + 2
export const TCP_OFF_SEQ = TCP_OFF_DPORT + 2
export const TCP_OFF_ACK = TCP_OFF_SEQ + 4
export const TCP_OFF_DOFF = TCP_OFF_ACK + 4
export const TCP_OFF_FLAGS = TCP_OFF_DOFF + 1
export const TCP_OFF_WINDOW = TCP_OFF_FLAGS + 1
export const TCP_OFF_CSUM = TCP_OFF_WINDOW + 2
export const TCP_OFF_URGENT = TCP_OFF_CSUM + 2
export const TCP_HLEN_MIN = TCP_OFF_URGENT + 2
/** DOff is 4 bits of 32-bit words: at most 15 * 4 bytes. */
export const TCP_HLEN_MAX = 60

/** Control bits in the flags byte (RFC 9293 §3.1; ECE/CWR from RFC 3168 §6.1). */
export const TCP_FIN = 0x01
export const TCP_SYN = 0x02
export const TCP_RST = 0x04
export const TCP_PSH = 0x08
export const TCP_ACK = 0x10
export const TCP_URG = 0x20
export const TCP_ECE = 0x40
export const TCP_CWR = 0x80

/**
 * Returns the header length DOff*4, or `Truncated` (fewer than 20 bytes, or
 * fewer than DOff*4) or `BadHeaderLength` (DOff < 5, RFC 9293 §3.1).
 */
export function tcpCheck(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < TCP_HLEN_MIN) return Malformed.Truncated
  const hlen = (buf[off + TCP_OFF_DOFF] >>> 4) << 2
  if (hlen < TCP_HLEN_MIN) return Malformed.BadHeaderLength
  if (hlen > len) return Malformed.Truncated
  return hlen
}

export function tcpSrcPort(buf: Uint8Array, off: number): number {
  return u16(buf, off + TCP_OFF_SPORT)
}

export function tcpDstPort(buf: Uint8Array, off: number): number {
  return u16(buf, off + TCP_OFF_DPORT)
}

export function tcpSeq(buf: Uint8Array, off: number): number {
  return u32(buf, off + TCP_OFF_SEQ)
}

export function tcpAck(buf: Uint8Array, off: number): number {
  return u32(buf, off + TCP_OFF_ACK)
}

/** The DOff field: header length in 32-bit words. */
export function tcpDataOffset(buf: Uint8Array, off: number): number {
  return buf[off + TCP_OFF_DOFF] >>> 4
}

/** Header length in bytes (DOff * 4). */
export function tcpHeaderLen(buf: Uint8Array, off: number): number {
  return (buf[off + TCP_OFF_DOFF] >>> 4) << 2
}

/** The 8 control bits (TCP_FIN ... TCP_CWR). */
export function tcpFlags(buf: Uint8Array, off: number): number {
  return buf[off + TCP_OFF_FLAGS]
}

export function tcpWindow(buf: Uint8Array, off: number): number {
  return u16(buf, off + TCP_OFF_WINDOW)
}

export function tcpChecksum(buf: Uint8Array, off: number): number {
  return u16(buf, off + TCP_OFF_CSUM)
}

export function tcpUrgent(buf: Uint8Array, off: number): number {
  return u16(buf, off + TCP_OFF_URGENT)
}

export function setTcpSrcPort(buf: Uint8Array, off: number, port: number): void {
  putU16(buf, off + TCP_OFF_SPORT, port)
}

export function setTcpDstPort(buf: Uint8Array, off: number, port: number): void {
  putU16(buf, off + TCP_OFF_DPORT, port)
}

export function setTcpSeq(buf: Uint8Array, off: number, seq: number): void {
  putU32(buf, off + TCP_OFF_SEQ, seq)
}

export function setTcpAck(buf: Uint8Array, off: number, ack: number): void {
  putU32(buf, off + TCP_OFF_ACK, ack)
}

/**
 * Sets DOff from a header length in bytes (a multiple of 4, 20..60). The low
 * nibble is kept, not cleared: RFC 9293 calls it reserved, but its last bit
 * was NS (RFC 3540, now historic) and is AE in AccECN, and a setter that only
 * means to change DOff must not strip what the sender put there.
 * `tcpWriteHeader` is the one that zeroes it.
 */
export function setTcpHeaderLen(buf: Uint8Array, off: number, hlen: number): void {
  const o = off + TCP_OFF_DOFF
  buf[o] = ((hlen >>> 2) << 4) | (buf[o] & 0x0f)
}

export function setTcpFlags(buf: Uint8Array, off: number, flags: number): void {
  buf[off + TCP_OFF_FLAGS] = flags
}

export function setTcpWindow(buf: Uint8Array, off: number, window: number): void {
  putU16(buf, off + TCP_OFF_WINDOW, window)
}

export function setTcpChecksum(buf: Uint8Array, off: number, csum: number): void {
  putU16(buf, off + TCP_OFF_CSUM, csum)
}

export function setTcpUrgent(buf: Uint8Array, off: number, urgent: number): void {
  putU16(buf, off + TCP_OFF_URGENT, urgent)
}

/**
 * Writes a complete 20-byte header without options (DOff 5, reserved bits,
 * checksum and urgent pointer zero); returns TCP_HLEN_MIN. Fill the checksum
 * once the payload is in place.
 */
export function tcpWriteHeader(
  buf: Uint8Array, off: number,
  sport: number, dport: number, seq: number, ack: number, flags: number, window: number,
): number {
  putU16(buf, off + TCP_OFF_SPORT, sport)
  putU16(buf, off + TCP_OFF_DPORT, dport)
  putU32(buf, off + TCP_OFF_SEQ, seq)
  putU32(buf, off + TCP_OFF_ACK, ack)
  buf[off + TCP_OFF_DOFF] = (TCP_HLEN_MIN >>> 2) << 4
  buf[off + TCP_OFF_FLAGS] = flags
  putU16(buf, off + TCP_OFF_WINDOW, window)
  putU16(buf, off + TCP_OFF_CSUM, 0)
  putU16(buf, off + TCP_OFF_URGENT, 0)
  return TCP_HLEN_MIN
}

/**
 * Computes and stores the checksum over the IPv4 pseudo-header and `l4len`
 * bytes (header + data) at `tcpOff` (RFC 9293 §3.1). TCP has no "no
 * checksum" value, so a computed 0 is stored as 0.
 */
export function tcpFillChecksumV4(buf: Uint8Array, ipOff: number, tcpOff: number, l4len: number): void {
  putU16(buf, tcpOff + TCP_OFF_CSUM, 0)
  const sum = csumPseudoV4(u32(buf, ipOff + IPV4_OFF_SRC), u32(buf, ipOff + IPV4_OFF_DST), PROTO_TCP, l4len)
  putU16(buf, tcpOff + TCP_OFF_CSUM, csumFinish(csumAdd(buf, tcpOff, l4len, sum)))
}

export function tcpChecksumOkV4(buf: Uint8Array, ipOff: number, tcpOff: number, l4len: number): boolean {
  const sum = csumPseudoV4(u32(buf, ipOff + IPV4_OFF_SRC), u32(buf, ipOff + IPV4_OFF_DST), PROTO_TCP, l4len)
  return csumVerify(buf, tcpOff, l4len, sum)
}

/** As `tcpFillChecksumV4` over the IPv6 pseudo-header (RFC 8200 §8.1). */
export function tcpFillChecksumV6(buf: Uint8Array, ip6Off: number, tcpOff: number, l4len: number): void {
  putU16(buf, tcpOff + TCP_OFF_CSUM, 0)
  const sum = csumPseudoV6(buf, ip6Off + IPV6_OFF_SRC, ip6Off + IPV6_OFF_DST, PROTO_TCP, l4len)
  putU16(buf, tcpOff + TCP_OFF_CSUM, csumFinish(csumAdd(buf, tcpOff, l4len, sum)))
}

export function tcpChecksumOkV6(buf: Uint8Array, ip6Off: number, tcpOff: number, l4len: number): boolean {
  const sum = csumPseudoV6(buf, ip6Off + IPV6_OFF_SRC, ip6Off + IPV6_OFF_DST, PROTO_TCP, l4len)
  return csumVerify(buf, tcpOff, l4len, sum)
}
