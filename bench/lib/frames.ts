/**
 * Realistic frames for the microbenchmarks, built once with the project's own
 * writers (so every header checks and every checksum is right): Ethernet +
 * IPv4 + UDP with a payload, optionally behind a virtio-net header or a VXLAN
 * header, laid out in a Batch exactly as a port would fill it.
 */
import { Batch } from '../../src/lib/batch'
import { ETH_HLEN, ETHERTYPE_IPV4, ethWriteHeader } from '../../src/wire/ethernet'
import { IPV4_HLEN_MIN, PROTO_UDP, ipv4WriteHeader } from '../../src/wire/ipv4'
import { UDP_HLEN, udpWriteHeader, udpFillChecksumV4 } from '../../src/wire/udp'
import { VXLAN_HLEN, vxlanWrite } from '../../src/wire/vxlan'
import { VNET_HLEN } from '../../src/wire/vnet'

/** Ethernet + IPv4 + UDP headers in front of a UDP payload: 42 bytes. */
export const UDP_FRAME_OVERHEAD = ETH_HLEN + IPV4_HLEN_MIN + UDP_HLEN

export interface UdpFrame {
  dstHi: number
  dstLo: number
  srcHi: number
  srcLo: number
  srcIp: number
  dstIp: number
  sport: number
  dport: number
  /** Whole Ethernet frame length (without FCS); the payload is what is left after 42 bytes of headers. */
  frameLen: number
}

/** Writes a complete IPv4/UDP frame at `off` (checksums filled); returns its length. */
export function writeUdpFrame(buf: Uint8Array, off: number, f: UdpFrame): number {
  const payload = f.frameLen - UDP_FRAME_OVERHEAD
  if (payload < 0) throw new RangeError(`frameLen ${f.frameLen} is shorter than the ${UDP_FRAME_OVERHEAD} bytes of headers`)
  const l3 = off + ETH_HLEN
  const l4 = l3 + IPV4_HLEN_MIN
  ethWriteHeader(buf, off, f.dstHi, f.dstLo, f.srcHi, f.srcLo, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + UDP_HLEN + payload, f.sport, true, 64, PROTO_UDP, f.srcIp, f.dstIp)
  udpWriteHeader(buf, l4, f.sport, f.dport, UDP_HLEN + payload, 0)
  const p = l4 + UDP_HLEN
  for (let i = 0; i < payload; i++) buf[p + i] = (i * 31 + f.sport) & 0xff
  udpFillChecksumV4(buf, l3, l4)
  return f.frameLen
}

export interface FlowSet {
  srcHi: number
  srcLo: number
  dstHi: number
  dstLo: number
  srcIp: number
  dstIp: number
  frameLen: number
}

/** Frame i of a batch: one flow per slot (source port 40000 + i), so flow hashes differ. */
function frameAt(s: FlowSet, i: number): UdpFrame {
  return { ...s, sport: 40000 + i, dport: 5201 }
}

/**
 * A pod TAP's rx batch: every slot holds a zeroed virtio-net header (no
 * offload requested, as with offloads off) followed by the frame.
 */
export function fillPodBatch(b: Batch, s: FlowSet, vnetHdr: boolean): void {
  const vlen = vnetHdr ? VNET_HLEN : 0
  for (let i = 0; i < b.slots; i++) {
    const base = b.off(i)
    b.data.fill(0, base, base + vlen)
    b.len[i] = vlen + writeUdpFrame(b.data, base + vlen, frameAt(s, i))
  }
  b.count = b.slots
}

/** An underlay rx batch: every slot holds a VXLAN datagram payload (header + inner frame). */
export function fillVxlanBatch(b: Batch, s: FlowSet, vni: number): void {
  for (let i = 0; i < b.slots; i++) {
    const off = b.off(i)
    vxlanWrite(b.data, off, vni + (i & 3))
    b.len[i] = VXLAN_HLEN + writeUdpFrame(b.data, off + VXLAN_HLEN, frameAt(s, i))
  }
  b.count = b.slots
}

/** Offsets of the Ethernet frames of a batch (after `skip` bytes of vnet or VXLAN header). */
export function frameOffsets(b: Batch, skip: number): Uint32Array {
  const o = new Uint32Array(b.slots)
  for (let i = 0; i < b.slots; i++) o[i] = b.off(i) + skip
  return o
}

/** xorshift32: a deterministic PRNG for shuffles, so every run sees the same order. */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

/** A permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n)
  for (let i = 0; i < n; i++) p[i] = i
  const rnd = xorshift32(seed)
  for (let i = n - 1; i > 0; i--) {
    const j = rnd() % (i + 1)
    const t = p[i]
    p[i] = p[j]
    p[j] = t
  }
  return p
}
