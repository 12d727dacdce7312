/**
 * The native checksum twin against the TypeScript reference: the same checksum
 * for every generated buffer, offset (aligned or not), length (odd or even) and
 * starting sum; and the bulk summer the datapath uses is the twin once the
 * addon is loaded.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { csumAdd, csumFinish } from '../../../src/wire/checksum'
import { native } from '../../../src/ports/native'
import * as checksum from '../../../src/wire/checksum'

function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

test('native csumAdd gives the same checksum as the TypeScript one over 100,000 generated ranges', () => {
  const rnd = prng(0x5eed)
  const buf = new Uint8Array(70_000)
  for (let i = 0; i < buf.length; i++) buf[i] = (rnd() * 256) | 0
  for (let k = 0; k < 100_000; k++) {
    const len = k % 10 === 0 ? (rnd() * 65_536) | 0 : (rnd() * 2_000) | 0
    const off = (rnd() * (buf.length - len)) | 0
    const sum = k % 3 === 0 ? 0 : (rnd() * 0x1ffff) | 0
    const want = csumFinish(csumAdd(buf, off, len, sum))
    const got = csumFinish(native.csumAdd(buf, off, len, sum))
    if (got !== want) assert.fail(`off ${off} len ${len} sum ${sum}: native ${got.toString(16)}, TypeScript ${want.toString(16)}`)
  }
})

test('edge cases: all ones, all zeros, one byte, empty, 0xffff sums', () => {
  for (const [fill, len] of [[0xff, 1400], [0, 1400], [0xab, 1], [0, 0], [0xff, 2], [0xff, 65535]] as const) {
    const b = new Uint8Array(len + 3).fill(fill)
    for (let off = 0; off < 3; off++) {
      for (const sum of [0, 0xffff, 0x1fffe]) {
        assert.equal(csumFinish(native.csumAdd(b, off, len, sum)), csumFinish(csumAdd(b, off, len, sum)), `fill ${fill} len ${len} off ${off} sum ${sum}`)
      }
    }
  }
})

test('the bulk summer switches to the twin when the addon loads, and refuses bad ranges', () => {
  assert.notEqual(checksum.csumAddBulk, csumAdd)
  const b = new Uint8Array(3000).map((_, i) => (i * 31) & 255)
  assert.equal(csumFinish(checksum.csumAddBulk(b, 1, 2999, 7)), csumFinish(csumAdd(b, 1, 2999, 7)))
  assert.throws(() => native.csumAdd(new Uint8Array(10), 8, 4, 0), RangeError)
  assert.throws(() => native.csumAdd(new Uint8Array(10), 0, 4, -1), RangeError)
})
