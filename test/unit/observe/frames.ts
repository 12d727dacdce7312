/**
 * Frame builders for the observe tests (not a test file itself): whole
 * Ethernet frames with valid headers, built with the wire/ writers.
 */
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN, ethWriteHeader } from '../../../src/wire/ethernet'
import { IPV4_HLEN_MIN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipv4WriteHeader, setIpv4Frag } from '../../../src/wire/ipv4'
import { ipv4Parse } from '../../../src/wire/addr'
import { TCP_HLEN_MIN, tcpFillChecksumV4, tcpWriteHeader } from '../../../src/wire/tcp'
import { UDP_HLEN, udpFillChecksumV4, udpWriteHeader } from '../../../src/wire/udp'
import { ICMP_ECHO_REQUEST, icmpFillChecksum, icmpWriteEcho } from '../../../src/wire/icmp'
import { ARP_LEN, ARP_OP_REQUEST, arpWrite } from '../../../src/wire/arp'
import { IPV6_HLEN, ipv6WriteHeader } from '../../../src/wire/ipv6'

export const MAC_A = { hi: 0x0200, lo: 0x0af40102 }
export const MAC_B = { hi: 0x0200, lo: 0x0af40202 }

function eth(len: number, type: number): Uint8Array {
  const f = new Uint8Array(ETH_HLEN + len)
  ethWriteHeader(f, 0, MAC_B.hi, MAC_B.lo, MAC_A.hi, MAC_A.lo, type)
  return f
}

export function tcp4(src: string, dst: string, sport: number, dport: number, payload = 0): Uint8Array {
  const l4 = TCP_HLEN_MIN + payload
  const f = eth(IPV4_HLEN_MIN + l4, ETHERTYPE_IPV4)
  ipv4WriteHeader(f, ETH_HLEN, IPV4_HLEN_MIN + l4, 1, true, 64, PROTO_TCP, ipv4Parse(src), ipv4Parse(dst))
  tcpWriteHeader(f, ETH_HLEN + IPV4_HLEN_MIN, sport, dport, 1, 0, 0x02, 65535)
  tcpFillChecksumV4(f, ETH_HLEN, ETH_HLEN + IPV4_HLEN_MIN, l4)
  return f
}

export function udp4(src: string, dst: string, sport: number, dport: number, payload = 4): Uint8Array {
  const l4 = UDP_HLEN + payload
  const f = eth(IPV4_HLEN_MIN + l4, ETHERTYPE_IPV4)
  ipv4WriteHeader(f, ETH_HLEN, IPV4_HLEN_MIN + l4, 1, true, 64, PROTO_UDP, ipv4Parse(src), ipv4Parse(dst))
  udpWriteHeader(f, ETH_HLEN + IPV4_HLEN_MIN, sport, dport, l4, 0)
  udpFillChecksumV4(f, ETH_HLEN, ETH_HLEN + IPV4_HLEN_MIN)
  return f
}

/** A later fragment (offset 1480) of a UDP datagram: its first 8 bytes are data, not ports. */
export function udp4LaterFragment(src: string, dst: string, bytes: number[]): Uint8Array {
  const f = udp4(src, dst, (bytes[0] << 8) | bytes[1], (bytes[2] << 8) | bytes[3])
  setIpv4Frag(f, ETH_HLEN, 0, 1480)
  return f
}

export function icmp4(src: string, dst: string): Uint8Array {
  const l4 = 8 + 16
  const f = eth(IPV4_HLEN_MIN + l4, ETHERTYPE_IPV4)
  ipv4WriteHeader(f, ETH_HLEN, IPV4_HLEN_MIN + l4, 1, true, 64, PROTO_ICMP, ipv4Parse(src), ipv4Parse(dst))
  icmpWriteEcho(f, ETH_HLEN + IPV4_HLEN_MIN, ICMP_ECHO_REQUEST, 7, 1)
  icmpFillChecksum(f, ETH_HLEN + IPV4_HLEN_MIN, l4)
  return f
}

export function arpRequest(spa: string, tpa: string): Uint8Array {
  const f = eth(ARP_LEN, ETHERTYPE_ARP)
  arpWrite(f, ETH_HLEN, ARP_OP_REQUEST, MAC_A.hi, MAC_A.lo, ipv4Parse(spa), 0, 0, ipv4Parse(tpa))
  return f
}

/** IPv6 (fe80::1 > fe80::2) carrying a UDP or TCP header with the given ports. */
export function l4v6(proto: number, sport: number, dport: number): Uint8Array {
  const l4 = proto === PROTO_TCP ? TCP_HLEN_MIN : UDP_HLEN
  const f = eth(IPV6_HLEN + l4, ETHERTYPE_IPV6)
  const a = new Uint8Array(16); a[0] = 0xfe; a[1] = 0x80; a[15] = 1
  const b = new Uint8Array(16); b[0] = 0xfe; b[1] = 0x80; b[15] = 2
  ipv6WriteHeader(f, ETH_HLEN, 0, 0, l4, proto, 64, a, 0, b, 0)
  if (proto === PROTO_TCP) tcpWriteHeader(f, ETH_HLEN + IPV6_HLEN, sport, dport, 1, 0, 0x10, 100)
  else udpWriteHeader(f, ETH_HLEN + IPV6_HLEN, sport, dport, l4, 0)
  return f
}
