/**
 * One-line, tcpdump-like summaries of frames for logs, the CLI and test
 * failure messages. NOT for the hot path: this builds strings freely.
 *
 *   02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1.1234 > 10.0.0.2.80 TCP [S] len 0
 *   02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1
 *
 * Every layer is run through its `*Check` first, so a malformed frame gives
 * "IPv4 malformed (BadTotalLength)" instead of garbage or an exception.
 * TCP flags use tcpdump's letters and order: F S R P . (ACK) U E W.
 */
import { ipv4Format, macFormat } from './addr'
import { malformedName } from './malformed'
import {
  ETH_HLEN, ETH_OFF_DST, ETH_OFF_SRC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6,
  VLAN_TAG_LEN, VLAN_VID_MASK, ethCheck, ethTypeAfterTags, macHi, macLo,
} from './ethernet'
import { u16 } from './byteorder'
import { ARP_OFF_SHA, ARP_OP_REPLY, ARP_OP_REQUEST, arpCheck, arpOp, arpSpa, arpTpa } from './arp'
import {
  PROTO_ICMP, PROTO_TCP, PROTO_UDP,
  ipv4Check, ipv4Dst, ipv4FragOff, ipv4IsFragment, ipv4Proto, ipv4Src, ipv4TotalLen,
} from './ipv4'
import {
  ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_NEIGHBOR_ADVERT, ICMPV6_NEIGHBOR_SOLICIT,
  ICMPV6_ROUTER_ADVERT, ICMPV6_ROUTER_SOLICIT, IPV6_HLEN, IPV6_OFF_DST, IPV6_OFF_SRC, PROTO_ICMPV6,
  ipv6Check, ipv6NextHeader, ipv6PayloadLen,
} from './ipv6'
import { UDP_HLEN, udpCheck, udpDstPort, udpLen, udpSrcPort } from './udp'
import { TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, tcpCheck, tcpDstPort, tcpFlags, tcpSrcPort } from './tcp'
import {
  ICMP_CODE_FRAG_NEEDED, ICMP_CODE_HOST_UNREACH, ICMP_CODE_NET_UNREACH, ICMP_CODE_PORT_UNREACH,
  ICMP_CODE_PROTO_UNREACH, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED,
  icmpCheck, icmpCode, icmpEchoId, icmpEchoSeq, icmpMtu, icmpType,
} from './icmp'

/**
 * RFC 5952 text for the 16-byte IPv6 address at `off`: lowercase, no leading
 * zeros, the longest run of two or more zero groups (the first on a tie)
 * shortened to "::".
 */
export function ipv6Format(buf: Uint8Array, off: number): string {
  const groups: number[] = []
  for (let i = 0; i < 8; i++) groups.push(u16(buf, off + 2 * i))
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = (g: number): string => g.toString(16)
  if (bestLen < 2) return groups.map(hex).join(':')
  const head = groups.slice(0, bestStart).map(hex).join(':')
  const tail = groups.slice(bestStart + bestLen).map(hex).join(':')
  return `${head}::${tail}`
}

/** tcpdump's flag string: "S", "S.", "P.", "F.", "R", "." or "none". */
export function tcpFlagsText(flags: number): string {
  let s = ''
  if (flags & TCP_FIN) s += 'F'
  if (flags & TCP_SYN) s += 'S'
  if (flags & TCP_RST) s += 'R'
  if (flags & TCP_PSH) s += 'P'
  if (flags & TCP_ACK) s += '.'
  if (flags & TCP_URG) s += 'U'
  if (flags & TCP_ECE) s += 'E'
  if (flags & TCP_CWR) s += 'W'
  return s === '' ? 'none' : s
}

function macAt(buf: Uint8Array, o: number): string {
  return macFormat(macHi(buf, o), macLo(buf, o))
}

function describeArp(buf: Uint8Array, off: number, len: number): string {
  const r = arpCheck(buf, off, len)
  if (r < 0) return `ARP malformed (${malformedName(r)})`
  const op = arpOp(buf, off)
  const spa = ipv4Format(arpSpa(buf, off))
  const tpa = ipv4Format(arpTpa(buf, off))
  if (op === ARP_OP_REQUEST) return `ARP who-has ${tpa} tell ${spa}`
  if (op === ARP_OP_REPLY) return `ARP reply ${spa} is-at ${macAt(buf, off + ARP_OFF_SHA)}`
  return `ARP op ${op} ${spa} > ${tpa}`
}

function describeIcmp(buf: Uint8Array, off: number, len: number): string {
  const r = icmpCheck(buf, off, len)
  if (r < 0) return `ICMP malformed (${malformedName(r)})`
  const type = icmpType(buf, off)
  const code = icmpCode(buf, off)
  switch (type) {
    case ICMP_ECHO_REQUEST:
    case ICMP_ECHO_REPLY:
      return `ICMP echo ${type === ICMP_ECHO_REQUEST ? 'request' : 'reply'} id ${icmpEchoId(buf, off)} seq ${icmpEchoSeq(buf, off)}`
    case ICMP_DEST_UNREACH:
      switch (code) {
        case ICMP_CODE_NET_UNREACH: return 'ICMP net unreachable'
        case ICMP_CODE_HOST_UNREACH: return 'ICMP host unreachable'
        case ICMP_CODE_PROTO_UNREACH: return 'ICMP protocol unreachable'
        case ICMP_CODE_PORT_UNREACH: return 'ICMP port unreachable'
        case ICMP_CODE_FRAG_NEEDED: return `ICMP frag needed mtu ${icmpMtu(buf, off)}`
        default: return `ICMP unreachable code ${code}`
      }
    case ICMP_TIME_EXCEEDED:
      return `ICMP time exceeded code ${code}`
    default:
      return `ICMP type ${type} code ${code}`
  }
}

/** "a.sport > b.dport TCP [S.] len 5" or "UDP len 12" after an L3 header. */
function describeL4(
  buf: Uint8Array, l4: number, l4len: number, proto: number, src: string, dst: string, firstFragment: boolean,
): string {
  if (proto === PROTO_TCP) {
    const r = tcpCheck(buf, l4, l4len)
    if (r < 0) return `${src} > ${dst} TCP malformed (${malformedName(r)})`
    return `${src}.${tcpSrcPort(buf, l4)} > ${dst}.${tcpDstPort(buf, l4)} TCP [${tcpFlagsText(tcpFlags(buf, l4))}] len ${l4len - r}`
  }
  if (proto === PROTO_UDP) {
    // A first fragment holds the UDP header but not the whole datagram the
    // length field counts, so only the header has to fit.
    const r = firstFragment && l4len >= UDP_HLEN ? UDP_HLEN : udpCheck(buf, l4, l4len)
    if (r < 0) return `${src} > ${dst} UDP malformed (${malformedName(r)})`
    return `${src}.${udpSrcPort(buf, l4)} > ${dst}.${udpDstPort(buf, l4)} UDP len ${udpLen(buf, l4) - UDP_HLEN}`
  }
  return `${src} > ${dst} proto ${proto} len ${l4len}`
}

function describeIpv4(buf: Uint8Array, off: number, len: number): string {
  const ihl = ipv4Check(buf, off, len)
  if (ihl < 0) return `IPv4 malformed (${malformedName(ihl)})`
  const src = ipv4Format(ipv4Src(buf, off))
  const dst = ipv4Format(ipv4Dst(buf, off))
  const proto = ipv4Proto(buf, off)
  const l4len = ipv4TotalLen(buf, off) - ihl
  if (ipv4FragOff(buf, off) !== 0) {
    // Only the first fragment carries the L4 header.
    return `IPv4 ${src} > ${dst} proto ${proto} frag off ${ipv4FragOff(buf, off)} len ${l4len}`
  }
  const first = ipv4IsFragment(buf, off)
  const frag = first ? ' (first fragment)' : ''
  if (proto === PROTO_ICMP) return `IPv4 ${src} > ${dst} ${describeIcmp(buf, off + ihl, l4len)}${frag}`
  return `IPv4 ${describeL4(buf, off + ihl, l4len, proto, src, dst, first)}${frag}`
}

const ICMPV6_NAMES: Record<number, string> = {
  [ICMPV6_ECHO_REQUEST]: 'echo request',
  [ICMPV6_ECHO_REPLY]: 'echo reply',
  [ICMPV6_ROUTER_SOLICIT]: 'router solicitation',
  [ICMPV6_ROUTER_ADVERT]: 'router advertisement',
  [ICMPV6_NEIGHBOR_SOLICIT]: 'neighbor solicitation',
  [ICMPV6_NEIGHBOR_ADVERT]: 'neighbor advertisement',
}

function describeIpv6(buf: Uint8Array, off: number, len: number): string {
  const r = ipv6Check(buf, off, len)
  if (r < 0) return `IPv6 malformed (${malformedName(r)})`
  const src = ipv6Format(buf, off + IPV6_OFF_SRC)
  const dst = ipv6Format(buf, off + IPV6_OFF_DST)
  const next = ipv6NextHeader(buf, off)
  const plen = ipv6PayloadLen(buf, off)
  if (next === PROTO_ICMPV6) {
    if (plen < 4) return `IPv6 ${src} > ${dst} ICMPv6 malformed (Truncated)`
    const type = buf[off + IPV6_HLEN]
    return `IPv6 ${src} > ${dst} ICMPv6 ${ICMPV6_NAMES[type] ?? `type ${type}`}`
  }
  return `IPv6 ${describeL4(buf, off + IPV6_HLEN, plen, next, src, dst, false)}`
}

/**
 * One-line summary of the Ethernet frame at [off, off+len): MACs, VLAN tags,
 * then ARP, IPv4 (TCP, UDP, ICMP), IPv6 (TCP, UDP, ICMPv6) or the EtherType.
 */
export function describeFrame(buf: Uint8Array, off: number, len: number): string {
  const hlen = ethCheck(buf, off, len)
  if (hlen < 0) return `Ethernet malformed (${malformedName(hlen)}) len ${len}`
  let s = `${macAt(buf, off + ETH_OFF_SRC)} > ${macAt(buf, off + ETH_OFF_DST)}`
  for (let t = off + ETH_HLEN; t < off + hlen; t += VLAN_TAG_LEN) s += ` vlan ${u16(buf, t) & VLAN_VID_MASK}`
  const type = ethTypeAfterTags(buf, off, hlen)
  const l3 = off + hlen
  const l3len = len - hlen
  switch (type) {
    case ETHERTYPE_ARP: return `${s} ${describeArp(buf, l3, l3len)}`
    case ETHERTYPE_IPV4: return `${s} ${describeIpv4(buf, l3, l3len)}`
    case ETHERTYPE_IPV6: return `${s} ${describeIpv6(buf, l3, l3len)}`
    default: return `${s} ethertype 0x${type.toString(16).padStart(4, '0')} len ${l3len}`
  }
}
