/**
 * ARP for IPv4 over Ethernet (RFC 826, "Packet format"; field sizes fixed by
 * hlen 6 / plen 4, which is the only combination we speak):
 *
 *   0      2      4    5    6      8                14      18               24      28
 *   +------+------+----+----+------+----------------+-------+----------------+-------+
 *   |htype |ptype |hlen|plen| oper | sha (6)        |spa (4)| tha (6)        |tpa (4)|
 *   +------+------+----+----+------+----------------+-------+----------------+-------+
 *
 * Hot path (ARP suppression answers requests in place): no allocation, no
 * exceptions. Read the hardware addresses with `macHi`/`macLo` at
 * `off + ARP_OFF_SHA` / `off + ARP_OFF_THA`.
 */
import { Malformed } from './malformed'
import { macWrite } from './ethernet'
import { putU16, putU32, u16, u32 } from './byteorder'

export const ARP_OFF_HTYPE = 0
export const ARP_OFF_PTYPE = ARP_OFF_HTYPE + 2
export const ARP_OFF_HLEN = ARP_OFF_PTYPE + 2
export const ARP_OFF_PLEN = ARP_OFF_HLEN + 1
export const ARP_OFF_OP = ARP_OFF_PLEN + 1
export const ARP_OFF_SHA = ARP_OFF_OP + 2
export const ARP_OFF_SPA = ARP_OFF_SHA + 6
export const ARP_OFF_THA = ARP_OFF_SPA + 4
export const ARP_OFF_TPA = ARP_OFF_THA + 6
export const ARP_LEN = ARP_OFF_TPA + 4

/** RFC 826 / IANA ARP parameters: hardware type 1 is Ethernet. */
export const ARP_HTYPE_ETHERNET = 1
export const ARP_PTYPE_IPV4 = 0x0800
export const ARP_OP_REQUEST = 1
export const ARP_OP_REPLY = 2

/**
 * Returns ARP_LEN, `Truncated`, or `BadArp` when the packet is not
 * Ethernet/IPv4. The opcode is not checked: callers branch on `arpOp` and
 * ignore what they do not answer (RARP, InARP, ...), which is not malformed.
 */
export function arpCheck(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < ARP_LEN) return Malformed.Truncated
  if (
    u16(buf, off + ARP_OFF_HTYPE) !== ARP_HTYPE_ETHERNET || u16(buf, off + ARP_OFF_PTYPE) !== ARP_PTYPE_IPV4 ||
    buf[off + ARP_OFF_HLEN] !== 6 || buf[off + ARP_OFF_PLEN] !== 4
  ) return Malformed.BadArp
  return ARP_LEN
}

export function arpOp(buf: Uint8Array, off: number): number {
  return u16(buf, off + ARP_OFF_OP)
}

/** Sender protocol address (IPv4, unsigned). */
export function arpSpa(buf: Uint8Array, off: number): number {
  return u32(buf, off + ARP_OFF_SPA)
}

/** Target protocol address (IPv4, unsigned). */
export function arpTpa(buf: Uint8Array, off: number): number {
  return u32(buf, off + ARP_OFF_TPA)
}

/**
 * Writes all 28 bytes of an Ethernet/IPv4 ARP packet; returns ARP_LEN.
 * For a request, RFC 826 leaves tha unspecified; pass zeros (what Linux sends).
 */
export function arpWrite(
  buf: Uint8Array, off: number, op: number,
  shaHi: number, shaLo: number, spa: number,
  thaHi: number, thaLo: number, tpa: number,
): number {
  putU16(buf, off + ARP_OFF_HTYPE, ARP_HTYPE_ETHERNET)
  putU16(buf, off + ARP_OFF_PTYPE, ARP_PTYPE_IPV4)
  buf[off + ARP_OFF_HLEN] = 6
  buf[off + ARP_OFF_PLEN] = 4
  putU16(buf, off + ARP_OFF_OP, op)
  macWrite(buf, off + ARP_OFF_SHA, shaHi, shaLo)
  putU32(buf, off + ARP_OFF_SPA, spa)
  macWrite(buf, off + ARP_OFF_THA, thaHi, thaLo)
  putU32(buf, off + ARP_OFF_TPA, tpa)
  return ARP_LEN
}
