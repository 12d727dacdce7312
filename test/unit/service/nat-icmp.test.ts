import { test } from 'node:test'
import assert from 'node:assert/strict'
import { icmpErrorWorker, natIcmpError, natRewrite } from '../../../src/service/nat'
import { steerWorkerV4 } from '../../../src/wire/steer-hash'
import { get16 } from '../wire/frames'
import { ICMP_CODE_FRAG_NEEDED, ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED } from '../../../src/wire/icmp'
import { PROTO_TCP, PROTO_UDP } from '../../../src/wire/ipv4'
import { TCP_ACK, TCP_PSH } from '../../../src/wire/tcp'
import { toHex } from '../wire/bytes'
import { Frame, PktSpec, decode, frame, icmpErrorFrame, icmpOk, ip } from './frames'

const C = '10.244.1.10'
const VIP = '10.96.0.10'
const B = '10.244.2.20'
const GW = '10.244.1.1'

/** The client's packet, and the same packet as the endpoint received it after DNAT (and SNAT for hairpin). */
function pair(proto: 'tcp' | 'udp', snat = C): { sent: Frame; seen: Frame } {
  const spec: PktSpec = { proto, src: C, dst: VIP, sport: 40000, dport: proto === 'tcp' ? 80 : 53, flags: TCP_PSH | TCP_ACK, payload: [1, 2, 3, 4, 5, 6, 7, 8, 9] }
  const sent = frame(spec)
  const seen = frame(spec)
  natRewrite(seen.buf, seen.l3, seen.l3 + 20, proto === 'tcp' ? PROTO_TCP : PROTO_UDP, ip(snat), ip(B), 40000, 8080, false)
  return { sent, seen }
}

interface Row { name: string; proto: 'tcp' | 'udp'; type: number; code: number; quote?: number; from: string; snat?: string }

// An endpoint-side error about a packet the endpoint received: after the
// translation the client must see the error from the VIP, about exactly the
// bytes it sent (TTL untouched: the service hop does not decrement it).
const rows: Row[] = [
  { name: 'UDP port unreachable from the endpoint', proto: 'udp', type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH, from: B },
  { name: 'TCP fragmentation needed quoting the whole TCP header (checksum inside)', proto: 'tcp', type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, quote: 40, from: B },
  { name: 'TCP time exceeded quoting 8 bytes (checksum outside)', proto: 'tcp', type: ICMP_TIME_EXCEEDED, code: 0, from: '10.244.9.9' },
  { name: 'hairpin: the endpoint is the client, seen from the gateway', proto: 'udp', type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH, from: B, snat: GW },
  { name: 'whole datagram quoted', proto: 'udp', type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH, quote: 37, from: B },
]

for (const row of rows) {
  test(`ICMP error translation: ${row.name}`, () => {
    const snat = row.snat ?? C
    const { sent, seen } = pair(row.proto, snat)
    const quote = row.quote ?? 28
    const err = icmpErrorFrame(row.from, snat, row.type, row.code, seen, quote, 1400)
    assert.ok(icmpOk(err))
    const icmp = err.l3 + 20
    // The error travels endpoint -> client: after NAT it must be VIP:port -> client:port.
    const ok = natIcmpError(err.buf, err.l3, icmp, err.l3 + 20 + 8 + quote, ip(VIP), ip(C), row.proto === 'tcp' ? 80 : 53, 40000)
    assert.equal(ok, true)
    const d = decode(err)
    assert.equal(d.src, VIP)
    assert.equal(d.dst, C)
    assert.ok(d.ipCsumOk, 'outer IPv4 checksum')
    assert.ok(icmpOk(err), 'ICMP checksum')
    assert.equal(err.buf[icmp], row.type)
    assert.equal(toHex(err.buf, icmp + 8, quote), toHex(sent.buf, sent.l3, quote), 'embedded packet is what the client sent')
  })
}

test('ICMP error translation: client-side error about a reply goes to the endpoint', () => {
  // The endpoint's reply after reverse NAT, as the client got it: VIP:53 -> C:40000.
  const got = frame({ proto: 'udp', src: VIP, dst: C, sport: 53, dport: 40000, payload: [1, 2, 3] })
  const err = icmpErrorFrame(C, VIP, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, got)
  const asSent = frame({ proto: 'udp', src: B, dst: C, sport: 8080, dport: 40000, payload: [1, 2, 3] })
  // Travels client -> VIP; after NAT: C:40000 -> B:8080.
  assert.ok(natIcmpError(err.buf, err.l3, err.l3 + 20, err.l3 + 56, ip(C), ip(B), 40000, 8080))
  const d = decode(err)
  assert.equal(d.src, C)
  assert.equal(d.dst, B)
  assert.ok(d.ipCsumOk && icmpOk(err))
  assert.equal(toHex(err.buf, err.l3 + 28, 28), toHex(asSent.buf, asSent.l3, 28))
})

test('ICMP error translation refuses a quote too short or not TCP/UDP, changing nothing', () => {
  const { seen } = pair('udp')
  const short = icmpErrorFrame(B, C, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, seen, 24)
  const before = short.buf.slice()
  assert.equal(natIcmpError(short.buf, short.l3, short.l3 + 20, short.l3 + 20 + 8 + 24, ip(VIP), ip(C), 53, 40000), false)
  assert.deepEqual(short.buf, before)
  const icmpAboutIcmp = icmpErrorFrame(B, C, ICMP_DEST_UNREACH, 1, short, 28)
  const b2 = icmpAboutIcmp.buf.slice()
  assert.equal(natIcmpError(icmpAboutIcmp.buf, icmpAboutIcmp.l3, icmpAboutIcmp.l3 + 20, icmpAboutIcmp.l3 + 56, ip(VIP), ip(C), 53, 40000), false)
  assert.deepEqual(icmpAboutIcmp.buf, b2)
})

test('icmpErrorWorker: the worker of the flow an ICMP error is about (the steering hash of its embedded packet), -1 for anything else', () => {
  for (const proto of ['tcp', 'udp'] as const) {
    for (const workers of [2, 3, 16]) {
      const seen = new Set<number>()
      for (let sport = 40000; sport < 40064; sport++) {
        const about = frame({ proto, src: C, dst: B, sport, dport: 8080, flags: TCP_ACK, payload: [1, 2, 3] })
        const err = icmpErrorFrame(B, C, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, about)
        const end = err.l3 + get16(err.buf, err.l3 + 2)
        const w = icmpErrorWorker(err.buf, err.l3, end, workers)
        // The same worker as the flow's own packets, either way.
        assert.equal(w, steerWorkerV4(ip(C), ip(B), sport, 8080, workers))
        assert.equal(w, steerWorkerV4(ip(B), ip(C), 8080, sport, workers))
        seen.add(w)
        // Cut inside the embedded ports: no worker.
        assert.equal(icmpErrorWorker(err.buf, err.l3, err.l3 + 20 + 8 + 20 + 3, workers), -1)
      }
      assert.ok(seen.size >= Math.min(workers, 10), `${proto}: 64 flows over ${workers} workers hit only ${seen.size}`)
    }
  }
  const about = frame({ proto: 'udp', src: C, dst: B, sport: 40000, dport: 8080, payload: [1] })
  // Not an error: an echo request carries no flow.
  const echo = icmpErrorFrame(B, C, 8, 0, about)
  assert.equal(icmpErrorWorker(echo.buf, echo.l3, echo.l3 + get16(echo.buf, echo.l3 + 2), 2), -1)
  // Not ICMP at all.
  assert.equal(icmpErrorWorker(about.buf, about.l3, about.l3 + get16(about.buf, about.l3 + 2), 2), -1)
  // About a later fragment (no ports in it).
  const frag = icmpErrorFrame(B, C, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, about)
  const inner = frag.l3 + 20 + 8
  frag.buf[inner + 6] = 0x00; frag.buf[inner + 7] = 0x10
  assert.equal(icmpErrorWorker(frag.buf, frag.l3, frag.l3 + get16(frag.buf, frag.l3 + 2), 2), -1)
  // Header lengths below 20 bytes, outer or embedded: malformed, no worker.
  for (const at of [0, 28]) {
    const bad = icmpErrorFrame(B, C, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, about)
    assert.notEqual(icmpErrorWorker(bad.buf, bad.l3, bad.l3 + get16(bad.buf, bad.l3 + 2), 2), -1)
    bad.buf[bad.l3 + at] = 0x44
    assert.equal(icmpErrorWorker(bad.buf, bad.l3, bad.l3 + get16(bad.buf, bad.l3 + 2), 2), -1, `IHL 16 at +${at}`)
  }
  // Cut before the end of its own IPv4 header.
  const cut = icmpErrorFrame(B, C, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, about)
  assert.equal(icmpErrorWorker(cut.buf, cut.l3, cut.l3 + 19, 2), -1)
})
