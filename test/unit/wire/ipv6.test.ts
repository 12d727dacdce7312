import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_NEIGHBOR_ADVERT, ICMPV6_NEIGHBOR_SOLICIT,
  ICMPV6_ROUTER_ADVERT, ICMPV6_ROUTER_SOLICIT, IPV6_HLEN, IPV6_OFF_DST, IPV6_OFF_HOP_LIMIT,
  IPV6_OFF_NEXT_HEADER, IPV6_OFF_PAYLOAD_LEN, IPV6_OFF_SRC, IPV6_OFF_VTC_FLOW, PROTO_ICMPV6,
  ipv6Check, ipv6DstOff, ipv6FlowLabel, ipv6HopLimit, ipv6IsMulticastDst, ipv6NextHeader,
  ipv6PayloadLen, ipv6SrcOff, ipv6TrafficClass, ipv6Version, ipv6WriteHeader,
  setIpv6HopLimit, setIpv6PayloadLen,
} from '../../../src/wire/ipv6'
import { Malformed } from '../../../src/wire/malformed'
import { concat, embed, filled, hex, toHex } from './bytes'
import { fuzzCheck, mulberry32, randomBytes } from './fuzz'

// RFC 8200 §3 layout: a neighbour solicitation header (RFC 4861 §4.3 sends
// it to the solicited-node multicast address with hop limit 255).
const NS_HDR = hex(`
  6e 01 23 45  # version 6, traffic class 0xe0, flow label 0x12345
  00 20        # payload length 32
  3a           # next header 58 (ICMPv6)
  ff           # hop limit 255
  fe 80 00 00 00 00 00 00 02 00 00 ff fe 00 00 01  # src fe80::200:ff:fe00:1
  ff 02 00 00 00 00 00 00 00 00 00 01 ff 00 00 02  # dst ff02::1:ff00:2
`)
const NS_PKT = concat(NS_HDR, hex(`
  87 00 00 00  # ICMPv6 type 135 (NS), code 0, checksum (not checked here)
  00 00 00 00  # reserved
  fe 80 00 00 00 00 00 00 02 00 00 ff fe 00 00 02  # target address
  01 01 02 00 00 00 00 01  # option: source link-layer address
`))

test('layout and ICMPv6 types (RFC 8200 §3, RFC 4443 §2.1, RFC 4861 §4)', () => {
  assert.deepEqual([IPV6_OFF_VTC_FLOW, IPV6_OFF_PAYLOAD_LEN, IPV6_OFF_NEXT_HEADER, IPV6_OFF_HOP_LIMIT, IPV6_OFF_SRC, IPV6_OFF_DST, IPV6_HLEN],
    [0, 4, 6, 7, 8, 24, 40])
  assert.equal(PROTO_ICMPV6, 58)
  assert.deepEqual(
    [ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ROUTER_SOLICIT, ICMPV6_ROUTER_ADVERT, ICMPV6_NEIGHBOR_SOLICIT, ICMPV6_NEIGHBOR_ADVERT],
    [128, 129, 133, 134, 135, 136])
})

test('reads every field', () => {
  assert.equal(ipv6Check(NS_PKT, 0, NS_PKT.length), IPV6_HLEN)
  assert.equal(ipv6Version(NS_PKT, 0), 6)
  assert.equal(ipv6TrafficClass(NS_PKT, 0), 0xe0)
  assert.equal(ipv6FlowLabel(NS_PKT, 0), 0x12345)
  assert.equal(ipv6PayloadLen(NS_PKT, 0), 32)
  assert.equal(ipv6NextHeader(NS_PKT, 0), PROTO_ICMPV6)
  assert.equal(ipv6HopLimit(NS_PKT, 0), 255)
  assert.equal(ipv6SrcOff(0), 8)
  assert.equal(ipv6DstOff(10), 34)
  assert.equal(toHex(NS_PKT, ipv6DstOff(0), 16), 'ff 02 00 00 00 00 00 00 00 00 00 01 ff 00 00 02')
  assert.equal(ipv6IsMulticastDst(NS_PKT, 0), true)
  assert.equal(NS_PKT[IPV6_HLEN], ICMPV6_NEIGHBOR_SOLICIT)
})

test('unicast destination; payload shorter than len (padding) is fine', () => {
  const p = embed(NS_PKT, 4, NS_PKT.length + 10)
  p[4 + 24] = 0xfe
  assert.equal(ipv6IsMulticastDst(p, 4), false)
  assert.equal(ipv6Check(p, 4, NS_PKT.length + 6), IPV6_HLEN)
  const empty = NS_HDR.slice()
  empty[4] = 0; empty[5] = 0
  assert.equal(ipv6Check(empty, 0, 40), IPV6_HLEN)
})

test('Malformed.Truncated: under 40 bytes, or a bad offset', () => {
  assert.equal(ipv6Check(NS_PKT, 0, 39), Malformed.Truncated)
  assert.equal(ipv6Check(NS_PKT, 40, 40), Malformed.Truncated) // 32 left
  assert.equal(ipv6Check(NS_PKT, -1, 40), Malformed.Truncated)
})

test('Malformed.BadVersion: version 4 or 0', () => {
  for (const b of [0x45, 0x0e, 0xfe]) {
    const p = NS_PKT.slice()
    p[0] = b
    assert.equal(ipv6Check(p, 0, p.length), Malformed.BadVersion)
  }
})

test('Malformed.BadTotalLength: payload length past the bytes we have', () => {
  assert.equal(ipv6Check(NS_PKT, 0, 71), Malformed.BadTotalLength) // needs 72
  assert.equal(ipv6Check(NS_PKT.subarray(0, 71), 0, 1500), Malformed.BadTotalLength) // clamped
  const big = NS_PKT.slice()
  big[4] = 0xff; big[5] = 0xff
  assert.equal(ipv6Check(big, 0, big.length), Malformed.BadTotalLength)
})

test('ipv6WriteHeader sets all 40 bytes and nothing else', () => {
  const src = embed(NS_HDR.subarray(8, 24), 3, 20, 0)
  const dst = NS_HDR.slice(24, 40)
  const buf = filled(44)
  assert.equal(ipv6WriteHeader(buf, 2, 0xe0, 0x12345, 32, PROTO_ICMPV6, 255, src, 3, dst, 0), IPV6_HLEN)
  assert.equal(toHex(buf), toHex(concat(hex('a5 a5'), NS_HDR, hex('a5 a5'))))
})

test('setters write exactly their field', () => {
  const buf = filled(42)
  setIpv6PayloadLen(buf, 1, 0x05b4)
  setIpv6HopLimit(buf, 1, 64)
  const want = filled(42)
  want.set(hex('05 b4'), 1 + IPV6_OFF_PAYLOAD_LEN)
  want[1 + IPV6_OFF_HOP_LIMIT] = 64
  assert.equal(toHex(buf), toHex(want))
})

test('round-trip: random headers written then read back', () => {
  const rng = mulberry32(8200)
  const buf = filled(40 + 64)
  for (let i = 0; i < 2000; i++) {
    const tc = rng() & 0xff; const flow = rng() & 0xfffff; const plen = rng() % 65
    const next = rng() & 0xff; const hop = rng() & 0xff
    const addrs = randomBytes(rng, 32)
    ipv6WriteHeader(buf, 0, tc, flow, plen, next, hop, addrs, 0, addrs, 16)
    assert.equal(ipv6Check(buf, 0, 40 + plen), IPV6_HLEN)
    assert.deepEqual([ipv6Version(buf, 0), ipv6TrafficClass(buf, 0), ipv6FlowLabel(buf, 0), ipv6PayloadLen(buf, 0), ipv6NextHeader(buf, 0), ipv6HopLimit(buf, 0)],
      [6, tc, flow, plen, next, hop])
    assert.equal(toHex(buf, 8, 32), toHex(addrs))
  }
})

test('property: ipv6Check never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(ipv6Check, [NS_PKT, NS_HDR.map((b, i) => (i === 4 || i === 5 ? 0 : b))], 0x6)
  assert.ok(accepted > 500, `only ${accepted} accepted`)
})
