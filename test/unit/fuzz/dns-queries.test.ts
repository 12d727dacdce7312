/**
 * The cluster DNS responder, service/dns.ts DnsResponder.answer, against
 * fuzzCases() query frames (100,000 in CI, TAPESTRY_FUZZ_N for more). It
 * answers a pod's Ethernet/IPv4/UDP frame in place, so the input is a whole
 * frame in a larger buffer:
 *
 * - the DNS message: well-formed queries of every kind it answers (A, AAAA,
 *   PTR, SOA, ANY, other types and classes, names in and out of the domain,
 *   in-addr.arpa, long names and answers that need TC), with EDNS (payload
 *   sizes 0 to 65535, versions, DO, options, two OPT records), wrong opcodes,
 *   QR/TC/Z bits, zero or many questions, records in the wrong sections;
 *   hand-made ones with compression pointers (loops, forward, into the
 *   header), bad label types and lengths, names over 255 bytes, bytes that
 *   are not UTF-8; all of them truncated and mutated (bit flips, counts set to
 *   boundary values, bytes inserted and removed), and random bytes;
 * - the frame: VLAN and QinQ tags, IPv4 options, the frame at any offset,
 *   UDP checksum full, absent or partial (virtio offload), Ethernet padding;
 *   and mutated: lengths that disagree (IPv4 total, UDP, the frame's), other
 *   addresses, ports, protocols, fragments, a frame cut short;
 * - the room for the reply: the rest of the buffer, just enough, or too little.
 *
 * Properties: answer never throws; returns 0 (drop: lastRcode -1) or the
 * reply's length, within the room; writes nothing outside [frame, frame +
 * room); reads nothing outside [frame, frame + len) (the same frame in a
 * buffer with other bytes around it gets the same answer, byte for byte).
 * Every reply is a valid frame: the Ethernet header turned around (tags
 * kept), a 20-byte IPv4 header from the DNS address to the client with a
 * good checksum, UDP 53 to the client's port with a complete, verifying
 * checksum; and a DNS response to the query: its id, opcode and RD, QR set,
 * RA/Z/AD/CD clear, the RCODE lastRcode says (BADVERS through the OPT
 * record), NOTIMP for opcodes other than QUERY, at most 512 bytes without
 * EDNS or the client's advertised size with it, TC only without records, the
 * question echoed byte for byte as asked, and answers that are right (the
 * ClusterIP of the named service, the FQDNs of a ClusterIP, the zone's SOA).
 *
 * Drops: the responder returns 0 and lastRcode -1; `dropped` tells the
 * datapath whether the frame was for the server (counted as dns_invalid) or
 * not DNS at all (no_route). Checked here: nothing else happens to such a
 * frame's buffer, and `dropped` is never set beside an answer.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as dnsPacket from 'dns-packet'
import { DNS_EDNS_PAYLOAD, DNS_UDP_MAX_PLAIN, DnsRcode, DnsResponder } from '../../../src/service/dns'
import { ipv4Format, ipv4Parse, macParse } from '../../../src/wire/addr'
import { u16, putU16 } from '../../../src/wire/byteorder'
import { csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import { ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN, ethWriteHeader, macHi, macLo } from '../../../src/wire/ethernet'
import {
  IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_HLEN_MIN, PROTO_TCP, PROTO_UDP, ipv4Dst, ipv4FillChecksum, ipv4Flags, ipv4HeaderChecksumOk,
  ipv4Ihl, ipv4IsFragment, ipv4Proto, ipv4Src, ipv4TotalLen, ipv4Ttl, ipv4Version, ipv4WriteHeader, setIpv4Frag,
} from '../../../src/wire/ipv4'
import { UDP_HLEN, UDP_OFF_CSUM, udpChecksumOkV4, udpDstPort, udpFillChecksumV4, udpLen, udpSrcPort, udpWriteHeader } from '../../../src/wire/udp'
import {
  Rng, assertReached, baseSeed, below, chance, forEachCaseCollect, fuzzCases, hexHead, mulberry32, mutate, pick, randomBytes,
} from '../../harness/fuzz'

const N = fuzzCases()
const BASE = baseSeed(0xd45e7a11)
/**
 * Seeds of failures found so far (see the deterministic tests at the end):
 * - 0x5146c3b3: a PTR question for "020.0.96.10.in-addr.arpa" (an octet with a leading zero) was
 *   answered with the FQDN of 10.96.0.20's service, as if it were "20.0.96.10.in-addr.arpa".
 */
const REGRESSION_SEEDS: number[] = [0x5146c3b3]

const ip = (t: string): number => {
  const a = ipv4Parse(t)
  if (a < 0) throw new Error(`bad IPv4 in test: ${t}`)
  return a >>> 0
}

const DOMAIN = 'cluster.local'
const DNS_IP = ip('10.96.0.10')
const CLIENT_IP = ip('10.244.1.10')
const CLIENT_MAC = macParse('02:00:00:00:00:0c')!
const ROUTER_MAC = macParse('02:74:61:70:00:01')!
const CLIENT_PORT = 41234
const BULK_IP = '10.96.0.99'

/** The services answered for: a few, a headless one, and many sharing one ClusterIP (PTR answers too big for 512 bytes). */
const SERVICES = [
  { name: 'web', namespace: 'default', clusterIP: ip('10.96.0.20') },
  { name: 'api', namespace: 'shop', clusterIP: ip('10.96.7.1') },
  { name: 'db', namespace: 'shop', clusterIP: 0 },
  { name: 'kube-dns', namespace: 'kube-system', clusterIP: DNS_IP },
  ...Array.from({ length: 40 }, (_, i) => ({ name: `bulk-service-${i}`, namespace: 'bulk', clusterIP: ip(BULK_IP) })),
]
const FQDN = (s: { name: string; namespace: string }): string => `${s.name}.${s.namespace}.svc.${DOMAIN}`

function responder(): DnsResponder {
  const r = new DnsResponder({ ip: DNS_IP, clusterDomain: DOMAIN })
  const res = r.setServices(SERVICES)
  assert.equal(res.served, SERVICES.length)
  return r
}

// ---- queries

const NAMES = [
  'web.default.svc.cluster.local', 'Web.DEFAULT.Svc.Cluster.Local', 'api.shop.svc.cluster.local', 'db.shop.svc.cluster.local',
  'kube-dns.kube-system.svc.cluster.local', 'bulk-service-7.bulk.svc.cluster.local', 'cluster.local', 'svc.cluster.local',
  'shop.svc.cluster.local', 'nowhere.svc.cluster.local', 'nope.default.svc.cluster.local', 'x.web.default.svc.cluster.local',
  '_http._tcp.web.default.svc.cluster.local', 'web.default.pod.cluster.local', 'example.com', 'web.default', 'local',
  'xcluster.local', 'web.default.svc.cluster.local.example.com', '20.0.96.10.in-addr.arpa', '1.7.96.10.in-addr.arpa',
  '99.0.96.10.in-addr.arpa', '10.0.96.10.IN-ADDR.ARPA', '5.2.244.10.in-addr.arpa', '300.0.96.10.in-addr.arpa',
  '0.96.10.in-addr.arpa', '020.0.96.10.in-addr.arpa', 'in-addr.arpa', '',
  `${'a'.repeat(63)}.default.svc.cluster.local`, `${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(50)}.cluster.local`,
  'caf\u00e9.default.svc.cluster.local', 'we b.default.svc.cluster.local', 'web\u0000.default.svc.cluster.local',
]
const TYPES = ['A', 'A', 'A', 'AAAA', 'PTR', 'PTR', 'SOA', 'ANY', 'TXT', 'MX', 'SRV', 'CNAME', 'NS', 'AXFR', 'OPT', 'CAA']
const CLASSES = ['IN', 'IN', 'IN', 'IN', 'IN', 'IN', 'IN', 'IN', 'ANY', 'CH', 'HS', 'NONE']
const RD = 0x0100

function optRecord(rng: Rng): dnsPacket.Answer {
  const options = chance(rng, 0.2) ? [{ code: pick(rng, [8, 10, 12, 0xfde9]), data: Buffer.from(randomBytes(rng, below(rng, 12))) }] : []
  return {
    type: 'OPT', name: '.', udpPayloadSize: pick(rng, [0, 1, 511, 512, 513, 1232, 1400, 4096, 65535]),
    extendedRcode: chance(rng, 0.9) ? 0 : below(rng, 256), ednsVersion: chance(rng, 0.8) ? 0 : pick(rng, [1, 2, 255]),
    flags: chance(rng, 0.2) ? dnsPacket.DNSSEC_OK : 0, flag_do: false, options,
  } as unknown as dnsPacket.Answer
}

/** A query as a stub resolver might send it, or with the header and sections a little wrong. */
function structuredQuery(rng: Rng): Uint8Array {
  const type = pick(rng, TYPES)
  const qclass = pick(rng, CLASSES)
  const nq = chance(rng, 0.9) ? 1 : pick(rng, [0, 2, 3])
  const questions = Array.from({ length: nq }, () => ({ name: pick(rng, NAMES), type, class: qclass }) as dnsPacket.Question)
  const opcode = chance(rng, 0.85) ? 0 : below(rng, 16)
  const flags = (opcode << 11) | (chance(rng, 0.7) ? RD : 0) | (chance(rng, 0.05) ? dnsPacket.TRUNCATED_RESPONSE : 0) |
    (chance(rng, 0.05) ? dnsPacket.AUTHENTIC_DATA : 0) | (chance(rng, 0.05) ? dnsPacket.CHECKING_DISABLED : 0) | (chance(rng, 0.03) ? 0x40 : 0)
  const additionals: dnsPacket.Answer[] = []
  const edns = below(rng, 20)
  if (edns < 8) additionals.push(optRecord(rng))
  else if (edns === 8) additionals.push(optRecord(rng), optRecord(rng))
  else if (edns === 9) additionals.push({ type: 'A', name: 'x.example', data: '1.2.3.4' }, optRecord(rng))
  const packet: dnsPacket.Packet = { type: chance(rng, 0.98) ? 'query' : 'response', id: rng() & 0xffff, flags, questions, additionals }
  if (chance(rng, 0.05)) packet.answers = [{ type: 'A', name: pick(rng, NAMES), data: '10.96.0.20' }]
  if (chance(rng, 0.03)) packet.authorities = [optRecord(rng)]
  // A copy as a plain Uint8Array: a Buffer's slice() is a view, and mutate() would change the template.
  try {
    return Uint8Array.from(dnsPacket.encode(packet))
  } catch {
    return Uint8Array.from(dnsPacket.encode({ type: 'query', id: 1, flags: RD, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }] }))
  }
}

const label = (s: string): number[] => [s.length, ...Buffer.from(s, 'latin1')]

/** Question names made by hand: what an encoder never writes. */
const RAW_NAMES: number[][] = [
  [0xc0, 12], // a pointer to itself
  [0xc0, 0], // a pointer into the header
  [0xc0, 2],
  [...label('web'), 0xc0, 12], // back to its start: a loop
  [...label('web'), 0xc0, 16], // a pointer to the pointer
  [0xc0, 40], // forward, past the end
  [0xc0, 14, ...label('web'), 0], // forward, into the name
  [0x40, 0], // label type 01
  [0x80, 0], // label type 10
  [...label('web'), 0x7f, 0x41], // extended label type, mid-name
  [63, ...Array(63).fill(0x61), 0],
  [64, ...Array(64).fill(0x61), 0],
  [10, 0x61, 0x62, 0], // a label longer than what follows
  [...Array.from({ length: 128 }, () => label('a')).flat(), 0], // 256 bytes: over the 255 limit
  [...Array.from({ length: 126 }, () => label('a')).flat(), 0],
  [0], // the root
  [...label('a.b'), ...label('cluster'), ...label('local'), 0], // a dot inside a label
  [3, 0xff, 0xfe, 0xfd, ...label('cluster'), ...label('local'), 0], // not UTF-8
  [3, 0xc3, 0xa9, 0x41, ...label('cluster'), ...label('local'), 0],
  [...label('WEB'), ...label('default'), ...label('svc'), ...label('cluster'), ...label('local'), 0],
  [...label('web'), ...label('default'), ...label('svc'), ...label('cluster'), ...label('local')], // no root label
]

/** A header (id, flags, counts) and hand-made sections after it. */
function rawQuery(rng: Rng): Uint8Array {
  const name = pick(rng, RAW_NAMES)
  const tail = [0, pick(rng, [1, 12, 28, 255, 6]), 0, pick(rng, [1, 1, 1, 255, 3])]
  const bytes = [rng() & 0xff, rng() & 0xff, chance(rng, 0.7) ? 1 : 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...name, ...tail]
  if (chance(rng, 0.3)) {
    // An OPT record whose name is a pointer (to the question, to itself, into the header).
    bytes[11] = 1
    bytes.push(...pick(rng, [[0], [0xc0, 12], [0xc0, bytes.length], [0xc0, 0]]), 0, 41, 0x10, 0, 0, 0, 0, 0, 0, chance(rng, 0.8) ? 0 : 4)
  }
  const out = Uint8Array.from(bytes)
  if (chance(rng, 0.2)) putU16(out, pick(rng, [4, 6, 8, 10]), pick(rng, [0, 2, 0xffff, 1]))
  return out
}

/** Templates made once (encoding costs more than answering). */
const TEMPLATES: Uint8Array[] = (() => {
  const rng = mulberry32(0xd45e5eed)
  return [...Array.from({ length: 600 }, () => structuredQuery(rng)), ...Array.from({ length: 200 }, () => rawQuery(rng))]
})()

/** A field of a valid query changed, the structure kept: the question's type, class or a name byte, a count, a flag. */
function edit(rng: Rng, t: Uint8Array): Uint8Array {
  const b = t.slice()
  if (b.length < 17) return b
  let end = 12 // the end of the question's name, if it has no pointers
  while (end < b.length && b[end] !== 0 && b[end] < 64) end += b[end] + 1
  const fields = end + 5 <= b.length
  switch (below(rng, 6)) {
    case 0: if (fields) putU16(b, end + 1, chance(rng, 0.5) ? pick(rng, [1, 12, 28, 6, 255, 252, 41, 0, 0xffff]) : rng() & 0xffff); break // QTYPE
    case 1: if (fields) putU16(b, end + 3, pick(rng, [1, 3, 4, 254, 255, 0, 0xffff])); break // QCLASS
    case 2: if (end > 13) b[13 + below(rng, end - 13)] = pick(rng, [0x41, 0x5a, 0x2e, 0x2d, 0x30, 0x00, 0xff, 0x20, 0xc3, 0x7f]); break // a name byte
    case 3: putU16(b, pick(rng, [4, 6, 8, 10]), pick(rng, [0, 1, 2, 0xffff])); break // a count
    case 4: b[2] ^= pick(rng, [0x01, 0x02, 0x04, 0x80, 0x78]); b[3] ^= pick(rng, [0, 0x10, 0x20, 0x40, 0x80, 0x0f]); break // flags
    default: { // the OPT record's payload size and version, if it is last
      if (b.length >= 11 && b[b.length - 11] === 0 && b[b.length - 10] === 41) {
        putU16(b, b.length - 8, pick(rng, [0, 1, 512, 513, 1232, 4096, 65535]))
        b[b.length - 5] = pick(rng, [0, 0, 1, 255])
      }
    }
  }
  return b
}

function queryPayload(rng: Rng): Uint8Array {
  const m = below(rng, 20)
  if (m < 2) { // random bytes, most with QR clear so they reach the decoder, half of them a QUERY
    const b = randomBytes(rng, below(rng, 100))
    if (b.length > 2 && chance(rng, 0.8)) b[2] &= chance(rng, 0.5) ? 0x07 : 0x7f
    return b
  }
  if (m < 7) return pick(rng, TEMPLATES).slice()
  if (m < 9) return chance(rng, 0.5) ? structuredQuery(rng) : rawQuery(rng)
  if (m < 12) return edit(rng, pick(rng, TEMPLATES))
  const b = mutate(rng, pick(rng, TEMPLATES), pick(rng, TEMPLATES))
  if (b.length > 2 && chance(rng, 0.7)) b[2] &= 0x7f
  return b
}

// ---- frames

interface Built { buf: Uint8Array; frame: number; l3: number; len: number; room: number }

/** Most frames fit a 2 KiB buffer; these three are reused (allocating them per case costs more than answering). */
const BUF_LEN = 2048
const FRAME_BUF = new Uint8Array(BUF_LEN)
const BEFORE_BUF = new Uint8Array(BUF_LEN)
const OTHER_BUF = new Uint8Array(BUF_LEN)

function copyOf(b: Uint8Array, spare: Uint8Array): Uint8Array {
  if (b.length !== spare.length) return b.slice()
  spare.set(b)
  return spare
}

/** The query in an Ethernet/IPv4/UDP frame somewhere in a buffer filled with `fill`, possibly damaged. */
function buildFrame(rng: Rng, payload: Uint8Array): Built {
  const frame = below(rng, 70)
  const tags = pick(rng, [0, 0, 0, 0, 0, 0, 1, 1, 2])
  const ihl = chance(rng, 0.85) ? IPV4_HLEN_MIN : 24 + 4 * below(rng, 10)
  const l3 = frame + 14 + 4 * tags
  const l4 = l3 + ihl
  const total = ihl + UDP_HLEN + payload.length
  const pad = chance(rng, 0.1) ? 1 + below(rng, 40) : 0 // Ethernet padding after the IPv4 packet
  const size = Math.max(BUF_LEN, l3 + total + pad + 64)
  const buf = size === BUF_LEN ? FRAME_BUF.fill(0xa5) : new Uint8Array(size).fill(0xa5)
  ethWriteHeader(buf, frame, ROUTER_MAC.hi, ROUTER_MAC.lo, CLIENT_MAC.hi, CLIENT_MAC.lo, tags === 0 ? ETHERTYPE_IPV4 : tags === 1 ? ETHERTYPE_VLAN : ETHERTYPE_QINQ)
  for (let t = 0; t < tags; t++) {
    putU16(buf, frame + 14 + 4 * t, below(rng, 4096))
    putU16(buf, frame + 16 + 4 * t, t === tags - 1 ? ETHERTYPE_IPV4 : ETHERTYPE_VLAN)
  }
  ipv4WriteHeader(buf, l3, total, rng() & 0xffff, chance(rng, 0.5), 64, PROTO_UDP, CLIENT_IP, DNS_IP)
  if (ihl > IPV4_HLEN_MIN) {
    buf[l3] = 0x40 | (ihl >>> 2)
    buf.fill(1, l3 + IPV4_HLEN_MIN, l4) // NOPs
  }
  ipv4FillChecksum(buf, l3)
  udpWriteHeader(buf, l4, chance(rng, 0.9) ? CLIENT_PORT : 1 + below(rng, 65535), 53, UDP_HLEN + payload.length, 0)
  buf.set(payload, l4 + UDP_HLEN)
  const csum = below(rng, 10)
  if (csum < 7) udpFillChecksumV4(buf, l3, l4)
  else if (csum < 9) putU16(buf, l4 + UDP_OFF_CSUM, csumFold(csumPseudoV4(CLIENT_IP, DNS_IP, PROTO_UDP, UDP_HLEN + payload.length))) // partial
  if (pad > 0) buf.fill(0, l3 + total, l3 + total + pad)
  let len = l3 + total + pad - frame
  if (chance(rng, 0.15)) len = damage(rng, buf, frame, l3, l4, len)
  const fits = buf.length - frame
  const r = below(rng, 10)
  // The datapath gives the rest of the frame's slot; here also just enough for a short reply, or too little.
  const room = r < 8 ? fits : r < 9 ? Math.min(fits, len + below(rng, 64) - 32) : below(rng, fits + 1)
  return { buf, frame, l3, len, room }
}

/** Damages the headers: returns the frame length to pass. */
function damage(rng: Rng, buf: Uint8Array, frame: number, l3: number, l4: number, len: number): number {
  switch (below(rng, 10)) {
    case 0: return below(rng, len + 1) // the frame cut short
    case 1: putU16(buf, l3 + 2, pick(rng, [0, 19, 20, 28, ipv4TotalLen(buf, l3) - 1, ipv4TotalLen(buf, l3) + 1, 0xffff])); break
    case 2: putU16(buf, l4 + 4, pick(rng, [0, 7, 8, 12, 19, 20, udpLen(buf, l4) - 1, udpLen(buf, l4) + 1, 0xffff])); break
    case 3: buf[l3 + 16 + below(rng, 4)] ^= 1 << below(rng, 8); break // another destination
    case 4: putU16(buf, l4 + 2, pick(rng, [0, 52, 54, 5353, 0xffff])); break // another port
    case 5: buf[l3 + 9] = pick(rng, [PROTO_TCP, 1, 0, 255]); break
    case 6: setIpv4Frag(buf, l3, chance(rng, 0.5) ? IPV4_FLAG_MF : 0, 8 * (1 + below(rng, 100))); break
    case 7: buf[l3] = pick(rng, [0x44, 0x46, 0x4f, 0x60, 0x00, 0x41]); break // version, IHL
    case 8: putU16(buf, l4, 0); break // source port 0
    default: { // any header bytes
      const from = frame + 12
      const m = mutate(rng, buf.slice(from, l4 + UDP_HLEN))
      buf.set(m.subarray(0, Math.min(m.length, l4 + UDP_HLEN - from)), from)
    }
  }
  return len
}

// ---- the checks

const SERVICE_BY_NAME = new Map(SERVICES.map((s) => [FQDN(s), s]))
/** The names of the zone that exist: the apex, svc, each namespace with services, each service. */
const EXISTING = new Set([DOMAIN, `svc.${DOMAIN}`, ...SERVICES.map((s) => `${s.namespace}.svc.${DOMAIN}`), ...SERVICE_BY_NAME.keys()])

/** What the query says, read before it is answered (the answer overwrites it). */
interface Asked { srcMac: Buffer; tagBytes: Buffer; client: number; cport: number; dns: Uint8Array }

function asked(b: Built): Asked | null {
  const { buf, frame, l3, len } = b
  if (len < l3 - frame + IPV4_HLEN_MIN || ipv4Version(buf, l3) !== 4) return null
  const ihl = ipv4Ihl(buf, l3)
  const l4 = l3 + ihl
  const ulen = udpLen(buf, l4)
  return {
    srcMac: Buffer.from(buf.slice(frame + 6, frame + 12)), tagBytes: Buffer.from(buf.slice(frame + 12, l3)), client: ipv4Src(buf, l3), cport: udpSrcPort(buf, l4),
    dns: buf.slice(l4 + UDP_HLEN, l4 + Math.max(UDP_HLEN, ulen)),
  }
}

interface Seen { rcodes: Set<number>; tc: number; drops: number; answered: number; tagged: number; edns: number; records: number }

function fail(tag: string, why: string, q: Uint8Array): never {
  throw new Error(`[${tag}] ${why}; query ${hexHead(q, 80)}`)
}

/** The checks of one reply of `n` bytes in `b.buf`. */
function checkReply(b: Built, n: number, a: Asked, r: DnsResponder, seen: Seen): void {
  const { buf, frame, l3 } = b
  const q = a.dns
  // Ethernet: turned around, tags kept.
  if (!Buffer.from(buf.subarray(frame, frame + 6)).equals(a.srcMac)) fail('eth dst', 'not the client MAC', q)
  if (macHi(buf, frame + 6) !== ROUTER_MAC.hi || macLo(buf, frame + 6) !== ROUTER_MAC.lo) fail('eth src', 'not the router MAC', q)
  if (!Buffer.from(buf.subarray(frame + 12, l3)).equals(a.tagBytes)) fail('eth tags', 'changed', q)
  // IPv4: 20 bytes, DNS address to the client, good checksum, the frame's length.
  if (ipv4Version(buf, l3) !== 4 || ipv4Ihl(buf, l3) !== IPV4_HLEN_MIN) fail('ipv4 header', `version/IHL byte ${buf[l3].toString(16)}`, q)
  if (l3 + ipv4TotalLen(buf, l3) !== frame + n) fail('ipv4 length', `total ${ipv4TotalLen(buf, l3)}, frame ${n}`, q)
  if (!ipv4HeaderChecksumOk(buf, l3)) fail('ipv4 checksum', 'does not verify', q)
  if (ipv4Proto(buf, l3) !== PROTO_UDP || ipv4Src(buf, l3) !== DNS_IP || ipv4Dst(buf, l3) !== a.client) {
    fail('ipv4 addresses', `${ipv4Format(ipv4Src(buf, l3))} -> ${ipv4Format(ipv4Dst(buf, l3))} proto ${ipv4Proto(buf, l3)}`, q)
  }
  if (ipv4Ttl(buf, l3) !== 64 || ipv4Flags(buf, l3) !== IPV4_FLAG_DF || ipv4IsFragment(buf, l3)) fail('ipv4 fields', 'TTL, DF or fragment', q)
  // UDP: 53 to the client's port, length, complete checksum.
  const udp = l3 + IPV4_HLEN_MIN
  if (udpSrcPort(buf, udp) !== 53 || udpDstPort(buf, udp) !== a.cport) fail('udp ports', `${udpSrcPort(buf, udp)} -> ${udpDstPort(buf, udp)}`, q)
  if (udpLen(buf, udp) !== ipv4TotalLen(buf, l3) - IPV4_HLEN_MIN) fail('udp length', `${udpLen(buf, udp)}`, q)
  if (u16(buf, udp + UDP_OFF_CSUM) === 0 || !udpChecksumOkV4(buf, l3, udp)) fail('udp checksum', 'absent or wrong', q)

  // DNS: a response to this query.
  const dns = Buffer.from(buf.subarray(udp + UDP_HLEN, frame + n))
  let msg: dnsPacket.DecodedPacket
  try {
    msg = dnsPacket.decode(dns)
  } catch (err) {
    return fail('dns decode', `the reply does not decode: ${(err as Error).message}`, q)
  }
  const qflags = u16(q, 2)
  const flags = u16(dns, 2)
  const opcode = (qflags >>> 11) & 0xf
  if (u16(dns, 0) !== u16(q, 0)) fail('dns id', `${u16(dns, 0)} for ${u16(q, 0)}`, q)
  if ((flags & 0x8000) === 0 || ((flags >>> 11) & 0xf) !== opcode || (flags & RD) !== (qflags & RD)) fail('dns flags', `QR/opcode/RD: ${flags.toString(16)} for ${qflags.toString(16)}`, q)
  if ((flags & 0xf0) !== 0) fail('dns flags', `RA, Z, AD or CD set: ${flags.toString(16)}`, q)
  const opts = (msg.additionals ?? []).filter((x) => x.type === 'OPT') as dnsPacket.OptAnswer[]
  if (opts.length > 1 || (msg.additionals ?? []).length !== opts.length) fail('dns additionals', `${JSON.stringify(msg.additionals)}`, q)
  const opt = opts[0]
  const rcode = (flags & 0xf) | ((opt?.extendedRcode ?? 0) << 4)
  if (rcode !== r.lastRcode) fail('rcode', `header/OPT say ${rcode}, lastRcode ${r.lastRcode}`, q)
  seen.rcodes.add(rcode)
  if (opt !== undefined) {
    seen.edns++
    if (opt.udpPayloadSize !== DNS_EDNS_PAYLOAD || opt.ednsVersion !== 0 || opt.flag_do || (opt.options ?? []).length > 0) fail('opt', JSON.stringify(opt), q)
  }
  // The query's own OPT record (when it decodes): the size we may send back.
  let qopts: dnsPacket.OptAnswer[] | null = null
  const counts = u16(q, 6) + u16(q, 8) + u16(q, 10)
  if (counts <= (q.length - 17) / 11) { // (more records than bytes can hold would not decode, and dns-packet allocates arrays of the counts first)
    try {
      qopts = ((dnsPacket.decode(Buffer.from(q)).additionals ?? []).filter((x) => x.type === 'OPT')) as dnsPacket.OptAnswer[]
    } catch { /* FORMERR territory */ }
  } else if (opcode === 0 && rcode !== DnsRcode.FormErr) {
    fail('counts', `${counts} records in ${q.length} bytes got rcode ${rcode}`, q)
  }
  if (opt !== undefined && (qopts === null || qopts.length !== 1)) fail('opt', 'an OPT record back for a query without exactly one', q)
  const limit = opt === undefined ? DNS_UDP_MAX_PLAIN : Math.max(DNS_UDP_MAX_PLAIN, qopts![0].udpPayloadSize)
  if (dns.length > limit) fail('size', `${dns.length} bytes, limit ${limit}`, q)
  if (opcode !== 0 && rcode !== DnsRcode.NotImp) fail('notimp', `opcode ${opcode} got rcode ${rcode}`, q)
  if (opcode === 0 && qopts !== null && qopts.length > 1 && rcode !== DnsRcode.FormErr) fail('two opt', `${qopts.length} OPT records got rcode ${rcode}`, q)
  if (opcode === 0 && qopts !== null && qopts.length === 1 && qopts[0].ednsVersion !== 0 && rcode !== DnsRcode.FormErr && rcode !== DnsRcode.BadVers) {
    fail('badvers', `EDNS version ${qopts[0].ednsVersion} got rcode ${rcode}`, q)
  }
  if (opcode === 0 && u16(q, 4) !== 1 && rcode !== DnsRcode.FormErr) fail('formerr', `QDCOUNT ${u16(q, 4)} got rcode ${rcode}`, q)
  const records = (msg.answers ?? []).length + (msg.authorities ?? []).length
  seen.records += records
  if ((flags & dnsPacket.TRUNCATED_RESPONSE) !== 0) {
    seen.tc++
    if (records > 0) fail('tc', 'TC with records', q)
  }
  const questions = msg.questions ?? []
  if (questions.length > 1) fail('question', `${questions.length} questions`, q)
  if (questions.length === 0) {
    if (records > 0) fail('question', 'records without a question', q)
    return
  }
  // The question echoed is the question asked, byte for byte.
  const qd = questions[0]
  const enc = dnsPacket.encode({ id: 0, flags: 0, questions: [qd] }).subarray(12)
  if (!Buffer.from(q.subarray(12, 12 + enc.length)).equals(enc)) fail('echo', `echoed ${JSON.stringify(qd)}, not the question asked`, q)
  checkAnswers(qd, msg, rcode, q)
}

/** The records of a reply are right for the question (the services are fixed, so the truth is known). */
function checkAnswers(qd: dnsPacket.Question, msg: dnsPacket.DecodedPacket, rcode: number, q: Uint8Array): void {
  const lname = qd.name.toLowerCase()
  const inDomain = lname === DOMAIN || lname.endsWith(`.${DOMAIN}`)
  const any = (qd.type as string) === 'ANY'
  // The services whose ClusterIP an in-addr.arpa question names (no leading zeros: 020 is not 20).
  const m = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.in-addr\.arpa$/.exec(lname)
  const addr = m === null ? '' : [m[4], m[3], m[2], m[1]].join('.')
  const ptrNames = SERVICES.filter((s) => s.clusterIP !== 0 && ipv4Format(s.clusterIP) === addr).map(FQDN)
  for (const a of msg.answers ?? []) {
    if (a.type === 'A') {
      const s = SERVICE_BY_NAME.get(lname)
      if (s === undefined || s.clusterIP === 0 || a.data !== ipv4Format(s.clusterIP) || a.name !== qd.name || !(qd.type === 'A' || any)) {
        fail('answer A', `${JSON.stringify(a)} for ${JSON.stringify(qd)}`, q)
      }
    } else if (a.type === 'PTR') {
      if (!ptrNames.includes(a.data) || a.name !== qd.name || !(qd.type === 'PTR' || any)) fail('answer PTR', `${JSON.stringify(a)} for ${JSON.stringify(qd)}`, q)
    } else if (a.type === 'SOA') {
      if (lname !== DOMAIN || !(qd.type === 'SOA' || any)) fail('answer SOA', `for ${JSON.stringify(qd)}`, q)
    } else {
      fail('answer type', `${a.type} for ${JSON.stringify(qd)}`, q)
    }
  }
  for (const a of msg.authorities ?? []) {
    if (a.type !== 'SOA' || a.name !== DOMAIN || !inDomain) fail('authority', `${JSON.stringify(a)} for ${JSON.stringify(qd)}`, q)
  }
  const ours = qd.class === 'IN' || qd.class === 'ANY'
  if (rcode === DnsRcode.Refused && (msg.flag_aa || (msg.answers ?? []).length > 0)) fail('refused', `AA or answers for ${JSON.stringify(qd)}`, q)
  if (rcode === DnsRcode.Refused && inDomain && ours) fail('refused', `a name of the domain refused: ${JSON.stringify(qd)}`, q)
  if (rcode === DnsRcode.NxDomain || rcode === DnsRcode.NoError) {
    if (inDomain && rcode !== (EXISTING.has(lname) ? DnsRcode.NoError : DnsRcode.NxDomain)) fail('existence', `rcode ${rcode} for ${JSON.stringify(qd)}`, q)
    if (!msg.flag_aa) fail('aa', `AA clear on an answer of ours: ${JSON.stringify(qd)}`, q) // the domain and the ClusterIPs' reverse names
  }
  if (rcode === DnsRcode.NoError && !msg.flag_tc && (qd.type === 'PTR' || any) && ours && ptrNames.length > 0) {
    // Every name of the address, once each.
    const got = (msg.answers ?? []).flatMap((x) => (x.type === 'PTR' ? [x.data] : []))
    if (got.length !== ptrNames.length || new Set(got).size !== ptrNames.length) fail('answer PTR', `${got.length} of ${ptrNames.length} names for ${JSON.stringify(qd)}`, q)
  }
  if (rcode === DnsRcode.NoError && !msg.flag_tc && (qd.type === 'A' || any) && ours) {
    // Every A record there is, is given.
    const s = SERVICE_BY_NAME.get(lname)
    const want = s !== undefined && s.clusterIP !== 0 ? 1 : 0
    if ((msg.answers ?? []).filter((x) => x.type === 'A').length !== want) fail('missing A', `for ${JSON.stringify(qd)}`, q)
  }
}

test(`DnsResponder.answer: any query frame gets a valid reply or a clean drop, reading only the frame (${N} frames)`, () => {
  const r = responder()
  const r2 = responder()
  const seen: Seen = { rcodes: new Set(), tc: 0, drops: 0, answered: 0, tagged: 0, edns: 0, records: 0 }
  forEachCaseCollect('dns', BASE, N, REGRESSION_SEEDS, (rng) => {
    const payload = queryPayload(rng)
    const b = buildFrame(rng, payload)
    const { buf, frame, l3, len, room } = b
    const a = asked(b)
    const before = copyOf(buf, BEFORE_BUF)
    // The same frame in a buffer with other bytes around it.
    const other = copyOf(buf, OTHER_BUF)
    const fill = pick(rng, [0x00, 0x5a, 0xff, 0x11]) // never the 0xa5 around the first
    other.fill(fill, 0, frame)
    other.fill(fill ^ 0x33, frame + len)
    let n: number
    let n2: number
    try {
      n = r.answer(buf, frame, l3, len, room, ROUTER_MAC.hi, ROUTER_MAC.lo)
      n2 = r2.answer(other, frame, l3, len, room, ROUTER_MAC.hi, ROUTER_MAC.lo)
    } catch (err) {
      return fail('threw', `answer threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, payload)
    }
    if (!Number.isInteger(n) || n < 0 || n > Math.max(0, room)) fail('length', `answer returned ${n} with room ${room}`, payload)
    if (n !== n2 || r.lastRcode !== r2.lastRcode) fail('reads outside the frame', `${n}/${r.lastRcode} here, ${n2}/${r2.lastRcode} with other bytes around the frame`, payload)
    if (n > 0 && !Buffer.from(buf.subarray(frame, frame + n)).equals(Buffer.from(other.subarray(frame, frame + n)))) {
      fail('reads outside the frame', 'the reply differs with other bytes around the frame', payload)
    }
    // Nothing written outside [frame, frame + room).
    const end = frame + Math.max(0, Math.min(room, buf.length - frame))
    const same = (from: number, to: number): boolean => Buffer.from(buf.buffer, from, to - from).equals(Buffer.from(before.buffer, from, to - from))
    if (!same(0, frame) || !same(end, buf.length)) fail('writes outside the room', `bytes outside [frame, frame + ${room}) changed`, payload)
    if (n === 0) {
      seen.drops++
      if (r.lastRcode !== -1) fail('drop', `lastRcode ${r.lastRcode} after returning 0`, payload)
      return
    }
    seen.answered++
    if (r.dropped) fail('drop', 'dropped set beside an answer', payload)
    if (l3 - frame > 14) seen.tagged++
    if (a === null) return fail('answered', 'a reply to a frame without an IPv4 header', payload)
    checkReply(b, n, a, r, seen)
  })
  assertReached(seen.answered > N / 4 && seen.drops > N / 20, N, `answered ${seen.answered}, dropped ${seen.drops}`)
  for (const [name, code] of Object.entries(DnsRcode)) {
    if (code !== DnsRcode.ServFail) assertReached(seen.rcodes.has(code), N, `no ${name} reply`)
  }
  assertReached(seen.tc > 0 && seen.tagged > 0 && seen.edns > 0 && seen.records > N / 20, N,
    `TC ${seen.tc}, tagged ${seen.tagged}, EDNS ${seen.edns}, records ${seen.records}`)
})

/** A frame with the query `payload`, answered: the reply's DNS message, or null for a drop. */
function ask(r: DnsResponder, payload: Uint8Array): (dnsPacket.DecodedPacket & { rcode: string }) | null {
  const buf = new Uint8Array(BUF_LEN).fill(0xa5)
  const frame = 2
  const l3 = frame + 14
  const l4 = l3 + IPV4_HLEN_MIN
  ethWriteHeader(buf, frame, ROUTER_MAC.hi, ROUTER_MAC.lo, CLIENT_MAC.hi, CLIENT_MAC.lo, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + UDP_HLEN + payload.length, 1, true, 64, PROTO_UDP, CLIENT_IP, DNS_IP)
  udpWriteHeader(buf, l4, CLIENT_PORT, 53, UDP_HLEN + payload.length, 0)
  buf.set(payload, l4 + UDP_HLEN)
  udpFillChecksumV4(buf, l3, l4)
  const n = r.answer(buf, frame, l3, l4 + UDP_HLEN + payload.length - frame, BUF_LEN - frame, ROUTER_MAC.hi, ROUTER_MAC.lo)
  return n === 0 ? null : dnsPacket.decode(Buffer.from(buf.subarray(l4 + UDP_HLEN, frame + n))) as dnsPacket.DecodedPacket & { rcode: string }
}

const ptrQuery = (name: string): Uint8Array => dnsPacket.encode({ type: 'query', id: 7, flags: RD, questions: [{ name, type: 'PTR', class: 'IN' }] })

/**
 * Was a bug, fixed in dns.ts since (seed 0x5146c3b3): the reverse-name pattern took octets with
 * leading zeros, so "020.0.96.10.in-addr.arpa" (a different name, with no record) got the PTR of
 * 10.96.0.20. Expected: refused, as any in-addr.arpa name that is no ClusterIP.
 */
test('DnsResponder: an in-addr.arpa octet with a leading zero is another name, not the ClusterIP', () => {
  const r = responder()
  const ok = ask(r, ptrQuery('20.0.96.10.in-addr.arpa'))
  assert.equal(ok?.rcode, 'NOERROR')
  assert.deepEqual(ok?.answers?.map((a) => a.type === 'PTR' && a.data), ['web.default.svc.cluster.local'])
  for (const name of ['020.0.96.10.in-addr.arpa', '20.0.96.010.in-addr.arpa', '20.00.96.10.in-addr.arpa', '20.0.096.10.in-addr.arpa']) {
    const m = ask(r, ptrQuery(name))
    assert.equal(m?.rcode, 'REFUSED', name)
    assert.deepEqual(m?.answers, [], name)
  }
  assert.equal(ask(r, ptrQuery('0.0.96.10.in-addr.arpa'))?.rcode, 'REFUSED', 'a zero octet is still read (no service there)')
})

test('DnsResponder: record counts that cannot fit in the message are FORMERR, with the id', () => {
  const r = responder()
  const q = Buffer.from(dnsPacket.encode({ type: 'query', id: 0x4242, flags: RD, questions: [{ name: 'web.default.svc.cluster.local', type: 'A', class: 'IN' }] }))
  for (const [at, count] of [[6, 0xffff], [8, 0xffff], [10, 0xffff], [10, 1], [6, 1]] as const) {
    const bad = Buffer.from(q)
    putU16(bad, at, count)
    const m = ask(r, bad)
    assert.equal(m?.rcode, 'FORMERR', `count at ${at} = ${count}`)
    assert.equal(m?.id, 0x4242)
    assert.equal(r.lastRcode, DnsRcode.FormErr)
  }
  // One OPT record that is there (11 bytes) is read.
  const withOpt = Buffer.concat([q, Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0])])
  putU16(withOpt, 10, 1)
  assert.equal(ask(r, withOpt)?.rcode, 'NOERROR')
})
