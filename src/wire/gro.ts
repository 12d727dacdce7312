/**
 * Receive-side coalescing (what the kernel's GRO does for TCP): consecutive
 * in-order segments of one TCP/IPv4 flow are merged into one super-frame that a
 * TAP with vnet headers takes in a single write, as a GSO frame whose checksum
 * is left partial (the pod's kernel treats it like a NIC-verified one).
 *
 * A segment may join a merge only when, as in Linux's tcp_gro_receive, nothing
 * differs that a receiver would see per segment: same addresses and ports, same
 * IP header length (no options), TOS, TTL and DF; the next sequence number;
 * same ack, window, TCP flags (CWR/PSH/FIN aside) and option bytes; and a
 * payload no larger than the first segment's (a smaller one ends the merge).
 * SYN, RST, URG, FIN and fragments are never merged; PSH may only come last.
 */
import { ETH_HLEN, ETH_OFF_TYPE, ETHERTYPE_IPV4 } from './ethernet'
import { u32 } from './byteorder'
import { IPV4_OFF_TOTAL_LEN, IPV4_OFF_FRAG, IPV4_OFF_PROTO, IPV4_OFF_TTL, IPV4_OFF_TOS, IPV4_OFF_CSUM, IPV4_OFF_SRC, PROTO_TCP } from './ipv4'
import { TCP_OFF_SEQ, TCP_OFF_ACK, TCP_OFF_FLAGS, TCP_OFF_CSUM, TCP_SYN, TCP_RST, TCP_URG, TCP_FIN, TCP_PSH, TCP_ACK, TCP_CWR, TCP_ECE } from './tcp'
import { csumAdd, csumAddBulk, csumFinish, csumFold, csumPseudoV4 } from './checksum'
import { VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HLEN, vnetWrite, vnetWriteNone } from './vnet'
import { PROTO_UDP } from './ipv4'

/** Largest IPv4 packet a merge may build. */
export const GRO_MAX_IP_LEN = 65535

/**
 * If buf[frame, frame+len) is a TCP/IPv4 segment that could start or join a
 * merge (untagged Ethernet, IPv4 without options or fragmentation, TCP with
 * payload and only ACK/PSH/ECE/CWR set), returns its header length
 * (Ethernet + IP + TCP); otherwise 0.
 */
export function groEligible(buf: Uint8Array, frame: number, len: number): number {
  if (len < ETH_HLEN + 40 || !groIpv4(buf, frame, len, PROTO_TCP)) return 0
  const ip = frame + ETH_HLEN
  const tot = len - ETH_HLEN
  const tcp = ip + 20
  const thl = (buf[tcp + 12] >>> 4) * 4
  if (thl < 20 || 20 + thl >= tot) return 0
  const flags = buf[tcp + TCP_OFF_FLAGS]
  if ((flags & (TCP_SYN | TCP_RST | TCP_URG | TCP_FIN)) !== 0 || (flags & TCP_ACK) === 0) return 0
  if ((flags & ~(TCP_ACK | TCP_PSH | TCP_ECE | TCP_CWR)) !== 0) return 0
  return ETH_HLEN + 20 + thl
}

/**
 * Whether buf[frame, frame+len) is an untagged Ethernet frame carrying an IPv4
 * packet of protocol `proto` without options and not a fragment (neither MF
 * nor an offset), whose total length is exactly the rest of the frame: the
 * shape every merge (TCP here, UDP in gro-udp.ts) starts from.
 */
export function groIpv4(buf: Uint8Array, frame: number, len: number, proto: number): boolean {
  if (len < ETH_HLEN + 20) return false
  if (((buf[frame + ETH_OFF_TYPE] << 8) | buf[frame + ETH_OFF_TYPE + 1]) !== ETHERTYPE_IPV4) return false
  const ip = frame + ETH_HLEN
  if (buf[ip] !== 0x45 || buf[ip + IPV4_OFF_PROTO] !== proto) return false
  if (((buf[ip + IPV4_OFF_FRAG] & 0x3f) | buf[ip + IPV4_OFF_FRAG + 1]) !== 0) return false
  return ((buf[ip + IPV4_OFF_TOTAL_LEN] << 8) | buf[ip + IPV4_OFF_TOTAL_LEN + 1]) === len - ETH_HLEN
}

/**
 * Whether segment s (eligible, header length sHdr) continues the merge whose
 * first segment's headers are at m (header length mHdr) and whose next expected
 * sequence number is nextSeq. Both frames are untagged Ethernet + IPv4 (20) + TCP.
 */
export function groCanAppend(mb: Uint8Array, m: number, mHdr: number, nextSeq: number,
  sb: Uint8Array, s: number, sHdr: number): boolean {
  if (mHdr !== sHdr) return false
  // Ethernet addresses (12 bytes) must match.
  for (let i = 0; i < 12; i++) if (mb[m + i] !== sb[s + i]) return false
  const mi = m + ETH_HLEN
  const si = s + ETH_HLEN
  if (mb[mi + IPV4_OFF_TOS] !== sb[si + IPV4_OFF_TOS] || mb[mi + IPV4_OFF_TTL] !== sb[si + IPV4_OFF_TTL]) return false
  if ((mb[mi + IPV4_OFF_FRAG] & 0x40) !== (sb[si + IPV4_OFF_FRAG] & 0x40)) return false
  // Addresses and ports: IP bytes 12..19 and TCP bytes 0..3.
  for (let i = 12; i < 24; i++) if (mb[mi + i] !== sb[si + i]) return false
  const mt = mi + 20
  const st = si + 20
  const seq = ((sb[st + TCP_OFF_SEQ] << 24) | (sb[st + TCP_OFF_SEQ + 1] << 16) | (sb[st + TCP_OFF_SEQ + 2] << 8) | sb[st + TCP_OFF_SEQ + 3]) >>> 0
  if (seq !== nextSeq) return false
  // Ack (4), data offset (1), flags except CWR/PSH (1), window (2).
  for (let i = TCP_OFF_ACK; i < TCP_OFF_ACK + 5; i++) if (mb[mt + i] !== sb[st + i]) return false
  if (((mb[mt + TCP_OFF_FLAGS] ^ sb[st + TCP_OFF_FLAGS]) & ~(TCP_CWR | TCP_PSH)) !== 0) return false
  if ((sb[st + TCP_OFF_FLAGS] & TCP_CWR) !== 0) return false
  if (mb[mt + 14] !== sb[st + 14] || mb[mt + 15] !== sb[st + 15]) return false
  // Options (timestamps and the like) must be byte-equal.
  for (let i = 20; i < mHdr - ETH_HLEN - 20; i++) if (mb[mt + i] !== sb[st + i]) return false
  return true
}

/**
 * Finishes a merge built at out[vnet, vnet + VNET_HLEN + frameLen): writes the
 * virtio-net header and fixes IPv4 total length and header checksum. With more
 * than one segment the frame becomes a GSO frame (gso_size = mss) with a partial
 * TCP checksum: the field holds the pseudo-header sum, as a NIC driver hands it
 * to the stack. One segment is left as it came, with a "no offload" header.
 */
export function groFinish(out: Uint8Array, vnet: number, frameLen: number, hdrLen: number, mss: number, segments: number, psh: boolean): void {
  const frame = vnet + VNET_HLEN
  if (segments <= 1) {
    vnetWriteForDelivery(out, vnet, frameLen)
    return
  }
  const ip = frame + ETH_HLEN
  const tot = frameLen - ETH_HLEN
  const tcp = ip + 20
  if (psh) out[tcp + TCP_OFF_FLAGS] |= TCP_PSH
  groMergedIpv4(out, ip, tot, PROTO_TCP, TCP_OFF_CSUM)
  vnetWrite(out, vnet, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, hdrLen, mss, ETH_HLEN + 20, TCP_OFF_CSUM)
}

/**
 * The IPv4 side of finishing a merge of IP packets of total length `tot` at
 * out[ip]: total length and header checksum, and the L4 checksum field (at
 * `csumField` from the L4 header) left partial, holding the folded (not
 * complemented) pseudo-header sum of the merged L4 length, as a NIC driver
 * hands a GRO packet to the stack.
 */
export function groMergedIpv4(out: Uint8Array, ip: number, tot: number, proto: number, csumField: number): void {
  out[ip + IPV4_OFF_TOTAL_LEN] = tot >>> 8
  out[ip + IPV4_OFF_TOTAL_LEN + 1] = tot & 255
  out[ip + IPV4_OFF_CSUM] = 0
  out[ip + IPV4_OFF_CSUM + 1] = 0
  const hc = csumFinish(csumAdd(out, ip, 20, 0))
  out[ip + IPV4_OFF_CSUM] = hc >>> 8
  out[ip + IPV4_OFF_CSUM + 1] = hc & 255
  const src = u32(out, ip + IPV4_OFF_SRC)
  const dst = u32(out, ip + IPV4_OFF_SRC + 4)
  const pseudo = csumFold(csumPseudoV4(src, dst, proto, tot - 20))
  out[ip + 20 + csumField] = pseudo >>> 8
  out[ip + 20 + csumField + 1] = pseudo & 255
}

/**
 * Writes the virtio-net header of a single frame from the underlay before it
 * goes to a pod. Normally "no offload". But a Linux sender whose underlay device
 * offers checksum offload and does not compute it (a veth: nested containers,
 * kind) puts VXLAN on the wire with the inner TCP/UDP checksum still partial:
 * the field holds only the folded pseudo-header sum. Such a frame is handed on
 * as partial (VNET_F_NEEDS_CSUM) so the pod's kernel accepts it, exactly as the
 * sender's kernel meant. Only frames whose checksum does not verify and whose
 * field equals the pseudo-header sum are treated so.
 */
export function vnetWriteForDelivery(out: Uint8Array, vnet: number, frameLen: number): void {
  const frame = vnet + VNET_HLEN
  vnetWriteNone(out, vnet)
  if (frameLen < ETH_HLEN + 28 || ((out[frame + ETH_OFF_TYPE] << 8) | out[frame + ETH_OFF_TYPE + 1]) !== ETHERTYPE_IPV4) return
  const ip = frame + ETH_HLEN
  if ((out[ip] >>> 4) !== 4) return
  const ihl = (out[ip] & 15) * 4
  const proto = out[ip + IPV4_OFF_PROTO]
  if (proto !== PROTO_TCP && proto !== PROTO_UDP) return
  if (((out[ip + IPV4_OFF_FRAG] & 0x3f) | out[ip + IPV4_OFF_FRAG + 1]) !== 0) return
  const tot = (out[ip + IPV4_OFF_TOTAL_LEN] << 8) | out[ip + IPV4_OFF_TOTAL_LEN + 1]
  if (tot < ihl + 8 || ETH_HLEN + tot > frameLen) return
  const l4 = ip + ihl
  const l4len = tot - ihl
  const field = proto === PROTO_TCP ? TCP_OFF_CSUM : 6
  if (proto === PROTO_TCP && l4len < 20) return
  const stored = (out[l4 + field] << 8) | out[l4 + field + 1]
  if (proto === PROTO_UDP && stored === 0) return // no UDP checksum at all
  const src = u32(out, ip + IPV4_OFF_SRC)
  const dst = u32(out, ip + IPV4_OFF_SRC + 4)
  const pseudo = csumPseudoV4(src, dst, proto, l4len)
  if (stored !== csumFold(pseudo)) return
  if (csumFold(csumAdd(out, l4, l4len, pseudo)) === 0xffff) return // a complete checksum that happens to match
  vnetWrite(out, vnet, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, ETH_HLEN + ihl, field)
}

/** What groChecksum() found. */
export const GRO_CSUM_BAD = 0
export const GRO_CSUM_OK = 1
/** The field holds only the pseudo-header sum: a Linux sender left it partial (see vnetWriteForDelivery). */
export const GRO_CSUM_PARTIAL = 2

/**
 * Checks the TCP checksum of an eligible segment (untagged Ethernet, IPv4
 * without options) before it joins a merge: a merged frame goes to the pod as
 * partial, i.e. as verified, so a corrupt segment must stay out of it (the
 * kernel's tcp4_gro_receive checks the same).
 */
export function groChecksum(buf: Uint8Array, frame: number, len: number): number {
  const ip = frame + ETH_HLEN
  const l4 = ip + 20
  const l4len = len - ETH_HLEN - 20
  const src = u32(buf, ip + IPV4_OFF_SRC)
  const dst = u32(buf, ip + IPV4_OFF_SRC + 4)
  const pseudo = csumPseudoV4(src, dst, PROTO_TCP, l4len)
  if (csumFold(csumAddBulk(buf, l4, l4len, pseudo)) === 0xffff) return GRO_CSUM_OK
  const stored = (buf[l4 + TCP_OFF_CSUM] << 8) | buf[l4 + TCP_OFF_CSUM + 1]
  return stored === csumFold(pseudo) ? GRO_CSUM_PARTIAL : GRO_CSUM_BAD
}
