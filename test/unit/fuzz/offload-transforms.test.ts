/**
 * The segmentation and coalescing transforms (wire/tso.ts, wire/gro.ts,
 * wire/vnet.ts) and the other byte readers the datapath calls per frame
 * (flowHash, csumAdd) or the CLI per packet (describeFrame, describePacket),
 * against random and mutated frames with random offload parameters:
 *
 * - nothing throws;
 * - a result is a known Malformed code or a length within the input;
 * - writes stay inside the range each function owns (guard bytes around it,
 *   and the prefix gaps tsoSegment leaves free stay untouched);
 * - reads stay inside the input (the same call on an exact copy gives the same
 *   bytes out);
 * - what is produced is right: TSO segments carry the payload in order with
 *   verifying IPv4 and L4 checksums and advancing sequence numbers; a frame
 *   vnetWriteForDelivery marks partial completes to a verifying checksum.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TSO, tsoSegment } from '../../../src/wire/tso'
import { GRO_MAX_IP_LEN, groCanAppend, groEligible, groFinish, vnetWriteForDelivery } from '../../../src/wire/gro'
import { VNET_F_NEEDS_CSUM, VNET_HLEN, vnetCompleteChecksum, vnetCsumOffset, vnetCsumStart, vnetFlags } from '../../../src/wire/vnet'
import { flowHash } from '../../../src/wire/flowhash'
import { csumAdd, csumFold, csumPseudoV4, csumPseudoV6 } from '../../../src/wire/checksum'
import { describeFrame } from '../../../src/wire/decode'
import { describePacket } from '../../../src/observe/describe-packet'
import { Malformed } from '../../../src/wire/malformed'
import { assertReached, baseSeed, below, chance, forEachCase, fuzzCases, fuzzInput, hexHead, mutate, pick, Rng } from '../../harness/fuzz'
import { frameTemplates, layersOf } from '../../harness/fuzz-frames'
import { TCP_ACK, TCP_PSH, pattern, tcpFrame, tsOption, udpFrame } from '../wire/frames'

const N = fuzzCases()
const BASE = baseSeed(0x0ff10ad5)
/** Seeds of failures found so far, by test (none yet). */
const REGRESSION_SEEDS: Record<string, number[]> = {}

const GUARD = 0xa5
const FRAMES = frameTemplates()
/** Super-frames a TAP hands over with GSO: TCP and UDP, IPv4 and IPv6, tagged, with options. */
const SUPER = [
  tcpFrame({ payload: pattern(9000, 1), tcpOptions: tsOption(1, 2), flags: TCP_ACK | TCP_PSH, csum: 'partial' }),
  tcpFrame({ v6: true, payload: pattern(5000, 2) }),
  tcpFrame({ vlan: 7, payload: pattern(3000, 3), ipOptions: Uint8Array.from([1, 1, 1, 0]) }),
  udpFrame({ payload: pattern(4000, 4) }),
  udpFrame({ v6: true, payload: pattern(2500, 5) }),
]

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0
}

function isCode(r: number): boolean {
  return Number.isInteger(r) && r < 0 && Malformed[r] !== undefined
}

/** A buffer holding `body` at a random offset in guard bytes; returns it and the offset. */
function placed(rng: Rng, body: Uint8Array, maxPre = 40, maxPost = 16): { buf: Uint8Array; off: number } {
  const off = below(rng, maxPre + 1)
  const buf = new Uint8Array(off + body.length + below(rng, maxPost + 1)).fill(GUARD)
  buf.set(body, off)
  return { buf, off }
}

function guardIntact(buf: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(0, from); i < Math.min(to, buf.length); i++) if (buf[i] !== GUARD) return i
  return -1
}

// ---- TSO

/** One output slab reused by every case (a 1024-segment run of small segments fits). */
const OUT = new Uint8Array(1 << 20).fill(GUARD)

test(`tsoSegment: never throws, writes only its segments, and each segment is right (${N} inputs)`, () => {
  let segmented = 0
  forEachCase('tso', BASE, N, REGRESSION_SEEDS.tso ?? [], (rng, seed) => {
    const body = chance(rng, 0.7) ? mutate(rng, pick(rng, SUPER), pick(rng, FRAMES)) : fuzzInput(rng, FRAMES, 256)
    const { buf, off } = placed(rng, body)
    let len = body.length
    if (chance(rng, 0.1)) len = below(rng, body.length + 1)
    const isUdp = chance(rng, 0.5)
    const gsoSize = chance(rng, 0.1) ? pick(rng, [0, 1, 65535, 0x7fffffff]) : 1 + below(rng, 3000)
    const prefix = chance(rng, 0.5) ? 8 : below(rng, 20)
    const outOff = below(rng, 64)
    const maxSegments = chance(rng, 0.2) ? 1 + below(rng, 8) : 1024
    const outLen = chance(rng, 0.2) ? below(rng, 4096) : OUT.length
    const out = OUT.subarray(0, outLen)
    let n: number
    try {
      n = tsoSegment(buf, off, len, isUdp, gsoSize, out, outOff, prefix, maxSegments)
    } catch (err) {
      throw new Error(`threw ${(err as Error).message} on ${hexHead(body)}`)
    }
    if (n <= 0) {
      assert.ok(isCode(n), `result ${n} is neither a segment count nor a Malformed code`)
      // A refusal writes nothing.
      const w = guardIntact(OUT, 0, outOff + 256)
      assert.equal(w, -1, `refused (${n}) but wrote byte ${w}`)
      return
    }
    segmented++
    const hdrLen = TSO.hdrLen
    const payloadLen = TSO.payloadLen
    const lastLen = TSO.lastLen
    const stride = prefix + hdrLen + gsoSize
    assert.ok(n <= maxSegments, `${n} segments > maxSegments ${maxSegments}`)
    assert.equal(hdrLen + payloadLen, len, 'headers + payload = input length')
    const end = outOff + (n - 1) * stride + prefix + lastLen
    assert.ok(end <= out.length, `segments end at ${end}, past the output (${out.length})`)
    assert.equal(guardIntact(OUT, 0, outOff), -1, 'wrote before outOff')
    assert.equal(guardIntact(OUT, end, end + 256), -1, 'wrote past the last segment')
    const l = layersOf(body)
    const v6 = l.type === 0x86dd
    const ipHl = v6 ? 40 : (buf[off + l.l3] & 15) * 4
    const seq0 = isUdp ? 0 : u32(buf, off + l.l3 + ipHl + 4)
    let payloadAt = off + hdrLen
    for (let k = 0; k < n; k++) {
      const gap = outOff + k * stride
      assert.equal(guardIntact(OUT, gap, gap + prefix), -1, `segment ${k}: wrote into the free prefix`)
      const o = gap + prefix
      const segLen = k === n - 1 ? lastLen : hdrLen + gsoSize
      const chunk = segLen - hdrLen
      assert.ok(chunk > 0 && chunk <= gsoSize, `segment ${k}: payload ${chunk} not in (0, ${gsoSize}]`)
      for (let i = 0; i < chunk; i++) {
        if (OUT[o + hdrLen + i] !== buf[payloadAt + i]) assert.fail(`segment ${k}: payload byte ${i} differs`)
      }
      payloadAt += chunk
      const ip = o + l.l3
      const l4 = ip + ipHl
      const l4len = segLen - l.l3 - ipHl
      let pseudo: number
      if (v6) {
        assert.equal((OUT[ip + 4] << 8) | OUT[ip + 5], l4len, `segment ${k}: IPv6 payload length`)
        pseudo = csumPseudoV6(OUT, ip + 8, ip + 24, isUdp ? 17 : 6, l4len)
      } else {
        assert.equal((OUT[ip + 2] << 8) | OUT[ip + 3], ipHl + l4len, `segment ${k}: IPv4 total length`)
        assert.equal(csumFold(csumAdd(OUT, ip, ipHl, 0)), 0xffff, `segment ${k}: IPv4 header checksum`)
        pseudo = csumPseudoV4(u32(OUT, ip + 12), u32(OUT, ip + 16), isUdp ? 17 : 6, l4len)
      }
      assert.equal(csumFold(csumAdd(OUT, l4, l4len, pseudo)), 0xffff, `segment ${k}: L4 checksum (seed 0x${seed.toString(16)})`)
      if (!isUdp) assert.equal(u32(OUT, l4 + 4), (seq0 + k * gsoSize) >>> 0, `segment ${k}: TCP sequence`)
      else assert.equal((OUT[l4 + 4] << 8) | OUT[l4 + 5], l4len, `segment ${k}: UDP length`)
    }
    assert.equal(payloadAt, off + len, 'the segments carry the whole payload')
    // Reads only [off, off+len): an exact copy gives the same bytes.
    if (chance(rng, 0.2)) {
      const first = OUT.slice(outOff, end)
      OUT.fill(GUARD, 0, end + 256)
      const exact = buf.slice(off, off + len)
      assert.equal(tsoSegment(exact, 0, len, isUdp, gsoSize, out, outOff, prefix, maxSegments), n)
      assert.deepEqual(OUT.subarray(outOff, end), first, 'reads outside [frame, frame+len)')
    }
    OUT.fill(GUARD, 0, end + 256)
  })
  assertReached(segmented > N / 20, N, `only ${segmented} of ${N} inputs were segmented: the fuzzer misses the accepting path`)
})

// ---- GRO

/** Consecutive MSS-sized segments of one flow, as a sender's TSO makes them. */
function flowSegments(mss: number, count: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let k = 0; k < count; k++) {
    out.push(tcpFrame({ seq: 1000 + k * mss, payload: pattern(mss, 10 + k), tcpOptions: tsOption(77, 66), id: 100 + k }))
  }
  return out
}
const SEGMENTS = flowSegments(1448, 4)

test(`groEligible / groCanAppend / groFinish: stay in bounds and never throw (${N} inputs)`, () => {
  let eligible = 0
  let appended = 0
  forEachCase('gro', BASE ^ 0x67, N, REGRESSION_SEEDS.gro ?? [], (rng) => {
    const body = chance(rng, 0.7) ? mutate(rng, pick(rng, SEGMENTS), pick(rng, FRAMES)) : fuzzInput(rng, FRAMES)
    const { buf, off } = placed(rng, body)
    const len = chance(rng, 0.9) ? body.length : below(rng, body.length + 1)
    const h = groEligible(buf, off, len)
    assert.ok(Number.isInteger(h) && h >= 0, `groEligible = ${h}`)
    if (h === 0) return
    eligible++
    assert.ok(h >= 14 + 40 && h < len, `groEligible = ${h} not in [54, ${len})`)
    assert.equal(groEligible(buf.slice(off, off + len), 0, len), h, 'groEligible reads outside the frame')
    // Start a merge with this segment, as the datapath does, then offer the next one.
    const m = new Uint8Array(VNET_HLEN + 14 + GRO_MAX_IP_LEN + 32).fill(GUARD)
    m.set(buf.subarray(off, off + len), VNET_HLEN)
    const mss = len - h
    const seq = u32(buf, off + 34 + 4)
    let frameLen = len
    let segs = 1
    const next = chance(rng, 0.5) ? mutate(rng, SEGMENTS[1]) : SEGMENTS[1].slice()
    const h2 = groEligible(next, 0, next.length)
    if (h2 > 0 && next.length - h2 <= mss && groCanAppend(m, VNET_HLEN, h, (seq + mss) >>> 0, next, 0, h2)) {
      appended++
      m.set(next.subarray(h2), VNET_HLEN + frameLen)
      frameLen += next.length - h2
      segs++
    }
    groFinish(m, 0, frameLen, h, mss, segs, chance(rng, 0.5))
    assert.equal(guardIntact(m, VNET_HLEN + frameLen, m.length), -1, 'groFinish wrote past the frame')
    if (segs > 1) {
      // The merged frame's IPv4 header verifies and its total length covers it.
      assert.equal(csumFold(csumAdd(m, VNET_HLEN + 14, 20, 0)), 0xffff, 'merged IPv4 header checksum')
      assert.equal((m[VNET_HLEN + 16] << 8) | m[VNET_HLEN + 17], frameLen - 14, 'merged IPv4 total length')
    }
  })
  assertReached(eligible > N / 20, N, `only ${eligible} eligible segments`)
  assertReached(appended > N / 100, N, `only ${appended} appends: the merge path is not reached`)
})

test(`vnetWriteForDelivery: writes only its header, and a partial checksum it declares completes (${N} inputs)`, () => {
  let partial = 0
  forEachCase('delivery', BASE ^ 0xde1, N, REGRESSION_SEEDS.delivery ?? [], (rng) => {
    let body = fuzzInput(rng, [...FRAMES, ...SEGMENTS])
    // Half of the TCP/UDP frames get a partial checksum (the folded pseudo-header sum), as a Linux sender on a veth leaves it.
    if (chance(rng, 0.3)) body = pick(rng, [tcpFrame({ csum: 'partial', payload: pattern(below(rng, 200), 3) }), udpFrame({ csum: 'partial', payload: pattern(below(rng, 200), 4) })])
    const vnet = below(rng, 16)
    const out = new Uint8Array(vnet + VNET_HLEN + body.length + 16).fill(GUARD)
    out.set(body, vnet + VNET_HLEN)
    vnetWriteForDelivery(out, vnet, body.length)
    assert.equal(guardIntact(out, 0, vnet), -1, 'wrote before the vnet header')
    assert.equal(guardIntact(out, vnet + VNET_HLEN + body.length, out.length), -1, 'wrote past the frame')
    for (let i = 0; i < body.length; i++) if (out[vnet + VNET_HLEN + i] !== body[i]) assert.fail(`changed frame byte ${i}`)
    if ((vnetFlags(out, vnet) & VNET_F_NEEDS_CSUM) === 0) return
    partial++
    const frame = vnet + VNET_HLEN
    const start = vnetCsumStart(out, vnet)
    assert.ok(vnetCompleteChecksum(out, frame, body.length, start, vnetCsumOffset(out, vnet)), 'declared partial, but the offsets do not fit the frame')
    const proto = out[frame + 14 + 9]
    const tot = (out[frame + 16] << 8) | out[frame + 17]
    const ihl = (out[frame + 14] & 15) * 4
    const pseudo = csumPseudoV4(u32(out, frame + 26), u32(out, frame + 30), proto, tot - ihl)
    // Completion sums to the end of the frame; it verifies when the frame carries no padding past the IP packet.
    if (14 + tot === body.length) assert.equal(csumFold(csumAdd(out, frame + start, tot - ihl, pseudo)), 0xffff, 'the completed checksum does not verify')
  })
  assertReached(partial > N / 50, N, `only ${partial} frames declared partial`)
})

test(`vnetCompleteChecksum: any csum_start/csum_offset, never writes outside the frame (${N} inputs)`, () => {
  forEachCase('complete', BASE ^ 0xc5, N, REGRESSION_SEEDS.complete ?? [], (rng) => {
    const body = fuzzInput(rng, FRAMES)
    const { buf, off } = placed(rng, body)
    const start = chance(rng, 0.5) ? below(rng, body.length + 8) : rng() & 0xffff
    const field = chance(rng, 0.5) ? below(rng, 40) : rng() & 0xffff
    const ok = vnetCompleteChecksum(buf, off, body.length, start, field)
    assert.equal(typeof ok, 'boolean')
    assert.equal(guardIntact(buf, 0, off), -1, 'wrote before the frame')
    assert.equal(guardIntact(buf, off + body.length, buf.length), -1, 'wrote past the frame')
    if (!ok) for (let i = 0; i < body.length; i++) if (buf[off + i] !== body[i]) assert.fail('refused but changed the frame')
  })
})

// ---- per-frame readers

test(`flowHash, csumAdd, describeFrame, describePacket: never throw, read only the frame (${N} inputs)`, () => {
  forEachCase('readers', BASE ^ 0x4ead, N, REGRESSION_SEEDS.readers ?? [], (rng) => {
    const body = fuzzInput(rng, FRAMES, 200)
    const { buf, off } = placed(rng, body)
    const len = chance(rng, 0.85) ? body.length : below(rng, body.length + 1)
    const exact = buf.slice(off, off + len)
    const h = flowHash(buf, off, len, 0x1234)
    assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `flowHash = ${h}`)
    assert.equal(flowHash(exact, 0, len, 0x1234), h, 'flowHash reads outside the frame')
    assert.equal(csumAdd(buf, off, len, 0), csumAdd(exact, 0, len, 0), 'csumAdd reads outside the range')
    const d = describeFrame(buf, off, len)
    assert.equal(typeof d, 'string')
    assert.equal(describeFrame(exact, 0, len), d, 'describeFrame reads outside the frame')
    const linktype = pick(rng, [1, 101, 113, 147])
    assert.equal(typeof describePacket(buf, off, len, linktype, [4789, 8472]), 'string')
  })
})
