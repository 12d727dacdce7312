/**
 * Segmentation of GSO super-frames (what a NIC does for TSO/USO): a frame that a
 * TAP handed over with a virtio-net GSO header is cut into frames of at most
 * gsoSize payload bytes, each with its own copy of the headers and everything a
 * receiver checks made right:
 *
 *   TCP:  sequence number advanced by the payload before it; FIN and PSH only on
 *         the last segment, CWR only on the first (as Linux's tcp_gso_segment);
 *         full TCP checksum.
 *   UDP:  (USO, VIRTIO_NET_HDR_GSO_UDP_L4) each segment a datagram of its own:
 *         UDP length and full checksum per segment.
 *   IPv4: total length, IP id incremented per segment, header checksum.
 *   IPv6: payload length.
 *
 * Output layout, chosen for UDP GSO on the underlay: segment k is written at
 *   out[outOff + k*stride + prefix]  (prefix bytes left free in front, e.g. VXLAN)
 * with stride = prefix + hdrLen + gsoSize, so every segment but the last has the
 * same size and a run of them is one GSO datagram. TSO.lastLen gives the last
 * one's frame length.
 */
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, ethCheck, ethTypeAfterTags } from './ethernet'
import { IPV4_OFF_CSUM, IPV4_OFF_ID, IPV4_OFF_TOTAL_LEN, IPV4_OFF_PROTO, IPV4_OFF_SRC, IPV4_OFF_DST, PROTO_TCP, PROTO_UDP } from './ipv4'
import { IPV6_OFF_PAYLOAD_LEN, IPV6_OFF_SRC, IPV6_OFF_DST, IPV6_HLEN } from './ipv6'
import { TCP_OFF_SEQ, TCP_OFF_FLAGS, TCP_OFF_CSUM, TCP_FIN, TCP_PSH, TCP_CWR } from './tcp'
import { UDP_OFF_LEN, UDP_OFF_CSUM, UDP_HLEN } from './udp'
import { csumAdd, csumAddBulk, csumFinish, csumPseudoV4, csumPseudoV6 } from './checksum'
import { Malformed } from './malformed'
import { copyInto } from './bytes'

/** What the last tsoSegment() call found (a reused record: nothing allocated per call). */
export const TSO = {
  /** Bytes of headers (Ethernet + IP + L4) copied in front of every segment. */
  hdrLen: 0,
  /** Payload bytes of the super-frame. */
  payloadLen: 0,
  /** Frame length of the last segment (all others are hdrLen + gsoSize). */
  lastLen: 0,
  /** Offset of the L4 header from the frame start. */
  l4Off: 0,
  /** Ethernet header length, VLAN tags included. */
  ethLen: 0,
}

type TsoTwin = (buf: Uint8Array, frame: number, len: number, isUdp: boolean, gsoSize: number,
  out: Uint8Array, outOff: number, prefix: number, maxSegments: number, info: Uint32Array) => number

/** The twin's TSO record: hdrLen, payloadLen, lastLen, l4Off, ethLen. */
const twinInfo = new Uint32Array(5)
let twin: TsoTwin | null = null

/**
 * Installs a faster segmenter with tsoSegment's exact contract (the native
 * addon installs one; a test checks both give the same bytes, counts and
 * record over many generated frames), or null to go back to tsoSegment.
 */
export function setTsoTwin(fn: TsoTwin | null): void {
  twin = fn
}

/** The installed twin, or null. */
export function tsoTwin(): TsoTwin | null {
  return twin
}

/** tsoSegment through the installed twin, if any: what the datapath calls. */
export function tsoSegmentFast(buf: Uint8Array, frame: number, len: number, isUdp: boolean, gsoSize: number,
  out: Uint8Array, outOff: number, prefix: number, maxSegments: number): number {
  if (twin === null) return tsoSegment(buf, frame, len, isUdp, gsoSize, out, outOff, prefix, maxSegments)
  const n = twin(buf, frame, len, isUdp, gsoSize, out, outOff, prefix, maxSegments, twinInfo)
  if (n > 0) {
    TSO.hdrLen = twinInfo[0]
    TSO.payloadLen = twinInfo[1]
    TSO.lastLen = twinInfo[2]
    TSO.l4Off = twinInfo[3]
    TSO.ethLen = twinInfo[4]
  }
  return n
}

/** Number of segments a payload of `payloadLen` makes at `gsoSize`. */
export function tsoCount(payloadLen: number, gsoSize: number): number {
  return Math.ceil(payloadLen / gsoSize)
}

/**
 * Segments the super-frame buf[frame, frame+len). `isUdp` selects USO. Returns
 * the number of segments (>0) or a negative Malformed code; never writes more
 * than maxSegments segments (returns Malformed.BadLength if more are needed).
 */
export function tsoSegment(buf: Uint8Array, frame: number, len: number, isUdp: boolean, gsoSize: number,
  out: Uint8Array, outOff: number, prefix: number, maxSegments: number): number {
  if (frame < 0 || len > buf.length - frame) return Malformed.Truncated
  const eh = ethCheck(buf, frame, len)
  if (eh < 0) return eh
  const type = ethTypeAfterTags(buf, frame, eh)
  const l3 = frame + eh
  let v6 = false
  let ipHl: number
  if (type === ETHERTYPE_IPV4) {
    if (len - eh < 20) return Malformed.Truncated
    ipHl = (buf[l3] & 15) * 4
    if ((buf[l3] >>> 4) !== 4 || ipHl < 20) return Malformed.BadHeaderLength
    if (buf[l3 + IPV4_OFF_PROTO] !== (isUdp ? PROTO_UDP : PROTO_TCP)) return Malformed.BadLength
  } else if (type === ETHERTYPE_IPV6) {
    v6 = true
    ipHl = IPV6_HLEN
    if (len - eh < IPV6_HLEN) return Malformed.Truncated
    // Extension headers are not segmented here (Linux TAP users do not send them with GSO).
    if (buf[l3 + 6] !== (isUdp ? PROTO_UDP : PROTO_TCP)) return Malformed.BadLength
  } else {
    return Malformed.BadLength
  }
  const l4 = l3 + ipHl
  let l4Hl = UDP_HLEN
  if (!isUdp) {
    if (l4 + 20 > frame + len) return Malformed.Truncated
    l4Hl = (buf[l4 + 12] >>> 4) * 4
    if (l4Hl < 20) return Malformed.BadHeaderLength
  }
  const hdrLen = eh + ipHl + l4Hl
  const payloadLen = len - hdrLen
  if (payloadLen <= 0 || gsoSize <= 0) return Malformed.BadLength
  const n = Math.ceil(payloadLen / gsoSize)
  if (n > maxSegments) return Malformed.BadLength
  const stride = prefix + hdrLen + gsoSize
  if (outOff + (n - 1) * stride + prefix + hdrLen + (payloadLen - (n - 1) * gsoSize) > out.length) return Malformed.BadLength
  TSO.hdrLen = hdrLen
  TSO.payloadLen = payloadLen
  TSO.l4Off = eh + ipHl
  TSO.ethLen = eh
  const flags = isUdp ? 0 : buf[l4 + TCP_OFF_FLAGS]
  const seq0 = isUdp ? 0 : ((buf[l4 + TCP_OFF_SEQ] << 24) | (buf[l4 + TCP_OFF_SEQ + 1] << 16) | (buf[l4 + TCP_OFF_SEQ + 2] << 8) | buf[l4 + TCP_OFF_SEQ + 3]) >>> 0
  const id0 = v6 ? 0 : (buf[l3 + IPV4_OFF_ID] << 8) | buf[l3 + IPV4_OFF_ID + 1]
  const src4 = v6 ? 0 : ((buf[l3 + IPV4_OFF_SRC] << 24) | (buf[l3 + IPV4_OFF_SRC + 1] << 16) | (buf[l3 + IPV4_OFF_SRC + 2] << 8) | buf[l3 + IPV4_OFF_SRC + 3]) >>> 0
  const dst4 = v6 ? 0 : ((buf[l3 + IPV4_OFF_DST] << 24) | (buf[l3 + IPV4_OFF_DST + 1] << 16) | (buf[l3 + IPV4_OFF_DST + 2] << 8) | buf[l3 + IPV4_OFF_DST + 3]) >>> 0
  const proto = isUdp ? PROTO_UDP : PROTO_TCP
  for (let k = 0; k < n; k++) {
    const chunk = k === n - 1 ? payloadLen - k * gsoSize : gsoSize
    const o = outOff + k * stride + prefix
    // Headers: the super-frame's for the first segment; each later one copies the previous
    // segment's within `out` (no view object), every field that differs being rewritten below.
    if (k === 0) copyInto(out, o, buf, frame, frame + hdrLen)
    else out.copyWithin(o, o - stride, o - stride + hdrLen)
    // copyWithin when `buf` and `out` share an arena, else a view per segment (wire/bytes.ts).
    copyInto(out, o + hdrLen, buf, frame + hdrLen + k * gsoSize, frame + hdrLen + k * gsoSize + chunk)
    const ip = o + eh
    const l4o = ip + ipHl
    const l4len = l4Hl + chunk
    if (v6) {
      const pl = l4len
      out[ip + IPV6_OFF_PAYLOAD_LEN] = pl >>> 8
      out[ip + IPV6_OFF_PAYLOAD_LEN + 1] = pl & 255
    } else {
      const tot = ipHl + l4len
      out[ip + IPV4_OFF_TOTAL_LEN] = tot >>> 8
      out[ip + IPV4_OFF_TOTAL_LEN + 1] = tot & 255
      const id = (id0 + k) & 0xffff
      out[ip + IPV4_OFF_ID] = id >>> 8
      out[ip + IPV4_OFF_ID + 1] = id & 255
      out[ip + IPV4_OFF_CSUM] = 0
      out[ip + IPV4_OFF_CSUM + 1] = 0
      const hc = csumFinish(csumAdd(out, ip, ipHl, 0))
      out[ip + IPV4_OFF_CSUM] = hc >>> 8
      out[ip + IPV4_OFF_CSUM + 1] = hc & 255
    }
    let csumField: number
    if (isUdp) {
      out[l4o + UDP_OFF_LEN] = l4len >>> 8
      out[l4o + UDP_OFF_LEN + 1] = l4len & 255
      csumField = l4o + UDP_OFF_CSUM
    } else {
      const seq = (seq0 + k * gsoSize) >>> 0
      out[l4o + TCP_OFF_SEQ] = seq >>> 24
      out[l4o + TCP_OFF_SEQ + 1] = (seq >>> 16) & 255
      out[l4o + TCP_OFF_SEQ + 2] = (seq >>> 8) & 255
      out[l4o + TCP_OFF_SEQ + 3] = seq & 255
      let f = flags
      if (k !== n - 1) f &= ~(TCP_FIN | TCP_PSH)
      if (k !== 0) f &= ~TCP_CWR
      out[l4o + TCP_OFF_FLAGS] = f
      csumField = l4o + TCP_OFF_CSUM
    }
    out[csumField] = 0
    out[csumField + 1] = 0
    let sum = v6 ? csumPseudoV6(out, ip + IPV6_OFF_SRC, ip + IPV6_OFF_DST, proto, l4len) : csumPseudoV4(src4, dst4, proto, l4len)
    sum = csumAddBulk(out, l4o, l4len, sum)
    let c = csumFinish(sum)
    if (isUdp && c === 0) c = 0xffff
    out[csumField] = c >>> 8
    out[csumField + 1] = c & 255
  }
  TSO.lastLen = hdrLen + payloadLen - (n - 1) * gsoSize
  return n
}
