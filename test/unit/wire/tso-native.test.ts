/**
 * The native segmentation twin against the TypeScript reference (wire/tso.ts):
 * over many generated super-frames (TCPv4 with and without options, TCPv6,
 * UDP/USO, VLAN tags, every flag combination, odd sizes, prefixes and output
 * offsets), both write the same bytes into a guard-filled output, return the
 * same count and the same TSO record; over mutated and truncated frames, both
 * return the same code and write nothing. And the datapath's segmenter is the
 * twin once the addon is loaded.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TSO, tsoSegment, tsoSegmentFast, tsoTwin } from '../../../src/wire/tso'
import { native } from '../../../src/ports/native'
import { pattern, tcpFrame, tsOption, udpFrame } from './frames'
import { below, mulberry32 } from './fuzz'

const GUARD = 0xa5

interface Outcome {
  n: number
  out: Uint8Array
  rec: number[]
}

function reference(f: Uint8Array, frame: number, len: number, udp: boolean, gso: number, outLen: number, outOff: number, prefix: number, maxSeg: number): Outcome {
  const out = new Uint8Array(outLen).fill(GUARD)
  TSO.hdrLen = TSO.payloadLen = TSO.lastLen = TSO.l4Off = TSO.ethLen = -1
  const n = tsoSegment(f, frame, len, udp, gso, out, outOff, prefix, maxSeg)
  return { n, out, rec: n > 0 ? [TSO.hdrLen, TSO.payloadLen, TSO.lastLen, TSO.l4Off, TSO.ethLen] : [] }
}

function twin(f: Uint8Array, frame: number, len: number, udp: boolean, gso: number, outLen: number, outOff: number, prefix: number, maxSeg: number): Outcome {
  const out = new Uint8Array(outLen).fill(GUARD)
  const info = new Uint32Array(5)
  const n = native.tsoSegment(f, frame, len, udp, gso, out, outOff, prefix, maxSeg, info)
  return { n, out, rec: n > 0 ? Array.from(info) : [] }
}

function same(a: Outcome, b: Outcome, what: string): void {
  if (a.n !== b.n) assert.fail(`${what}: TypeScript returned ${a.n}, native ${b.n}`)
  assert.deepEqual(b.rec, a.rec, `${what}: TSO record`)
  if (Buffer.compare(a.out, b.out) !== 0) {
    let i = 0
    while (a.out[i] === b.out[i]) i++
    assert.fail(`${what}: output differs first at byte ${i} (TypeScript ${a.out[i]}, native ${b.out[i]})`)
  }
}

/** A generated super-frame: protocol, family, tag, options, flags and sizes from the PRNG. */
function generate(rng: () => number, k: number): { f: Uint8Array; udp: boolean; gso: number } {
  const udp = k % 4 === 3
  const v6 = below(rng, 3) === 0
  const vlan = below(rng, 5) === 0 ? below(rng, 4095) : undefined
  const gso = 1 + (below(rng, 4) === 0 ? below(rng, 200) : 500 + below(rng, 1000))
  const payload = pattern(1 + below(rng, below(rng, 3) === 0 ? 2000 : 64000), k)
  const common = { v6, vlan, id: below(rng, 65536), tos: below(rng, 256), ttl: 1 + below(rng, 255), payload, src: v6 ? undefined : `10.${below(rng, 256)}.${below(rng, 256)}.${1 + below(rng, 254)}` }
  if (udp) return { f: udpFrame({ ...common, sport: below(rng, 65536), dport: below(rng, 65536), csum: below(rng, 2) === 0 ? 'partial' : 'full' }), udp, gso }
  const opts = below(rng, 2) === 0 ? tsOption(rng(), rng()) : below(rng, 4) === 0 ? new Uint8Array(40).fill(1) : undefined
  return {
    f: tcpFrame({ ...common, seq: rng(), ack: rng(), flags: below(rng, 256) | 0x10, window: below(rng, 65536), tcpOptions: opts, csum: 'partial' }),
    udp,
    gso,
  }
}

test('native tsoSegment writes the same bytes as the TypeScript one over 3,000 generated super-frames', () => {
  const rng = mulberry32(0x750)
  for (let k = 0; k < 3000; k++) {
    const { f, udp, gso } = generate(rng, k)
    const prefix = [0, 8, 16, 3][k % 4]
    const outOff = below(rng, 64)
    const frame = below(rng, 3)
    const buf = new Uint8Array(frame + f.length + below(rng, 4))
    buf.set(f, frame)
    const segs = Math.ceil(f.length / gso) + 1
    const outLen = outOff + f.length + segs * (prefix + 128) + 16
    const maxSeg = k % 50 === 0 ? 2 : 1024
    same(reference(buf, frame, f.length, udp, gso, outLen, outOff, prefix, maxSeg),
      twin(buf, frame, f.length, udp, gso, outLen, outOff, prefix, maxSeg), `frame ${k} (udp ${udp}, gso ${gso}, ${f.length} B)`)
  }
})

test('native and TypeScript tsoSegment refuse the same malformed, truncated and oversized inputs with the same code', () => {
  const rng = mulberry32(0xbad)
  let refused = 0
  for (let k = 0; k < 20_000; k++) {
    const { f, udp, gso } = generate(rng, k)
    const m = f.slice(0, below(rng, 4) === 0 ? below(rng, 100) : f.length)
    // Flip a few header bytes (EtherType, version, IHL, protocol, data offset).
    for (let j = below(rng, 4); j > 0; j--) if (m.length > 0) m[below(rng, Math.min(m.length, 80))] = below(rng, 256)
    const g = below(rng, 8) === 0 ? [0, -1, 100000][below(rng, 3)] : gso
    const len = below(rng, 10) === 0 ? m.length + 5 : m.length
    const outLen = below(rng, 6) === 0 ? below(rng, m.length + 1) : m.length * 2 + 4096
    const a = reference(m, 0, len, udp, g, outLen, 0, 8, 1024)
    same(a, twin(m, 0, len, udp, g, outLen, 0, 8, 1024), `mutation ${k}`)
    if (a.n < 0) refused++
  }
  assert.ok(refused > 1000, `only ${refused} inputs were refused: the mutations do not reach the error paths`)
})

test('the datapath segmenter is the native twin once the addon is loaded, and gives the reference result', () => {
  assert.equal(tsoTwin(), native.tsoSegment)
  const f = tcpFrame({ payload: pattern(5000), tcpOptions: tsOption(1, 2), seq: 0xfffffff0, flags: 0x18, csum: 'partial' })
  const out1 = new Uint8Array(8000).fill(GUARD)
  const out2 = new Uint8Array(8000).fill(GUARD)
  assert.equal(tsoSegmentFast(f, 0, f.length, false, 1400, out1, 0, 8, 1024), 4)
  const rec = [TSO.hdrLen, TSO.payloadLen, TSO.lastLen, TSO.l4Off, TSO.ethLen]
  assert.equal(tsoSegment(f, 0, f.length, false, 1400, out2, 0, 8, 1024), 4)
  assert.deepEqual([TSO.hdrLen, TSO.payloadLen, TSO.lastLen, TSO.l4Off, TSO.ethLen], rec)
  assert.equal(Buffer.compare(out1, out2), 0)
  assert.throws(() => native.tsoSegment(f, 0, f.length, false, 1400, out1, 0, 8, 1024, new Uint32Array(2)), RangeError)
  assert.throws(() => native.tsoSegment(f, 0, f.length, false, 1400, out1, -1, 8, 1024, new Uint32Array(5)), RangeError)
})
