/**
 * Refusing a connection to a service that has no endpoint, in place: the
 * frame the client sent becomes the answer, so the client learns at once
 * ("connection refused") instead of retrying into a black hole.
 *
 *   TCP  a RST (RFC 9293 §3.10.7.1, segment to a CLOSED port): if the
 *        segment had ACK, <SEQ=SEG.ACK><CTL=RST>; else <SEQ=0>
 *        <ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where SYN and FIN count one each.
 *        Never in answer to a RST.
 *   UDP  ICMP destination unreachable, port unreachable (RFC 792, RFC 1122
 *        §3.2.2.1), embedding the client's datagram from its IP header on, as
 *        much as fits in 576 bytes (RFC 1812 §4.3.2.3), moved back in place.
 *
 * Both come from the address the client tried (the VIP and its port) and go
 * to the client; the Ethernet header keeps its length (tags stay) with the
 * client's MAC as destination and the given router MAC as source. Every
 * checksum is complete: a datapath that read the frame with a virtio-net
 * header asking for checksum offload must write a plain one for the answer.
 * IP options are dropped (the answer has a 20-byte header), TTL is 64, DF set.
 *
 * Returns the new frame length from `frame`, or 0 when no answer is due (a
 * RST) or it does not fit in `buf`. Hot path: no allocation.
 */
import { csumAdd, csumFinish } from '../wire/checksum'
import { ETH_OFF_DST, ETH_OFF_SRC, macCopy, macWrite } from '../wire/ethernet'
import { ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH, ICMP_HLEN, icmpWriteHeader, setIcmpChecksum } from '../wire/icmp'
import {
  IPV4_HLEN_MIN, IPV4_TTL_DEFAULT, PROTO_ICMP, PROTO_TCP,
  ipv4Dst, ipv4Ihl, ipv4Src, ipv4TotalLen, ipv4WriteHeader,
} from '../wire/ipv4'
import {
  TCP_ACK, TCP_FIN, TCP_HLEN_MIN, TCP_RST, TCP_SYN,
  tcpAck, tcpDstPort, tcpFillChecksumV4, tcpFlags, tcpHeaderLen, tcpSeq, tcpSrcPort, tcpWriteHeader,
} from '../wire/tcp'

/** RFC 1812 §4.3.2.3: an ICMP error should not exceed 576 bytes of IP. */
export const ICMP_ERROR_MAX_IP_LEN = 576

/** Answers the client with the router MAC as source: dst MAC = old src MAC. */
function swapMacs(buf: Uint8Array, frame: number, routerHi: number, routerLo: number): void {
  macCopy(buf, frame + ETH_OFF_DST, buf, frame + ETH_OFF_SRC)
  macWrite(buf, frame + ETH_OFF_SRC, routerHi, routerLo)
}

/**
 * Turns the TCP segment at `l3` (checked IPv4 + TCP headers) into the RST
 * that answers it. Returns the new frame length, or 0 if the segment is a RST.
 */
export function rejectTcp(buf: Uint8Array, frame: number, l3: number, routerHi: number, routerLo: number): number {
  const ihl = ipv4Ihl(buf, l3)
  const l4 = l3 + ihl
  const flags = tcpFlags(buf, l4)
  if ((flags & TCP_RST) !== 0) return 0
  const client = ipv4Src(buf, l3)
  const vip = ipv4Dst(buf, l3)
  const cport = tcpSrcPort(buf, l4)
  const vport = tcpDstPort(buf, l4)
  let seq = 0
  let ack = 0
  let ctl = TCP_RST
  if ((flags & TCP_ACK) !== 0) {
    seq = tcpAck(buf, l4)
  } else {
    const dataLen = ipv4TotalLen(buf, l3) - ihl - tcpHeaderLen(buf, l4)
    ack = (tcpSeq(buf, l4) + dataLen + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0
    ctl = TCP_RST | TCP_ACK
  }
  swapMacs(buf, frame, routerHi, routerLo)
  const len = IPV4_HLEN_MIN + TCP_HLEN_MIN
  ipv4WriteHeader(buf, l3, len, 0, true, IPV4_TTL_DEFAULT, PROTO_TCP, vip, client)
  const t = l3 + IPV4_HLEN_MIN
  tcpWriteHeader(buf, t, vport, cport, seq, ack, ctl, 0)
  tcpFillChecksumV4(buf, l3, t, TCP_HLEN_MIN)
  return l3 - frame + len
}

/**
 * Turns the datagram at `l3` (checked IPv4) into an ICMP port unreachable
 * from its destination back to its source. Returns the new frame length, or
 * 0 if `buf` has no room for the 28 bytes the answer adds in front.
 */
export function rejectUdp(buf: Uint8Array, frame: number, l3: number, routerHi: number, routerLo: number): number {
  const client = ipv4Src(buf, l3)
  const vip = ipv4Dst(buf, l3)
  const hdr = IPV4_HLEN_MIN + ICMP_HLEN
  let quote = Math.min(ipv4TotalLen(buf, l3), ICMP_ERROR_MAX_IP_LEN - hdr, buf.length - l3 - hdr)
  // RFC 792: at least the IP header and the first 8 bytes of its payload.
  if (quote < ipv4Ihl(buf, l3) + 8) return 0
  quote = quote | 0
  buf.copyWithin(l3 + hdr, l3, l3 + quote)
  swapMacs(buf, frame, routerHi, routerLo)
  ipv4WriteHeader(buf, l3, hdr + quote, 0, true, IPV4_TTL_DEFAULT, PROTO_ICMP, vip, client)
  const icmp = l3 + IPV4_HLEN_MIN
  icmpWriteHeader(buf, icmp, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, 0)
  setIcmpChecksum(buf, icmp, csumFinish(csumAdd(buf, icmp, ICMP_HLEN + quote, 0)))
  return l3 - frame + hdr + quote
}
