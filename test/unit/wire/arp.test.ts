import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ARP_LEN, ARP_OFF_HLEN, ARP_OFF_HTYPE, ARP_OFF_OP, ARP_OFF_PLEN, ARP_OFF_PTYPE, ARP_OFF_SHA,
  ARP_OFF_SPA, ARP_OFF_THA, ARP_OFF_TPA, ARP_OP_REPLY, ARP_OP_REQUEST,
  arpCheck, arpOp, arpSpa, arpTpa, arpWrite,
} from '../../../src/wire/arp'
import { macHi, macLo } from '../../../src/wire/ethernet'
import { Malformed } from '../../../src/wire/malformed'
import { ipv4Parse } from '../../../src/wire/addr'
import { embed, filled, hex } from './bytes'
import { fuzzCheck, mulberry32 } from './fuzz'

// RFC 826 "Packet format", Ethernet/IPv4: who-has 10.0.0.2 tell 10.0.0.1.
const REQUEST = hex(`
  00 01               # htype 1 (Ethernet)
  08 00               # ptype 0x0800 (IPv4)
  06 04               # hlen 6, plen 4
  00 01               # op 1 (request)
  02 00 00 00 00 01   # sha 02:00:00:00:00:01
  0a 00 00 01         # spa 10.0.0.1
  00 00 00 00 00 00   # tha unknown
  0a 00 00 02         # tpa 10.0.0.2
`)

// The answer: 10.0.0.2 is-at 02:00:00:00:00:02.
const REPLY = hex(`
  00 01 08 00 06 04   # Ethernet/IPv4
  00 02               # op 2 (reply)
  02 00 00 00 00 02   # sha 02:00:00:00:00:02
  0a 00 00 02         # spa 10.0.0.2
  02 00 00 00 00 01   # tha 02:00:00:00:00:01
  0a 00 00 01         # tpa 10.0.0.1
`)

test('layout: RFC 826 offsets for hlen 6 / plen 4', () => {
  assert.deepEqual(
    [ARP_OFF_HTYPE, ARP_OFF_PTYPE, ARP_OFF_HLEN, ARP_OFF_PLEN, ARP_OFF_OP, ARP_OFF_SHA, ARP_OFF_SPA, ARP_OFF_THA, ARP_OFF_TPA, ARP_LEN],
    [0, 2, 4, 5, 6, 8, 14, 18, 24, 28],
  )
  assert.deepEqual([ARP_OP_REQUEST, ARP_OP_REPLY], [1, 2])
})

test('reads every field of a request', () => {
  assert.equal(arpCheck(REQUEST, 0, REQUEST.length), ARP_LEN)
  assert.equal(arpOp(REQUEST, 0), ARP_OP_REQUEST)
  assert.equal(macHi(REQUEST, ARP_OFF_SHA), 0x0200)
  assert.equal(macLo(REQUEST, ARP_OFF_SHA), 0x00000001)
  assert.equal(arpSpa(REQUEST, 0), ipv4Parse('10.0.0.1'))
  assert.equal(macHi(REQUEST, ARP_OFF_THA), 0)
  assert.equal(macLo(REQUEST, ARP_OFF_THA), 0)
  assert.equal(arpTpa(REQUEST, 0), ipv4Parse('10.0.0.2'))
})

test('reads every field of a reply at an offset; addresses are unsigned', () => {
  const r = REPLY.slice()
  r[ARP_OFF_SPA] = 192 // 192.0.0.2: the high bit set must not go negative
  const buf = embed(r, 14, 14 + ARP_LEN + 18) // after an Ethernet header, with padding
  assert.equal(arpCheck(buf, 14, buf.length - 14), ARP_LEN)
  assert.equal(arpOp(buf, 14), ARP_OP_REPLY)
  assert.equal(macLo(buf, 14 + ARP_OFF_SHA), 0x00000002)
  assert.equal(arpSpa(buf, 14), 0xc0000002)
  assert.equal(macLo(buf, 14 + ARP_OFF_THA), 0x00000001)
  assert.equal(arpTpa(buf, 14), ipv4Parse('10.0.0.1'))
})

test('unknown opcodes are not malformed (the caller ignores them)', () => {
  const rarp = REQUEST.slice()
  rarp[ARP_OFF_OP + 1] = 3
  assert.equal(arpCheck(rarp, 0, ARP_LEN), ARP_LEN)
  assert.equal(arpOp(rarp, 0), 3)
})

test('Malformed.Truncated: fewer than 28 bytes, or a bad offset', () => {
  assert.equal(arpCheck(REQUEST, 0, 27), Malformed.Truncated)
  assert.equal(arpCheck(REQUEST, 1, 28), Malformed.Truncated) // clamped to the 27 bytes left
  assert.equal(arpCheck(REQUEST, -1, 28), Malformed.Truncated)
})

test('Malformed.BadArp: each of htype, ptype, hlen, plen', () => {
  const edits: [string, number, number][] = [
    ['htype 6 (IEEE 802)', ARP_OFF_HTYPE + 1, 6],
    ['htype 0x0101', ARP_OFF_HTYPE, 1],
    ['ptype 0x86dd', ARP_OFF_PTYPE, 0x86],
    ['ptype 0x0801', ARP_OFF_PTYPE + 1, 0x01],
    ['hlen 8', ARP_OFF_HLEN, 8],
    ['plen 16', ARP_OFF_PLEN, 16],
  ]
  for (const [name, at, value] of edits) {
    const p = REQUEST.slice()
    p[at] = value
    assert.equal(arpCheck(p, 0, ARP_LEN), Malformed.BadArp, name)
  }
})

test('arpWrite sets all 28 bytes and nothing else', () => {
  const buf = filled(ARP_LEN + 4)
  const n = arpWrite(buf, 2, ARP_OP_REQUEST, 0x0200, 0x00000001, ipv4Parse('10.0.0.1'), 0, 0, ipv4Parse('10.0.0.2'))
  assert.equal(n, ARP_LEN)
  assert.deepEqual(buf.subarray(2, 2 + ARP_LEN), REQUEST)
  assert.deepEqual([buf[0], buf[1], buf[30], buf[31]], [0xa5, 0xa5, 0xa5, 0xa5])
  const reply = filled(ARP_LEN)
  arpWrite(reply, 0, ARP_OP_REPLY, 0x0200, 0x00000002, ipv4Parse('10.0.0.2'), 0x0200, 0x00000001, ipv4Parse('10.0.0.1'))
  assert.deepEqual(reply, REPLY)
})

test('round-trip: random fields written then read back', () => {
  const rng = mulberry32(826)
  const buf = filled(ARP_LEN)
  for (let i = 0; i < 2000; i++) {
    const op = rng() & 0xffff
    const shaHi = rng() & 0xffff; const shaLo = rng(); const spa = rng()
    const thaHi = rng() & 0xffff; const thaLo = rng(); const tpa = rng()
    arpWrite(buf, 0, op, shaHi, shaLo, spa, thaHi, thaLo, tpa)
    assert.equal(arpCheck(buf, 0, ARP_LEN), ARP_LEN)
    assert.deepEqual(
      [arpOp(buf, 0), macHi(buf, ARP_OFF_SHA), macLo(buf, ARP_OFF_SHA), arpSpa(buf, 0), macHi(buf, ARP_OFF_THA), macLo(buf, ARP_OFF_THA), arpTpa(buf, 0)],
      [op, shaHi, shaLo, spa, thaHi, thaLo, tpa],
    )
  }
})

test('property: arpCheck never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(arpCheck, [REQUEST, REPLY], 0x826)
  assert.ok(accepted > 1000, `only ${accepted} accepted`)
})
