/**
 * IPv4 header (RFC 791 §3.1):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version|  IHL  |Type of Service|          Total Length         |  0
 *   |         Identification        |Flags|      Fragment Offset    |  4
 *   |  Time to Live |    Protocol   |         Header Checksum       |  8
 *   |                       Source Address                          | 12
 *   |                    Destination Address                        | 16
 *   |                    Options (IHL > 5)                          | 20
 *
 * Addresses are unsigned 32-bit numbers. Options are passed through: the L4
 * header starts at `off + ipv4Ihl(buf, off)`, which `ipv4Check` returns.
 *
 * Hot path: no allocation, no exceptions. Accessors and setters trust the
 * buffer once `ipv4Check` has passed.
 */
import { Malformed } from './malformed'
import { putU16, putU32, u16, u32 } from './byteorder'
import { csumAdd, csumFinish, csumVerify } from './checksum'

export const IPV4_OFF_VER_IHL = 0
export const IPV4_OFF_TOS = IPV4_OFF_VER_IHL + 1
export const IPV4_OFF_TOTAL_LEN = IPV4_OFF_TOS + 1
export const IPV4_OFF_ID = IPV4_OFF_TOTAL_LEN + 2
export const IPV4_OFF_FRAG = IPV4_OFF_ID + 2
export const IPV4_OFF_TTL = IPV4_OFF_FRAG + 2
export const IPV4_OFF_PROTO = IPV4_OFF_TTL + 1
export const IPV4_OFF_CSUM = IPV4_OFF_PROTO + 1
export const IPV4_OFF_SRC = IPV4_OFF_CSUM + 2
export const IPV4_OFF_DST = IPV4_OFF_SRC + 4
export const IPV4_HLEN_MIN = IPV4_OFF_DST + 4
/** IHL is 4 bits of 32-bit words: at most 15 * 4 bytes. */
export const IPV4_HLEN_MAX = 60

/** IANA protocol numbers (also IPv6 next-header values). */
export const PROTO_ICMP = 1
export const PROTO_TCP = 6
export const PROTO_UDP = 17

/** `ipv4Flags` bits (RFC 791 §3.1: bit 0 reserved, 1 DF, 2 MF). */
export const IPV4_FLAG_DF = 0b010
export const IPV4_FLAG_MF = 0b001
/** The flags + fragment offset word: MF bit and the 13-bit offset in 8-byte units. */
const FRAG_WORD_DF = 0x4000
const FRAG_WORD_MF = 0x2000
const FRAG_WORD_OFFSET = 0x1fff
/** The bits of that word that make a packet a fragment (ipv4IsFragment): MF and the offset. */
export const IPV4_FRAGMENT_BITS = FRAG_WORD_MF | FRAG_WORD_OFFSET

/** RFC 1700 / Linux default for locally originated packets. */
export const IPV4_TTL_DEFAULT = 64

/**
 * Checks the header at `off` with `len` bytes available (the rest of the
 * frame). Returns the header length IHL*4, or:
 * - `Truncated`: fewer than 20 bytes, or fewer than IHL*4;
 * - `BadVersion`: version is not 4;
 * - `BadHeaderLength`: IHL < 5 (RFC 791: minimum header is 5 words);
 * - `BadTotalLength`: total length < IHL*4, or > len. Total length < len is
 *   fine: Ethernet pads short frames, so trim the payload to total length.
 * Does not verify the header checksum (see `ipv4CheckWithChecksum`): a
 * forwarder that patches TTL incrementally does not need it, and a receiver
 * that does should pay for it knowingly.
 */
export function ipv4Check(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < IPV4_HLEN_MIN) return Malformed.Truncated
  const vi = buf[off + IPV4_OFF_VER_IHL]
  if (vi >>> 4 !== 4) return Malformed.BadVersion
  const hlen = (vi & 0x0f) << 2
  if (hlen < IPV4_HLEN_MIN) return Malformed.BadHeaderLength
  if (hlen > len) return Malformed.Truncated
  const total = u16(buf, off + IPV4_OFF_TOTAL_LEN)
  if (total < hlen || total > len) return Malformed.BadTotalLength
  return hlen
}

/** `ipv4Check`, then `BadChecksum` if the header checksum does not verify. */
export function ipv4CheckWithChecksum(buf: Uint8Array, off: number, len: number): number {
  const hlen = ipv4Check(buf, off, len)
  if (hlen < 0) return hlen
  return csumVerify(buf, off, hlen, 0) ? hlen : Malformed.BadChecksum
}

/** True if the header checksum over IHL*4 bytes verifies (RFC 791 §3.1). */
export function ipv4HeaderChecksumOk(buf: Uint8Array, off: number): boolean {
  return csumVerify(buf, off, ipv4Ihl(buf, off), 0)
}

export function ipv4Version(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_OFF_VER_IHL] >>> 4
}

/** Header length in bytes (IHL * 4). */
export function ipv4Ihl(buf: Uint8Array, off: number): number {
  return (buf[off + IPV4_OFF_VER_IHL] & 0x0f) << 2
}

/** Type of service byte: DSCP (6 bits) and ECN (2 bits), RFC 2474 / RFC 3168. */
export function ipv4Tos(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_OFF_TOS]
}

export function ipv4TotalLen(buf: Uint8Array, off: number): number {
  return u16(buf, off + IPV4_OFF_TOTAL_LEN)
}

export function ipv4Id(buf: Uint8Array, off: number): number {
  return u16(buf, off + IPV4_OFF_ID)
}

/** The 3 flag bits: IPV4_FLAG_DF, IPV4_FLAG_MF (and the reserved 0b100). */
export function ipv4Flags(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_OFF_FRAG] >>> 5
}

/** Fragment offset in bytes (the field counts 8-byte units). */
export function ipv4FragOff(buf: Uint8Array, off: number): number {
  return (u16(buf, off + IPV4_OFF_FRAG) & FRAG_WORD_OFFSET) << 3
}

/** True for any fragment of a fragmented datagram: MF set or offset nonzero. */
export function ipv4IsFragment(buf: Uint8Array, off: number): boolean {
  return (u16(buf, off + IPV4_OFF_FRAG) & IPV4_FRAGMENT_BITS) !== 0
}

export function ipv4Ttl(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_OFF_TTL]
}

export function ipv4Proto(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_OFF_PROTO]
}

export function ipv4Checksum(buf: Uint8Array, off: number): number {
  return u16(buf, off + IPV4_OFF_CSUM)
}

export function ipv4Src(buf: Uint8Array, off: number): number {
  return u32(buf, off + IPV4_OFF_SRC)
}

export function ipv4Dst(buf: Uint8Array, off: number): number {
  return u32(buf, off + IPV4_OFF_DST)
}

export function setIpv4Tos(buf: Uint8Array, off: number, tos: number): void {
  buf[off + IPV4_OFF_TOS] = tos
}

export function setIpv4TotalLen(buf: Uint8Array, off: number, totalLen: number): void {
  putU16(buf, off + IPV4_OFF_TOTAL_LEN, totalLen)
}

export function setIpv4Id(buf: Uint8Array, off: number, id: number): void {
  putU16(buf, off + IPV4_OFF_ID, id)
}

/**
 * Writes the whole flags + fragment offset word: `flags` as `ipv4Flags`
 * returns them, `fragOffBytes` a multiple of 8.
 */
export function setIpv4Frag(buf: Uint8Array, off: number, flags: number, fragOffBytes: number): void {
  putU16(buf, off + IPV4_OFF_FRAG, ((flags & 7) << 13) | ((fragOffBytes >>> 3) & FRAG_WORD_OFFSET))
}

export function setIpv4Ttl(buf: Uint8Array, off: number, ttl: number): void {
  buf[off + IPV4_OFF_TTL] = ttl
}

export function setIpv4Proto(buf: Uint8Array, off: number, proto: number): void {
  buf[off + IPV4_OFF_PROTO] = proto
}

export function setIpv4Checksum(buf: Uint8Array, off: number, csum: number): void {
  putU16(buf, off + IPV4_OFF_CSUM, csum)
}

export function setIpv4Src(buf: Uint8Array, off: number, addr: number): void {
  putU32(buf, off + IPV4_OFF_SRC, addr)
}

export function setIpv4Dst(buf: Uint8Array, off: number, addr: number): void {
  putU32(buf, off + IPV4_OFF_DST, addr)
}

/** Computes and stores the header checksum over IHL*4 bytes (options included). */
export function ipv4FillChecksum(buf: Uint8Array, off: number): void {
  putU16(buf, off + IPV4_OFF_CSUM, 0)
  putU16(buf, off + IPV4_OFF_CSUM, csumFinish(csumAdd(buf, off, ipv4Ihl(buf, off), 0)))
}

/**
 * Writes a complete 20-byte header (version 4, IHL 5, TOS 0, no options),
 * checksum included; returns IPV4_HLEN_MIN. DF is the only flag it can set;
 * MF and the fragment offset are 0 because we never fragment (RFC 7348 §4.3:
 * VTEPs MUST NOT fragment VXLAN packets).
 */
export function ipv4WriteHeader(
  buf: Uint8Array, off: number,
  totalLen: number, id: number, dontFragment: boolean,
  ttl: number, proto: number, src: number, dst: number,
): number {
  buf[off + IPV4_OFF_VER_IHL] = 0x45
  buf[off + IPV4_OFF_TOS] = 0
  putU16(buf, off + IPV4_OFF_TOTAL_LEN, totalLen)
  putU16(buf, off + IPV4_OFF_ID, id)
  putU16(buf, off + IPV4_OFF_FRAG, dontFragment ? FRAG_WORD_DF : 0)
  buf[off + IPV4_OFF_TTL] = ttl
  buf[off + IPV4_OFF_PROTO] = proto
  putU16(buf, off + IPV4_OFF_CSUM, 0)
  putU32(buf, off + IPV4_OFF_SRC, src)
  putU32(buf, off + IPV4_OFF_DST, dst)
  putU16(buf, off + IPV4_OFF_CSUM, csumFinish(csumAdd(buf, off, IPV4_HLEN_MIN, 0)))
  return IPV4_HLEN_MIN
}
