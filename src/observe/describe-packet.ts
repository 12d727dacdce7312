/**
 * One-line summaries of captured packets, VXLAN aware, for `tapestry sniff`
 * and `tapestry capture` without -w. NOT for the hot path (builds strings).
 *
 *   12:00:01.000123 192.168.250.2.40001 > 192.168.250.1.4789 VXLAN vni 42: 02:00:0a:f4:02:02 > 02:00:0a:f4:01:02 IPv4 10.244.2.2.5201 > 10.244.1.2.40000 TCP [S.] len 0
 *
 * The outer part is "src.port > dst.port VXLAN vni N", the inner part is
 * wire/decode.ts's describeFrame (MACs, IP, ports, TCP flags). A packet that is
 * not VXLAN on one of `vxlanPorts` is described as a plain frame.
 */
import { ipv4Format } from '../wire/addr'
import { u16 } from '../wire/byteorder'
import { describeFrame } from '../wire/decode'
import { ETHERTYPE_IPV4, ethCheck, ethTypeAfterTags } from '../wire/ethernet'
import { PROTO_UDP, ipv4Check, ipv4Dst, ipv4FragOff, ipv4Proto, ipv4Src, ipv4TotalLen } from '../wire/ipv4'
import { malformedName } from '../wire/malformed'
import { UDP_HLEN, udpCheck, udpDstPort, udpSrcPort } from '../wire/udp'
import { VXLAN_HLEN, vxlanCheck, vxlanVni } from '../wire/vxlan'
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW } from './pcap'

/** Linux cooked header (LINKTYPE_LINUX_SLL): 16 bytes, the protocol (EtherType) in the last two. */
export const SLL_HLEN = 16
export const SLL_OFF_PROTOCOL = 14

/**
 * "a.b.c.d.sport > e.f.g.h.dport VXLAN vni N: <inner frame>" for an IPv4 packet
 * at l3 carrying VXLAN to or from one of `vxlanPorts`; null when it is not one.
 */
export function describeVxlanIpv4(buf: Uint8Array, l3: number, len: number, vxlanPorts: readonly number[]): string | null {
  const ihl = ipv4Check(buf, l3, len)
  if (ihl < 0 || ipv4Proto(buf, l3) !== PROTO_UDP || ipv4FragOff(buf, l3) !== 0) return null
  const udp = l3 + ihl
  const udpLen = ipv4TotalLen(buf, l3) - ihl
  if (udpCheck(buf, udp, udpLen) < 0) return null
  const sport = udpSrcPort(buf, udp)
  const dport = udpDstPort(buf, udp)
  if (!vxlanPorts.includes(dport) && !vxlanPorts.includes(sport)) return null
  const outer = `${ipv4Format(ipv4Src(buf, l3))}.${sport} > ${ipv4Format(ipv4Dst(buf, l3))}.${dport}`
  const v = udp + UDP_HLEN
  const vlen = udpLen - UDP_HLEN
  const vh = vxlanCheck(buf, v, vlen)
  if (vh < 0) return `${outer} VXLAN malformed (${malformedName(vh)}) len ${vlen}`
  return `${outer} VXLAN vni ${vxlanVni(buf, v)}: ${describeFrame(buf, v + VXLAN_HLEN, vlen - VXLAN_HLEN)}`
}

/** Summary of one captured packet of the given link type. */
export function describePacket(buf: Uint8Array, off: number, len: number, linktype: number, vxlanPorts: readonly number[]): string {
  if (linktype === LINKTYPE_ETHERNET) {
    const hlen = ethCheck(buf, off, len)
    if (hlen > 0 && ethTypeAfterTags(buf, off, hlen) === ETHERTYPE_IPV4) {
      const v = describeVxlanIpv4(buf, off + hlen, len - hlen, vxlanPorts)
      if (v !== null) return v
    }
    return describeFrame(buf, off, len)
  }
  let l3 = off
  let proto = ETHERTYPE_IPV4
  if (linktype === LINKTYPE_LINUX_SLL) {
    if (len < SLL_HLEN) return `Linux cooked header truncated, len ${len}`
    proto = u16(buf, off + SLL_OFF_PROTOCOL)
    l3 = off + SLL_HLEN
  } else if (linktype === LINKTYPE_RAW) {
    if (len < 1 || buf[off] >>> 4 !== 4) return `raw packet, not IPv4, len ${len}`
  } else {
    return `link type ${linktype}, len ${len}`
  }
  const l3len = len - (l3 - off)
  if (proto !== ETHERTYPE_IPV4) return `ethertype 0x${proto.toString(16).padStart(4, '0')} len ${l3len}`
  const v = describeVxlanIpv4(buf, l3, l3len, vxlanPorts)
  if (v !== null) return v
  const ihl = ipv4Check(buf, l3, l3len)
  if (ihl < 0) return `IPv4 malformed (${malformedName(ihl)})`
  return `IPv4 ${ipv4Format(ipv4Src(buf, l3))} > ${ipv4Format(ipv4Dst(buf, l3))} proto ${ipv4Proto(buf, l3)} len ${ipv4TotalLen(buf, l3) - ihl}`
}

/** tcpdump's default time stamp: local time of day with microseconds. */
export function formatTimeOfDay(sec: number, usec: number): string {
  const d = new Date(sec * 1000)
  const p2 = (n: number): string => String(n).padStart(2, '0')
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}.${String(usec).padStart(6, '0')}`
}
