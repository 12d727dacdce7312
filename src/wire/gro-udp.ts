/**
 * Receive-side coalescing of UDP datagrams (what Linux's UDP GRO does for
 * forwarded traffic): consecutive datagrams of one UDP/IPv4 flow, all of one
 * payload size but the last (which may be shorter), are merged into one
 * super-frame that a TAP with USO (TUN_F_USO4) takes in a single write, as a
 * GSO_UDP_L4 frame with a partial checksum. The pod's kernel cuts it back into
 * the same datagrams (__udp_gso_segment) before its sockets see them: every
 * datagram keeps its boundary, payload, addresses, ports, TOS, TTL and DF, and
 * its IP id, because only datagrams whose ids increase by one are merged (the
 * segmentation numbers them first id + k).
 *
 * A datagram may join only when nothing a receiver would see per datagram
 * differs: same MAC addresses, IPv4 without options or fragmentation, same
 * TOS, TTL, DF, addresses and ports, the next IP id, a payload no larger than
 * the first one's (a smaller one ends the merge), and a checksum that
 * verifies (a datagram without one, or with a bad one, goes alone: a merged
 * frame is handed over as verified).
 */
import { ETH_HLEN } from './ethernet'
import { u16, u32 } from './byteorder'
import { IPV4_OFF_ID, IPV4_OFF_FRAG, IPV4_OFF_TTL, IPV4_OFF_TOS, IPV4_OFF_SRC, PROTO_UDP } from './ipv4'
import { UDP_OFF_LEN, UDP_OFF_CSUM, UDP_HLEN } from './udp'
import { csumAddBulk, csumFold, csumPseudoV4 } from './checksum'
import { VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, VNET_HLEN, vnetWrite } from './vnet'
import { GRO_CSUM_BAD, GRO_CSUM_OK, GRO_CSUM_PARTIAL, groIpv4, groMergedIpv4, vnetWriteForDelivery } from './gro'

/** Headers in front of a merged datagram's payload: Ethernet + IPv4 (20) + UDP. */
export const GRO_UDP_HLEN = ETH_HLEN + 20 + UDP_HLEN

/**
 * Most datagrams in one merge: the kernel's UDP GSO limit (UDP_MAX_SEGMENTS,
 * 64 on older kernels, 128 on newer), so a merge never asks the pod's kernel
 * for more segments than it would make itself.
 */
export const GRO_UDP_MAX_SEGMENTS = 64

/**
 * If buf[frame, frame+len) is a UDP/IPv4 datagram that could start or join a
 * merge (untagged Ethernet, IPv4 without options, not a fragment, total and
 * UDP lengths exactly the frame's, a payload, a checksum present), returns its
 * header length (GRO_UDP_HLEN); otherwise 0.
 */
export function groUdpEligible(buf: Uint8Array, frame: number, len: number): number {
  if (len <= GRO_UDP_HLEN || !groIpv4(buf, frame, len, PROTO_UDP)) return 0
  const tot = len - ETH_HLEN
  const udp = frame + ETH_HLEN + 20
  if (((buf[udp + UDP_OFF_LEN] << 8) | buf[udp + UDP_OFF_LEN + 1]) !== tot - 20) return 0
  if (buf[udp + UDP_OFF_CSUM] === 0 && buf[udp + UDP_OFF_CSUM + 1] === 0) return 0
  return GRO_UDP_HLEN
}

/** The checksum of an eligible datagram: GRO_CSUM_OK, GRO_CSUM_PARTIAL (a Linux sender left it to the device) or GRO_CSUM_BAD. */
export function groUdpChecksum(buf: Uint8Array, frame: number, len: number): number {
  const ip = frame + ETH_HLEN
  const l4 = ip + 20
  const l4len = len - ETH_HLEN - 20
  const pseudo = csumPseudoV4(u32(buf, ip + IPV4_OFF_SRC), u32(buf, ip + IPV4_OFF_SRC + 4), PROTO_UDP, l4len)
  if (csumFold(csumAddBulk(buf, l4, l4len, pseudo)) === 0xffff) return GRO_CSUM_OK
  const stored = (buf[l4 + UDP_OFF_CSUM] << 8) | buf[l4 + UDP_OFF_CSUM + 1]
  return stored === csumFold(pseudo) ? GRO_CSUM_PARTIAL : GRO_CSUM_BAD
}

/** The IPv4 id of an eligible datagram. */
export function groUdpId(buf: Uint8Array, frame: number): number {
  return u16(buf, frame + ETH_HLEN + IPV4_OFF_ID)
}

/**
 * Whether eligible datagram s continues the merge whose first datagram is at
 * m and whose next IP id is nextId (payload sizes are the caller's check).
 */
export function groUdpCanAppend(mb: Uint8Array, m: number, nextId: number, sb: Uint8Array, s: number): boolean {
  // Ethernet addresses (12 bytes).
  for (let i = 0; i < 12; i++) if (mb[m + i] !== sb[s + i]) return false
  const mi = m + ETH_HLEN
  const si = s + ETH_HLEN
  if (mb[mi + IPV4_OFF_TOS] !== sb[si + IPV4_OFF_TOS] || mb[mi + IPV4_OFF_TTL] !== sb[si + IPV4_OFF_TTL]) return false
  if ((mb[mi + IPV4_OFF_FRAG] & 0x40) !== (sb[si + IPV4_OFF_FRAG] & 0x40)) return false
  if (u16(sb, si + IPV4_OFF_ID) !== nextId) return false
  // Addresses and ports: IP bytes 12..19 and UDP bytes 0..3.
  for (let i = 12; i < 24; i++) if (mb[mi + i] !== sb[si + i]) return false
  return true
}

/**
 * Finishes a merge built at out[vnet, vnet + VNET_HLEN + frameLen): with more
 * than one datagram, IPv4 total length and header checksum and the UDP length
 * cover the whole payload, the UDP checksum field holds the pseudo-header sum
 * of that length (partial, as a NIC driver hands over a GRO packet), and the
 * virtio-net header says GSO_UDP_L4 with gso_size = mss. One datagram is left
 * as it came.
 */
export function groUdpFinish(out: Uint8Array, vnet: number, frameLen: number, mss: number, segments: number): void {
  const frame = vnet + VNET_HLEN
  if (segments <= 1) {
    vnetWriteForDelivery(out, vnet, frameLen)
    return
  }
  const ip = frame + ETH_HLEN
  const tot = frameLen - ETH_HLEN
  const ulen = tot - 20
  out[ip + 20 + UDP_OFF_LEN] = ulen >>> 8
  out[ip + 20 + UDP_OFF_LEN + 1] = ulen & 255
  groMergedIpv4(out, ip, tot, PROTO_UDP, UDP_OFF_CSUM)
  vnetWrite(out, vnet, VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, GRO_UDP_HLEN, mss, ETH_HLEN + 20, UDP_OFF_CSUM)
}

