import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  UDP_HLEN, UDP_OFF_CSUM, UDP_OFF_DPORT, UDP_OFF_LEN, UDP_OFF_SPORT,
  setUdpChecksum, setUdpDstPort, setUdpLen, setUdpSrcPort,
  udpCheck, udpChecksum, udpChecksumOkV4, udpChecksumOkV6, udpDstPort, udpFillChecksumV4,
  udpFillChecksumV6, udpLen, udpSrcPort, udpWriteHeader,
} from '../../../src/wire/udp'
import { udpCsumUpdate16, udpCsumUpdate32 } from '../../../src/wire/checksum'
import { ipv4Src, setIpv4Src } from '../../../src/wire/ipv4'
import { Malformed } from '../../../src/wire/malformed'
import { concat, filled, hex, toHex } from './bytes'
import { below, fuzzCheck, mulberry32 } from './fuzz'

const IP = hex(`
  45 00 00 21  # IPv4, IHL 5, total length 33
  00 00 40 00  # id 0, DF
  40 11 00 00  # TTL 64, UDP, header checksum (not used here)
  0a 00 00 01  # src 10.0.0.1
  0a 00 00 02  # dst 10.0.0.2
`)

// RFC 768 layout; checksum computed independently (Python) over the
// pseudo-header 10.0.0.1 > 10.0.0.2 proto 17 length 13.
const UDP_HELLO = hex(`
  04 d2        # sport 1234
  00 35        # dport 53
  00 0d        # length 13 (8 + 5)
  a2 f8        # checksum
  68 65 6c 6c 6f  # "hello"
`)
const PKT_HELLO = concat(IP, UDP_HELLO)

// A datagram whose computed checksum is 0: the payload word was chosen so the
// sum is 0xffff. RFC 768 sends it as 0xffff.
const UDP_ZERO = hex(`
  04 d2 00 35  # 1234 > 53
  00 0a ff ff  # length 10, checksum 0xffff (computed 0)
  e6 d0        # payload
`)
const PKT_ZERO = concat(IP, UDP_ZERO)

const IP6 = hex(`
  60 00 00 00  # version 6, traffic class 0, flow label 0
  00 0c 11 40  # payload length 12, next header UDP, hop limit 64
  fe 80 00 00 00 00 00 00 00 00 00 00 00 00 00 01  # src fe80::1
  fe 80 00 00 00 00 00 00 00 00 00 00 00 00 00 02  # dst fe80::2
`)
const UDP6 = hex(`
  02 22 02 23  # 546 > 547 (DHCPv6)
  00 0c 60 ef  # length 12, checksum (Python, RFC 8200 §8.1 pseudo-header)
  de ad be ef  # payload
`)
const PKT6 = concat(IP6, UDP6)

test('layout: RFC 768 offsets', () => {
  assert.deepEqual([UDP_OFF_SPORT, UDP_OFF_DPORT, UDP_OFF_LEN, UDP_OFF_CSUM, UDP_HLEN], [0, 2, 4, 6, 8])
})

test('reads every field', () => {
  assert.equal(udpCheck(PKT_HELLO, 20, 13), UDP_HLEN)
  assert.equal(udpSrcPort(PKT_HELLO, 20), 1234)
  assert.equal(udpDstPort(PKT_HELLO, 20), 53)
  assert.equal(udpLen(PKT_HELLO, 20), 13)
  assert.equal(udpChecksum(PKT_HELLO, 20), 0xa2f8)
})

test('a length field below len is fine (trailing bytes are padding)', () => {
  assert.equal(udpCheck(concat(UDP_HELLO, hex('00 00 00')), 0, 16), UDP_HLEN)
  const empty = hex('0001 0002 0008 0000')
  assert.equal(udpCheck(empty, 0, 8), UDP_HLEN)
})

test('Malformed.Truncated: fewer than 8 bytes, or a bad offset', () => {
  assert.equal(udpCheck(UDP_HELLO, 0, 7), Malformed.Truncated)
  assert.equal(udpCheck(UDP_HELLO, 6, 13), Malformed.Truncated) // 7 bytes left in the buffer
  assert.equal(udpCheck(UDP_HELLO, -1, 13), Malformed.Truncated)
})

test('Malformed.BadLength: length field below 8 or past the bytes we have', () => {
  for (const l of [0, 1, 7]) {
    const u = UDP_HELLO.slice()
    u[4] = 0; u[5] = l
    assert.equal(udpCheck(u, 0, u.length), Malformed.BadLength, `length ${l}`)
  }
  assert.equal(udpCheck(UDP_HELLO, 0, 12), Malformed.BadLength) // says 13
  assert.equal(udpCheck(UDP_HELLO.subarray(0, 12), 0, 100), Malformed.BadLength) // clamped to 12
})

test('udpWriteHeader sets all 8 bytes and nothing else', () => {
  const buf = filled(12)
  assert.equal(udpWriteHeader(buf, 2, 1234, 53, 13, 0xa2f8), UDP_HLEN)
  assert.equal(toHex(buf), toHex(concat(hex('a5 a5'), UDP_HELLO.subarray(0, 8), hex('a5 a5'))))
})

test('each setter writes exactly its field', () => {
  const cases: [string, (b: Uint8Array, o: number) => void, number, string][] = [
    ['sport', (b, o) => setUdpSrcPort(b, o, 0xc000), UDP_OFF_SPORT, 'c0 00'],
    ['dport', (b, o) => setUdpDstPort(b, o, 4789), UDP_OFF_DPORT, '12 b5'],
    ['length', (b, o) => setUdpLen(b, o, 1472), UDP_OFF_LEN, '05 c0'],
    ['checksum', (b, o) => setUdpChecksum(b, o, 0xffff), UDP_OFF_CSUM, 'ff ff'],
  ]
  for (const [name, set, at, bytes] of cases) {
    const buf = filled(10)
    set(buf, 1)
    const want = filled(10)
    want.set(hex(bytes), 1 + at)
    assert.equal(toHex(buf), toHex(want), name)
  }
})

test('round-trip: random headers written then read back', () => {
  const rng = mulberry32(768)
  const buf = filled(8 + 40)
  for (let i = 0; i < 2000; i++) {
    const sport = rng() & 0xffff; const dport = rng() & 0xffff; const len = 8 + below(rng, 41); const csum = rng() & 0xffff
    udpWriteHeader(buf, 0, sport, dport, len, csum)
    assert.equal(udpCheck(buf, 0, buf.length), UDP_HLEN)
    assert.deepEqual([udpSrcPort(buf, 0), udpDstPort(buf, 0), udpLen(buf, 0), udpChecksum(buf, 0)], [sport, dport, len, csum])
  }
})

test('udpFillChecksumV4 computes the known checksum whatever the field held', () => {
  const p = PKT_HELLO.slice()
  setUdpChecksum(p, 20, 0xa5a5)
  udpFillChecksumV4(p, 0, 20)
  assert.equal(udpChecksum(p, 20), 0xa2f8)
  assert.equal(udpChecksumOkV4(p, 0, 20), true)
  p[p.length - 1] ^= 1
  assert.equal(udpChecksumOkV4(p, 0, 20), false)
  // The pseudo-header counts: a different source address fails.
  const q = PKT_HELLO.slice()
  setIpv4Src(q, 0, 0x0a000003)
  assert.equal(udpChecksumOkV4(q, 0, 20), false)
})

test('udpFillChecksumV4: a computed 0 is stored as 0xffff and verifies', () => {
  const p = PKT_ZERO.slice()
  setUdpChecksum(p, 20, 0x1234)
  udpFillChecksumV4(p, 0, 20)
  assert.equal(udpChecksum(p, 20), 0xffff)
  assert.equal(udpChecksumOkV4(p, 0, 20), true)
})

test('udpChecksumOkV4: checksum 0 means none was sent (RFC 768)', () => {
  const p = PKT_HELLO.slice()
  setUdpChecksum(p, 20, 0)
  p[p.length - 1] ^= 0xff
  assert.equal(udpChecksumOkV4(p, 0, 20), true)
})

test('udpFillChecksumV6 computes the known checksum; zero fails over IPv6 (RFC 8200 §8.1)', () => {
  const p = PKT6.slice()
  setUdpChecksum(p, 40, 0xa5a5)
  udpFillChecksumV6(p, 0, 40)
  assert.equal(udpChecksum(p, 40), 0x60ef)
  assert.equal(udpChecksumOkV6(p, 0, 40), true)
  p[8 + 15] ^= 1 // src address is in the pseudo-header
  assert.equal(udpChecksumOkV6(p, 0, 40), false)
  setUdpChecksum(p, 40, 0)
  assert.equal(udpChecksumOkV6(p, 0, 40), false)
})

test('NAT-style incremental updates equal a full recompute, 0xffff state included', () => {
  const rng = mulberry32(1624)
  for (const start of [PKT_HELLO, PKT_ZERO]) {
    const p = start.slice()
    for (let i = 0; i < 5000; i++) {
      const old = udpChecksum(p, 20)
      let next: number
      if (below(rng, 2) === 0) {
        const oldPort = udpSrcPort(p, 20)
        // Every few edits, undo the last one: returns to the 0xffff start for PKT_ZERO.
        const port = i % 7 === 0 ? 1234 : rng() & 0xffff
        setUdpSrcPort(p, 20, port)
        next = udpCsumUpdate16(old, oldPort, port)
      } else {
        const oldAddr = ipv4Src(p, 0)
        const addr = i % 5 === 0 ? 0x0a000001 : rng()
        setIpv4Src(p, 0, addr)
        next = udpCsumUpdate32(old, oldAddr, addr)
      }
      const full = p.slice()
      udpFillChecksumV4(full, 0, 20)
      assert.equal(next, udpChecksum(full, 20), `edit ${i}`)
      setUdpChecksum(p, 20, next)
      assert.ok(udpChecksumOkV4(p, 0, 20))
    }
    // Walk back to the original bytes incrementally: the checksum must come
    // back too, for PKT_ZERO to 0xffff (a computed 0), never to 0.
    let c = udpChecksum(p, 20)
    c = udpCsumUpdate16(c, udpSrcPort(p, 20), 1234)
    setUdpSrcPort(p, 20, 1234)
    c = udpCsumUpdate32(c, ipv4Src(p, 0), 0x0a000001)
    setIpv4Src(p, 0, 0x0a000001)
    setUdpChecksum(p, 20, c)
    assert.equal(toHex(p), toHex(start))
  }
})

test('property: udpCheck never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(udpCheck, [UDP_HELLO, UDP_ZERO, UDP6], 0x768)
  assert.ok(accepted > 500, `only ${accepted} accepted`)
})
