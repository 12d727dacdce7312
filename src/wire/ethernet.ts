/**
 * Ethernet II header (IEEE 802.3 §3.1.1 framing, EtherType per RFC 9542) and
 * IEEE 802.1Q / 802.1ad VLAN tags, plus MAC helpers.
 *
 *   0         6         12     14     16     18     20     22
 *   +---------+---------+------+
 *   | dst     | src     | type |                              untagged: 14
 *   +---------+---------+------+------+------+
 *   | dst     | src     | 8100 | TCI  | type |                one tag:  18
 *   +---------+---------+------+------+------+------+------+
 *   | dst     | src     | 88a8 | TCI  | 8100 | TCI  | type |  QinQ:     22
 *   +---------+---------+------+------+------+------+------+
 *
 * A tag is TPID (0x8100 or 0x88a8) + TCI (PCP:3 DEI:1 VID:12); the real
 * EtherType follows the last tag. We pass tags through untouched: `ethCheck`
 * returns the length up to and including the real EtherType, so the L3 header
 * starts at `off + hlen` whatever the tagging.
 *
 * A MAC is kept as a (hi16, lo32) pair of numbers: bytes 0-1 and 2-5, both
 * unsigned. Two numbers fit V8's fast paths; one 48-bit double would too, but
 * the pair compares and hashes with 32-bit integer ops.
 *
 * Hot path: no allocation, no exceptions. Accessors trust the buffer once
 * `ethCheck` has passed.
 */
import { Malformed } from './malformed'
import { putU16, putU32, u16, u32 } from './byteorder'

export const ETH_OFF_DST = 0
export const ETH_OFF_SRC = ETH_OFF_DST + 6
export const ETH_OFF_TYPE = ETH_OFF_SRC + 6
export const ETH_HLEN = ETH_OFF_TYPE + 2
export const ETH_ALEN = 6

/** An 802.1Q / 802.1ad tag: TPID (2) + TCI (2). */
export const VLAN_TAG_LEN = 4
/** Offset of the TCI of the outermost tag (the TPID sits at ETH_OFF_TYPE). */
export const ETH_OFF_VLAN_TCI = ETH_OFF_TYPE + 2
export const ETH_HLEN_VLAN = ETH_HLEN + VLAN_TAG_LEN
export const ETH_HLEN_QINQ = ETH_HLEN + 2 * VLAN_TAG_LEN
/** IEEE 802.1Q §9.6: VID is the low 12 bits of the TCI. */
export const VLAN_VID_MASK = 0x0fff

/** Minimum frame without FCS (IEEE 802.3 §4.4.2: 64 with FCS); senders pad to it. */
export const ETH_ZLEN = 60

export const ETHERTYPE_IPV4 = 0x0800
export const ETHERTYPE_ARP = 0x0806
export const ETHERTYPE_VLAN = 0x8100
export const ETHERTYPE_IPV6 = 0x86dd
/** IEEE 802.1ad service tag (S-tag), the outer tag of QinQ. */
export const ETHERTYPE_QINQ = 0x88a8

function isTpid(t: number): boolean {
  // 0x9100 (pre-802.1ad QinQ) is deliberately not a TPID here: nothing we
  // talk to emits it, and such frames still pass through as an unknown type.
  return t === ETHERTYPE_VLAN || t === ETHERTYPE_QINQ
}

/**
 * Checks an Ethernet header at `off` with `len` bytes available.
 * Returns 14 untagged, 18 with one tag, 22 with two (QinQ or double 802.1Q),
 * or `Malformed.Truncated`. A third tag is not unwrapped: the frame checks
 * fine with hlen 22 and `ethTypeAfterTags` reports 0x8100, an EtherType the
 * pipeline does not handle, so it is dropped as unknown rather than malformed.
 * EtherType values below 0x0600 (802.3 length field) are not rejected either.
 */
export function ethCheck(buf: Uint8Array, off: number, len: number): number {
  if (len > buf.length - off) len = buf.length - off // never trust len past the buffer
  if (off < 0 || len < ETH_HLEN) return Malformed.Truncated
  if (!isTpid(u16(buf, off + ETH_OFF_TYPE))) return ETH_HLEN
  if (len < ETH_HLEN_VLAN) return Malformed.Truncated
  if (!isTpid(u16(buf, off + ETH_OFF_TYPE + VLAN_TAG_LEN))) return ETH_HLEN_VLAN
  if (len < ETH_HLEN_QINQ) return Malformed.Truncated
  return ETH_HLEN_QINQ
}

/** The outermost EtherType (a TPID if the frame is tagged). */
export function ethType(buf: Uint8Array, off: number): number {
  return u16(buf, off + ETH_OFF_TYPE)
}

/** The EtherType after any tags; `hlen` is what `ethCheck` returned. */
export function ethTypeAfterTags(buf: Uint8Array, off: number, hlen: number): number {
  return u16(buf, off + hlen - 2)
}

/** VID of the outermost tag; only meaningful when `ethCheck` returned > 14. */
export function ethVlanVid(buf: Uint8Array, off: number): number {
  return u16(buf, off + ETH_OFF_VLAN_TCI) & VLAN_VID_MASK
}

export function setEthType(buf: Uint8Array, off: number, type: number): void {
  putU16(buf, off + ETH_OFF_TYPE, type)
}

/** Writes an untagged 14-byte header; returns ETH_HLEN. */
export function ethWriteHeader(
  buf: Uint8Array, off: number,
  dstHi: number, dstLo: number, srcHi: number, srcLo: number, type: number,
): number {
  macWrite(buf, off + ETH_OFF_DST, dstHi, dstLo)
  macWrite(buf, off + ETH_OFF_SRC, srcHi, srcLo)
  setEthType(buf, off, type)
  return ETH_HLEN
}

/** Bytes 0-1 of the MAC at `o`, as an unsigned 16-bit number. */
export function macHi(buf: Uint8Array, o: number): number {
  return u16(buf, o)
}

/** Bytes 2-5 of the MAC at `o`, as an unsigned 32-bit number. */
export function macLo(buf: Uint8Array, o: number): number {
  return u32(buf, o + 2)
}

/**
 * IEEE 802 addressing: the I/G bit (least significant bit of the first octet) marks
 * a group address. Broadcast is the all-ones group, so it is multicast too,
 * which is what flooding and "never learn a group source" both want.
 */
export function macIsMulticast(buf: Uint8Array, o: number): boolean {
  return (buf[o] & 1) !== 0
}

export function macIsBroadcast(buf: Uint8Array, o: number): boolean {
  return (buf[o] & buf[o + 1] & buf[o + 2] & buf[o + 3] & buf[o + 4] & buf[o + 5]) === 0xff
}

/** All-zero MAC: not a valid station address (never learned). */
export function macIsZero(buf: Uint8Array, o: number): boolean {
  return (buf[o] | buf[o + 1] | buf[o + 2] | buf[o + 3] | buf[o + 4] | buf[o + 5]) === 0
}

export function macEquals(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  return a[ao] === b[bo] && a[ao + 1] === b[bo + 1] && a[ao + 2] === b[bo + 2] &&
    a[ao + 3] === b[bo + 3] && a[ao + 4] === b[bo + 4] && a[ao + 5] === b[bo + 5]
}

/** True if the MAC at `o` is (hi, lo); compares in place without building numbers. */
export function macIs(buf: Uint8Array, o: number, hi: number, lo: number): boolean {
  return macHi(buf, o) === (hi & 0xffff) && macLo(buf, o) === lo >>> 0
}

export function macWrite(buf: Uint8Array, o: number, hi: number, lo: number): void {
  putU16(buf, o, hi)
  putU32(buf, o + 2, lo)
}

export function macCopy(dst: Uint8Array, doff: number, src: Uint8Array, soff: number): void {
  dst[doff] = src[soff]
  dst[doff + 1] = src[soff + 1]
  dst[doff + 2] = src[soff + 2]
  dst[doff + 3] = src[soff + 3]
  dst[doff + 4] = src[soff + 4]
  dst[doff + 5] = src[soff + 5]
}
