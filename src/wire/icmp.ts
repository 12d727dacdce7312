/**
 * ICMP for IPv4 (RFC 792). Every message starts with the same 8 bytes:
 *
 *    0                   1                   2                   3
 *   +---------------+---------------+-------------------------------+
 *   |     Type      |     Code      |          Checksum             |  0
 *   |     Identifier (echo)         |     Sequence Number (echo)    |  4
 *   +---------------+---------------+-------------------------------+
 *
 * The second word is type-specific: identifier + sequence for echo, unused +
 * next-hop MTU for "fragmentation needed" (RFC 1191 §4), unused otherwise.
 * The checksum covers the whole ICMP message (RFC 792), no pseudo-header.
 * Hot path: no allocation, no exceptions.
 */
import { Malformed } from './malformed'
import { putU16, putU32, u16 } from './byteorder'
import { csumAdd, csumFinish, csumVerify } from './checksum'

export const ICMP_OFF_TYPE = 0
export const ICMP_OFF_CODE = ICMP_OFF_TYPE + 1
export const ICMP_OFF_CSUM = ICMP_OFF_CODE + 1
/** Start of the type-specific second word ("rest of header"). */
export const ICMP_OFF_REST = ICMP_OFF_CSUM + 2
export const ICMP_OFF_ECHO_ID = ICMP_OFF_REST
export const ICMP_OFF_ECHO_SEQ = ICMP_OFF_ECHO_ID + 2
/** RFC 1191 §4: next-hop MTU in the low half of the second word. */
export const ICMP_OFF_MTU = ICMP_OFF_REST + 2
export const ICMP_HLEN = ICMP_OFF_REST + 4

/** Types (RFC 792). */
export const ICMP_ECHO_REPLY = 0
export const ICMP_DEST_UNREACH = 3
export const ICMP_ECHO_REQUEST = 8
export const ICMP_TIME_EXCEEDED = 11

/** Codes of ICMP_DEST_UNREACH (RFC 792; 4 with an MTU per RFC 1191). */
export const ICMP_CODE_NET_UNREACH = 0
export const ICMP_CODE_HOST_UNREACH = 1
export const ICMP_CODE_PROTO_UNREACH = 2
export const ICMP_CODE_PORT_UNREACH = 3
export const ICMP_CODE_FRAG_NEEDED = 4

/** Codes of ICMP_TIME_EXCEEDED (RFC 792). */
export const ICMP_CODE_TTL_EXCEEDED = 0
export const ICMP_CODE_REASSEMBLY_EXCEEDED = 1

/**
 * Returns ICMP_HLEN or `Truncated`. Types and codes are not checked (unknown
 * ones are for the caller to ignore), nor is the checksum: see
 * `icmpChecksumOk`, which needs the message length from the IP header.
 */
export function icmpCheck(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < ICMP_HLEN) return Malformed.Truncated
  return ICMP_HLEN
}

export function icmpType(buf: Uint8Array, off: number): number {
  return buf[off + ICMP_OFF_TYPE]
}

export function icmpCode(buf: Uint8Array, off: number): number {
  return buf[off + ICMP_OFF_CODE]
}

export function icmpChecksum(buf: Uint8Array, off: number): number {
  return u16(buf, off + ICMP_OFF_CSUM)
}

export function icmpEchoId(buf: Uint8Array, off: number): number {
  return u16(buf, off + ICMP_OFF_ECHO_ID)
}

export function icmpEchoSeq(buf: Uint8Array, off: number): number {
  return u16(buf, off + ICMP_OFF_ECHO_SEQ)
}

/** Next-hop MTU of a "fragmentation needed" message (RFC 1191 §4). */
export function icmpMtu(buf: Uint8Array, off: number): number {
  return u16(buf, off + ICMP_OFF_MTU)
}

export function setIcmpType(buf: Uint8Array, off: number, type: number): void {
  buf[off + ICMP_OFF_TYPE] = type
}

export function setIcmpCode(buf: Uint8Array, off: number, code: number): void {
  buf[off + ICMP_OFF_CODE] = code
}

export function setIcmpChecksum(buf: Uint8Array, off: number, csum: number): void {
  putU16(buf, off + ICMP_OFF_CSUM, csum)
}

export function setIcmpEchoId(buf: Uint8Array, off: number, id: number): void {
  putU16(buf, off + ICMP_OFF_ECHO_ID, id)
}

export function setIcmpEchoSeq(buf: Uint8Array, off: number, seq: number): void {
  putU16(buf, off + ICMP_OFF_ECHO_SEQ, seq)
}

/**
 * Writes the 8-byte header: type, code, checksum 0 and the 32-bit
 * type-specific word `rest`; returns ICMP_HLEN. Fill the checksum after the
 * body is in place.
 */
export function icmpWriteHeader(buf: Uint8Array, off: number, type: number, code: number, rest: number): number {
  buf[off + ICMP_OFF_TYPE] = type
  buf[off + ICMP_OFF_CODE] = code
  putU16(buf, off + ICMP_OFF_CSUM, 0)
  putU32(buf, off + ICMP_OFF_REST, rest)
  return ICMP_HLEN
}

/** Writes an echo request/reply header (code 0); returns ICMP_HLEN. */
export function icmpWriteEcho(buf: Uint8Array, off: number, type: number, id: number, seq: number): number {
  return icmpWriteHeader(buf, off, type, 0, (((id & 0xffff) << 16) | (seq & 0xffff)) >>> 0)
}

/** Computes and stores the checksum over the `len`-byte message at `off`. */
export function icmpFillChecksum(buf: Uint8Array, off: number, len: number): void {
  putU16(buf, off + ICMP_OFF_CSUM, 0)
  putU16(buf, off + ICMP_OFF_CSUM, csumFinish(csumAdd(buf, off, len, 0)))
}

/** True if the checksum over the `len`-byte message verifies. */
export function icmpChecksumOk(buf: Uint8Array, off: number, len: number): boolean {
  return csumVerify(buf, off, len, 0)
}
