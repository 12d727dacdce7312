import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as dnsPacket from 'dns-packet'
import { DNS_DEFAULT_TTL, DNS_EDNS_PAYLOAD, DnsRcode, DnsResponder } from '../../../src/service/dns'
import { TapestryError } from '../../../src/lib/errors'
import { macParse } from '../../../src/wire/addr'
import { putU16 } from '../../../src/wire/byteorder'
import { ETH_HLEN, ETHERTYPE_IPV4, ETHERTYPE_VLAN, ethWriteHeader } from '../../../src/wire/ethernet'
import {
  IPV4_FLAG_DF, IPV4_HLEN_MIN, PROTO_UDP, ipv4FillChecksum, ipv4Flags, ipv4Ihl, ipv4Ttl, ipv4WriteHeader,
} from '../../../src/wire/ipv4'
import { UDP_HLEN, udpFillChecksumV4, udpLen, udpWriteHeader } from '../../../src/wire/udp'
import { BUF_LEN, FRAME_OFF, Frame, ROUTER_MAC, decode, frame, ip } from './frames'

const DNS_IP = '10.96.0.10'
const CLIENT = '10.244.1.10'
const CLIENT_MAC = '02:00:00:00:00:0c'
const CLIENT_PORT = 41234
const HI = 0x0274
const LO = 0x61700001

const SERVICES = [
  { name: 'web', namespace: 'default', clusterIP: ip('10.96.0.20') },
  { name: 'api', namespace: 'shop', clusterIP: ip('10.96.7.1') },
  { name: 'db', namespace: 'shop', clusterIP: 0 }, // headless
  { name: 'kube-dns', namespace: 'kube-system', clusterIP: ip(DNS_IP) },
]

function responder(ttl?: number): DnsResponder {
  const r = new DnsResponder({ ip: ip(DNS_IP), clusterDomain: 'cluster.local', ttl })
  r.setServices(SERVICES)
  return r
}

type Q = { name: string; type?: string; id?: number; flags?: number; edns?: { size?: number; version?: number } }

function queryBytes(q: Q): Buffer {
  const additionals: dnsPacket.Answer[] = q.edns === undefined ? [] : [{
    type: 'OPT', name: '.', udpPayloadSize: q.edns.size ?? 4096, extendedRcode: 0,
    ednsVersion: q.edns.version ?? 0, flags: 0, flag_do: false, options: [],
  }]
  return dnsPacket.encode({
    type: 'query', id: q.id ?? 0xbeef, flags: q.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name: q.name, type: (q.type ?? 'A') as dnsPacket.RecordType, class: 'IN' }],
    additionals,
  })
}

/** A query frame from the client pod to the DNS address (port 53). */
function queryFrame(payload: Uint8Array, over: { dst?: string; dport?: number; partial?: boolean } = {}): Frame {
  return frame({
    proto: 'udp', src: CLIENT, dst: over.dst ?? DNS_IP, sport: CLIENT_PORT, dport: over.dport ?? 53,
    payload, srcMac: CLIENT_MAC, partial: over.partial,
  })
}

interface Answered { n: number; f: Frame; msg: dnsPacket.DecodedPacket & { rcode: string; opcode: string } }

/** Runs answer(), checks the framing of the reply, decodes its DNS message. */
function ask(r: DnsResponder, payload: Uint8Array, capacity = BUF_LEN - FRAME_OFF): Answered {
  const f = queryFrame(payload)
  const n = r.answer(f.buf, f.off, f.l3, f.len, capacity, HI, LO)
  assert.ok(n > 0, 'an answer')
  return { n, f, msg: checkReply(f, n) }
}

function checkReply(f: Frame, n: number, clientPort = CLIENT_PORT): Answered['msg'] {
  const d = decode(f, n) // also asserts frame length = IPv4 total length
  assert.equal(d.dstMac, CLIENT_MAC)
  assert.equal(d.srcMac, ROUTER_MAC)
  assert.equal(d.proto, PROTO_UDP)
  assert.equal(d.src, DNS_IP)
  assert.equal(d.dst, CLIENT)
  assert.equal(d.sport, 53)
  assert.equal(d.dport, clientPort)
  assert.ok(d.ipCsumOk, 'IPv4 header checksum verifies')
  assert.ok(d.l4CsumOk, 'UDP checksum verifies')
  assert.notEqual(f.buf[f.l3 + ipv4Ihl(f.buf, f.l3) + 6] | f.buf[f.l3 + ipv4Ihl(f.buf, f.l3) + 7], 0, 'UDP checksum present')
  assert.equal(ipv4Ihl(f.buf, f.l3), IPV4_HLEN_MIN)
  assert.equal(ipv4Ttl(f.buf, f.l3), 64)
  assert.equal(ipv4Flags(f.buf, f.l3), IPV4_FLAG_DF)
  const udp = f.l3 + IPV4_HLEN_MIN
  assert.equal(udpLen(f.buf, udp), d.totalLen - IPV4_HLEN_MIN)
  const dns = Buffer.from(f.buf.subarray(udp + UDP_HLEN, f.off + n))
  return dnsPacket.decode(dns) as Answered['msg']
}

test('A record of a service: id, flags, question echoed, TTL', () => {
  const { n, f, msg } = ask(responder(), queryBytes({ name: 'web.default.svc.cluster.local', id: 0x1234 }))
  assert.equal(msg.id, 0x1234)
  assert.equal(msg.type, 'response')
  assert.equal(msg.flag_qr, true)
  assert.equal(msg.flag_aa, true)
  assert.equal(msg.flag_rd, true, 'RD copied')
  assert.equal(msg.flag_ra, false, 'no recursion offered')
  assert.equal(msg.flag_tc, false)
  assert.equal(msg.rcode, 'NOERROR')
  assert.equal(msg.opcode, 'QUERY')
  assert.deepEqual(msg.questions, [{ name: 'web.default.svc.cluster.local', type: 'A', class: 'IN' }])
  assert.equal(msg.answers?.length, 1)
  const a = msg.answers![0] as dnsPacket.StringAnswer
  assert.deepEqual({ name: a.name, type: a.type, class: a.class, ttl: a.ttl, data: a.data },
    { name: 'web.default.svc.cluster.local', type: 'A', class: 'IN', ttl: DNS_DEFAULT_TTL, data: '10.96.0.20' })
  assert.deepEqual(msg.authorities, [])
  assert.equal(n, ETH_HLEN + IPV4_HLEN_MIN + UDP_HLEN + udpLen(f.buf, f.l3 + 20) - UDP_HLEN)
})

test('RD clear in the query stays clear; the TTL option is used', () => {
  const { msg } = ask(responder(5), queryBytes({ name: 'api.shop.svc.cluster.local', flags: 0 }))
  assert.equal(msg.flag_rd, false)
  assert.equal(msg.flag_aa, true)
  assert.equal((msg.answers![0] as dnsPacket.StringAnswer).data, '10.96.7.1')
  assert.equal(msg.answers![0].type === 'A' && msg.answers![0].ttl, 5)
})

test('names match case-insensitively, a trailing dot is fine, the question keeps its spelling', () => {
  const { msg } = ask(responder(), queryBytes({ name: 'Web.DEFAULT.Svc.Cluster.Local.' }))
  assert.equal(msg.rcode, 'NOERROR')
  assert.equal(msg.questions![0].name, 'Web.DEFAULT.Svc.Cluster.Local')
  const a = msg.answers![0] as dnsPacket.StringAnswer
  assert.equal(a.name, 'Web.DEFAULT.Svc.Cluster.Local')
  assert.equal(a.data, '10.96.0.20')
})

test('PTR for a ClusterIP gives the service FQDN', () => {
  const { msg } = ask(responder(), queryBytes({ name: '20.0.96.10.in-addr.arpa', type: 'PTR', id: 7 }))
  assert.equal(msg.id, 7)
  assert.equal(msg.rcode, 'NOERROR')
  assert.equal(msg.flag_aa, true)
  assert.deepEqual(msg.answers?.map((a) => [a.type, a.name, (a as dnsPacket.StringAnswer).data]),
    [['PTR', '20.0.96.10.in-addr.arpa', 'web.default.svc.cluster.local']])
})

test('PTR of an address that is no ClusterIP is refused (not our zone)', () => {
  const { msg } = ask(responder(), queryBytes({ name: '5.2.244.10.in-addr.arpa', type: 'PTR' }))
  assert.equal(msg.rcode, 'REFUSED')
  assert.equal(msg.flag_aa, false)
  assert.deepEqual(msg.answers, [])
})

test('unknown names in the cluster domain: NXDOMAIN with the SOA for negative caching', () => {
  for (const name of ['nope.default.svc.cluster.local', 'web.nowhere.svc.cluster.local', 'nowhere.svc.cluster.local',
    '_http._tcp.web.default.svc.cluster.local', 'x.web.default.svc.cluster.local', 'pod.cluster.local', 'web.default.pod.cluster.local']) {
    const { msg } = ask(responder(), queryBytes({ name }))
    assert.equal(msg.rcode, 'NXDOMAIN', name)
    assert.equal(msg.flag_aa, true, name)
    assert.deepEqual(msg.answers, [], name)
    assert.equal(msg.authorities?.length, 1, name)
    const soa = msg.authorities![0] as dnsPacket.SoaAnswer
    assert.equal(soa.type, 'SOA')
    assert.equal(soa.name, 'cluster.local')
    assert.equal(soa.data.minimum, DNS_DEFAULT_TTL)
    assert.equal(soa.data.mname, 'ns.dns.cluster.local')
  }
})

test('names outside the cluster domain, and relative names, are REFUSED', () => {
  for (const name of ['example.com', 'web.default', 'web.default.svc', 'web.default.svc.cluster.local.example.com', 'local', 'xcluster.local']) {
    const { msg } = ask(responder(), queryBytes({ name, id: 99 }))
    assert.equal(msg.id, 99)
    assert.equal(msg.rcode, 'REFUSED', name)
    assert.equal(msg.flag_aa, false, name)
    assert.equal(msg.flag_ra, false, name)
    assert.deepEqual(msg.answers, [], name)
    assert.deepEqual(msg.questions?.map((q) => q.name), [name], name)
  }
})

test('AAAA (and other types) of an existing name: NOERROR without answers', () => {
  for (const type of ['AAAA', 'MX', 'TXT']) {
    const { msg } = ask(responder(), queryBytes({ name: 'web.default.svc.cluster.local', type }))
    assert.equal(msg.rcode, 'NOERROR', type)
    assert.equal(msg.flag_aa, true)
    assert.deepEqual(msg.answers, [], type)
    assert.equal(msg.authorities?.[0]?.type, 'SOA', type)
    assert.equal(msg.questions![0].type, type)
  }
})

test('a headless service, the apex and empty non-terminals exist without an A record', () => {
  for (const name of ['db.shop.svc.cluster.local', 'cluster.local', 'svc.cluster.local', 'shop.svc.cluster.local']) {
    const { msg } = ask(responder(), queryBytes({ name }))
    assert.equal(msg.rcode, 'NOERROR', name)
    assert.deepEqual(msg.answers, [], name)
    assert.equal(msg.authorities?.[0]?.type, 'SOA', name)
  }
  const { msg } = ask(responder(), queryBytes({ name: 'cluster.local', type: 'SOA' }))
  assert.equal(msg.answers?.[0]?.type, 'SOA')
})

test('ANY gets the A record', () => {
  const q = Buffer.from(queryBytes({ name: 'web.default.svc.cluster.local' }))
  putU16(q, q.length - 4, 255) // QTYPE ANY
  const { msg } = ask(responder(), q)
  assert.equal(msg.rcode, 'NOERROR')
  assert.deepEqual(msg.answers?.map((a) => a.type), ['A'])
})

test('EDNS: the OPT record is answered; version 1 gets BADVERS', () => {
  const r = responder()
  const { msg } = ask(r, queryBytes({ name: 'web.default.svc.cluster.local', edns: { size: 4096 } }))
  assert.equal(msg.rcode, 'NOERROR')
  const opt = msg.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer | undefined
  assert.ok(opt)
  assert.equal(opt.udpPayloadSize, DNS_EDNS_PAYLOAD)
  assert.equal(opt.extendedRcode, 0)
  assert.equal(opt.flag_do, false)

  const bad = ask(r, queryBytes({ name: 'web.default.svc.cluster.local', edns: { version: 1 } }))
  const opt2 = bad.msg.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer
  assert.equal(opt2.extendedRcode << 4, DnsRcode.BadVers, 'BADVERS = 16: upper bits in the OPT record')
  assert.equal(bad.msg.rcode, 'NOERROR', 'low 4 bits of BADVERS are 0')
  assert.deepEqual(bad.msg.answers, [])
  assert.equal(r.lastRcode, DnsRcode.BadVers)
})

test('lastRcode reports each answer', () => {
  const r = responder()
  ask(r, queryBytes({ name: 'nope.default.svc.cluster.local' }))
  assert.equal(r.lastRcode, DnsRcode.NxDomain)
  ask(r, queryBytes({ name: 'example.org' }))
  assert.equal(r.lastRcode, DnsRcode.Refused)
  const f = queryFrame(new Uint8Array(3))
  assert.equal(r.answer(f.buf, f.off, f.l3, f.len, BUF_LEN - FRAME_OFF, HI, LO), 0)
  assert.equal(r.lastRcode, -1)
})

test('malformed queries: FORMERR with the id when the header is readable, nothing otherwise', () => {
  const r = responder()
  const valid = queryBytes({ name: 'web.default.svc.cluster.local', id: 0x4242 })

  // Shorter than a header: nothing to answer with.
  for (const len of [0, 1, 11]) {
    const f = queryFrame(valid.subarray(0, len))
    assert.equal(r.answer(f.buf, f.off, f.l3, f.len, BUF_LEN - FRAME_OFF, HI, LO), 0, `length ${len}`)
    assert.equal(r.dropped, true, `length ${len}: a query to the server that is dropped (dns_invalid)`)
  }
  const ok = queryFrame(valid)
  assert.ok(r.answer(ok.buf, ok.off, ok.l3, ok.len, BUF_LEN - FRAME_OFF, HI, LO) > 0)
  assert.equal(r.dropped, false, 'an answered query is not a drop')
  // Header, question cut short.
  for (const len of [12, 15, valid.length - 1]) {
    const { msg } = ask(r, valid.subarray(0, len))
    assert.equal(msg.id, 0x4242, `length ${len}`)
    assert.equal(msg.rcode, 'FORMERR', `length ${len}`)
    assert.deepEqual(msg.questions, [])
    assert.equal(msg.flag_aa, false)
  }
  // QDCOUNT 0 and 2.
  for (const qd of [0, 2]) {
    const q = Buffer.from(valid)
    putU16(q, 4, qd)
    assert.equal(ask(r, q).msg.rcode, 'FORMERR', `qdcount ${qd}`)
  }
  // A label with a dot byte in it would not echo back as asked.
  const dotted = Buffer.from(queryBytes({ name: 'aXb.cluster.local' }))
  dotted[dotted.indexOf('X')] = 0x2e
  assert.equal(ask(r, dotted).msg.rcode, 'FORMERR')
  // A compression pointer loop in the question.
  const loop = Buffer.from(valid.subarray(0, 12))
  const q = Buffer.concat([loop, Buffer.from([0xc0, 12, 0, 1, 0, 1])])
  assert.equal(ask(r, q).msg.rcode, 'FORMERR')
  // Bad label type (0x40).
  assert.equal(ask(r, Buffer.concat([loop, Buffer.from([0x40, 0, 0, 1, 0, 1])])).msg.rcode, 'FORMERR')
  // Two OPT records.
  const twoOpt = dnsPacket.encode({
    type: 'query', id: 1, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }],
    additionals: [0, 1].map(() => ({ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as dnsPacket.OptAnswer)),
  })
  assert.equal(ask(r, twoOpt).msg.rcode, 'FORMERR')
})

test('an opcode other than QUERY gets NOTIMP', () => {
  const q = Buffer.from(queryBytes({ name: 'web.default.svc.cluster.local' }))
  q[2] = (q[2] & 0x87) | (2 << 3) // STATUS
  const { msg } = ask(responder(), q)
  assert.equal(msg.rcode, 'NOTIMP')
  assert.equal(msg.opcode, 'STATUS')
})

test('never answers an answer, nor anything not a UDP query to the DNS address on port 53', () => {
  const r = responder()
  const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }] })
  const cases: [string, Frame][] = [
    ['a response', queryFrame(resp)],
    ['another address', queryFrame(queryBytes({ name: 'web.default.svc.cluster.local' }), { dst: '10.96.0.11' })],
    ['another port', queryFrame(queryBytes({ name: 'web.default.svc.cluster.local' }), { dport: 5353 })],
    ['TCP', frame({ proto: 'tcp', src: CLIENT, dst: DNS_IP, sport: CLIENT_PORT, dport: 53, payload: queryBytes({ name: 'a' }) })],
    ['source port 0', frame({ proto: 'udp', src: CLIENT, dst: DNS_IP, sport: 0, dport: 53, payload: queryBytes({ name: 'a' }) })],
  ]
  for (const [what, f] of cases) {
    const before = f.buf.slice()
    assert.equal(r.answer(f.buf, f.off, f.l3, f.len, BUF_LEN - FRAME_OFF, HI, LO), 0, what)
    assert.deepEqual(f.buf, before, `${what}: frame untouched`)
    // Not DNS for this server (no_route in the datapath), except what came to ip:53 over UDP.
    assert.equal(r.dropped, what === 'a response' || what === 'source port 0', `${what}: dropped`)
  }
  // Truncated IPv4 / UDP.
  const f = queryFrame(queryBytes({ name: 'web.default.svc.cluster.local' }))
  assert.equal(r.answer(f.buf, f.off, f.l3, 30, BUF_LEN - FRAME_OFF, HI, LO), 0)
  assert.equal(r.answer(f.buf, f.off, f.l3, ETH_HLEN + 24, BUF_LEN - FRAME_OFF, HI, LO), 0)
})

test('a query with a partial (offloaded) UDP checksum gets a complete one back', () => {
  const f = queryFrame(queryBytes({ name: 'web.default.svc.cluster.local' }), { partial: true })
  const n = responder().answer(f.buf, f.off, f.l3, f.len, BUF_LEN - FRAME_OFF, HI, LO)
  assert.ok(n > 0)
  assert.equal((checkReply(f, n).answers![0] as dnsPacket.StringAnswer).data, '10.96.0.20')
})

test('IP options are dropped and the VLAN tag kept', () => {
  const payload = queryBytes({ name: 'web.default.svc.cluster.local', id: 3 })
  const buf = new Uint8Array(BUF_LEN).fill(0xa5)
  const off = FRAME_OFF
  const c = macParse(CLIENT_MAC)!
  const rm = macParse(ROUTER_MAC)!
  ethWriteHeader(buf, off, rm.hi, rm.lo, c.hi, c.lo, ETHERTYPE_VLAN)
  putU16(buf, off + 14, 42) // VID 42
  putU16(buf, off + 16, ETHERTYPE_IPV4)
  const l3 = off + 18
  const ihl = 24
  const total = ihl + UDP_HLEN + payload.length
  ipv4WriteHeader(buf, l3, total, 9, false, 64, PROTO_UDP, ip(CLIENT), ip(DNS_IP))
  buf[l3] = 0x46
  buf.fill(1, l3 + 20, l3 + 24) // four NOPs
  ipv4FillChecksum(buf, l3)
  udpWriteHeader(buf, l3 + ihl, CLIENT_PORT, 53, UDP_HLEN + payload.length, 0)
  buf.set(payload, l3 + ihl + UDP_HLEN)
  udpFillChecksumV4(buf, l3, l3 + ihl)
  const f: Frame = { buf, off, l3, len: 18 + total }
  const n = responder().answer(buf, off, l3, f.len, BUF_LEN - FRAME_OFF, HI, LO)
  assert.ok(n > 0)
  const msg = checkReply(f, n)
  assert.equal(msg.id, 3)
  assert.equal((msg.answers![0] as dnsPacket.StringAnswer).data, '10.96.0.20')
  assert.equal((buf[off + 12] << 8) | buf[off + 13], ETHERTYPE_VLAN)
  assert.equal((buf[off + 14] << 8) | buf[off + 15], 42)
  assert.equal(n, 18 + 20 + UDP_HLEN + (msg.questions![0].name.length + 2 + 4) + 12 + (msg.questions![0].name.length + 2 + 10 + 4))
})

test('capacity: a reply that does not fit goes out truncated (TC), or not at all', () => {
  const r = responder()
  const payload = queryBytes({ name: 'web.default.svc.cluster.local' })
  const headers = ETH_HLEN + IPV4_HLEN_MIN + UDP_HLEN
  const full = ask(r, payload).n
  assert.equal(ask(r, payload, full).msg.flag_tc, false, 'exactly enough room')
  const tc = ask(r, payload, full - 1).msg
  assert.equal(tc.flag_tc, true)
  assert.deepEqual(tc.answers, [])
  assert.equal(tc.questions?.length, 1)
  const f = queryFrame(payload)
  assert.equal(r.answer(f.buf, f.off, f.l3, f.len, headers + payload.length - 1, HI, LO), 0)
})

test('setServices: replaces the set, skips names that are not DNS labels, bumps the SOA serial', () => {
  const r = responder()
  const serial = r.serial
  const res = r.setServices([
    { name: 'web', namespace: 'default', clusterIP: ip('10.96.0.21') },
    { name: 'a.b', namespace: 'default', clusterIP: ip('10.96.0.22') },
    { name: 'Upper', namespace: 'default', clusterIP: ip('10.96.0.23') },
  ])
  assert.deepEqual(res, { served: 1, skipped: ['default/a.b', 'default/Upper'] })
  assert.equal(r.serial, serial + 1)
  assert.equal((ask(r, queryBytes({ name: 'web.default.svc.cluster.local' })).msg.answers![0] as dnsPacket.StringAnswer).data, '10.96.0.21')
  assert.equal(ask(r, queryBytes({ name: 'api.shop.svc.cluster.local' })).msg.rcode, 'NXDOMAIN')
  assert.equal(ask(r, queryBytes({ name: '20.0.96.10.in-addr.arpa', type: 'PTR' })).msg.rcode, 'REFUSED')
  const soa = ask(r, queryBytes({ name: 'nope.default.svc.cluster.local' })).msg.authorities![0] as dnsPacket.SoaAnswer
  assert.equal(soa.data.serial, serial + 1)
})

test('another cluster domain (trailing dot, upper case) is normalised', () => {
  const r = new DnsResponder({ ip: ip(DNS_IP), clusterDomain: 'Corp.Example.' })
  r.setServices([{ name: 'web', namespace: 'default', clusterIP: ip('10.96.0.20') }])
  assert.equal(r.clusterDomain, 'corp.example')
  assert.equal(ask(r, queryBytes({ name: 'web.default.svc.corp.example' })).msg.rcode, 'NOERROR')
  assert.equal(ask(r, queryBytes({ name: 'web.default.svc.cluster.local' })).msg.rcode, 'REFUSED')
  assert.equal((ask(r, queryBytes({ name: '20.0.96.10.in-addr.arpa', type: 'PTR' })).msg.answers![0] as dnsPacket.StringAnswer).data,
    'web.default.svc.corp.example')
})

test('bad options throw a TapestryError naming each problem', () => {
  assert.throws(() => new DnsResponder({ ip: 0, clusterDomain: 'cluster..local', ttl: -1 }), (e: unknown) => {
    assert.ok(e instanceof TapestryError)
    assert.equal(e.code, 'TAPESTRY_DNS_INVALID')
    assert.match(e.message, /ip must be/)
    assert.match(e.message, /clusterDomain must be/)
    assert.match(e.message, /ttl must be/)
    return true
  })
})
