import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  csumPartialUpdate32, natRewrite, natSetDstIp, natSetDstPort, natSetEthDst, natSetEthSrc, natSetSrcIp, natSetSrcPort,
} from '../../../src/service/nat'
import { ipv4Format } from '../../../src/wire/addr'
import { u16 } from '../../../src/wire/byteorder'
import { csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import { IPV4_OFF_CSUM, PROTO_TCP, PROTO_UDP, ipv4FillChecksum } from '../../../src/wire/ipv4'
import { TCP_OFF_CSUM, tcpFillChecksumV4 } from '../../../src/wire/tcp'
import { UDP_OFF_CSUM, udpFillChecksumV4 } from '../../../src/wire/udp'
import { below, mulberry32 } from '../wire/fuzz'
import { Frame, completePartial, decode, expectedPartial, frame, ip, PktSpec } from './frames'

const ROUNDS = 3000

function randomSpec(rng: () => number): PktSpec {
  const proto = (rng() & 1) === 0 ? 'tcp' : 'udp'
  const payload = new Uint8Array(below(rng, 300)) // odd lengths too
  for (let i = 0; i < payload.length; i++) payload[i] = rng() & 0xff
  return {
    proto, src: ipv4Format(rng()), dst: ipv4Format(rng()), sport: rng() & 0xffff, dport: rng() & 0xffff,
    flags: rng() & 0xff, seq: rng(), ack: rng(), payload,
    noCsum: proto === 'udp' && below(rng, 4) === 0,
  }
}

/** A field, or the same value with some probability (so "unchanged" paths run too). */
function maybe(rng: () => number, old: number, fresh: number): number {
  return below(rng, 4) === 0 ? old : fresh
}

/** The L4 checksum field of a frame. */
function l4Csum(f: Frame): number {
  const l4 = f.l3 + 20
  return u16(f.buf, l4 + (f.buf[f.l3 + 9] === PROTO_TCP ? TCP_OFF_CSUM : UDP_OFF_CSUM))
}

/** A copy of the frame with every checksum recomputed from scratch. */
function recomputed(f: Frame, udpNone: boolean): Frame {
  const buf = f.buf.slice()
  const g = { ...f, buf }
  ipv4FillChecksum(buf, f.l3)
  const l4 = f.l3 + 20
  if (buf[f.l3 + 9] === PROTO_TCP) tcpFillChecksumV4(buf, f.l3, l4, u16(buf, f.l3 + 2) - 20)
  else if (!udpNone) udpFillChecksumV4(buf, f.l3, l4)
  return g
}

test('incremental rewrites equal checksums recomputed from scratch (random TCP/UDP packets)', () => {
  const rng = mulberry32(0x5eed)
  for (let i = 0; i < ROUNDS; i++) {
    const spec = randomSpec(rng)
    const f = frame(spec)
    const proto = spec.proto === 'tcp' ? PROTO_TCP : PROTO_UDP
    const d0 = decode(f)
    const src = maybe(rng, ip(d0.src), rng())
    const dst = maybe(rng, ip(d0.dst), rng())
    const sport = maybe(rng, d0.sport, rng() & 0xffff)
    const dport = maybe(rng, d0.dport, rng() & 0xffff)
    switch (below(rng, 3)) {
      case 0: natRewrite(f.buf, f.l3, f.l3 + 20, proto, src, dst, sport, dport, false); break
      case 1: natSetSrcIp(f.buf, f.l3, f.l3 + 20, proto, src, false); natSetSrcPort(f.buf, f.l3 + 20, proto, sport, false); break
      default: natSetDstIp(f.buf, f.l3, f.l3 + 20, proto, dst, false); natSetDstPort(f.buf, f.l3 + 20, proto, dport, false); break
    }
    const want = recomputed(f, spec.noCsum === true)
    const where = `round ${i} ${spec.proto} payload ${spec.payload?.length}`
    assert.equal(u16(f.buf, f.l3 + IPV4_OFF_CSUM), u16(want.buf, f.l3 + IPV4_OFF_CSUM), `IPv4 checksum, ${where}`)
    assert.equal(l4Csum(f), l4Csum(want), `L4 checksum, ${where}`)
    if (spec.noCsum) assert.equal(l4Csum(f), 0, `UDP checksum 0 stays 0, ${where}`)
    const d = decode(f)
    assert.ok(d.ipCsumOk && d.l4CsumOk, where)
  }
})

test('a rewrite whose UDP checksum comes out 0 stores 0xffff, as a full computation does', () => {
  // Choose the payload so that the rewritten datagram sums to 0xffff.
  const to = { src: '10.244.1.10', dst: '10.244.2.20', sport: 40000, dport: 8080 }
  const probe = frame({ proto: 'udp', ...to, payload: [0, 0], noCsum: true })
  const l4 = probe.l3 + 20
  let sum = csumPseudoV4(0x0af4010a, 0x0af40214, PROTO_UDP, 10)
  for (let o = 0; o < 10; o += 2) sum += u16(probe.buf, l4 + o)
  const w = ~csumFold(sum) & 0xffff
  const f = frame({ proto: 'udp', src: to.src, dst: '10.96.0.10', sport: to.sport, dport: 53, payload: [w >>> 8, w & 0xff] })
  natRewrite(f.buf, f.l3, f.l3 + 20, PROTO_UDP, 0x0af4010a, 0x0af40214, to.sport, to.dport, false)
  assert.equal(l4Csum(f), 0xffff)
  assert.equal(l4Csum(recomputed(f, false)), 0xffff)
  assert.ok(decode(f).l4CsumOk)
})

test('partial checksums: addresses adjust the pseudo-header sum, ports leave it alone', () => {
  const rng = mulberry32(77)
  for (let i = 0; i < ROUNDS; i++) {
    const spec = { ...randomSpec(rng), partial: true, noCsum: false }
    const f = frame(spec)
    const proto = spec.proto === 'tcp' ? PROTO_TCP : PROTO_UDP
    assert.equal(l4Csum(f), expectedPartial(f))
    const before = l4Csum(f)
    natSetSrcPort(f.buf, f.l3 + 20, proto, rng() & 0xffff, true)
    natSetDstPort(f.buf, f.l3 + 20, proto, rng() & 0xffff, true)
    assert.equal(l4Csum(f), before, 'ports are not in the pseudo-header')
    natRewrite(f.buf, f.l3, f.l3 + 20, proto, rng(), rng(), rng() & 0xffff, rng() & 0xffff, true)
    assert.equal(l4Csum(f), expectedPartial(f), `round ${i}: the field is the new pseudo-header sum`)
    // What the NIC (or vnetCompleteChecksum) does next yields a valid checksum.
    completePartial(f, proto === PROTO_TCP ? TCP_OFF_CSUM : UDP_OFF_CSUM)
    const d = decode(f)
    assert.ok(d.ipCsumOk, 'IPv4 header checksum is always complete')
    assert.ok(d.l4CsumOk, `round ${i}: completed checksum verifies`)
  }
})

test('csumPartialUpdate32 is plain ones-complement arithmetic', () => {
  assert.equal(csumPartialUpdate32(0x1234, 0, 0), 0x1234)
  assert.equal(csumPartialUpdate32(0x1234, 0x00010000, 0x00020000), 0x1235)
  assert.equal(csumPartialUpdate32(0xffff, 0x00000001, 0x00000002), 0x0001) // end-around carry
})

test('MAC helpers write the given address and nothing else', () => {
  const f = frame({ proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 })
  const copy = f.buf.slice()
  natSetEthSrc(f.buf, f.off, 0x0274, 0x61700001)
  natSetEthDst(f.buf, f.off, 0x0200, 0x0000000b)
  const d = decode(f)
  assert.equal(d.srcMac, '02:74:61:70:00:01')
  assert.equal(d.dstMac, '02:00:00:00:00:0b')
  assert.deepEqual(f.buf.subarray(f.off + 12), copy.subarray(f.off + 12))
})
