import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_HLEN_MIN, IPV4_OFF_CSUM, IPV4_OFF_DST, IPV4_OFF_FRAG, IPV4_OFF_ID,
  IPV4_OFF_PROTO, IPV4_OFF_SRC, IPV4_OFF_TOS, IPV4_OFF_TOTAL_LEN, IPV4_OFF_TTL, IPV4_OFF_VER_IHL,
  PROTO_ICMP, PROTO_TCP, PROTO_UDP,
  ipv4Check, ipv4CheckWithChecksum, ipv4Checksum, ipv4Dst, ipv4FillChecksum, ipv4Flags, ipv4FragOff,
  ipv4HeaderChecksumOk, ipv4Id, ipv4Ihl, ipv4IsFragment, ipv4Proto, ipv4Src, ipv4Tos, ipv4TotalLen,
  ipv4Ttl, ipv4Version, ipv4WriteHeader,
  setIpv4Checksum, setIpv4Dst, setIpv4Frag, setIpv4Id, setIpv4Proto, setIpv4Src, setIpv4Tos,
  setIpv4TotalLen, setIpv4Ttl,
} from '../../../src/wire/ipv4'
import { Malformed } from '../../../src/wire/malformed'
import { ipv4Parse } from '../../../src/wire/addr'
import { concat, embed, filled, hex, toHex } from './bytes'
import { fuzzCheck, mulberry32 } from './fuzz'

// RFC 791 §3.1 layout; a real header whose checksum is the well-known 0xb861.
const HDR_B861 = hex(`
  45 00        # version 4, IHL 5 (20 bytes); TOS 0
  00 73        # total length 115
  00 00        # identification 0
  40 00        # flags DF, fragment offset 0
  40 11        # TTL 64, protocol 17 (UDP)
  b8 61        # header checksum
  c0 a8 00 01  # src 192.168.0.1
  c0 a8 00 c7  # dst 192.168.0.199
`)
/** The header followed by its 95 bytes of payload, so total length 115 fits. */
const PKT_B861 = embed(HDR_B861, 0, 115, 0)

// With a 4-byte option; first fragment of a TCP datagram. Checksum computed
// independently (Python) for this fixture.
const HDR_OPTS = hex(`
  46 00        # version 4, IHL 6 (24 bytes); TOS 0
  00 2c        # total length 44 (24 header + 20 payload)
  12 34        # identification 0x1234
  20 00        # flags MF, fragment offset 0
  40 06        # TTL 64, protocol 6 (TCP)
  9f 91        # header checksum
  0a 00 00 01  # src 10.0.0.1
  0a 00 00 02  # dst 10.0.0.2
  94 04 00 00  # option: Router Alert (RFC 2113), length 4, value 0
`)
const PKT_OPTS = embed(HDR_OPTS, 0, 44, 0)

// A header with no payload (total length 20), checksum computed in Python.
const HDR_ONLY = hex(`
  45 00 00 14  # version 4, IHL 5, TOS 0, total length 20
  00 00 00 00  # id 0, no flags, offset 0
  40 11 66 d7  # TTL 64, UDP, checksum
  0a 00 00 01  # src 10.0.0.1
  0a 00 00 02  # dst 10.0.0.2
`)

test('layout: RFC 791 §3.1 offsets', () => {
  assert.deepEqual(
    [IPV4_OFF_VER_IHL, IPV4_OFF_TOS, IPV4_OFF_TOTAL_LEN, IPV4_OFF_ID, IPV4_OFF_FRAG, IPV4_OFF_TTL, IPV4_OFF_PROTO, IPV4_OFF_CSUM, IPV4_OFF_SRC, IPV4_OFF_DST, IPV4_HLEN_MIN],
    [0, 1, 2, 4, 6, 8, 9, 10, 12, 16, 20],
  )
  assert.deepEqual([PROTO_ICMP, PROTO_TCP, PROTO_UDP], [1, 6, 17])
})

test('reads every field of the 0xb861 header', () => {
  assert.equal(ipv4Check(PKT_B861, 0, PKT_B861.length), 20)
  assert.equal(ipv4Version(PKT_B861, 0), 4)
  assert.equal(ipv4Ihl(PKT_B861, 0), 20)
  assert.equal(ipv4Tos(PKT_B861, 0), 0)
  assert.equal(ipv4TotalLen(PKT_B861, 0), 115)
  assert.equal(ipv4Id(PKT_B861, 0), 0)
  assert.equal(ipv4Flags(PKT_B861, 0), IPV4_FLAG_DF)
  assert.equal(ipv4FragOff(PKT_B861, 0), 0)
  assert.equal(ipv4IsFragment(PKT_B861, 0), false)
  assert.equal(ipv4Ttl(PKT_B861, 0), 64)
  assert.equal(ipv4Proto(PKT_B861, 0), PROTO_UDP)
  assert.equal(ipv4Checksum(PKT_B861, 0), 0xb861)
  assert.equal(ipv4Src(PKT_B861, 0), ipv4Parse('192.168.0.1'))
  assert.equal(ipv4Dst(PKT_B861, 0), ipv4Parse('192.168.0.199'))
  assert.equal(ipv4Src(PKT_B861, 0), 0xc0a80001) // unsigned despite the high bit
  assert.equal(ipv4HeaderChecksumOk(PKT_B861, 0), true)
  assert.equal(ipv4CheckWithChecksum(PKT_B861, 0, PKT_B861.length), 20)
})

test('reads a header with options: IHL 6, MF, checksum over 24 bytes', () => {
  assert.equal(ipv4Check(PKT_OPTS, 0, PKT_OPTS.length), 24)
  assert.equal(ipv4Ihl(PKT_OPTS, 0), 24)
  assert.equal(ipv4Id(PKT_OPTS, 0), 0x1234)
  assert.equal(ipv4Flags(PKT_OPTS, 0), IPV4_FLAG_MF)
  assert.equal(ipv4IsFragment(PKT_OPTS, 0), true) // first fragment: MF, offset 0
  assert.equal(ipv4Proto(PKT_OPTS, 0), PROTO_TCP)
  assert.equal(ipv4HeaderChecksumOk(PKT_OPTS, 0), true)
  assert.equal(ipv4CheckWithChecksum(PKT_OPTS, 0, PKT_OPTS.length), 24)
})

test('fragment fields: offset in bytes, MF, last fragment, reserved flag', () => {
  const h = PKT_B861.slice()
  h[6] = 0x20; h[7] = 0xb9 // MF, offset 185 units = 1480 bytes
  assert.deepEqual([ipv4Flags(h, 0), ipv4FragOff(h, 0), ipv4IsFragment(h, 0)], [IPV4_FLAG_MF, 1480, true])
  h[6] = 0x00; h[7] = 0xb9 // last fragment: MF clear, offset nonzero
  assert.deepEqual([ipv4Flags(h, 0), ipv4FragOff(h, 0), ipv4IsFragment(h, 0)], [0, 1480, true])
  h[6] = 0x7f; h[7] = 0xff // DF and MF, every offset bit: 8191 units = 65528 bytes
  assert.deepEqual([ipv4Flags(h, 0), ipv4FragOff(h, 0), ipv4IsFragment(h, 0)], [IPV4_FLAG_DF | IPV4_FLAG_MF, 65528, true])
  h[6] = 0x80; h[7] = 0x00 // only the reserved ("evil") bit: not a fragment
  assert.deepEqual([ipv4Flags(h, 0), ipv4FragOff(h, 0), ipv4IsFragment(h, 0)], [0b100, 0, false])
})

test('total length below len is fine (Ethernet padding)', () => {
  const h = embed(HDR_B861, 0, 60, 0)
  h[2] = 0; h[3] = 46
  assert.equal(ipv4Check(h, 0, 60), 20)
  h[3] = 20 // header only, no payload
  assert.equal(ipv4Check(h, 0, 60), 20)
})

test('Malformed.Truncated: under 20 bytes, IHL beyond len, bad offset', () => {
  assert.equal(ipv4Check(PKT_B861, 0, 19), Malformed.Truncated)
  assert.equal(ipv4Check(PKT_B861, 0, 0), Malformed.Truncated)
  assert.equal(ipv4Check(PKT_OPTS, 0, 23), Malformed.Truncated) // IHL 6 needs 24
  const ihl15 = PKT_B861.slice(0, 40)
  ihl15[0] = 0x4f // 60-byte header, only 40 bytes here
  assert.equal(ipv4Check(ihl15, 0, 40), Malformed.Truncated)
  assert.equal(ipv4Check(PKT_B861, -4, 40), Malformed.Truncated)
  assert.equal(ipv4Check(PKT_B861, 100, 40), Malformed.Truncated) // only 15 bytes left
})

test('Malformed.BadVersion: version 6 and 0', () => {
  for (const vi of [0x65, 0x05, 0xf5]) {
    const h = PKT_B861.slice()
    h[0] = vi
    assert.equal(ipv4Check(h, 0, h.length), Malformed.BadVersion, vi.toString(16))
  }
})

test('Malformed.BadHeaderLength: IHL below 5', () => {
  for (const vi of [0x40, 0x41, 0x44]) {
    const h = PKT_B861.slice()
    h[0] = vi
    assert.equal(ipv4Check(h, 0, h.length), Malformed.BadHeaderLength, vi.toString(16))
  }
})

test('Malformed.BadTotalLength: below the header, or past the bytes we have', () => {
  const h = PKT_B861.slice()
  h[2] = 0; h[3] = 19
  assert.equal(ipv4Check(h, 0, h.length), Malformed.BadTotalLength)
  const o = PKT_OPTS.slice()
  o[2] = 0; o[3] = 20 // 20 < IHL*4 = 24
  assert.equal(ipv4Check(o, 0, o.length), Malformed.BadTotalLength)
  assert.equal(ipv4Check(PKT_B861, 0, 114), Malformed.BadTotalLength) // says 115
  // len past the buffer is clamped, so this is the same case.
  assert.equal(ipv4Check(PKT_B861.subarray(0, 114), 0, 1500), Malformed.BadTotalLength)
})

test('Malformed.BadChecksum: ipv4CheckWithChecksum catches any single-bit flip', () => {
  for (let bit = 0; bit < 160; bit++) {
    const h = PKT_B861.slice()
    h[bit >>> 3] ^= 0x80 >>> (bit & 7)
    if (ipv4Check(h, 0, h.length) < 0) continue // the flip broke the structure first
    assert.equal(ipv4CheckWithChecksum(h, 0, h.length), Malformed.BadChecksum, `bit ${bit}`)
    assert.equal(ipv4HeaderChecksumOk(h, 0), false)
  }
  // The structural code wins over the checksum.
  const h = PKT_B861.slice()
  h[0] = 0x65
  assert.equal(ipv4CheckWithChecksum(h, 0, h.length), Malformed.BadVersion)
})

test('ipv4WriteHeader sets all 20 bytes, checksum included, and nothing else', () => {
  const buf = filled(24)
  const n = ipv4WriteHeader(buf, 2, 115, 0, true, 64, PROTO_UDP, ipv4Parse('192.168.0.1'), ipv4Parse('192.168.0.199'))
  assert.equal(n, 20)
  assert.equal(toHex(buf), toHex(concat(hex('a5 a5'), HDR_B861, hex('a5 a5'))))
  const noDf = filled(20)
  ipv4WriteHeader(noDf, 0, 0x1234, 0xbeef, false, 1, PROTO_ICMP, 0xffffffff, 0)
  assert.equal(toHex(noDf), toHex(hex(`
    45 00 12 34   # version 4, IHL 5, TOS 0, total length 0x1234
    be ef 00 00   # id 0xbeef, no flags, offset 0
    01 01 e8 da   # TTL 1, protocol 1; checksum computed independently (Python)
    ff ff ff ff   # src 255.255.255.255
    00 00 00 00   # dst 0.0.0.0
  `)))
  assert.equal(ipv4HeaderChecksumOk(noDf, 0), true)
})

test('each setter writes exactly its field', () => {
  const cases: [string, (b: Uint8Array, off: number) => void, number, string][] = [
    ['tos', (b, o) => setIpv4Tos(b, o, 0xb8), IPV4_OFF_TOS, 'b8'],
    ['total length', (b, o) => setIpv4TotalLen(b, o, 0x05dc), IPV4_OFF_TOTAL_LEN, '05 dc'],
    ['id', (b, o) => setIpv4Id(b, o, 0xabcd), IPV4_OFF_ID, 'ab cd'],
    ['frag: MF, 1480 bytes = 185 units', (b, o) => setIpv4Frag(b, o, IPV4_FLAG_MF, 1480), IPV4_OFF_FRAG, '20 b9'],
    ['frag: DF, offset 0', (b, o) => setIpv4Frag(b, o, IPV4_FLAG_DF, 0), IPV4_OFF_FRAG, '40 00'],
    ['ttl', (b, o) => setIpv4Ttl(b, o, 63), IPV4_OFF_TTL, '3f'],
    ['proto', (b, o) => setIpv4Proto(b, o, PROTO_TCP), IPV4_OFF_PROTO, '06'],
    ['checksum', (b, o) => setIpv4Checksum(b, o, 0x1234), IPV4_OFF_CSUM, '12 34'],
    ['src', (b, o) => setIpv4Src(b, o, 0xc0a80001), IPV4_OFF_SRC, 'c0 a8 00 01'],
    ['dst', (b, o) => setIpv4Dst(b, o, 0x0a000002), IPV4_OFF_DST, '0a 00 00 02'],
  ]
  for (const [name, set, at, bytes] of cases) {
    const buf = filled(22)
    set(buf, 1)
    const want = filled(22)
    want.set(hex(bytes), 1 + at)
    assert.equal(toHex(buf), toHex(want), name)
  }
})

test('ipv4FillChecksum ignores whatever was in the field, options included', () => {
  const h = HDR_B861.slice()
  h[10] = 0xa5; h[11] = 0xa5
  ipv4FillChecksum(h, 0)
  assert.equal(ipv4Checksum(h, 0), 0xb861)
  const o = embed(HDR_OPTS, 3, 30)
  o[3 + 10] = 0xa5; o[3 + 11] = 0xa5
  ipv4FillChecksum(o, 3)
  assert.equal(ipv4Checksum(o, 3), 0x9f91)
})

test('round-trip: random headers written, checked and read back', () => {
  const rng = mulberry32(791)
  const buf = filled(20 + 64)
  for (let i = 0; i < 3000; i++) {
    const totalLen = 20 + (rng() % 65)
    const id = rng() & 0xffff; const df = (rng() & 1) === 1; const ttl = rng() & 0xff
    const proto = rng() & 0xff; const src = rng(); const dst = rng()
    ipv4WriteHeader(buf, 0, totalLen, id, df, ttl, proto, src, dst)
    assert.equal(ipv4CheckWithChecksum(buf, 0, totalLen), 20)
    assert.deepEqual(
      [ipv4TotalLen(buf, 0), ipv4Id(buf, 0), ipv4Flags(buf, 0), ipv4FragOff(buf, 0), ipv4Ttl(buf, 0), ipv4Proto(buf, 0), ipv4Src(buf, 0), ipv4Dst(buf, 0)],
      [totalLen, id, df ? IPV4_FLAG_DF : 0, 0, ttl, proto, src, dst],
    )
  }
})

test('property: ipv4Check never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(ipv4Check, [HDR_ONLY, PKT_OPTS, PKT_B861], 0x791)
  assert.ok(accepted > 500, `only ${accepted} accepted`)
})

test('property: ipv4CheckWithChecksum never throws, never exceeds len, never reads outside the window', () => {
  assert.equal(ipv4CheckWithChecksum(HDR_ONLY, 0, 20), 20)
  const accepted = fuzzCheck(ipv4CheckWithChecksum, [HDR_ONLY, PKT_OPTS], 0x792)
  assert.ok(accepted > 500, `only ${accepted} accepted`)
})
