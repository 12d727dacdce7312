/**
 * In-place NAT of IPv4 packets: addresses and TCP/UDP ports, with every
 * checksum they feed patched incrementally (RFC 1624 eqn 3, wire/checksum.ts),
 * never recomputed over the payload.
 *
 * What each rewrite touches
 *   IPv4 address   the IPv4 header checksum, and the TCP/UDP checksum (the
 *                  address is in the pseudo-header, RFC 9293 §3.1, RFC 768).
 *   TCP/UDP port   the TCP/UDP checksum only.
 *   ICMP           no pseudo-header: outer address changes leave the ICMP
 *                  checksum alone; bytes changed inside an ICMP error's
 *                  embedded packet are part of the ICMP message and patch it.
 *   UDP checksum 0 means "none sent" (RFC 768) and stays 0; a result of 0
 *                  is stored as 0xffff (udpCsumUpdate*).
 *
 * Partial checksums (TAP offload)
 *   A frame from a pod's TAP may carry VIRTIO_NET_HDR_F_NEEDS_CSUM: its L4
 *   checksum field then holds only the folded pseudo-header sum, not
 *   complemented (Linux CHECKSUM_PARTIAL: `th->check = ~tcp_v4_check(len,
 *   saddr, daddr, 0)`), and whoever completes it sums from csum_start to the
 *   end over that field. Pass `l4Partial = true` for such frames:
 *   - an address change adjusts the field as a plain sum, P' = P - old + new
 *     (Linux inet_proto_csum_replace4 with pseudohdr on a CHECKSUM_PARTIAL
 *     skb): the same RFC 1624 arithmetic without the complements;
 *   - a port change leaves the field alone: ports are not in the pseudo-
 *     header, and the completion will sum the new port bytes itself (Linux
 *     inet_proto_csum_replace2 with pseudohdr false does nothing either);
 *   - UDP's "0 means none" rule does not apply to a partial field.
 *   The IPv4 header checksum is always complete (virtio offloads only L4).
 *
 * Offsets: `l3` is the IPv4 header, `l4` the TCP/UDP header (l3 + IHL).
 * Callers have checked the headers (ipv4Check, tcpCheck/udpCheck).
 * Hot path: no allocation, no exceptions.
 */
import { putU16, putU32, u16, u32 } from '../wire/byteorder'
import { csumFold, csumUpdate16, csumUpdate32, udpCsumUpdate16, udpCsumUpdate32 } from '../wire/checksum'
import { ETH_OFF_DST, ETH_OFF_SRC, macWrite } from '../wire/ethernet'
import { ICMP_DEST_UNREACH, ICMP_HLEN, ICMP_OFF_CSUM, ICMP_TIME_EXCEEDED } from '../wire/icmp'
import { IPV4_OFF_CSUM, IPV4_OFF_DST, IPV4_OFF_PROTO, IPV4_OFF_SRC, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipv4FragOff } from '../wire/ipv4'
import { steerWorkerV4 } from '../wire/steer-hash'
import { TCP_OFF_CSUM, TCP_OFF_DPORT, TCP_OFF_SPORT } from '../wire/tcp'
import { UDP_OFF_CSUM, UDP_OFF_DPORT, UDP_OFF_SPORT } from '../wire/udp'

/** ICMP type 12 (RFC 792): parameter problem, also an error carrying the offending header. */
export const ICMP_PARAM_PROBLEM = 12
/** ICMP type 4 (RFC 792, deprecated by RFC 6633): source quench, an error too. */
export const ICMP_SOURCE_QUENCH = 4

/** True for the ICMP types that embed the IP header of the packet they are about. */
export function icmpIsError(type: number): boolean {
  return type === ICMP_DEST_UNREACH || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAM_PROBLEM ||
    type === ICMP_SOURCE_QUENCH
}

/**
 * The datapath worker (of `workers`, wire/steer-hash.ts) whose flow the ICMP
 * error in the IPv4 packet at `l3` (total length up to `end`) is about: the
 * steering hash of its embedded packet's addresses and TCP/UDP ports, which
 * is symmetric, so it is the worker that reads that flow and holds its NAT
 * entry (Conntrack.pin). -1 if the packet is not an unfragmented ICMP error
 * about an unfragmented TCP or UDP packet with its ports.
 */
export function icmpErrorWorker(buf: Uint8Array, l3: number, end: number, workers: number): number {
  const ihl = (buf[l3] & 0x0f) << 2
  if (l3 + 20 > end || ihl < 20 || buf[l3 + IPV4_OFF_PROTO] !== PROTO_ICMP || ipv4FragOff(buf, l3) !== 0) return -1
  const icmp = l3 + ihl
  if (icmp + ICMP_HLEN > end || !icmpIsError(buf[icmp])) return -1
  const l4 = icmpQuotedL4(buf, icmp, end)
  if (l4 < 0) return -1
  const ip = icmp + ICMP_HLEN
  return steerWorkerV4(u32(buf, ip + IPV4_OFF_SRC), u32(buf, ip + IPV4_OFF_DST), u16(buf, l4), u16(buf, l4 + 2), workers)
}

/**
 * Offset of the TCP or UDP header quoted by the ICMP error at `icmp` (message
 * ending at `end`): its embedded packet is IPv4 with a valid header length,
 * not a later fragment, and at least 8 bytes of the L4 header are there
 * (ports and, for UDP, the checksum; RFC 792's minimum). -1 otherwise.
 */
export function icmpQuotedL4(buf: Uint8Array, icmp: number, end: number): number {
  const ip = icmp + ICMP_HLEN
  if (ip + 20 > end || buf[ip] >>> 4 !== 4) return -1
  const ihl = (buf[ip] & 0x0f) << 2
  const l4 = ip + ihl
  if (ihl < 20 || l4 + 8 > end) return -1
  const proto = buf[ip + IPV4_OFF_PROTO]
  if ((proto !== PROTO_TCP && proto !== PROTO_UDP) || ipv4FragOff(buf, ip) !== 0) return -1
  return l4
}

/** Offset of the checksum field in the L4 header of `proto`, or -1 if it has none we patch. */
export function l4CsumOffset(proto: number): number {
  return proto === PROTO_TCP ? TCP_OFF_CSUM : proto === PROTO_UDP ? UDP_OFF_CSUM : -1
}

/**
 * A partial (pseudo-header only) checksum field P after a 32-bit word of the
 * pseudo-header changed from `oldU32` to `newU32`: fold(P + ~old + new).
 */
export function csumPartialUpdate32(p: number, oldU32: number, newU32: number): number {
  return csumFold((p & 0xffff) +
    (~(oldU32 >>> 16) & 0xffff) + (~oldU32 & 0xffff) +
    ((newU32 >>> 16) & 0xffff) + (newU32 & 0xffff))
}

/** Patches the L4 checksum at `l4` for an address change (pseudo-header). */
function l4AddrChanged(buf: Uint8Array, l4: number, proto: number, oldIp: number, newIp: number, l4Partial: boolean): void {
  if (proto === PROTO_TCP) {
    const o = l4 + TCP_OFF_CSUM
    const c = u16(buf, o)
    putU16(buf, o, l4Partial ? csumPartialUpdate32(c, oldIp, newIp) : csumUpdate32(c, oldIp, newIp))
  } else if (proto === PROTO_UDP) {
    const o = l4 + UDP_OFF_CSUM
    const c = u16(buf, o)
    putU16(buf, o, l4Partial ? csumPartialUpdate32(c, oldIp, newIp) : udpCsumUpdate32(c, oldIp, newIp))
  }
}

function setAddr(buf: Uint8Array, l3: number, field: number, l4: number, proto: number, ip: number, l4Partial: boolean): void {
  const o = l3 + field
  const old = u32(buf, o)
  ip = ip >>> 0
  if (old === ip) return
  putU32(buf, o, ip)
  const co = l3 + IPV4_OFF_CSUM
  putU16(buf, co, csumUpdate32(u16(buf, co), old, ip))
  l4AddrChanged(buf, l4, proto, old, ip, l4Partial)
}

function setPort(buf: Uint8Array, l4: number, field: number, proto: number, port: number, l4Partial: boolean): void {
  const o = l4 + field
  const old = u16(buf, o)
  port &= 0xffff
  if (old === port) return
  putU16(buf, o, port)
  if (l4Partial) return // ports are not in the pseudo-header
  if (proto === PROTO_TCP) {
    const co = l4 + TCP_OFF_CSUM
    putU16(buf, co, csumUpdate16(u16(buf, co), old, port))
  } else {
    const co = l4 + UDP_OFF_CSUM
    putU16(buf, co, udpCsumUpdate16(u16(buf, co), old, port))
  }
}

/**
 * Sets the IPv4 source address; patches the header checksum and, for TCP/UDP
 * (`proto`, header at `l4`), the L4 checksum. Any other `proto`: header only.
 */
export function natSetSrcIp(buf: Uint8Array, l3: number, l4: number, proto: number, ip: number, l4Partial: boolean): void {
  setAddr(buf, l3, IPV4_OFF_SRC, l4, proto, ip, l4Partial)
}

/** As natSetSrcIp for the destination address (DNAT). */
export function natSetDstIp(buf: Uint8Array, l3: number, l4: number, proto: number, ip: number, l4Partial: boolean): void {
  setAddr(buf, l3, IPV4_OFF_DST, l4, proto, ip, l4Partial)
}

/** Sets the TCP/UDP source port at `l4`, patching the L4 checksum (not when partial). */
export function natSetSrcPort(buf: Uint8Array, l4: number, proto: number, port: number, l4Partial: boolean): void {
  setPort(buf, l4, proto === PROTO_TCP ? TCP_OFF_SPORT : UDP_OFF_SPORT, proto, port, l4Partial)
}

/** Sets the TCP/UDP destination port at `l4`, patching the L4 checksum (not when partial). */
export function natSetDstPort(buf: Uint8Array, l4: number, proto: number, port: number, l4Partial: boolean): void {
  setPort(buf, l4, proto === PROTO_TCP ? TCP_OFF_DPORT : UDP_OFF_DPORT, proto, port, l4Partial)
}

/**
 * Rewrites a TCP/UDP packet's whole tuple to (src:sport -> dst:dport);
 * fields already equal are skipped. DNAT, reverse SNAT and hairpin SNAT are
 * all this with different tuples.
 */
export function natRewrite(
  buf: Uint8Array, l3: number, l4: number, proto: number,
  src: number, dst: number, sport: number, dport: number, l4Partial: boolean,
): void {
  setAddr(buf, l3, IPV4_OFF_SRC, l4, proto, src, l4Partial)
  setAddr(buf, l3, IPV4_OFF_DST, l4, proto, dst, l4Partial)
  setPort(buf, l4, proto === PROTO_TCP ? TCP_OFF_SPORT : UDP_OFF_SPORT, proto, sport, l4Partial)
  setPort(buf, l4, proto === PROTO_TCP ? TCP_OFF_DPORT : UDP_OFF_DPORT, proto, dport, l4Partial)
}

/** Sets the Ethernet source MAC of the frame at `frame` (e.g. to the router MAC). */
export function natSetEthSrc(buf: Uint8Array, frame: number, hi: number, lo: number): void {
  macWrite(buf, frame + ETH_OFF_SRC, hi, lo)
}

/** Sets the Ethernet destination MAC of the frame at `frame`. */
export function natSetEthDst(buf: Uint8Array, frame: number, hi: number, lo: number): void {
  macWrite(buf, frame + ETH_OFF_DST, hi, lo)
}

// ---- ICMP errors --------------------------------------------------------------

/** Writes a 16-bit word inside the ICMP message at `icmp` and patches its checksum. */
function icmpPut16(buf: Uint8Array, icmp: number, o: number, v: number): void {
  const old = u16(buf, o)
  v &= 0xffff
  if (old === v) return
  putU16(buf, o, v)
  const co = icmp + ICMP_OFF_CSUM
  putU16(buf, co, csumUpdate16(u16(buf, co), old, v))
}

/** An address of the embedded header: the address, the inner IP checksum, the inner L4 checksum, the ICMP checksum. */
function innerSetAddr(buf: Uint8Array, icmp: number, end: number, ip: number, field: number, l4: number, proto: number, addr: number): void {
  const o = ip + field
  const old = u32(buf, o)
  addr = addr >>> 0
  if (old === addr) return
  const ico = ip + IPV4_OFF_CSUM
  icmpPut16(buf, icmp, ico, csumUpdate32(u16(buf, ico), old, addr))
  icmpPut16(buf, icmp, o, addr >>> 16)
  icmpPut16(buf, icmp, o + 2, addr)
  const csOff = l4CsumOffset(proto)
  if (csOff >= 0 && l4 + csOff + 2 <= end) {
    const co = l4 + csOff
    const c = u16(buf, co)
    icmpPut16(buf, icmp, co, proto === PROTO_TCP ? csumUpdate32(c, old, addr) : udpCsumUpdate32(c, old, addr))
  }
}

function innerSetPort(buf: Uint8Array, icmp: number, end: number, l4: number, field: number, proto: number, port: number): void {
  const o = l4 + field
  const old = u16(buf, o)
  port &= 0xffff
  if (old === port) return
  icmpPut16(buf, icmp, o, port)
  const csOff = l4CsumOffset(proto)
  if (csOff >= 0 && l4 + csOff + 2 <= end) {
    const co = l4 + csOff
    const c = u16(buf, co)
    icmpPut16(buf, icmp, co, proto === PROTO_TCP ? csumUpdate16(c, old, port) : udpCsumUpdate16(c, old, port))
  }
}

/**
 * Translates an ICMP error about a NATed flow (RFC 5508 §4: the embedded
 * packet must be translated as the NAT translated the original, and the outer
 * header like any packet going the error's way).
 *
 * `l3` is the outer IPv4 header, `icmp` the ICMP header (l3 + IHL) and `end`
 * the end of the ICMP message (l3 + total length). The embedded packet starts
 * at icmp + 8; it is one the other end sent, so it travels opposite to the
 * error. The caller gives the tuple the error itself must carry after NAT:
 * the outer header becomes src -> dst, and the embedded packet, which runs the
 * other way, becomes (dst:dport -> src:sport) (its source is where the error
 * goes). The embedded IP header checksum, the embedded TCP/UDP checksum when
 * it is inside the message (UDP's always is; TCP's needs 18 bytes of the
 * header), and the ICMP checksum are patched; the outer header checksum too.
 * Returns false, changing nothing, if the embedded headers do not fit in
 * [icmp, end) (the IP header and 8 bytes of L4, RFC 792) or are not TCP/UDP.
 */
export function natIcmpError(
  buf: Uint8Array, l3: number, icmp: number, end: number,
  src: number, dst: number, sport: number, dport: number,
): boolean {
  const ip = icmp + ICMP_HLEN
  if (ip + 20 > end) return false
  const ihl = (buf[ip] & 0x0f) << 2
  if (buf[ip] >>> 4 !== 4 || ihl < 20) return false
  const l4 = ip + ihl
  if (l4 + 8 > end) return false
  const proto = buf[ip + 9]
  if (proto !== PROTO_TCP && proto !== PROTO_UDP) return false
  // Outer header: the ICMP checksum has no pseudo-header, so proto ICMP
  // makes setAddr patch the IPv4 header checksum only.
  setAddr(buf, l3, IPV4_OFF_SRC, icmp, 1, src, false)
  setAddr(buf, l3, IPV4_OFF_DST, icmp, 1, dst, false)
  // Embedded packet, reversed.
  innerSetAddr(buf, icmp, end, ip, IPV4_OFF_SRC, l4, proto, dst)
  innerSetAddr(buf, icmp, end, ip, IPV4_OFF_DST, l4, proto, src)
  innerSetPort(buf, icmp, end, l4, proto === PROTO_TCP ? TCP_OFF_SPORT : UDP_OFF_SPORT, proto, dport)
  innerSetPort(buf, icmp, end, l4, proto === PROTO_TCP ? TCP_OFF_DPORT : UDP_OFF_DPORT, proto, sport)
  return true
}
