/**
 * Flow hash of an inner Ethernet frame, for the outer UDP source port.
 *
 * RFC 7348 §5: "it is recommended that the UDP source port number be
 * calculated using a hash of fields from the inner packet", so underlay
 * routers spreading traffic with ECMP over the outer 5-tuple keep each inner
 * flow on one path (no reordering) while different flows spread out.
 *
 * Fields hashed, most specific first:
 * - IPv4 TCP/UDP, not fragmented: src, dst, protocol, sport, dport;
 * - other IPv4, and every fragment (later fragments carry no ports, and all
 *   fragments of a datagram must take the same path): src, dst, protocol;
 * - IPv6 whose first next header is TCP/UDP: both addresses, next header and
 *   ports; other IPv6: addresses and next header (extension headers are not
 *   walked);
 * - anything else, or an L3 header that does not check: both MACs and the
 *   EtherType after tags.
 * The hash is direction-specific (A->B and B->A differ), which is fine: each
 * direction is its own ECMP decision.
 *
 * The result is exactly MurmurHash3_x86_32 (public domain, Austin Appleby)
 * of the fields packed as 32-bit words (IPv4 src, dst, proto, sport << 16 |
 * dport; see each case), read straight from the frame: a few Math.imul per
 * field, and the unit test checks it against the reference algorithm. Seed it
 * per host so peers do not all pick the same ports; it is not a defence
 * against chosen collisions.
 *
 * Hot path: no allocation, no exceptions, never reads outside [off, off+len).
 */
import { u16, u32 } from './byteorder'
import {
  ETH_OFF_DST, ETH_OFF_SRC, ETHERTYPE_IPV4, ETHERTYPE_IPV6,
  ethCheck, ethTypeAfterTags, macHi, macLo,
} from './ethernet'
import {
  IPV4_OFF_DST, IPV4_OFF_SRC, PROTO_TCP, PROTO_UDP,
  ipv4Check, ipv4IsFragment, ipv4Proto, ipv4TotalLen,
} from './ipv4'
import { IPV6_HLEN, IPV6_OFF_SRC, ipv6Check, ipv6NextHeader, ipv6PayloadLen } from './ipv6'

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

/** MurmurHash3 x86_32 block step: mixes the 32-bit word `k` into `h`. */
function mix(h: number, k: number): number {
  k = Math.imul(k, C1)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, C2)
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/**
 * MurmurHash3 fmix32 after xoring in the byte count; returns the hash as a
 * signed int32 (flowHash makes it unsigned).
 */
function finish(h: number, nbytes: number): number {
  h ^= nbytes
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h | 0
}

/** Ports word (sport << 16 | dport) as a signed int32, for `mix`. */
function ports(buf: Uint8Array, l4: number): number {
  return (u16(buf, l4) << 16) | u16(buf, l4 + 2)
}

/**
 * Unsigned 32-bit hash of the flow the frame at [off, off+len) belongs to.
 * Frames shorter than an Ethernet header hash their length only.
 */
export function flowHash(buf: Uint8Array, off: number, len: number, seed: number): number {
  // The work returns an int32, which V8 passes back as a small integer; the
  // unsigned result of this small wrapper is made where it is inlined, so a
  // hash of 2^31 or more is not boxed into a heap number per frame.
  return flowHashI32(buf, off, len, seed) >>> 0
}

function flowHashI32(buf: Uint8Array, off: number, len: number, seed: number): number {
  const hlen = ethCheck(buf, off, len)
  if (hlen < 0) return finish(seed, len)
  const type = ethTypeAfterTags(buf, off, hlen)
  const l3 = off + hlen
  const l3len = len - hlen
  let h = seed | 0

  if (type === ETHERTYPE_IPV4 && ipv4Check(buf, l3, l3len) > 0) {
    const ihl = (buf[l3] & 0x0f) << 2
    const proto = ipv4Proto(buf, l3)
    h = mix(h, u32(buf, l3 + IPV4_OFF_SRC))
    h = mix(h, u32(buf, l3 + IPV4_OFF_DST))
    h = mix(h, proto)
    if (
      (proto === PROTO_TCP || proto === PROTO_UDP) &&
      !ipv4IsFragment(buf, l3) && ipv4TotalLen(buf, l3) - ihl >= 4
    ) return finish(mix(h, ports(buf, l3 + ihl)), 16)
    return finish(h, 12)
  }

  if (type === ETHERTYPE_IPV6 && ipv6Check(buf, l3, l3len) > 0) {
    // 8 words of addresses, read in place: src then dst are contiguous.
    for (let i = 0; i < 32; i += 4) h = mix(h, u32(buf, l3 + IPV6_OFF_SRC + i))
    const next = ipv6NextHeader(buf, l3)
    h = mix(h, next)
    if ((next === PROTO_TCP || next === PROTO_UDP) && ipv6PayloadLen(buf, l3) >= 4) {
      return finish(mix(h, ports(buf, l3 + IPV6_HLEN)), 40)
    }
    return finish(h, 36)
  }

  h = mix(h, (macHi(buf, off + ETH_OFF_DST) << 16) | macHi(buf, off + ETH_OFF_SRC))
  h = mix(h, macLo(buf, off + ETH_OFF_DST))
  h = mix(h, macLo(buf, off + ETH_OFF_SRC))
  h = mix(h, type)
  return finish(h, 16)
}

/**
 * Maps a flow hash to a UDP source port in [min, max] (both inclusive), as
 * Linux's udp_flow_src_port (include/net/udp.h) does: xor the low half into
 * the high half (only the high bits matter below, and this hides the raw
 * hash from the wire), then scale by multiply-shift instead of a modulo.
 * Linux's `max` is exclusive; ours is inclusive so [49152, 65535] can reach
 * 65535. Returns `min` if max <= min.
 */
export function flowSourcePort(hash: number, min: number, max: number): number {
  if (max <= min) return min
  const h = (hash ^ (hash << 16)) >>> 0
  // h * range < 2^48: exact in a double, so this is ((u64)h * range) >> 32.
  return min + Math.floor((h * (max - min + 1)) / 4294967296)
}
