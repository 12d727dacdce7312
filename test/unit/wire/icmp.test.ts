import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ICMP_CODE_FRAG_NEEDED, ICMP_CODE_HOST_UNREACH, ICMP_CODE_NET_UNREACH, ICMP_CODE_PORT_UNREACH,
  ICMP_CODE_PROTO_UNREACH, ICMP_CODE_REASSEMBLY_EXCEEDED, ICMP_CODE_TTL_EXCEEDED, ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HLEN, ICMP_OFF_CODE, ICMP_OFF_CSUM, ICMP_OFF_ECHO_ID,
  ICMP_OFF_ECHO_SEQ, ICMP_OFF_MTU, ICMP_OFF_TYPE, ICMP_TIME_EXCEEDED,
  icmpCheck, icmpChecksum, icmpChecksumOk, icmpCode, icmpEchoId, icmpEchoSeq, icmpFillChecksum, icmpMtu,
  icmpType, icmpWriteEcho, icmpWriteHeader,
  setIcmpChecksum, setIcmpCode, setIcmpEchoId, setIcmpEchoSeq, setIcmpType,
} from '../../../src/wire/icmp'
import { csumUpdate16 } from '../../../src/wire/checksum'
import { Malformed } from '../../../src/wire/malformed'
import { concat, filled, hex, toHex } from './bytes'
import { fuzzCheck, mulberry32 } from './fuzz'

// RFC 792 "Echo or Echo Reply Message"; checksum computed independently (Python).
const ECHO = hex(`
  08 00        # type 8 (echo request), code 0
  21 04        # checksum over the whole message
  12 34        # identifier 0x1234
  00 01        # sequence number 1
  61 62 63 64  # data "abcd"
`)

// RFC 1191 §4: destination unreachable, fragmentation needed, next-hop MTU 1450.
const FRAG_NEEDED = hex(`
  03 04        # type 3, code 4
  f7 51        # checksum (Python)
  00 00        # unused
  05 aa        # next-hop MTU 1450
`)

test('layout and RFC 792 / RFC 1191 values', () => {
  assert.deepEqual([ICMP_OFF_TYPE, ICMP_OFF_CODE, ICMP_OFF_CSUM, ICMP_OFF_ECHO_ID, ICMP_OFF_ECHO_SEQ, ICMP_OFF_MTU, ICMP_HLEN],
    [0, 1, 2, 4, 6, 6, 8])
  assert.deepEqual([ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED], [0, 3, 8, 11])
  assert.deepEqual(
    [ICMP_CODE_NET_UNREACH, ICMP_CODE_HOST_UNREACH, ICMP_CODE_PROTO_UNREACH, ICMP_CODE_PORT_UNREACH, ICMP_CODE_FRAG_NEEDED],
    [0, 1, 2, 3, 4])
  assert.deepEqual([ICMP_CODE_TTL_EXCEEDED, ICMP_CODE_REASSEMBLY_EXCEEDED], [0, 1])
})

test('reads every field of an echo request', () => {
  assert.equal(icmpCheck(ECHO, 0, ECHO.length), ICMP_HLEN)
  assert.equal(icmpType(ECHO, 0), ICMP_ECHO_REQUEST)
  assert.equal(icmpCode(ECHO, 0), 0)
  assert.equal(icmpChecksum(ECHO, 0), 0x2104)
  assert.equal(icmpEchoId(ECHO, 0), 0x1234)
  assert.equal(icmpEchoSeq(ECHO, 0), 1)
  assert.equal(icmpChecksumOk(ECHO, 0, ECHO.length), true)
})

test('reads a fragmentation-needed message', () => {
  assert.equal(icmpCheck(FRAG_NEEDED, 0, 8), ICMP_HLEN)
  assert.equal(icmpType(FRAG_NEEDED, 0), ICMP_DEST_UNREACH)
  assert.equal(icmpCode(FRAG_NEEDED, 0), ICMP_CODE_FRAG_NEEDED)
  assert.equal(icmpMtu(FRAG_NEEDED, 0), 1450)
  assert.equal(icmpChecksumOk(FRAG_NEEDED, 0, 8), true)
})

test('Malformed.Truncated: fewer than 8 bytes, or a bad offset', () => {
  assert.equal(icmpCheck(ECHO, 0, 7), Malformed.Truncated)
  assert.equal(icmpCheck(ECHO, 5, 8), Malformed.Truncated) // 7 left in the buffer
  assert.equal(icmpCheck(ECHO, -2, 8), Malformed.Truncated)
})

test('icmpWriteEcho and icmpWriteHeader set all 8 bytes and nothing else', () => {
  const buf = filled(12)
  assert.equal(icmpWriteEcho(buf, 2, ICMP_ECHO_REQUEST, 0x1234, 1), ICMP_HLEN)
  assert.equal(toHex(buf), toHex(hex('a5 a5  08 00 00 00 12 34 00 01  a5 a5')))
  const u = filled(10)
  assert.equal(icmpWriteHeader(u, 1, ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED, 1450), ICMP_HLEN)
  assert.equal(toHex(u), toHex(hex('a5  03 04 00 00 00 00 05 aa  a5')))
})

test('each setter writes exactly its field', () => {
  const cases: [string, (b: Uint8Array, o: number) => void, number, string][] = [
    ['type', (b, o) => setIcmpType(b, o, ICMP_ECHO_REPLY), ICMP_OFF_TYPE, '00'],
    ['code', (b, o) => setIcmpCode(b, o, ICMP_CODE_PORT_UNREACH), ICMP_OFF_CODE, '03'],
    ['checksum', (b, o) => setIcmpChecksum(b, o, 0xbeef), ICMP_OFF_CSUM, 'be ef'],
    ['echo id', (b, o) => setIcmpEchoId(b, o, 0xfffe), ICMP_OFF_ECHO_ID, 'ff fe'],
    ['echo seq', (b, o) => setIcmpEchoSeq(b, o, 0x0102), ICMP_OFF_ECHO_SEQ, '01 02'],
  ]
  for (const [name, set, at, bytes] of cases) {
    const buf = filled(10)
    set(buf, 1)
    const want = filled(10)
    want.set(hex(bytes), 1 + at)
    assert.equal(toHex(buf), toHex(want), name)
  }
})

test('icmpFillChecksum: known values, odd length, verify fails after a flip', () => {
  const buf = concat(hex('a5 a5'), ECHO)
  setIcmpChecksum(buf, 2, 0xa5a5)
  icmpFillChecksum(buf, 2, ECHO.length)
  assert.equal(icmpChecksum(buf, 2), 0x2104)
  const odd = hex('08 00 a5 a5 12 34 00 01 61 62 63') // "abc"
  icmpFillChecksum(odd, 0, odd.length)
  assert.equal(icmpChecksum(odd, 0), 0x2168)
  assert.equal(icmpChecksumOk(odd, 0, odd.length), true)
  odd[10] ^= 4
  assert.equal(icmpChecksumOk(odd, 0, odd.length), false)
})

test('turning a request into a reply: incremental update equals a full recompute', () => {
  const rng = mulberry32(792)
  for (let i = 0; i < 2000; i++) {
    const msg = new Uint8Array(8 + (rng() % 40))
    for (let j = 8; j < msg.length; j++) msg[j] = rng() & 0xff
    icmpWriteEcho(msg, 0, ICMP_ECHO_REQUEST, rng() & 0xffff, rng() & 0xffff)
    icmpFillChecksum(msg, 0, msg.length)
    // Type/code is one 16-bit word: 0x0800 -> 0x0000.
    const inc = csumUpdate16(icmpChecksum(msg, 0), 0x0800, 0x0000)
    setIcmpType(msg, 0, ICMP_ECHO_REPLY)
    const full = msg.slice()
    icmpFillChecksum(full, 0, full.length)
    assert.equal(inc, icmpChecksum(full, 0))
  }
})

test('round-trip: echo fields written then read back', () => {
  const rng = mulberry32(793)
  const buf = filled(8)
  for (let i = 0; i < 2000; i++) {
    const type = (rng() & 1) === 0 ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY
    const id = rng() & 0xffff; const seq = rng() & 0xffff
    icmpWriteEcho(buf, 0, type, id, seq)
    assert.deepEqual([icmpType(buf, 0), icmpCode(buf, 0), icmpChecksum(buf, 0), icmpEchoId(buf, 0), icmpEchoSeq(buf, 0)],
      [type, 0, 0, id, seq])
  }
})

test('property: icmpCheck never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(icmpCheck, [ECHO, FRAG_NEEDED], 0x1c3)
  assert.ok(accepted > 1000, `only ${accepted} accepted`)
})
