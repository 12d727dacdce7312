/**
 * tsoSegment: GSO super-frames (TCPv4, TCPv6, UDP/USO) cut into segments, as a
 * NIC or Linux's tcp_gso_segment / __udp_gso_segment would. Frames are built by
 * hand in frames.ts; every segment is checked field by field and its checksums
 * are recomputed from scratch.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TSO, tsoCount, tsoSegment } from '../../../src/wire/tso'
import { Malformed } from '../../../src/wire/malformed'
import { csumAdd, csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import {
  TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TcpOpts, UdpOpts,
  arpFrame, concatBytes, get16, ipv4HeaderOk, l4ChecksumOk, pattern, tcpFrame, tsOption, udpFrame, view,
} from './frames'
import { below, mulberry32 } from './fuzz'

const GUARD = 0xa5

interface Run {
  out: Uint8Array
  n: number
}

/** Segments into a GUARD-filled buffer `outOff + extent + 16` bytes long. */
function run(frame: Uint8Array, udp: boolean, gso: number, prefix = 0, outOff = 0, maxSegments = 1024): Run {
  const v = view(frame)
  const payloadLen = frame.length - v.payloadOff
  const n = Math.ceil(payloadLen / gso)
  const extent = (n - 1) * (prefix + v.payloadOff + gso) + prefix + v.payloadOff + (payloadLen - (n - 1) * gso)
  const out = new Uint8Array(outOff + extent + 16).fill(GUARD)
  return { out, n: tsoSegment(frame, 0, frame.length, udp, gso, out, outOff, prefix, maxSegments) }
}

/** Header bytes with the fields segmentation rewrites zeroed, for comparing the rest. */
function fixedHeaderBytes(f: Uint8Array): Uint8Array {
  const v = view(f)
  const h = f.slice(0, v.payloadOff)
  const zero = (o: number, len: number): void => { h.fill(0, o, o + len) }
  if (v.v6) zero(v.ipOff + 4, 2)
  else { zero(v.ipOff + 2, 4); zero(v.ipOff + 10, 2) } // total length + id, header checksum
  if (v.proto === 6) { zero(v.l4Off + 4, 4); zero(v.l4Off + 13, 1); zero(v.l4Off + 16, 2) } // seq, flags, checksum
  else zero(v.l4Off + 4, 4) // UDP length + checksum
  return h
}

/**
 * Checks every property of the segments of `frame` in `out`, and that nothing
 * was written in the prefixes or past the last segment. Returns the segments.
 */
function checkSegments(frame: Uint8Array, udp: boolean, gso: number, r: Run, prefix: number, outOff: number, what: string): Uint8Array[] {
  const sv = view(frame)
  const hdrLen = sv.payloadOff
  const payloadLen = frame.length - hdrLen
  const n = tsoCount(payloadLen, gso)
  assert.equal(r.n, n, `${what}: segment count`)
  assert.equal(TSO.hdrLen, hdrLen, `${what}: TSO.hdrLen`)
  assert.equal(TSO.payloadLen, payloadLen, `${what}: TSO.payloadLen`)
  assert.equal(TSO.l4Off, sv.l4Off, `${what}: TSO.l4Off`)
  assert.equal(TSO.lastLen, hdrLen + payloadLen - (n - 1) * gso, `${what}: TSO.lastLen`)
  const stride = prefix + hdrLen + gso
  const fixed = fixedHeaderBytes(frame)
  const segs: Uint8Array[] = []
  let written = outOff
  for (let i = 0; i < outOff; i++) assert.equal(r.out[i], GUARD, `${what}: byte ${i} before outOff written`)
  for (let k = 0; k < n; k++) {
    const chunk = k === n - 1 ? payloadLen - k * gso : gso
    const start = outOff + k * stride
    for (let i = start; i < start + prefix; i++) assert.equal(r.out[i], GUARD, `${what}: prefix byte ${i - start} of segment ${k} written`)
    const seg = r.out.slice(start + prefix, start + prefix + hdrLen + chunk)
    written = start + prefix + seg.length
    const v = view(seg)
    const at = `${what}: segment ${k}/${n}`
    assert.deepEqual(fixedHeaderBytes(seg), fixed, `${at}: header bytes other than the rewritten fields`)
    assert.deepEqual(v.payload, frame.subarray(hdrLen + k * gso, hdrLen + k * gso + chunk), `${at}: payload`)
    if (sv.v6) {
      assert.equal(v.ipLenField, v.l4Hlen + chunk, `${at}: IPv6 payload length`)
    } else {
      assert.equal(v.ipLenField, v.ipHlen + v.l4Hlen + chunk, `${at}: IPv4 total length`)
      assert.equal(v.ipId, (sv.ipId + k) & 0xffff, `${at}: IPv4 id`)
      assert.ok(ipv4HeaderOk(seg), `${at}: IPv4 header checksum`)
    }
    if (udp) {
      assert.equal(v.udpLen, 8 + chunk, `${at}: UDP length`)
      assert.notEqual(v.l4Csum, 0, `${at}: UDP checksum 0 means "none" (RFC 768)`)
    } else {
      assert.equal(v.seq, (sv.seq + k * gso) >>> 0, `${at}: sequence number`)
      let f = sv.flags
      if (k !== n - 1) f &= ~(TCP_FIN | TCP_PSH)
      if (k !== 0) f &= ~TCP_CWR
      assert.equal(v.flags, f, `${at}: flags`)
    }
    assert.ok(l4ChecksumOk(seg), `${at}: L4 checksum verifies`)
    segs.push(seg)
  }
  for (let i = written; i < r.out.length; i++) assert.equal(r.out[i], GUARD, `${what}: byte ${i - written} past the last segment written`)
  assert.deepEqual(concatBytes(...segs.map((s) => view(s).payload)), frame.subarray(hdrLen), `${what}: payloads reassemble`)
  return segs
}

interface Row {
  name: string
  frame: Uint8Array
  udp?: boolean
  gso: number
  prefix?: number
  outOff?: number
  /** Frame length of each segment. */
  sizes: number[]
  ids?: number[]
  seqs?: number[]
  flags?: number[]
  udpLens?: number[]
}

const ROWS: Row[] = [
  {
    // 14 + 20 + 20 = 54 bytes of headers; 3000 = 3 x 1000.
    name: 'TCPv4, payload a multiple of gsoSize',
    frame: tcpFrame({ payload: pattern(3000), seq: 1000, id: 7, flags: TCP_ACK | TCP_PSH }),
    gso: 1000,
    sizes: [1054, 1054, 1054], seqs: [1000, 2000, 3000], ids: [7, 8, 9], flags: [TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH],
  },
  {
    name: 'TCPv4, last segment short',
    frame: tcpFrame({ payload: pattern(2500), seq: 5 }),
    gso: 1000,
    sizes: [1054, 1054, 554], seqs: [5, 1005, 2005],
  },
  {
    // Nothing to cut: the one segment keeps every flag (it is first and last).
    name: 'TCPv4, payload below gsoSize: one segment, flags kept',
    frame: tcpFrame({ payload: pattern(700), flags: TCP_CWR | TCP_ECE | TCP_ACK | TCP_PSH | TCP_FIN }),
    gso: 1000,
    sizes: [754], flags: [TCP_CWR | TCP_ECE | TCP_ACK | TCP_PSH | TCP_FIN],
  },
  {
    // tcp_gso_segment: CWR on the first only, FIN and PSH on the last only, ECE on all.
    name: 'TCPv4, CWR only first, PSH/FIN only last, ECE everywhere',
    frame: tcpFrame({ payload: pattern(3001), flags: TCP_CWR | TCP_ECE | TCP_ACK | TCP_PSH | TCP_FIN }),
    gso: 1000,
    sizes: [1054, 1054, 1054, 55],
    flags: [TCP_CWR | TCP_ECE | TCP_ACK, TCP_ECE | TCP_ACK, TCP_ECE | TCP_ACK, TCP_ECE | TCP_ACK | TCP_PSH | TCP_FIN],
  },
  {
    name: 'TCPv4, IP id wraps from 65535 to 0',
    frame: tcpFrame({ payload: pattern(4000), id: 65534 }),
    gso: 1000,
    sizes: [1054, 1054, 1054, 1054], ids: [65534, 65535, 0, 1],
  },
  {
    name: 'TCPv4, sequence number wraps at 2^32',
    frame: tcpFrame({ payload: pattern(3000), seq: 0xfffffc00 }),
    gso: 1000,
    sizes: [1054, 1054, 1054], seqs: [0xfffffc00, 0xffffffe8, 976],
  },
  {
    // IHL 6 (a 4-byte NOP/EOL option) and RFC 7323 timestamps: 14 + 24 + 32 = 70.
    name: 'TCPv4 with IP options and TCP timestamps',
    frame: tcpFrame({ payload: pattern(5000), ipOptions: Uint8Array.of(1, 1, 1, 0), tcpOptions: tsOption(0x01020304, 0x0a0b0c0d) }),
    gso: 1448,
    sizes: [1518, 1518, 1518, 70 + 656],
  },
  {
    name: 'TCPv4 behind an 802.1Q tag (18-byte Ethernet header)',
    frame: tcpFrame({ payload: pattern(2000), vlan: 42 }),
    gso: 1448,
    sizes: [58 + 1448, 58 + 552],
  },
  {
    // 14 + 40 + 20 = 74.
    name: 'TCPv6',
    frame: tcpFrame({ v6: true, payload: pattern(4000), seq: 77, flags: TCP_ACK | TCP_PSH }),
    gso: 1440,
    sizes: [1514, 1514, 74 + 1120], seqs: [77, 1517, 2957], flags: [TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH],
  },
  {
    name: 'TCPv6 with timestamps, odd gsoSize',
    frame: tcpFrame({ v6: true, payload: pattern(2500), tcpOptions: tsOption(1, 2) }),
    gso: 999,
    sizes: [86 + 999, 86 + 999, 86 + 502],
  },
  {
    // 14 + 20 + 8 = 42; USO: each segment a datagram with its own length.
    name: 'UDPv4 (USO)',
    frame: udpFrame({ payload: pattern(3000), id: 100 }),
    udp: true,
    gso: 1200,
    sizes: [1242, 1242, 642], udpLens: [1208, 1208, 608], ids: [100, 101, 102],
  },
  {
    name: 'UDPv6 (USO)',
    frame: udpFrame({ v6: true, payload: pattern(2000) }),
    udp: true,
    gso: 700,
    sizes: [762, 762, 662], udpLens: [708, 708, 608],
  },
  {
    // The datapath's layout: 8 bytes left free in front of each segment for VXLAN.
    name: 'UDPv4 with an 8-byte prefix at an odd outOff',
    frame: udpFrame({ payload: pattern(2500) }),
    udp: true,
    gso: 1000,
    prefix: 8,
    outOff: 3,
    sizes: [1042, 1042, 542],
  },
  {
    name: 'TCPv4 with an 8-byte prefix',
    frame: tcpFrame({ payload: pattern(3500) }),
    gso: 1448,
    prefix: 8,
    sizes: [1502, 1502, 54 + 604],
  },
  {
    name: 'TCPv4, 1-byte payload',
    frame: tcpFrame({ payload: Uint8Array.of(0x42) }),
    gso: 500,
    sizes: [55],
  },
]

for (const row of ROWS) {
  test(`tsoSegment: ${row.name}`, () => {
    const prefix = row.prefix ?? 0
    const outOff = row.outOff ?? 0
    const r = run(row.frame, row.udp ?? false, row.gso, prefix, outOff)
    const segs = checkSegments(row.frame, row.udp ?? false, row.gso, r, prefix, outOff, row.name)
    assert.deepEqual(segs.map((s) => s.length), row.sizes, 'segment sizes')
    if (row.ids) assert.deepEqual(segs.map((s) => view(s).ipId), row.ids, 'IPv4 ids')
    if (row.seqs) assert.deepEqual(segs.map((s) => view(s).seq), row.seqs, 'sequence numbers')
    if (row.flags) assert.deepEqual(segs.map((s) => view(s).flags), row.flags, 'TCP flags')
    if (row.udpLens) assert.deepEqual(segs.map((s) => view(s).udpLen), row.udpLens, 'UDP lengths')
  })
}

test('tsoSegment: a super-frame in the middle of a larger buffer is read only from [frame, frame+len)', () => {
  const f = tcpFrame({ payload: pattern(2100) })
  const buf = new Uint8Array(f.length + 37).fill(0x5a)
  buf.set(f, 29)
  const plain = run(f, false, 1000)
  const out = new Uint8Array(plain.out.length).fill(GUARD)
  assert.equal(tsoSegment(buf, 29, f.length, false, 1000, out, 0, 0, 1024), 3)
  assert.deepEqual(out, plain.out)
})

test('tsoSegment: a UDP segment whose checksum computes to 0 carries 0xffff (RFC 768)', () => {
  // Pick the last two payload bytes so the last segment's sum folds to 0xffff,
  // i.e. its computed checksum is 0, which UDP must send as 0xffff.
  const payload = pattern(2400)
  payload[2398] = 0
  payload[2399] = 0
  const probe = run(udpFrame({ payload }), true, 1000)
  const last = probe.out.slice(2 * 1042, 2 * 1042 + 442)
  const v = view(last)
  last.fill(0, v.l4Off + 6, v.l4Off + 8)
  const sum = csumFold(csumAdd(last, v.l4Off, v.l4Len, csumPseudoV4(0x0a000001, 0x0a000002, 17, v.l4Len)))
  const w = 0xffff - sum
  payload[2398] = w >>> 8
  payload[2399] = w & 255
  const frame = udpFrame({ payload })
  const r = run(frame, true, 1000)
  const segs = checkSegments(frame, true, 1000, r, 0, 0, 'zero-sum UDP')
  assert.equal(view(segs[2]).l4Csum, 0xffff)
})

interface BadRow {
  name: string
  frame: Uint8Array
  /** Bytes of `frame` passed as len (default all). */
  len?: number
  udp?: boolean
  gso?: number
  maxSegments?: number
  /** Out buffer length (default: plenty). */
  outLen?: number
  /** The code; undefined: any Malformed code will do. */
  want?: Malformed
}

function withByte(f: Uint8Array, off: number, value: number): Uint8Array {
  const c = f.slice()
  c[off] = value
  return c
}

const TCP4 = tcpFrame({ payload: pattern(3000) })
const UDP4 = udpFrame({ payload: pattern(3000) })
/** Segments of TCP4 at gso 1000 end at 2 * 1054 + 1054 = 3162 bytes. */
const TCP4_EXTENT = 3 * 1054

const BAD: BadRow[] = [
  { name: 'runt: 10 bytes', frame: TCP4.subarray(0, 10), want: Malformed.Truncated },
  { name: 'IPv4 header cut at 19 bytes', frame: TCP4.subarray(0, 14 + 19), want: Malformed.Truncated },
  { name: 'version 6 under EtherType IPv4', frame: withByte(TCP4, 14, 0x65), want: Malformed.BadHeaderLength },
  // The ack makes the bytes a parser taking IHL 4 at its word would read as TCP look valid (data offset 5).
  { name: 'IPv4 IHL 4', frame: withByte(tcpFrame({ payload: pattern(3000), ack: 0x50100000 }), 14, 0x44), want: Malformed.BadHeaderLength },
  { name: 'TCP header cut at 19 bytes', frame: TCP4.subarray(0, 14 + 20 + 19), want: Malformed.Truncated },
  { name: 'TCP data offset 4', frame: withByte(TCP4, 14 + 20 + 12, 0x40), want: Malformed.BadHeaderLength },
  { name: 'TCP data offset 15 with 10 bytes after the base header', frame: withByte(tcpFrame({ payload: pattern(10) }), 14 + 20 + 12, 0xf0), want: Malformed.BadLength },
  { name: 'IPv4 header cut at 19 bytes, as UDP', frame: UDP4.subarray(0, 14 + 19), udp: true, want: Malformed.Truncated },
  { name: 'IPv6 header cut at 39 bytes, as UDP', frame: udpFrame({ v6: true, payload: pattern(100) }).subarray(0, 14 + 39), udp: true, want: Malformed.Truncated },
  { name: 'IPv6 header cut at 39 bytes', frame: tcpFrame({ v6: true, payload: pattern(100) }).subarray(0, 14 + 39), want: Malformed.Truncated },
  { name: 'IPv6 with a hop-by-hop extension header', frame: tcpFrame({ v6: true, payload: pattern(3000), nextHeader: 0 }), want: Malformed.BadLength },
  { name: 'TCP frame segmented as UDP', frame: TCP4, udp: true, want: Malformed.BadLength },
  { name: 'UDP frame segmented as TCP', frame: UDP4, udp: false, want: Malformed.BadLength },
  { name: 'ICMP under IPv4', frame: withByte(TCP4, 14 + 9, 1), want: Malformed.BadLength },
  { name: 'ARP', frame: arpFrame({ tpa: '10.0.0.2' }), want: Malformed.BadLength },
  { name: 'headers only, no payload', frame: tcpFrame({}), want: Malformed.BadLength },
  { name: 'UDP header cut at 4 bytes', frame: UDP4.subarray(0, 14 + 20 + 4), udp: true, want: Malformed.BadLength },
  { name: 'gsoSize 0', frame: TCP4, gso: 0, want: Malformed.BadLength },
  { name: 'gsoSize -1', frame: TCP4, gso: -1, want: Malformed.BadLength },
  { name: 'needs 3 segments, maxSegments 2', frame: TCP4, maxSegments: 2, want: Malformed.BadLength },
  { name: 'out buffer one byte short', frame: TCP4, outLen: TCP4_EXTENT - 1, want: Malformed.BadLength },
  // As every *Check in wire/: never trust len past the buffer. (Which code is a
  // matter of taste; reading the bytes that are not there is not.)
  { name: 'len past the end of buf', frame: TCP4, len: TCP4.length + 100 },
]

for (const row of BAD) {
  test(`tsoSegment refuses: ${row.name}`, () => {
    const out = new Uint8Array(row.outLen ?? 8192).fill(GUARD)
    const got = tsoSegment(row.frame, 0, row.len ?? row.frame.length, row.udp ?? false, row.gso ?? 1000, out, 0, 0, row.maxSegments ?? 1024)
    if (row.want !== undefined) assert.equal(got, row.want, `want ${Malformed[row.want]}, got ${Malformed[got] ?? got}`)
    else assert.ok(got < 0 && Malformed[got] !== undefined, `want a Malformed code, got ${got}`)
    assert.ok(out.every((b) => b === GUARD), 'nothing written to out')
  })
}

test('tsoSegment: the bounds just inside the limits pass (maxSegments = n, out = exact extent)', () => {
  const exact = new Uint8Array(TCP4_EXTENT).fill(GUARD)
  assert.equal(tsoSegment(TCP4, 0, TCP4.length, false, 1000, exact, 0, 0, 3), 3)
  assert.equal(TSO.lastLen, 1054)
  // With a prefix and an offset the extent moves by outOff + n * prefix.
  const shifted = new Uint8Array(5 + TCP4_EXTENT + 3 * 8).fill(GUARD)
  assert.equal(tsoSegment(TCP4, 0, TCP4.length, false, 1000, shifted, 5, 8, 3), 3)
  const short = new Uint8Array(5 + TCP4_EXTENT + 3 * 8 - 1).fill(GUARD)
  assert.equal(tsoSegment(TCP4, 0, TCP4.length, false, 1000, short, 5, 8, 3), Malformed.BadLength)
  assert.ok(short.every((b) => b === GUARD))
})

test('tsoSegment property: 2000 random super-frames (v4/v6, TCP/UDP, payload 1..65000, gsoSize 500..9000)', () => {
  const rng = mulberry32(0x7500)
  const pool = pattern(1 << 17, 99)
  const counts = { v4tcp: 0, v6tcp: 0, v4udp: 0, v6udp: 0, multi: 0 }
  for (let c = 0; c < 2000; c++) {
    const v6 = (rng() & 1) === 1
    const udp = (rng() & 2) === 2
    const len = 1 + below(rng, 65000)
    const gso = 500 + below(rng, 8501)
    const start = below(rng, pool.length - len)
    const payload = pool.subarray(start, start + len)
    const vlan = below(rng, 5) === 0 ? below(rng, 4095) : undefined
    const l3: TcpOpts & UdpOpts = { v6, payload, vlan, id: rng() & 0xffff, ttl: 1 + below(rng, 255), tos: rng() & 0xff }
    let frame: Uint8Array
    if (udp) {
      frame = udpFrame(l3)
    } else {
      const flags = TCP_ACK | (rng() & (TCP_PSH | TCP_FIN | TCP_CWR | TCP_ECE))
      const tcpOptions = (rng() & 1) === 1 ? tsOption(rng(), rng()) : undefined
      frame = tcpFrame({ ...l3, seq: rng(), ack: rng(), flags, window: rng() & 0xffff, tcpOptions })
    }
    const prefix = below(rng, 17)
    const outOff = below(rng, 8)
    const what = `case ${c}: ${v6 ? 'v6' : 'v4'} ${udp ? 'udp' : 'tcp'} payload ${len} gso ${gso} prefix ${prefix} outOff ${outOff}`
    const r = run(frame, udp, gso, prefix, outOff)
    checkSegments(frame, udp, gso, r, prefix, outOff, what)
    counts[`${v6 ? 'v6' : 'v4'}${udp ? 'udp' : 'tcp'}` as 'v4tcp']++
    if (r.n > 1) counts.multi++
  }
  // The generator reached every kind, mostly with several segments.
  for (const k of ['v4tcp', 'v6tcp', 'v4udp', 'v6udp'] as const) assert.ok(counts[k] > 400, `${k}: ${counts[k]}`)
  assert.ok(counts.multi > 1800, `multi-segment cases: ${counts.multi}`)
})

test('tsoCount is ceil(payload / gsoSize)', () => {
  assert.deepEqual([tsoCount(1, 1000), tsoCount(1000, 1000), tsoCount(1001, 1000), tsoCount(65000, 500)], [1, 1, 2, 130])
})

// Guard against a fixture bug making every row vacuous: the builders' own frames verify.
test('fixtures: built frames carry verifying checksums', () => {
  for (const f of [TCP4, UDP4, tcpFrame({ v6: true, payload: pattern(33) }), udpFrame({ v6: true, payload: pattern(33) })]) {
    assert.ok(l4ChecksumOk(f))
    assert.ok(ipv4HeaderOk(f))
  }
  assert.equal(get16(TCP4, 14 + 2), 20 + 20 + 3000)
})
