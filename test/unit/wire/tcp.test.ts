import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_HLEN_MIN, TCP_OFF_ACK, TCP_OFF_CSUM, TCP_OFF_DOFF, TCP_OFF_DPORT,
  TCP_OFF_FLAGS, TCP_OFF_SEQ, TCP_OFF_SPORT, TCP_OFF_URGENT, TCP_OFF_WINDOW, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
  setTcpAck, setTcpChecksum, setTcpDstPort, setTcpFlags, setTcpHeaderLen, setTcpSeq, setTcpSrcPort,
  setTcpUrgent, setTcpWindow,
  tcpAck, tcpCheck, tcpChecksum, tcpChecksumOkV4, tcpChecksumOkV6, tcpDataOffset, tcpDstPort,
  tcpFillChecksumV4, tcpFillChecksumV6, tcpFlags, tcpHeaderLen, tcpSeq, tcpSrcPort, tcpUrgent, tcpWindow,
  tcpWriteHeader,
} from '../../../src/wire/tcp'
import { csumUpdate16, csumUpdate32 } from '../../../src/wire/checksum'
import { ipv4Dst, setIpv4Dst } from '../../../src/wire/ipv4'
import { Malformed } from '../../../src/wire/malformed'
import { concat, filled, hex, toHex } from './bytes'
import { fuzzCheck, mulberry32 } from './fuzz'

const IP = hex(`
  45 00 00 2c  # IPv4, IHL 5, total length 44
  00 00 40 00  # id 0, DF
  40 06 00 00  # TTL 64, TCP, header checksum (not used here)
  0a 00 00 01  # src 10.0.0.1
  0a 00 00 02  # dst 10.0.0.2
`)

// RFC 9293 §3.1 layout; checksum computed independently (Python).
const SYN = hex(`
  04 d2 00 50  # sport 1234, dport 80
  01 02 03 04  # seq 0x01020304
  00 00 00 00  # ack 0
  60 02        # data offset 6 (24 bytes), reserved 0; flags SYN
  fa f0        # window 64240
  80 0b        # checksum over pseudo-header 10.0.0.1 > 10.0.0.2 proto 6 len 24
  00 00        # urgent pointer 0
  02 04 05 b4  # option: MSS 1460 (RFC 9293 §3.2)
`)
const PKT_SYN = concat(IP, SYN)

// PSH+ACK with 3 bytes of data (odd length), no options.
const DATA = hex(`
  00 50 04 d2  # sport 80, dport 1234
  a1 b2 c3 d4  # seq (high bit set: must read unsigned)
  01 02 03 05  # ack
  50 18        # data offset 5; flags PSH|ACK
  01 f5        # window 501
  a1 b8        # checksum (Python), l4len 23
  00 00        # urgent pointer 0
  68 69 21     # "hi!"
`)
const PKT_DATA = concat(hex('45000037 00000000 40060000 0a000001 0a000002'), DATA)

const IP6 = hex(`
  60 00 00 00  # version 6
  00 18 06 40  # payload length 24, next header TCP, hop limit 64
  20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  # src 2001:db8::1
  20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02  # dst 2001:db8::2
`)

test('layout and flag values: RFC 9293 §3.1, RFC 3168 §6.1', () => {
  assert.deepEqual(
    [TCP_OFF_SPORT, TCP_OFF_DPORT, TCP_OFF_SEQ, TCP_OFF_ACK, TCP_OFF_DOFF, TCP_OFF_FLAGS, TCP_OFF_WINDOW, TCP_OFF_CSUM, TCP_OFF_URGENT, TCP_HLEN_MIN],
    [0, 2, 4, 8, 12, 13, 14, 16, 18, 20],
  )
  assert.deepEqual([TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR], [1, 2, 4, 8, 16, 32, 64, 128])
})

test('reads every field of a SYN with an MSS option', () => {
  assert.equal(tcpCheck(SYN, 0, SYN.length), 24)
  assert.equal(tcpSrcPort(SYN, 0), 1234)
  assert.equal(tcpDstPort(SYN, 0), 80)
  assert.equal(tcpSeq(SYN, 0), 0x01020304)
  assert.equal(tcpAck(SYN, 0), 0)
  assert.equal(tcpDataOffset(SYN, 0), 6)
  assert.equal(tcpHeaderLen(SYN, 0), 24)
  assert.equal(tcpFlags(SYN, 0), TCP_SYN)
  assert.equal(tcpWindow(SYN, 0), 64240)
  assert.equal(tcpChecksum(SYN, 0), 0x800b)
  assert.equal(tcpUrgent(SYN, 0), 0)
})

test('reads a data segment at an offset; seq/ack are unsigned', () => {
  assert.equal(tcpCheck(PKT_DATA, 20, 23), 20)
  assert.equal(tcpSeq(PKT_DATA, 20), 0xa1b2c3d4)
  assert.equal(tcpAck(PKT_DATA, 20), 0x01020305)
  assert.equal(tcpFlags(PKT_DATA, 20), TCP_PSH | TCP_ACK)
  assert.equal(tcpWindow(PKT_DATA, 20), 501)
})

test('Malformed.Truncated: under 20 bytes, options past len, bad offset', () => {
  assert.equal(tcpCheck(SYN, 0, 19), Malformed.Truncated)
  assert.equal(tcpCheck(SYN, 0, 23), Malformed.Truncated) // DOff 6 needs 24
  const doff15 = SYN.slice()
  doff15[12] = 0xf0
  assert.equal(tcpCheck(doff15, 0, 24), Malformed.Truncated)
  assert.equal(tcpCheck(SYN, 5, 24), Malformed.Truncated) // 19 left in the buffer
  assert.equal(tcpCheck(SYN, -1, 24), Malformed.Truncated)
})

test('Malformed.BadHeaderLength: data offset below 5', () => {
  for (const b of [0x00, 0x10, 0x40, 0x4f]) {
    const t = SYN.slice()
    t[12] = b
    assert.equal(tcpCheck(t, 0, t.length), Malformed.BadHeaderLength, b.toString(16))
  }
})

test('tcpWriteHeader sets all 20 bytes (reserved, checksum, urgent zero) and nothing else', () => {
  const buf = filled(24)
  assert.equal(tcpWriteHeader(buf, 2, 80, 1234, 0xa1b2c3d4, 0x01020305, TCP_PSH | TCP_ACK, 501), TCP_HLEN_MIN)
  const want = concat(hex('a5 a5'), DATA.subarray(0, 20), hex('a5 a5'))
  want[2 + 16] = 0; want[2 + 17] = 0 // checksum is left 0 for tcpFill*
  assert.equal(toHex(buf), toHex(want))
})

test('each setter writes exactly its field', () => {
  const cases: [string, (b: Uint8Array, o: number) => void, number, string][] = [
    ['sport', (b, o) => setTcpSrcPort(b, o, 0xc001), TCP_OFF_SPORT, 'c0 01'],
    ['dport', (b, o) => setTcpDstPort(b, o, 443), TCP_OFF_DPORT, '01 bb'],
    ['seq', (b, o) => setTcpSeq(b, o, 0xfedcba98), TCP_OFF_SEQ, 'fe dc ba 98'],
    ['ack', (b, o) => setTcpAck(b, o, 0x00000001), TCP_OFF_ACK, '00 00 00 01'],
    ['flags', (b, o) => setTcpFlags(b, o, TCP_SYN | TCP_ACK), TCP_OFF_FLAGS, '12'],
    ['window', (b, o) => setTcpWindow(b, o, 65535), TCP_OFF_WINDOW, 'ff ff'],
    ['checksum', (b, o) => setTcpChecksum(b, o, 0x1234), TCP_OFF_CSUM, '12 34'],
    ['urgent', (b, o) => setTcpUrgent(b, o, 7), TCP_OFF_URGENT, '00 07'],
    // Keeps the low (reserved / AE) nibble: 0xa5 -> 0x85 for DOff 8.
    ['header length', (b, o) => setTcpHeaderLen(b, o, 32), TCP_OFF_DOFF, '85'],
  ]
  for (const [name, set, at, bytes] of cases) {
    const buf = filled(22)
    set(buf, 1)
    const want = filled(22)
    want.set(hex(bytes), 1 + at)
    assert.equal(toHex(buf), toHex(want), name)
  }
})

test('round-trip: random headers written then read back', () => {
  const rng = mulberry32(9293)
  const buf = filled(20)
  for (let i = 0; i < 2000; i++) {
    const f = [rng() & 0xffff, rng() & 0xffff, rng(), rng(), rng() & 0xff, rng() & 0xffff]
    tcpWriteHeader(buf, 0, f[0], f[1], f[2], f[3], f[4], f[5])
    assert.equal(tcpCheck(buf, 0, 20), 20)
    assert.deepEqual(
      [tcpSrcPort(buf, 0), tcpDstPort(buf, 0), tcpSeq(buf, 0), tcpAck(buf, 0), tcpFlags(buf, 0), tcpWindow(buf, 0)], f)
    assert.deepEqual([tcpHeaderLen(buf, 0), tcpChecksum(buf, 0), tcpUrgent(buf, 0)], [20, 0, 0])
  }
})

test('tcpFillChecksumV4 computes the known checksums (even and odd length)', () => {
  const p = PKT_SYN.slice()
  setTcpChecksum(p, 20, 0xa5a5)
  tcpFillChecksumV4(p, 0, 20, 24)
  assert.equal(tcpChecksum(p, 20), 0x800b)
  assert.equal(tcpChecksumOkV4(p, 0, 20, 24), true)
  const d = PKT_DATA.slice()
  setTcpChecksum(d, 20, 0)
  tcpFillChecksumV4(d, 0, 20, 23)
  assert.equal(tcpChecksum(d, 20), 0xa1b8)
  assert.equal(tcpChecksumOkV4(d, 0, 20, 23), true)
  d[d.length - 1] ^= 0x10
  assert.equal(tcpChecksumOkV4(d, 0, 20, 23), false)
})

test('tcpFillChecksumV6 computes the known checksum', () => {
  const p = concat(IP6, SYN)
  setTcpChecksum(p, 40, 0xa5a5)
  tcpFillChecksumV6(p, 0, 40, 24)
  assert.equal(tcpChecksum(p, 40), 0x3899)
  assert.equal(tcpChecksumOkV6(p, 0, 40, 24), true)
  p[8 + 3] ^= 1 // src address is in the pseudo-header
  assert.equal(tcpChecksumOkV6(p, 0, 40, 24), false)
})

test('DNAT-style incremental updates (address, port) equal a full recompute', () => {
  const rng = mulberry32(3022)
  const p = PKT_DATA.slice()
  for (let i = 0; i < 5000; i++) {
    const c = tcpChecksum(p, 20)
    let next: number
    if ((rng() & 1) === 0) {
      const oldPort = tcpDstPort(p, 20)
      const port = (rng() & 3) === 0 ? 0 : (rng() & 3) === 0 ? 0xffff : rng() & 0xffff
      setTcpDstPort(p, 20, port)
      next = csumUpdate16(c, oldPort, port)
    } else {
      const oldAddr = ipv4Dst(p, 0)
      const addr = rng()
      setIpv4Dst(p, 0, addr)
      next = csumUpdate32(c, oldAddr, addr)
    }
    const full = p.slice()
    tcpFillChecksumV4(full, 0, 20, 23)
    assert.equal(next, tcpChecksum(full, 20), `edit ${i}`)
    setTcpChecksum(p, 20, next)
  }
})

test('property: tcpCheck never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(tcpCheck, [SYN, DATA], 0x7c9)
  assert.ok(accepted > 500, `only ${accepted} accepted`)
})
