import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Conntrack, CT_STATE_NAMES, CtCounter, CtState } from '../../../src/service/conntrack'
import { ServiceSpec } from '../../../src/service/service-model'
import { ServiceDrop, ServicePath, ServiceStat, Verdict } from '../../../src/service/service-path'
import { ServiceTable } from '../../../src/service/service-table'
import { ipv4Format } from '../../../src/wire/addr'
import { u16 } from '../../../src/wire/byteorder'
import { ETH_HLEN, ETHERTYPE_IPV4, ethWriteHeader } from '../../../src/wire/ethernet'
import {
  ICMP_CODE_FRAG_NEEDED, ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, icmpFillChecksum, icmpWriteEcho,
} from '../../../src/wire/icmp'
import { IPV4_FLAG_MF, PROTO_ICMP, PROTO_TCP, ipv4FillChecksum, ipv4WriteHeader, setIpv4Frag } from '../../../src/wire/ipv4'
import { TCP_ACK as A, TCP_FIN as F, TCP_OFF_CSUM, TCP_PSH as P, TCP_RST as R, TCP_SYN as S } from '../../../src/wire/tcp'
import { UDP_OFF_CSUM } from '../../../src/wire/udp'
import { toHex } from '../wire/bytes'
import { BUF_LEN, FRAME_OFF, Frame, PktSpec, ROUTER_MAC, decode, expectedPartial, frame, icmpErrorFrame, icmpOk, ip } from './frames'

const C = '10.244.1.10' // client pod, on port 3 of this agent
const C_PORT = 3
const GW = '10.244.1.1'
const VIP = '10.96.0.10'
const EPS = ['10.244.2.5', '10.244.3.5', '10.244.4.5', '10.244.5.5']
const CLIENT_MAC = '02:00:00:00:00:0c'

function web(over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name: 'web', namespace: 'shop', clusterIP: VIP,
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }],
    endpoints: EPS.map((e) => ({ ip: e, ready: true, terminating: false })),
    ...over,
  }
}

function agent(spec: ServiceSpec | null = web(), ctOpts = {}) {
  const services = new ServiceTable({ maglevSize: 251, seed: 1 })
  const ct = new Conntrack({ maxConnections: 1000, seed: 1, ...ctOpts })
  const sp = new ServicePath(services, ct)
  sp.setGateway(C_PORT, ip(GW))
  if (spec !== null) services.upsert(spec)
  return { services, ct, sp }
}

type Sp = ServicePath

/** Client -> VIP TCP segment through outbound. */
function out(sp: Sp, p: Partial<PktSpec>, now = 0, partial = false): { v: Verdict; f: Frame } {
  const f = frame({ proto: 'tcp', src: C, dst: VIP, sport: 40000, dport: 80, srcMac: CLIENT_MAC, ...p })
  return { v: sp.outbound(f.buf, f.off, f.l3, f.len, C_PORT, now, partial), f }
}

/** Endpoint -> client segment through inbound (delivery to the local client). */
function back(sp: Sp, p: Partial<PktSpec> & { src: string }, now = 0): { hit: boolean; f: Frame } {
  const f = frame({ proto: 'tcp', dst: C, sport: 8080, dport: 40000, srcMac: '02:00:00:00:00:0b', dstMac: CLIENT_MAC, ...p })
  return { hit: sp.inbound(f.buf, f.off, f.l3, f.len, now), f }
}

test('no services: outbound and inbound do nothing', () => {
  const { sp } = agent(null)
  const o = out(sp, { flags: S })
  assert.equal(o.v, Verdict.NotService)
  assert.equal(back(sp, { src: EPS[0] }).hit, false)
})

test('a frame to an address that is not a VIP is not ours, and is left alone', () => {
  const { sp } = agent()
  const f = frame({ proto: 'tcp', src: C, dst: '8.8.8.8', sport: 1, dport: 80, flags: S })
  const before = f.buf.slice()
  assert.equal(sp.outbound(f.buf, f.off, f.l3, f.len, C_PORT, 0), Verdict.NotService)
  assert.deepEqual(f.buf, before)
})

test('a TCP connection: DNAT out, reverse NAT back, state follows', () => {
  const { sp, ct } = agent()
  const syn = out(sp, { flags: S, seq: 100 })
  assert.equal(syn.v, Verdict.Forward)
  const d = decode(syn.f)
  const backend = d.dst
  assert.ok(EPS.includes(backend))
  assert.deepEqual({ src: d.src, sport: d.sport, dport: d.dport, srcMac: d.srcMac, dstMac: d.dstMac },
    { src: C, sport: 40000, dport: 8080, srcMac: ROUTER_MAC, dstMac: ROUTER_MAC })
  assert.ok(d.ipCsumOk && d.l4CsumOk)
  assert.equal(ipv4Format(sp.nextHopIp), backend)

  const synack = back(sp, { src: backend, flags: S | A })
  assert.equal(synack.hit, true)
  const r = decode(synack.f)
  assert.deepEqual({ src: r.src, sport: r.sport, dst: r.dst, dport: r.dport, srcMac: r.srcMac, dstMac: r.dstMac },
    { src: VIP, sport: 80, dst: C, dport: 40000, srcMac: ROUTER_MAC, dstMac: CLIENT_MAC })
  assert.ok(r.ipCsumOk && r.l4CsumOk)

  for (let i = 0; i < 5; i++) {
    const a = out(sp, { flags: P | A, payload: [i, i, i] }, i)
    assert.equal(a.v, Verdict.Forward)
    assert.equal(decode(a.f).dst, backend, 'every packet of the flow goes to the same endpoint')
  }
  const c = ct.connOf(ct.lookup(ip(C), ip(VIP), 40000, 80, PROTO_TCP, 5))
  assert.equal(CT_STATE_NAMES[ct.state(c)], 'ESTABLISHED')
  out(sp, { flags: F | A }, 6)
  back(sp, { src: backend, flags: F | A }, 6)
  out(sp, { flags: A }, 6)
  assert.equal(ct.state(c), CtState.TcpTimeWait)
  assert.equal(sp.stats[ServiceStat.NewConnections], 1)
  assert.equal(sp.stats[ServiceStat.Forwarded], 7)
  assert.equal(sp.stats[ServiceStat.Reversed], 2)
})

test('inbound leaves alone what is not a reply of a tracked connection', () => {
  const { sp } = agent()
  out(sp, { flags: S })
  const rows: Partial<PktSpec>[] = [
    { src: '10.244.9.9' }, // unknown source
    { src: EPS[0], sport: 1 }, // unknown port
    { src: EPS[0], proto: 'udp' }, // other protocol
    { src: C, dst: VIP, sport: 40000, dport: 80 }, // the original direction is not for inbound
  ]
  for (const p of rows) {
    const f = frame({ proto: 'tcp', src: EPS[0], dst: C, sport: 8080, dport: 40000, ...p })
    const before = f.buf.slice()
    assert.equal(sp.inbound(f.buf, f.off, f.l3, f.len, 0), false)
    assert.deepEqual(f.buf, before)
  }
})

test('with Maglev a flow picked up mid-stream after a restart goes to the same endpoint', () => {
  const first = agent()
  const chosen = new Map<number, string>()
  for (let port = 20000; port < 20400; port++) {
    const o = out(first.sp, { flags: S, sport: port })
    chosen.set(port, decode(o.f).dst)
  }
  assert.equal(new Set(chosen.values()).size, 4)
  const restarted = agent() // empty conntrack, same services
  for (let port = 20000; port < 20400; port++) {
    const o = out(restarted.sp, { flags: P | A, sport: port })
    assert.equal(o.v, Verdict.Forward)
    assert.equal(decode(o.f).dst, chosen.get(port), `port ${port}`)
  }
  assert.equal(restarted.sp.stats[ServiceStat.PickedUp], 400)
  const c = restarted.ct.connOf(restarted.ct.lookup(ip(C), ip(VIP), 20000, 80, PROTO_TCP, 0))
  assert.equal(restarted.ct.state(c), CtState.TcpEstablished)
})

test('hairpin: a pod reaching itself through the VIP is seen from the gateway', () => {
  const { sp } = agent(web({ endpoints: [{ ip: C }] }))
  const syn = out(sp, { flags: S })
  assert.equal(syn.v, Verdict.Forward)
  const d = decode(syn.f)
  assert.deepEqual([d.src, d.sport, d.dst, d.dport], [GW, 40000, C, 8080])
  assert.ok(d.ipCsumOk && d.l4CsumOk)
  assert.equal(ipv4Format(sp.nextHopIp), C)
  // The pod answers the gateway, i.e. the router MAC: back through outbound.
  const f = frame({ proto: 'tcp', src: C, dst: GW, sport: 8080, dport: 40000, flags: S | A, srcMac: CLIENT_MAC })
  assert.equal(sp.outbound(f.buf, f.off, f.l3, f.len, C_PORT, 0), Verdict.Forward)
  const r = decode(f)
  assert.deepEqual([r.src, r.sport, r.dst, r.dport, r.srcMac], [VIP, 80, C, 40000, ROUTER_MAC])
  assert.ok(r.ipCsumOk && r.l4CsumOk)
  assert.equal(ipv4Format(sp.nextHopIp), C)
  assert.equal(sp.stats[ServiceStat.Hairpin], 1)
})

test('hairpin without a gateway address is dropped and counted', () => {
  const { sp } = agent(web({ endpoints: [{ ip: C }] }))
  const f = frame({ proto: 'tcp', src: C, dst: VIP, sport: 1, dport: 80, flags: S })
  assert.equal(sp.outbound(f.buf, f.off, f.l3, f.len, 99, 0), Verdict.Drop)
  assert.equal(sp.drops[ServiceDrop.NoGateway], 1)
})

test('no ready endpoint: TCP gets a RST, UDP a port unreachable, at once', () => {
  const { sp } = agent(web({ endpoints: [{ ip: EPS[0], ready: false }, { ip: EPS[1], terminating: true }] }))
  const syn = out(sp, { flags: S, seq: 7 })
  assert.equal(syn.v, Verdict.Reply)
  const rst = decode(syn.f, sp.replyLen)
  assert.deepEqual([rst.src, rst.sport, rst.dst, rst.dport, rst.flags, rst.ack, rst.dstMac, rst.srcMac],
    [VIP, 80, C, 40000, R | A, 8, CLIENT_MAC, ROUTER_MAC])
  assert.ok(rst.ipCsumOk && rst.l4CsumOk)
  const f = frame({ proto: 'udp', src: C, dst: VIP, sport: 5000, dport: 53, payload: [1, 2, 3] })
  assert.equal(sp.outbound(f.buf, f.off, f.l3, f.len, C_PORT, 0), Verdict.Reply)
  const icmp = decode(f, sp.replyLen)
  assert.deepEqual([icmp.proto, icmp.src, icmp.dst], [PROTO_ICMP, VIP, C])
  assert.deepEqual([f.buf[f.l3 + 20], f.buf[f.l3 + 21]], [ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH])
  assert.ok(icmp.ipCsumOk && icmpOk(f))
  assert.equal(sp.stats[ServiceStat.Rejected], 2)
})

test('a VIP on a port no service uses is refused, not black-holed', () => {
  const { sp } = agent()
  assert.equal(out(sp, { flags: S, dport: 8443 }).v, Verdict.Reply)
})

test('a VIP answers no ping', () => {
  const { sp } = agent()
  const buf = new Uint8Array(BUF_LEN)
  const l3 = FRAME_OFF + ETH_HLEN
  ethWriteHeader(buf, FRAME_OFF, 0x0274, 0x61700001, 0x0200, 0x0c, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, l3, 28, 1, false, 64, PROTO_ICMP, ip(C), ip(VIP))
  icmpWriteEcho(buf, l3 + 20, ICMP_ECHO_REQUEST, 1, 1)
  icmpFillChecksum(buf, l3 + 20, 8)
  assert.equal(sp.outbound(buf, FRAME_OFF, l3, ETH_HLEN + 28, C_PORT, 0), Verdict.Drop)
  assert.equal(sp.drops[ServiceDrop.VipPing], 1)
  ipv4WriteHeader(buf, l3, 28, 1, false, 64, PROTO_ICMP, ip(C), ip('10.244.9.9'))
  assert.equal(sp.outbound(buf, FRAME_OFF, l3, ETH_HLEN + 28, C_PORT, 0), Verdict.NotService)
})

test('fragments to a VIP are dropped and counted', () => {
  const { sp } = agent()
  const f = frame({ proto: 'udp', src: C, dst: VIP, sport: 1, dport: 53, payload: [1, 2, 3, 4, 5, 6, 7, 8] })
  setIpv4Frag(f.buf, f.l3, IPV4_FLAG_MF, 0)
  ipv4FillChecksum(f.buf, f.l3)
  assert.equal(sp.outbound(f.buf, f.off, f.l3, f.len, C_PORT, 0), Verdict.Drop)
  assert.equal(sp.drops[ServiceDrop.Fragment], 1)
})

test('UDP: first datagram creates the flow, the reply assures it', () => {
  const { sp, ct } = agent()
  const f = frame({ proto: 'udp', src: C, dst: VIP, sport: 5000, dport: 53, payload: [1, 2, 3] })
  assert.equal(sp.outbound(f.buf, f.off, f.l3, f.len, C_PORT, 0), Verdict.Forward)
  const d = decode(f)
  assert.equal(d.dport, 5353)
  assert.ok(d.l4CsumOk)
  const c = ct.connOf(ct.lookup(ip(C), ip(VIP), 5000, 53, 17, 0))
  assert.equal(ct.state(c), CtState.UdpUnreplied)
  const r = frame({ proto: 'udp', src: d.dst, dst: C, sport: 5353, dport: 5000, payload: [9], noCsum: true })
  assert.equal(sp.inbound(r.buf, r.off, r.l3, r.len, 10), true)
  const rd = decode(r)
  assert.deepEqual([rd.src, rd.sport, u16(r.buf, r.l3 + 20 + UDP_OFF_CSUM)], [VIP, 53, 0])
  assert.equal(ct.state(c), CtState.UdpReplied)
})

test('a removed endpoint: its TCP connections go on, new ones avoid it, its UDP flows are flushed', () => {
  const { sp, ct, services } = agent()
  // Find client ports whose flows land on EPS[0].
  const tcpPorts: number[] = []
  const udpPorts: number[] = []
  for (let port = 30000; tcpPorts.length < 3 || udpPorts.length < 3; port++) {
    const o = out(sp, { flags: S, sport: port })
    if (decode(o.f).dst === EPS[0] && tcpPorts.length < 3) tcpPorts.push(port)
    const u = frame({ proto: 'udp', src: C, dst: VIP, sport: port, dport: 53 })
    sp.outbound(u.buf, u.off, u.l3, u.len, C_PORT, 0)
    if (decode(u).dst === EPS[0] && udpPorts.length < 3) udpPorts.push(port)
  }
  for (const port of tcpPorts) {
    back(sp, { src: EPS[0], sport: 8080, dport: port, flags: S | A })
    out(sp, { flags: A, sport: port })
  }
  const slot = services.slotOf(0, ip(EPS[0]))
  const before = ct.size
  services.upsert(web({ endpoints: EPS.slice(1).map((e) => ({ ip: e })) }))
  assert.ok(ct.size < before, 'UDP flows to the removed endpoint flushed')
  for (const port of tcpPorts) {
    const o = out(sp, { flags: P | A, sport: port }, 1)
    assert.equal(decode(o.f).dst, EPS[0], 'established TCP keeps its endpoint')
    assert.equal(back(sp, { src: EPS[0], sport: 8080, dport: port, flags: A }, 1).hit, true)
  }
  for (const port of udpPorts) {
    const u = frame({ proto: 'udp', src: C, dst: VIP, sport: port, dport: 53 })
    assert.equal(sp.outbound(u.buf, u.off, u.l3, u.len, C_PORT, 1), Verdict.Forward)
    assert.notEqual(decode(u).dst, EPS[0], 'UDP re-balanced')
  }
  for (let port = 50000; port < 50200; port++) assert.notEqual(decode(out(sp, { flags: S, sport: port }, 1).f).dst, EPS[0])
  assert.equal(services.eps.conns[slot], tcpPorts.length, 'the slot is held by the TCP connections')
  ct.flush()
  assert.equal(services.eps.size, 3, 'freed with its last connection')
})

test('a terminating endpoint keeps its connections and gets no new ones', () => {
  const { sp, services } = agent()
  let port = 30000
  while (decode(out(sp, { flags: S, sport: port }).f).dst !== EPS[2]) port++
  services.upsert(web({ endpoints: EPS.map((e, i) => ({ ip: e, terminating: i === 2 })) }))
  assert.equal(decode(out(sp, { flags: A, sport: port }).f).dst, EPS[2])
  for (let p = 50000; p < 50200; p++) assert.notEqual(decode(out(sp, { flags: S, sport: p }).f).dst, EPS[2])
})

test('ICMP errors: from the endpoint back to the client, and from the client to the endpoint', () => {
  const { sp } = agent()
  const syn = out(sp, { proto: 'udp', dport: 53, payload: [1, 2, 3, 4] })
  const sent = frame({ proto: 'udp', src: C, dst: VIP, sport: 40000, dport: 53, payload: [1, 2, 3, 4], srcMac: CLIENT_MAC })
  const backend = decode(syn.f).dst
  // The endpoint says "port unreachable" about what it received.
  const err = icmpErrorFrame(backend, C, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, syn.f)
  assert.equal(sp.inbound(err.buf, err.off, err.l3, err.len, 0), true)
  const d = decode(err)
  assert.deepEqual([d.src, d.dst, d.srcMac], [VIP, C, ROUTER_MAC])
  assert.ok(d.ipCsumOk && icmpOk(err))
  assert.equal(toHex(err.buf, err.l3 + 28, 28), toHex(sent.buf, sent.l3, 28))
  // The client says "fragmentation needed" about a reply it got from the VIP.
  const reply = frame({ proto: 'udp', src: VIP, dst: C, sport: 53, dport: 40000, payload: [5] })
  const err2 = icmpErrorFrame(C, VIP, ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED, reply, 28, 1400)
  assert.equal(sp.outbound(err2.buf, err2.off, err2.l3, err2.len, C_PORT, 0), Verdict.Forward)
  const d2 = decode(err2)
  assert.deepEqual([d2.src, d2.dst], [C, backend])
  assert.equal(ipv4Format(sp.nextHopIp), backend)
  assert.ok(d2.ipCsumOk && icmpOk(err2))
  assert.equal(sp.stats[ServiceStat.IcmpTranslated], 2)
  // An error to a VIP about nothing we know is dropped.
  const stray = icmpErrorFrame(C, VIP, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, frame({ proto: 'udp', src: VIP, dst: C, sport: 53, dport: 1 }))
  assert.equal(sp.outbound(stray.buf, stray.off, stray.l3, stray.len, C_PORT, 0), Verdict.Drop)
  assert.equal(sp.drops[ServiceDrop.IcmpUnmatched], 1)
})

test('partial checksums from a TAP are kept partial, ports untouched in the sum', () => {
  const { sp } = agent()
  const o = out(sp, { flags: S, partial: true }, 0, true)
  assert.equal(o.v, Verdict.Forward)
  assert.equal(u16(o.f.buf, o.f.l3 + 20 + TCP_OFF_CSUM), expectedPartial(o.f))
  assert.ok(decode(o.f).ipCsumOk)
})

test('a SYN on a TIME_WAIT tuple starts a new connection', () => {
  const { sp, ct } = agent()
  const b = decode(out(sp, { flags: S }).f).dst
  back(sp, { src: b, flags: S | A })
  out(sp, { flags: A })
  out(sp, { flags: F | A })
  back(sp, { src: b, flags: F | A })
  out(sp, { flags: A })
  assert.equal(ct.list()[0].state, 'TIME_WAIT')
  assert.equal(out(sp, { flags: S }, 100).v, Verdict.Forward)
  assert.equal(ct.list()[0].state, 'SYN_SENT')
  assert.equal(sp.stats[ServiceStat.Reopened], 1)
  assert.equal(ct.size, 1)
})

test('a RST for an unknown flow is forwarded to the endpoint without an entry', () => {
  const { sp, ct } = agent()
  const o = out(sp, { flags: R | A })
  assert.equal(o.v, Verdict.Forward)
  assert.ok(EPS.includes(decode(o.f).dst))
  assert.ok(decode(o.f).l4CsumOk)
  assert.equal(ct.size, 0)
  assert.equal(sp.stats[ServiceStat.StrayRst], 1)
})

test('leastConnections counts open connections and forgets expired ones', () => {
  const { sp, ct, services } = agent(web({ algorithm: 'leastConnections' }))
  for (let p = 0; p < 40; p++) out(sp, { flags: S, sport: 20000 + p })
  for (const e of EPS) assert.equal(services.eps.conns[services.slotOf(0, ip(e))], 10)
  assert.equal(sp.sweep(120_000), 40)
  assert.equal(ct.size, 0)
  for (const e of EPS) assert.equal(services.eps.conns[services.slotOf(0, ip(e))], 0)
})

test('ClientIP affinity: every connection of a client goes to one endpoint', () => {
  const { sp } = agent(web({ algorithm: 'roundRobin', sessionAffinity: 'ClientIP' }))
  const first = decode(out(sp, { flags: S, sport: 1000 }).f).dst
  for (let p = 1001; p < 1050; p++) assert.equal(decode(out(sp, { flags: S, sport: p }).f).dst, first)
  const other = frame({ proto: 'tcp', src: '10.244.1.11', dst: VIP, sport: 1000, dport: 80, flags: S })
  sp.outbound(other.buf, other.off, other.l3, other.len, 4, 0)
  assert.notEqual(decode(other).dst, first, 'round robin moved on for another client')
})

test('a conntrack entry that timed out is balanced again (Maglev: same endpoint)', () => {
  const { sp, ct } = agent()
  const b = decode(out(sp, { flags: S }).f).dst
  const again = out(sp, { flags: S }, 120_000) // SYN_SENT lasts 120 s
  assert.equal(decode(again.f).dst, b)
  assert.equal(ct.counters[CtCounter.Expired], 1)
})
