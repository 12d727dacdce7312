/**
 * VXLAN header (RFC 7348 §5), carried in UDP:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |R|R|R|R|I|R|R|R|            Reserved                           |  0
 *   |                VXLAN Network Identifier (VNI) |   Reserved    |  4
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Followed by the inner Ethernet frame (without FCS).
 *
 * Receive policy: RFC 7348 §5 says the R bits and reserved fields "MUST be
 * set to zero on transmission and ignored on receipt". We follow the RFC and
 * ignore them; Open vSwitch instead drops such packets. Ignoring keeps us
 * interoperable with peers that use those bits for extensions (VXLAN-GPE,
 * GBP) on the same VNI, at the cost of silently accepting them; the only
 * receive check is the I flag, without which the VNI is not valid.
 *
 * Hot path: no allocation, no exceptions. Encap writes these 8 bytes into the
 * headroom in front of the inner frame.
 */
import { Malformed } from './malformed'
import { putU32 } from './byteorder'
import { ETH_HLEN } from './ethernet'
import { IPV4_HLEN_MIN } from './ipv4'
import { IPV6_HLEN } from './ipv6'
import { UDP_HLEN } from './udp'

export const VXLAN_OFF_FLAGS = 0
export const VXLAN_OFF_VNI = VXLAN_OFF_FLAGS + 4
export const VXLAN_HLEN = VXLAN_OFF_VNI + 4

/** RFC 7348 §5: the I flag, "MUST be set to 1 for a valid VNI". */
export const VXLAN_FLAG_I = 0x08
/** The VNI is 24 bits. */
export const VXLAN_VNI_MAX = 0xffffff

/** RFC 7348 §5: IANA-assigned destination port. */
export const VXLAN_PORT_IANA = 4789
/** The port Linux used before IANA assigned one; still its default without `dstport`. */
export const VXLAN_PORT_LINUX = 8472

/** Bytes added in front of an inner frame: outer Ethernet + IPv4 + UDP + VXLAN = 50. */
export const VXLAN_OVERHEAD_V4 = ETH_HLEN + IPV4_HLEN_MIN + UDP_HLEN + VXLAN_HLEN
/** Same over IPv6: 14 + 40 + 8 + 8 = 70. */
export const VXLAN_OVERHEAD_V6 = ETH_HLEN + IPV6_HLEN + UDP_HLEN + VXLAN_HLEN

/**
 * Returns VXLAN_HLEN, `Truncated` (fewer than 8 bytes) or `VxlanNoIFlag`.
 * Reserved bits are ignored (see the receive policy above).
 */
export function vxlanCheck(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < VXLAN_HLEN) return Malformed.Truncated
  if ((buf[off + VXLAN_OFF_FLAGS] & VXLAN_FLAG_I) === 0) return Malformed.VxlanNoIFlag
  return VXLAN_HLEN
}

/** The 24-bit VNI (the low reserved byte is not part of it). */
export function vxlanVni(buf: Uint8Array, off: number): number {
  const o = off + VXLAN_OFF_VNI
  return (buf[o] << 16) | (buf[o + 1] << 8) | buf[o + 2]
}

/**
 * Writes all 8 bytes: flags = I only, every reserved bit zero (RFC 7348 §5),
 * and the low 24 bits of `vni`. Returns VXLAN_HLEN.
 */
export function vxlanWrite(buf: Uint8Array, off: number, vni: number): number {
  putU32(buf, off + VXLAN_OFF_FLAGS, VXLAN_FLAG_I << 24)
  putU32(buf, off + VXLAN_OFF_VNI, (vni & VXLAN_VNI_MAX) << 8)
  return VXLAN_HLEN
}
