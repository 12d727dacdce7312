import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  csumAdd, csumFinish, csumFold, csumPseudoV4, csumPseudoV6, csumUpdate16, csumUpdate32, csumVerify,
  udpCsumFinish, udpCsumUpdate16, udpCsumUpdate32,
} from '../../../src/wire/checksum'
import { u16, u32 } from '../../../src/wire/byteorder'
import { hex } from './bytes'
import { below, mulberry32, randomBytes } from './fuzz'

/** Reference: straightforward RFC 1071 sum, folded with BigInt so no carry is ever lost. */
function refFold(buf: Uint8Array, off: number, len: number, start = 0): number {
  let words = 0 // at most len/2 * 0xffff: exact in a double for any test buffer
  for (let i = 0; i < len; i += 2) words += (buf[off + i] << 8) + (i + 1 < len ? buf[off + i + 1] : 0)
  let s = BigInt(start) + BigInt(words)
  while (s > 0xffffn) s = (s & 0xffffn) + (s >> 16n)
  return Number(s)
}

// RFC 1071 §3, "Numerical Examples": bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
const RFC1071_EXAMPLE = hex('00 01 f2 03 f4 f5 f6 f7')

// A real IPv4 header whose checksum is 0xb861 (the usual worked example).
const IPV4_B861 = hex(`
  45 00 00 73   # version 4, IHL 5, TOS 0, total length 115
  00 00 40 00   # id 0, DF, fragment offset 0
  40 11 b8 61   # TTL 64, protocol 17 (UDP), checksum 0xb861
  c0 a8 00 01   # src 192.168.0.1
  c0 a8 00 c7   # dst 192.168.0.199
`)

test('RFC 1071 §3 example: folded sum ddf2, checksum 220d', () => {
  assert.equal(csumFold(csumAdd(RFC1071_EXAMPLE, 0, 8, 0)), 0xddf2)
  assert.equal(csumFinish(csumAdd(RFC1071_EXAMPLE, 0, 8, 0)), 0x220d)
})

test('RFC 1071 §2(A): the sum does not depend on how the data is split (even pieces)', () => {
  let sum = csumAdd(RFC1071_EXAMPLE, 0, 2, 0)
  sum = csumAdd(RFC1071_EXAMPLE, 2, 4, sum)
  sum = csumAdd(RFC1071_EXAMPLE, 6, 2, sum)
  assert.equal(csumFold(sum), 0xddf2)
})

test('known IPv4 header: computes 0xb861 and verifies', () => {
  const h = IPV4_B861.slice()
  h[10] = 0; h[11] = 0
  assert.equal(csumFinish(csumAdd(h, 0, 20, 0)), 0xb861)
  assert.ok(csumVerify(IPV4_B861, 0, 20, 0))
  const bad = IPV4_B861.slice()
  bad[11] ^= 1
  assert.equal(csumVerify(bad, 0, 20, 0), false)
})

test('odd length: the last byte is the high half of a zero-padded word (RFC 9293 §3.1)', () => {
  const b = hex('01 02 03')
  assert.equal(csumFold(csumAdd(b, 0, 3, 0)), 0x0402) // 0x0102 + 0x0300
  assert.equal(csumFinish(csumAdd(b, 0, 3, 0)), 0xfbfd)
  assert.equal(csumFold(csumAdd(b, 0, 1, 0)), 0x0100)
  assert.equal(csumAdd(b, 0, 0, 0), 0)
})

test('reads only [off, off+len)', () => {
  const buf = hex('ff ff ff  00 01 f2 03 f4 f5 f6 f7  ff ff ff')
  assert.equal(csumFold(csumAdd(buf, 3, 8, 0)), 0xddf2)
  // Odd length inside a larger buffer: the byte after the range is not read.
  assert.equal(csumFold(csumAdd(buf, 3, 7, 0)), csumFold(csumAdd(hex('00 01 f2 03 f4 f5 f6'), 0, 7, 0)))
})

test('csumFold: end-around carry, 0 only for 0, large accumulators', () => {
  assert.equal(csumFold(0), 0)
  assert.equal(csumFold(0xffff), 0xffff)
  assert.equal(csumFold(0x10000), 1)
  assert.equal(csumFold(0x1fffe), 0xffff) // 0xfffe + 1
  assert.equal(csumFold(0xffffffff), 0xffff)
  assert.equal(csumFold(0x100000000), 1) // 2^32 = 65536^2 ≡ 1 (mod 0xffff)
  assert.equal(csumFold(2 ** 53), 2 ** (53 % 16)) // 2^16 ≡ 1, so 2^53 ≡ 2^5
  const rng = mulberry32(1)
  for (let i = 0; i < 2000; i++) {
    const x = rng() * 2 ** 20 + rng() // up to ~2^52
    const want = x === 0 ? 0 : (x % 0xffff === 0 ? 0xffff : x % 0xffff)
    assert.equal(csumFold(x), want, `fold ${x}`)
  }
})

test('csumAdd accepts an accumulator up to 2^53 and keeps its value mod 0xffff', () => {
  const data = hex('12 34 56 78 9a')
  for (const start of [0, 1, 0xffff, 0x1ffff, 0x20000, 2 ** 32 + 5, 2 ** 53 - 1]) {
    const got = csumFold(csumAdd(data, 0, data.length, start))
    assert.equal(got, refFold(data, 0, data.length, start), `start ${start}`)
  }
  assert.ok(csumAdd(data, 0, data.length, 2 ** 53) < 2 ** 17)
})

test('matches the reference on random buffers, offsets and lengths (incl. > one fold chunk)', () => {
  const rng = mulberry32(7)
  const big = randomBytes(rng, 200_003)
  for (let i = 0; i < 3000; i++) {
    const len = i < 20 ? 65536 + below(rng, 100_000) : below(rng, 1600)
    const off = below(rng, big.length - len)
    assert.equal(csumFold(csumAdd(big, off, len, 0)), refFold(big, off, len), `off ${off} len ${len}`)
  }
})

test('worst case: 200000 bytes of 0xff fold to 0xffff without losing carries', () => {
  const ff = new Uint8Array(200_000).fill(0xff)
  assert.equal(csumFold(csumAdd(ff, 0, ff.length, 0)), 0xffff)
  assert.equal(csumFinish(csumAdd(ff, 0, ff.length, 0)), 0)
  assert.equal(csumFold(csumAdd(ff, 0, ff.length - 1, 0)), refFold(ff, 0, ff.length - 1))
})

test('a random buffer split into even pieces sums like the whole', () => {
  const rng = mulberry32(11)
  for (let i = 0; i < 500; i++) {
    const buf = randomBytes(rng, 1 + below(rng, 300))
    const cut = 2 * below(rng, (buf.length >> 1) + 1)
    const pieces = csumAdd(buf, cut, buf.length - cut, csumAdd(buf, 0, cut, 0))
    assert.equal(csumFold(pieces), refFold(buf, 0, buf.length))
  }
})

test('csumVerify: data that includes its checksum sums to 0xffff', () => {
  const rng = mulberry32(3)
  for (let i = 0; i < 500; i++) {
    const buf = randomBytes(rng, 4 + 2 * below(rng, 50))
    buf[2] = 0; buf[3] = 0
    const c = csumFinish(csumAdd(buf, 0, buf.length, 0))
    buf[2] = c >>> 8; buf[3] = c & 0xff
    assert.ok(csumVerify(buf, 0, buf.length, 0))
    buf[below(rng, buf.length)] ^= 1 << below(rng, 8)
    assert.equal(csumVerify(buf, 0, buf.length, 0), false)
  }
})

test('udpCsumFinish: a computed 0 goes on the wire as 0xffff (RFC 768)', () => {
  assert.equal(csumFinish(0xffff), 0)
  assert.equal(udpCsumFinish(0xffff), 0xffff)
  assert.equal(udpCsumFinish(0x1234), 0xedcb)
  assert.equal(udpCsumFinish(0), 0xffff) // all-zero data: ~0 = 0xffff either way
})

test('csumPseudoV4 equals summing the RFC 768 pseudo-header bytes', () => {
  const pseudo = hex(`
    c0 a8 00 01   # src 192.168.0.1
    c0 a8 00 c7   # dst 192.168.0.199
    00 11         # zero, protocol 17
    00 5f         # UDP length 95
  `)
  assert.equal(csumFold(csumPseudoV4(0xc0a80001, 0xc0a800c7, 17, 95)), csumFold(csumAdd(pseudo, 0, 12, 0)))
  const rng = mulberry32(5)
  for (let i = 0; i < 1000; i++) {
    const b = randomBytes(rng, 12)
    b[8] = 0
    const got = csumPseudoV4(u32(b, 0), u32(b, 4), b[9], u16(b, 10))
    assert.equal(csumFold(got), refFold(b, 0, 12))
  }
})

test('csumPseudoV6 equals summing the RFC 8200 §8.1 pseudo-header bytes', () => {
  const rng = mulberry32(6)
  for (let i = 0; i < 500; i++) {
    const addrs = randomBytes(rng, 40) // 8 bytes of other header, then src 16, dst 16
    const l4len = i % 2 === 0 ? below(rng, 0x10000) : rng() // 32-bit length field
    const proto = rng() & 0xff
    const pseudo = new Uint8Array(40)
    pseudo.set(addrs.subarray(8, 40), 0)
    pseudo[32] = l4len >>> 24; pseudo[33] = l4len >>> 16; pseudo[34] = l4len >>> 8; pseudo[35] = l4len
    pseudo[39] = proto // 3 zero bytes, then next header
    assert.equal(csumFold(csumPseudoV6(addrs, 8, 24, proto, l4len)), refFold(pseudo, 0, 40))
  }
})

/** Full recompute of the IPv4 header checksum (field zeroed). */
function fullIpv4(h: Uint8Array): number {
  const c = h.slice()
  c[10] = 0; c[11] = 0
  return csumFinish(csumAdd(c, 0, 20, 0))
}

/** 16-bit words to try as new values: the edges, then anything. */
function edgeWord(rng: () => number): number {
  const r = below(rng, 6)
  return r === 0 ? 0 : r === 1 ? 0xffff : r === 2 ? 1 : r === 3 ? 0xfffe : rng() & 0xffff
}

test('csumUpdate16 (RFC 1624 eqn 3) equals a full recompute over many random edits', () => {
  const rng = mulberry32(16)
  const h = IPV4_B861.slice()
  for (let i = 0; i < 20000; i++) {
    const w = 2 * [0, 1, 2, 3, 4, 6, 7, 8, 9][below(rng, 9)] // any word but the checksum (5)
    const oldWord = u16(h, w)
    const newWord = i % 50 === 0 ? oldWord : edgeWord(rng)
    if (w === 0) { h[w] = 0x45; h[w + 1] = newWord & 0xff } else { h[w] = newWord >>> 8; h[w + 1] = newWord & 0xff }
    const actualNew = u16(h, w)
    const inc = csumUpdate16(u16(h, 10), oldWord, actualNew)
    const full = fullIpv4(h)
    assert.equal(inc, full, `edit ${i}: word ${w / 2} ${oldWord.toString(16)} -> ${actualNew.toString(16)}`)
    h[10] = inc >>> 8; h[11] = inc & 0xff
    assert.ok(csumVerify(h, 0, 20, 0))
  }
})

test('csumUpdate16 into and out of a header whose checksum is 0x0000', () => {
  // Choose the id so the checksum becomes 0: adding ~S to the sum S gives 0xffff.
  const h = IPV4_B861.slice()
  h[4] = 0; h[5] = 0
  const c0 = fullIpv4(h) // checksum with id 0
  const inc = csumUpdate16(c0, 0, c0)
  h[4] = c0 >>> 8; h[5] = c0 & 0xff
  assert.equal(fullIpv4(h), 0x0000)
  assert.equal(inc, 0x0000)
  // From checksum 0 through the edge words.
  for (const [oldW, newW] of [[c0, 0], [c0, 0xffff], [c0, c0], [c0, 1]]) {
    const x = h.slice()
    x[10] = 0; x[11] = 0
    x[4] = newW >>> 8; x[5] = newW & 0xff
    assert.equal(csumUpdate16(0x0000, oldW, newW), fullIpv4(x), `${oldW} -> ${newW}`)
  }
  // 0x0000 and 0xffff are the same word in ones' complement: swapping them changes nothing.
  assert.equal(csumUpdate16(0x1234, 0x0000, 0xffff), 0x1234)
  assert.equal(csumUpdate16(0x1234, 0xffff, 0x0000), 0x1234)
})

test('csumUpdate32 equals a full recompute for address rewrites', () => {
  const rng = mulberry32(32)
  const h = IPV4_B861.slice()
  for (let i = 0; i < 20000; i++) {
    const at = below(rng, 2) === 0 ? 12 : 16
    const oldA = u32(h, at)
    const pick = below(rng, 5)
    const newA = pick === 0 ? 0 : pick === 1 ? 0xffffffff : pick === 2 ? (oldA ^ 0xffff) >>> 0 : rng()
    h[at] = newA >>> 24; h[at + 1] = newA >>> 16; h[at + 2] = newA >>> 8; h[at + 3] = newA
    const inc = csumUpdate32(u16(h, 10), oldA, newA)
    assert.equal(inc, fullIpv4(h), `edit ${i}: ${oldA.toString(16)} -> ${newA.toString(16)}`)
    h[10] = inc >>> 8; h[11] = inc & 0xff
  }
})

test('udpCsumUpdate16/32: 0 ("no checksum") stays 0, a result of 0 becomes 0xffff', () => {
  assert.equal(udpCsumUpdate16(0, 0x1234, 0x5678), 0)
  assert.equal(udpCsumUpdate32(0, 0x12345678, 0x9abcdef0), 0)
  // csumUpdate16 gives 0 here, so the UDP form must store 0xffff.
  assert.equal(csumUpdate16(0x0001, 0x0000, 0x0001), 0)
  assert.equal(udpCsumUpdate16(0x0001, 0x0000, 0x0001), 0xffff)
  assert.equal(csumUpdate32(0x0001, 0x00000000, 0x00000001), 0)
  assert.equal(udpCsumUpdate32(0x0001, 0x00000000, 0x00000001), 0xffff)
  // From 0xffff (a computed 0 on the wire) like from any other value.
  assert.equal(udpCsumUpdate16(0xffff, 0x0001, 0x0002), csumUpdate16(0xffff, 0x0001, 0x0002))
})
