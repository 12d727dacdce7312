/**
 * virtio-net header (struct virtio_net_hdr, include/uapi/linux/virtio_net.h), the
 * 10 bytes a TAP with IFF_VNET_HDR puts before every frame. Fields after the first
 * two bytes are little-endian (the legacy header uses native byte order; Linux
 * TAP uses little-endian unless TUNSETVNETBE is set).
 */
import { csumAdd, csumFinish } from './checksum'

export const VNET_OFF_FLAGS = 0
export const VNET_OFF_GSO_TYPE = 1
export const VNET_OFF_HDR_LEN = 2
export const VNET_OFF_GSO_SIZE = 4
export const VNET_OFF_CSUM_START = 6
export const VNET_OFF_CSUM_OFFSET = 8
export const VNET_HLEN = VNET_OFF_CSUM_OFFSET + 2

/** flags: the checksum from csum_start to the end is partial and must be completed. */
export const VNET_F_NEEDS_CSUM = 1
/** flags: the checksum was verified (receive side). */
export const VNET_F_DATA_VALID = 2

export const VNET_GSO_NONE = 0
export const VNET_GSO_TCPV4 = 1
export const VNET_GSO_UDP = 3
export const VNET_GSO_TCPV6 = 4
export const VNET_GSO_UDP_L4 = 5
export const VNET_GSO_ECN = 0x80

function le16(buf: Uint8Array, o: number): number {
  return buf[o] | (buf[o + 1] << 8)
}
function putLe16(buf: Uint8Array, o: number, v: number): void {
  buf[o] = v & 255
  buf[o + 1] = (v >>> 8) & 255
}

export function vnetFlags(buf: Uint8Array, off: number): number { return buf[off + VNET_OFF_FLAGS] }
export function vnetGsoType(buf: Uint8Array, off: number): number { return buf[off + VNET_OFF_GSO_TYPE] }
export function vnetHdrLen(buf: Uint8Array, off: number): number { return le16(buf, off + VNET_OFF_HDR_LEN) }
export function vnetGsoSize(buf: Uint8Array, off: number): number { return le16(buf, off + VNET_OFF_GSO_SIZE) }
export function vnetCsumStart(buf: Uint8Array, off: number): number { return le16(buf, off + VNET_OFF_CSUM_START) }
export function vnetCsumOffset(buf: Uint8Array, off: number): number { return le16(buf, off + VNET_OFF_CSUM_OFFSET) }

/**
 * Whether (csumStart, csumOffset) name the TCP (offset 16) or UDP (offset 6)
 * checksum of the untagged or VLAN-tagged IPv4/IPv6 packet in the frame.
 */
export function vnetCsumIsL4(buf: Uint8Array, frame: number, len: number, csumStart: number, csumOffset: number): boolean {
  let eh = 14
  let type = (buf[frame + 12] << 8) | buf[frame + 13]
  while ((type === 0x8100 || type === 0x88a8) && eh + 4 <= len) {
    type = (buf[frame + eh + 2] << 8) | buf[frame + eh + 3]
    eh += 4
  }
  let l4: number
  let proto: number
  if (type === 0x0800) {
    if (eh + 20 > len) return false
    l4 = eh + (buf[frame + eh] & 15) * 4
    proto = buf[frame + eh + 9]
  } else if (type === 0x86dd) {
    if (eh + 40 > len) return false
    l4 = eh + 40
    proto = buf[frame + eh + 6]
  } else {
    return false
  }
  if (csumStart !== l4) return false
  return (proto === 6 && csumOffset === 16) || (proto === 17 && csumOffset === 6)
}

/** Writes a header saying "complete frame, no offload". */
export function vnetWriteNone(buf: Uint8Array, off: number): void {
  for (let i = 0; i < VNET_HLEN; i++) buf[off + i] = 0
}

export function vnetWrite(buf: Uint8Array, off: number, flags: number, gsoType: number, hdrLen: number,
  gsoSize: number, csumStart: number, csumOffset: number): void {
  buf[off + VNET_OFF_FLAGS] = flags
  buf[off + VNET_OFF_GSO_TYPE] = gsoType
  putLe16(buf, off + VNET_OFF_HDR_LEN, hdrLen)
  putLe16(buf, off + VNET_OFF_GSO_SIZE, gsoSize)
  putLe16(buf, off + VNET_OFF_CSUM_START, csumStart)
  putLe16(buf, off + VNET_OFF_CSUM_OFFSET, csumOffset)
}

/**
 * Completes a partial checksum (VNET_F_NEEDS_CSUM): the field at
 * csum_start + csum_offset holds the pseudo-header sum; the checksum over
 * [csum_start, end) replaces it. `frame`/`len` delimit the Ethernet frame.
 * Returns false when the offsets point outside the frame (the caller drops it).
 */
export function vnetCompleteChecksum(buf: Uint8Array, frame: number, len: number, csumStart: number, csumOffset: number): boolean {
  const field = csumStart + csumOffset
  if (csumStart >= len || field + 2 > len) return false
  // Only the TCP or UDP checksum of the frame's own L4 header may be written: a
  // pod must not be able to aim the write at its IP header (its source address)
  // after port security looked at it.
  if (!vnetCsumIsL4(buf, frame, len, csumStart, csumOffset)) return false
  const sum = csumAdd(buf, frame + csumStart, len - csumStart, 0)
  // As the kernel's skb_checksum_help: a computed 0 is stored as 0xffff (equal in
  // ones' complement, and required for UDP where 0 means "no checksum").
  const c = csumFinish(sum) || 0xffff
  buf[frame + field] = c >>> 8
  buf[frame + field + 1] = c & 255
  return true
}
