import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ICMP_ERROR_MAX_IP_LEN, rejectTcp, rejectUdp } from '../../../src/service/reject'
import { ETH_HLEN } from '../../../src/wire/ethernet'
import { ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH } from '../../../src/wire/icmp'
import { IPV4_FLAG_DF, PROTO_ICMP, PROTO_TCP, ipv4Flags, ipv4Ttl } from '../../../src/wire/ipv4'
import { TCP_ACK as A, TCP_FIN as F, TCP_PSH as P, TCP_RST as R, TCP_SYN as S } from '../../../src/wire/tcp'
import { toHex } from '../wire/bytes'
import { decode, frame, icmpOk, ROUTER_MAC } from './frames'

const HI = 0x0274
const LO = 0x61700001
const CLIENT_MAC = '02:00:00:00:00:0c'

// RFC 9293 §3.10.7.1: a segment to a closed port gets <SEQ=SEG.ACK><CTL=RST>
// if it has ACK, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
const rows = [
  { name: 'SYN', flags: S, seq: 1000, ack: 0, data: 0, want: { flags: R | A, seq: 0, ack: 1001 } },
  { name: 'SYN with data and FIN', flags: S | F, seq: 0xfffffff0, ack: 0, data: 20, want: { flags: R | A, seq: 0, ack: (0xfffffff0 + 22) >>> 0 } },
  { name: 'ACK mid-stream with data', flags: P | A, seq: 5000, ack: 777, data: 100, want: { flags: R, seq: 777, ack: 0 } },
  { name: 'FIN+ACK', flags: F | A, seq: 5000, ack: 9, data: 0, want: { flags: R, seq: 9, ack: 0 } },
]

for (const row of rows) {
  test(`RST in answer to ${row.name}`, () => {
    const f = frame({ proto: 'tcp', src: '10.244.1.10', dst: '10.96.0.10', sport: 40000, dport: 80, flags: row.flags, seq: row.seq, ack: row.ack, payload: new Uint8Array(row.data).fill(7), srcMac: CLIENT_MAC })
    const n = rejectTcp(f.buf, f.off, f.l3, HI, LO)
    assert.equal(n, ETH_HLEN + 40)
    const d = decode(f, n)
    assert.deepEqual(
      { src: d.src, dst: d.dst, sport: d.sport, dport: d.dport, flags: d.flags, seq: d.seq, ack: d.ack },
      { src: '10.96.0.10', dst: '10.244.1.10', sport: 80, dport: 40000, ...row.want },
    )
    assert.equal(d.proto, PROTO_TCP)
    assert.equal(d.dstMac, CLIENT_MAC)
    assert.equal(d.srcMac, ROUTER_MAC)
    assert.ok(d.ipCsumOk, 'IPv4 checksum')
    assert.ok(d.l4CsumOk, 'TCP checksum')
    assert.equal(ipv4Ttl(f.buf, f.l3), 64)
    assert.equal(ipv4Flags(f.buf, f.l3), IPV4_FLAG_DF)
  })
}

test('no RST in answer to a RST', () => {
  const f = frame({ proto: 'tcp', src: '10.244.1.10', dst: '10.96.0.10', sport: 1, dport: 80, flags: R | A })
  const before = f.buf.slice()
  assert.equal(rejectTcp(f.buf, f.off, f.l3, HI, LO), 0)
  assert.deepEqual(f.buf, before)
})

test('UDP gets an ICMP port unreachable quoting the datagram', () => {
  const f = frame({ proto: 'udp', src: '10.244.1.10', dst: '10.96.0.10', sport: 40000, dport: 53, payload: [1, 2, 3, 4, 5], srcMac: CLIENT_MAC })
  const original = f.buf.slice(f.l3, f.l3 + 33)
  const n = rejectUdp(f.buf, f.off, f.l3, HI, LO)
  assert.equal(n, ETH_HLEN + 20 + 8 + 33)
  const d = decode(f, n)
  assert.equal(d.proto, PROTO_ICMP)
  assert.equal(d.src, '10.96.0.10')
  assert.equal(d.dst, '10.244.1.10')
  assert.equal(d.dstMac, CLIENT_MAC)
  assert.equal(d.srcMac, ROUTER_MAC)
  assert.ok(d.ipCsumOk)
  assert.ok(icmpOk(f))
  assert.equal(f.buf[f.l3 + 20], ICMP_DEST_UNREACH)
  assert.equal(f.buf[f.l3 + 21], ICMP_CODE_PORT_UNREACH)
  assert.equal(toHex(f.buf, f.l3 + 28, 33), toHex(original))
})

test('a long datagram is quoted up to 576 bytes of ICMP error', () => {
  const f = frame({ proto: 'udp', src: '10.244.1.10', dst: '10.96.0.10', sport: 40000, dport: 53, payload: new Uint8Array(1200).fill(9) })
  const original = f.buf.slice(f.l3, f.l3 + 548)
  const n = rejectUdp(f.buf, f.off, f.l3, HI, LO)
  assert.equal(n, ETH_HLEN + ICMP_ERROR_MAX_IP_LEN)
  assert.equal(decode(f, n).totalLen, 576)
  assert.ok(icmpOk(f))
  assert.equal(toHex(f.buf, f.l3 + 28, 548), toHex(original))
})

test('no room behind the frame for the quote: no answer', () => {
  const f = frame({ proto: 'udp', src: '10.244.1.10', dst: '10.96.0.10', sport: 40000, dport: 53 })
  const tight = f.buf.slice(0, f.off + f.len + 27) // 27 bytes of room, 28 needed
  assert.equal(rejectUdp(tight, f.off, f.l3, HI, LO), 0)
  const ok = f.buf.slice(0, f.off + f.len + 28)
  assert.equal(rejectUdp(ok, f.off, f.l3, HI, LO), f.len + 28)
})
