import { test } from 'node:test'
import assert from 'node:assert/strict'
import { flowHash, flowSourcePort } from '../../../src/wire/flowhash'
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ethWriteHeader } from '../../../src/wire/ethernet'
import { IPV4_FLAG_MF, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipv4WriteHeader, setIpv4Frag } from '../../../src/wire/ipv4'
import { PROTO_ICMPV6, ipv6WriteHeader } from '../../../src/wire/ipv6'
import { tcpWriteHeader } from '../../../src/wire/tcp'
import { udpWriteHeader } from '../../../src/wire/udp'
import { arpWrite, ARP_OP_REQUEST } from '../../../src/wire/arp'
import { hex } from './bytes'
import { below, mulberry32, randomBytes } from './fuzz'

interface V4 { src: number; dst: number; proto: number; sport: number; dport: number }

/** Ethernet + IPv4 + TCP/UDP (8 bytes of ports and more) + 6 bytes payload, built with the writers. */
function v4Frame(t: V4, payloadByte = 0, macLo = 1): Uint8Array {
  const l4len = t.proto === PROTO_TCP ? 20 : 8
  const buf = new Uint8Array(14 + 20 + l4len + 6).fill(payloadByte)
  ethWriteHeader(buf, 0, 0x0200, macLo + 1, 0x0200, macLo, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, 14, 20 + l4len + 6, payloadByte, true, 64, t.proto, t.src, t.dst)
  if (t.proto === PROTO_TCP) tcpWriteHeader(buf, 34, t.sport, t.dport, payloadByte, 0, 2, 1000)
  else udpWriteHeader(buf, 34, t.sport, t.dport, 8 + 6, payloadByte)
  return buf
}

const FLOW: V4 = { src: 0x0a000001, dst: 0x0a000002, proto: PROTO_TCP, sport: 1234, dport: 80 }

/**
 * Reference MurmurHash3_x86_32 over bytes (blocks little-endian, then the
 * tail, then fmix32), written from the SMHasher source and checked against
 * its published vectors below.
 */
function murmur3(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  let h = seed >>> 0
  const nblocks = bytes.length >>> 2
  for (let i = 0; i < nblocks; i++) {
    const o = i * 4
    let k = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24)
    k = Math.imul(k, c1); k = (k << 15) | (k >>> 17); k = Math.imul(k, c2)
    h ^= k; h = (h << 13) | (h >>> 19); h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const t = nblocks * 4
  const rem = bytes.length & 3
  if (rem > 0) {
    let k = bytes[t]
    if (rem >= 2) k ^= bytes[t + 1] << 8
    if (rem === 3) k ^= bytes[t + 2] << 16
    k = Math.imul(k, c1); k = (k << 15) | (k >>> 17); k = Math.imul(k, c2); h ^= k
  }
  h ^= bytes.length
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16
  return h >>> 0
}

/** 32-bit words laid out little-endian, as murmur3 reads its blocks. */
function le(...words: number[]): Uint8Array {
  const out = new Uint8Array(words.length * 4)
  words.forEach((w, i) => { out[4 * i] = w; out[4 * i + 1] = w >>> 8; out[4 * i + 2] = w >>> 16; out[4 * i + 3] = w >>> 24 })
  return out
}

test('the reference MurmurHash3_x86_32 matches published vectors', () => {
  const text = (s: string): Uint8Array => new TextEncoder().encode(s)
  assert.equal(murmur3(new Uint8Array(0), 0), 0)
  assert.equal(murmur3(new Uint8Array(0), 1), 0x514e28b7)
  assert.equal(murmur3(new Uint8Array(0), 0xffffffff), 0x81f16f39)
  assert.equal(murmur3(new Uint8Array(4), 0), 0x2362f9de)
  assert.equal(murmur3(text('test'), 0), 0xba6bd213)
  assert.equal(murmur3(text('Hello, world!'), 1234), 0xfaf6cdb3)
  assert.equal(murmur3(text('The quick brown fox jumps over the lazy dog'), 0), 0x2e4ff723)
})

test('flowHash is MurmurHash3_x86_32 of the chosen fields as 32-bit words', () => {
  const seed = 0x9e3779b9
  const tcp = v4Frame(FLOW)
  assert.equal(flowHash(tcp, 0, tcp.length, seed),
    murmur3(le(FLOW.src, FLOW.dst, PROTO_TCP, (FLOW.sport << 16) | FLOW.dport), seed))
  const icmp = v4Frame({ ...FLOW, proto: PROTO_ICMP })
  assert.equal(flowHash(icmp, 0, icmp.length, seed), murmur3(le(FLOW.src, FLOW.dst, PROTO_ICMP), seed))
  const arp = new Uint8Array(42)
  ethWriteHeader(arp, 0, 0xffff, 0xffffffff, 0x0200, 0x0a0b0c0d, ETHERTYPE_ARP)
  assert.equal(flowHash(arp, 0, arp.length, seed), murmur3(le((0xffff << 16) | 0x0200, 0xffffffff, 0x0a0b0c0d, ETHERTYPE_ARP), seed))
  const v6 = new Uint8Array(14 + 40 + 8)
  const addrs = hex('20010db8000000000000000000000001 20010db8000000000000000000000002')
  ethWriteHeader(v6, 0, 0x0200, 2, 0x0200, 1, ETHERTYPE_IPV6)
  ipv6WriteHeader(v6, 14, 0, 0, 8, PROTO_UDP, 64, addrs, 0, addrs, 16)
  udpWriteHeader(v6, 54, 546, 547, 8, 0)
  assert.equal(flowHash(v6, 0, v6.length, seed), murmur3(le(
    0x20010db8, 0, 0, 1, 0x20010db8, 0, 0, 2, PROTO_UDP, (546 << 16) | 547), seed))
})

test('frames too short for Ethernet hash their length only', () => {
  const a = hex('01 02 03 04 05 06 07 08 09')
  const b = hex('ff ff ff ff ff ff ff ff ff')
  assert.equal(flowHash(a, 0, 9, 1), flowHash(b, 0, 9, 1))
  assert.notEqual(flowHash(a, 0, 9, 1), flowHash(a, 0, 8, 1))
  assert.ok(Number.isInteger(flowHash(a, 0, 0, 1)))
})

test('same flow, different payload, TTL-independent fields and MACs: same hash', () => {
  const a = flowHash(v4Frame(FLOW, 0x00, 1), 0, 60, 7)
  const b = flowHash(v4Frame(FLOW, 0x5a, 9), 0, 60, 7) // other id, seq, payload, MACs, checksums
  assert.equal(a, b)
})

test('each 5-tuple field changes the hash; so does the seed', () => {
  const rng = mulberry32(5)
  for (let i = 0; i < 2000; i++) {
    const t: V4 = { src: rng(), dst: rng(), proto: (rng() & 1) ? PROTO_TCP : PROTO_UDP, sport: rng() & 0xffff, dport: rng() & 0xffff }
    const f = v4Frame(t)
    const h = flowHash(f, 0, f.length, 1)
    assert.ok(h >= 0 && h <= 0xffffffff && Number.isInteger(h))
    const variants: V4[] = [
      { ...t, src: (t.src ^ 1) >>> 0 }, { ...t, dst: (t.dst ^ 0x80000000) >>> 0 },
      { ...t, proto: t.proto === PROTO_TCP ? PROTO_UDP : PROTO_TCP },
      { ...t, sport: t.sport ^ 1 }, { ...t, dport: t.dport ^ 0x100 },
      { ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport }, // reverse direction
    ]
    for (const v of variants) {
      const g = v4Frame(v)
      assert.notEqual(flowHash(g, 0, g.length, 1), h, JSON.stringify(v))
    }
    assert.notEqual(flowHash(f, 0, f.length, 2), h)
  }
})

test('fragments hash without ports, so every fragment of a datagram takes one path', () => {
  const first = v4Frame(FLOW)
  setIpv4Frag(first, 14, IPV4_FLAG_MF, 0)
  const later = v4Frame({ ...FLOW, sport: 9, dport: 9 }) // bytes at the port offset are just data
  setIpv4Frag(later, 14, 0, 1480)
  const icmpLike = v4Frame(FLOW)
  setIpv4Frag(icmpLike, 14, 0, 8)
  const h = flowHash(first, 0, first.length, 3)
  assert.equal(flowHash(later, 0, later.length, 3), h)
  assert.equal(flowHash(icmpLike, 0, icmpLike.length, 3), h)
  assert.notEqual(flowHash(v4Frame(FLOW), 0, 60, 3), h)
})

test('other IPv4 protocols hash (src, dst, proto) only', () => {
  const a = v4Frame({ ...FLOW, proto: PROTO_ICMP })
  const b = v4Frame({ ...FLOW, proto: PROTO_ICMP, sport: 1, dport: 2 })
  assert.equal(flowHash(a, 0, a.length, 0), flowHash(b, 0, b.length, 0))
})

test('a VLAN tag does not change the hash of the IP flow', () => {
  const plain = v4Frame(FLOW)
  const tagged = new Uint8Array(plain.length + 4)
  tagged.set(plain.subarray(0, 12), 0)
  tagged.set(hex('81 00 00 64'), 12) // 802.1Q, VID 100
  tagged.set(plain.subarray(12), 16)
  assert.equal(flowHash(tagged, 0, tagged.length, 0), flowHash(plain, 0, plain.length, 0))
})

test('non-IP frames hash the MACs and EtherType, not the payload', () => {
  const arp = (spa: number, srcLo: number): Uint8Array => {
    const f = new Uint8Array(42)
    ethWriteHeader(f, 0, 0xffff, 0xffffffff, 0x0200, srcLo, ETHERTYPE_ARP)
    arpWrite(f, 14, ARP_OP_REQUEST, 0x0200, srcLo, spa, 0, 0, 0x0a000002)
    return f
  }
  assert.equal(flowHash(arp(1, 1), 0, 42, 0), flowHash(arp(2, 1), 0, 42, 0))
  assert.notEqual(flowHash(arp(1, 1), 0, 42, 0), flowHash(arp(1, 2), 0, 42, 0))
  const other = arp(1, 1)
  other[13] = 0x07 // EtherType 0x0807
  assert.notEqual(flowHash(other, 0, 42, 0), flowHash(arp(1, 1), 0, 42, 0))
})

test('an IPv4 header that does not check falls back to the L2 hash', () => {
  const bad = v4Frame(FLOW)
  bad[14] = 0x44 // IHL 4
  const h = flowHash(bad, 0, bad.length, 0)
  bad[14 + 12] ^= 0xff // a different source address must not matter now
  assert.equal(flowHash(bad, 0, bad.length, 0), h)
  assert.equal(flowHash(v4Frame(FLOW), 0, 33, 0), flowHash(v4Frame(FLOW, 0x77), 0, 33, 0)) // truncated IP
})

test('IPv6: addresses and next header, plus ports for TCP/UDP', () => {
  const v6 = (next: number, sport: number, lastSrc: number): Uint8Array => {
    const addrs = new Uint8Array(32)
    addrs[0] = 0x20; addrs[1] = 0x01; addrs[15] = lastSrc; addrs[16] = 0x20; addrs[17] = 0x01; addrs[31] = 2
    const f = new Uint8Array(14 + 40 + 8)
    ethWriteHeader(f, 0, 0x3333, 1, 0x0200, 1, ETHERTYPE_IPV6)
    ipv6WriteHeader(f, 14, 0, 0, 8, next, 64, addrs, 0, addrs, 16)
    udpWriteHeader(f, 54, sport, 547, 8, 0)
    return f
  }
  const h = flowHash(v6(PROTO_UDP, 546, 1), 0, 62, 0)
  assert.notEqual(flowHash(v6(PROTO_UDP, 547, 1), 0, 62, 0), h)
  assert.notEqual(flowHash(v6(PROTO_UDP, 546, 3), 0, 62, 0), h)
  assert.notEqual(flowHash(v6(PROTO_TCP, 546, 1), 0, 62, 0), h)
  assert.equal(flowHash(v6(PROTO_ICMPV6, 1, 1), 0, 62, 0), flowHash(v6(PROTO_ICMPV6, 2, 1), 0, 62, 0))
})

test('property: never throws, always a u32, never reads outside [off, off+len)', () => {
  const rng = mulberry32(0xf10)
  const valid = [v4Frame(FLOW), v4Frame({ ...FLOW, proto: PROTO_UDP })]
  const check = (buf: Uint8Array, off: number, len: number): void => {
    const h = flowHash(buf, off, len, 11)
    assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `hash ${h}`)
    const exact = buf.slice(off, off + Math.max(0, Math.min(len, buf.length - off)))
    // Frames shorter than the buffer window hash their len, so compare with the clamped len.
    assert.equal(flowHash(exact, 0, exact.length, 11), flowHash(buf, off, exact.length, 11))
  }
  for (const f of valid) for (let k = 0; k <= f.length; k++) check(f, 0, k)
  for (let i = 0; i < 20000; i++) {
    let buf: Uint8Array
    if (i % 2 === 0) {
      buf = randomBytes(rng, below(rng, 100))
      if (buf.length > 14 && (i & 2) === 0) { buf[12] = 0x08; buf[13] = 0x00; buf[14] = 0x45 } // reach the IPv4 path
    } else {
      buf = valid[i & 2 ? 1 : 0].slice()
      for (let f = 0; f < 3; f++) buf[below(rng, buf.length)] = rng() & 0xff
    }
    const off = below(rng, buf.length + 1)
    check(buf, off, below(rng, buf.length - off + 1))
  }
})

test('flowSourcePort maps into [min, max] like Linux udp_flow_src_port', () => {
  const rng = mulberry32(0x5c)
  for (let i = 0; i < 20000; i++) {
    const hash = rng()
    const min = below(rng, 65536)
    const max = min + below(rng, 65536 - min)
    const port = flowSourcePort(hash, min, max)
    // Reference in BigInt: ((u64)(hash ^ hash << 16) * range) >> 32, plus min.
    const mixed = BigInt((hash ^ (hash << 16)) >>> 0)
    const want = max <= min ? min : Number((mixed * BigInt(max - min + 1)) >> 32n) + min
    assert.equal(port, want, `hash ${hash} [${min}, ${max}]`)
    assert.ok(port >= min && port <= max)
  }
  assert.equal(flowSourcePort(0, 49152, 65535), 49152)
  assert.equal(flowSourcePort(0x0000ffff, 49152, 65535), 65535) // mixes to 0xffffffff: max is reachable
  assert.equal(flowSourcePort(12345, 4000, 4000), 4000)
  assert.equal(flowSourcePort(12345, 5000, 4000), 5000)
})

test('source ports spread evenly over the range for distinct flows', () => {
  const rng = mulberry32(0xec)
  const buckets = new Array<number>(16).fill(0)
  const n = 32000
  for (let i = 0; i < n; i++) {
    const f = v4Frame({ src: 0x0a000000 + (i & 0xff), dst: 0x0a000100 + (i >>> 8), proto: PROTO_TCP, sport: 32768 + (rng() & 0x7fff), dport: 80 })
    const port = flowSourcePort(flowHash(f, 0, f.length, 42), 49152, 65535)
    buckets[(port - 49152) >>> 10]++
  }
  for (const b of buckets) assert.ok(Math.abs(b - n / 16) < n / 16 * 0.1, `bucket ${b} of ${n / 16} expected`)
})
