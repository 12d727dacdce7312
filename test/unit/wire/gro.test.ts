/**
 * Receive-side coalescing: which TCP/IPv4 segments may start or join a merge
 * (groEligible, groCanAppend) and what groFinish makes of a merge. The round
 * trip cuts a super-frame with tsoSegment and merges it back as the datapath
 * does; the result must be the super-frame again, with a partial checksum and a
 * GSO virtio-net header.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { groCanAppend, groEligible, groFinish, vnetWriteForDelivery } from '../../../src/wire/gro'
import { tsoSegment } from '../../../src/wire/tso'
import { VNET_HLEN, vnetCompleteChecksum } from '../../../src/wire/vnet'
import { csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import {
  TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, TcpOpts, VnetFields,
  arpFrame, get16, ipv4HeaderOk, l4ChecksumOk, pattern, readVnet, tcpFrame, tsOption, udpFrame, view,
} from './frames'

// ---- groEligible ----

interface EligibleRow {
  name: string
  frame: Uint8Array
  /** Bytes of the frame passed as len (default all). */
  len?: number
  /** Header length (Ethernet + IP + TCP), or 0: not eligible. */
  want: number
}

const P100 = pattern(100)

const ELIGIBLE: EligibleRow[] = [
  { name: 'ACK with payload', frame: tcpFrame({ payload: P100 }), want: 54 },
  { name: 'PSH|ACK', frame: tcpFrame({ payload: P100, flags: TCP_PSH | TCP_ACK }), want: 54 },
  { name: 'ECE|CWR|ACK', frame: tcpFrame({ payload: P100, flags: TCP_ECE | TCP_CWR | TCP_ACK }), want: 54 },
  { name: 'with timestamps (TCP header 32)', frame: tcpFrame({ payload: P100, tcpOptions: tsOption(1, 2) }), want: 66 },
  { name: 'DF clear (not a fragment)', frame: tcpFrame({ payload: P100, df: false }), want: 54 },
  { name: 'SYN|ACK', frame: tcpFrame({ payload: P100, flags: TCP_SYN | TCP_ACK }), want: 0 },
  { name: 'RST|ACK', frame: tcpFrame({ payload: P100, flags: TCP_RST | TCP_ACK }), want: 0 },
  { name: 'URG|ACK', frame: tcpFrame({ payload: P100, flags: TCP_URG | TCP_ACK, urgent: 10 }), want: 0 },
  { name: 'FIN|ACK', frame: tcpFrame({ payload: P100, flags: TCP_FIN | TCP_ACK }), want: 0 },
  { name: 'no ACK (PSH only)', frame: tcpFrame({ payload: P100, flags: TCP_PSH }), want: 0 },
  { name: 'first fragment (MF)', frame: tcpFrame({ payload: P100, df: false, mf: true }), want: 0 },
  { name: 'later fragment (offset 185)', frame: tcpFrame({ payload: P100, df: false, fragOffset: 185 }), want: 0 },
  // The ack is chosen so that a parser ignoring IHL (TCP at IP + 20) would see data offset 5 and ACK.
  { name: 'IP options (IHL 6)', frame: tcpFrame({ payload: P100, ipOptions: Uint8Array.of(1, 1, 1, 0), ack: 0x50100000 }), want: 0 },
  { name: '802.1Q tagged', frame: tcpFrame({ payload: P100, vlan: 7 }), want: 0 },
  { name: 'no payload (pure ACK)', frame: tcpFrame({}), want: 0 },
  { name: 'no payload, with timestamps', frame: tcpFrame({ tcpOptions: tsOption(1, 2) }), want: 0 },
  // Payload bytes 4-5 are 0x50 0x10: read as TCP (at IP + 20) they would be data offset 5 and ACK.
  { name: 'UDP', frame: udpFrame({ payload: Uint8Array.from(P100, (b, i) => (i === 4 ? 0x50 : i === 5 ? 0x10 : b)) }), want: 0 },
  { name: 'TCP over IPv6', frame: tcpFrame({ v6: true, payload: P100 }), want: 0 },
  { name: 'Ethernet padding after the IP packet (total length < frame)', frame: tcpFrame({ payload: Uint8Array.of(1, 2) }), len: 60, want: 0 },
  { name: 'truncated below 54 bytes', frame: tcpFrame({ payload: P100 }), len: 53, want: 0 },
  { name: 'cut short of its IP total length', frame: tcpFrame({ payload: P100 }), len: 120, want: 0 },
]

for (const row of ELIGIBLE) {
  test(`groEligible: ${row.name} -> ${row.want}`, () => {
    let f = row.frame
    if (row.len !== undefined && row.len > f.length) { f = new Uint8Array(row.len); f.set(row.frame) } // zero padding
    assert.equal(groEligible(f, 0, row.len ?? f.length), row.want)
  })
}

test('groEligible reads the frame at its offset', () => {
  const f = tcpFrame({ payload: P100 })
  const buf = new Uint8Array(f.length + 20).fill(0xff)
  buf.set(f, 11)
  assert.equal(groEligible(buf, 11, f.length), 54)
})

// ---- groCanAppend ----

const BASE: TcpOpts = { payload: P100, seq: 1000, tcpOptions: tsOption(500, 600), id: 1 }
/** The segment after BASE: next sequence number, next IP id. */
const NEXT: TcpOpts = { ...BASE, seq: 1100, id: 2 }

interface AppendRow {
  name: string
  seg: TcpOpts
  /** The merge's first segment (default BASE). */
  first?: TcpOpts
  nextSeq?: number
  want: boolean
}

const APPEND: AppendRow[] = [
  { name: 'the next in-order segment', seg: NEXT, want: true },
  { name: 'next segment with PSH (it may end the merge)', seg: { ...NEXT, flags: TCP_ACK | TCP_PSH }, want: true },
  { name: 'next segment, shorter payload', seg: { ...NEXT, payload: pattern(10) }, want: true },
  { name: 'first had CWR, next has not', first: { ...BASE, flags: TCP_ACK | TCP_CWR }, seg: NEXT, want: true },
  { name: 'different destination MAC', seg: { ...NEXT, ethDst: '02:00:00:00:00:99' }, want: false },
  { name: 'different source MAC', seg: { ...NEXT, ethSrc: '02:00:00:00:00:98' }, want: false },
  { name: 'different source IP', seg: { ...NEXT, src: '10.0.0.9' }, want: false },
  { name: 'different destination IP', seg: { ...NEXT, dst: '10.0.0.9' }, want: false },
  { name: 'different source port', seg: { ...NEXT, sport: 40001 }, want: false },
  { name: 'different destination port', seg: { ...NEXT, dport: 5202 }, want: false },
  { name: 'sequence gap (a segment lost)', seg: { ...NEXT, seq: 1200 }, want: false },
  { name: 'retransmission (old sequence)', seg: { ...NEXT, seq: 1000 }, want: false },
  { name: 'sequence matches a different nextSeq only', seg: NEXT, nextSeq: 1101, want: false },
  { name: 'different ack', seg: { ...NEXT, ack: 778 }, want: false },
  { name: 'different window', seg: { ...NEXT, window: 503 }, want: false },
  { name: 'different timestamp option value', seg: { ...NEXT, tcpOptions: tsOption(501, 600) }, want: false },
  { name: 'options on one segment only', seg: { ...NEXT, tcpOptions: undefined }, want: false },
  { name: 'different TOS', seg: { ...NEXT, tos: 4 }, want: false },
  { name: 'different TTL', seg: { ...NEXT, ttl: 63 }, want: false },
  { name: 'different DF', seg: { ...NEXT, df: false }, want: false },
  { name: 'ECE on the new segment only', seg: { ...NEXT, flags: TCP_ACK | TCP_ECE }, want: false },
  { name: 'CWR on the new segment', seg: { ...NEXT, flags: TCP_ACK | TCP_CWR }, want: false },
  { name: 'ECE on the first only', first: { ...BASE, flags: TCP_ACK | TCP_ECE }, seg: NEXT, want: false },
]

for (const row of APPEND) {
  test(`groCanAppend: ${row.name} -> ${row.want}`, () => {
    const m = tcpFrame(row.first ?? BASE)
    const s = tcpFrame(row.seg)
    const mHdr = groEligible(m, 0, m.length)
    const sHdr = groEligible(s, 0, s.length)
    assert.ok(mHdr > 0 && sHdr > 0, 'both eligible')
    // The merge lives at an offset in its own buffer, as in the datapath's scratch slab.
    const mb = new Uint8Array(m.length + 40)
    mb.set(m, 23)
    assert.equal(groCanAppend(mb, 23, mHdr, row.nextSeq ?? 1100, s, 0, sHdr), row.want)
  })
}

// ---- groFinish and the round trip ----

/**
 * Merges frames as Datapath.groAdd does: copy the first behind a vnet header,
 * append each later payload after checking groCanAppend, then groFinish.
 * Returns the buffer (vnet header at 0) and the frame length.
 */
function merge(segs: Uint8Array[]): { out: Uint8Array; frameLen: number; hdr: number; mss: number } {
  const out = new Uint8Array(VNET_HLEN + 14 + 65535).fill(0xa5)
  const m = VNET_HLEN
  const hdr = groEligible(segs[0], 0, segs[0].length)
  assert.ok(hdr > 0, 'first segment eligible')
  out.set(segs[0], m)
  let frameLen = segs[0].length
  const mss = frameLen - hdr
  let nextSeq = (view(segs[0]).seq + mss) >>> 0
  let psh = false
  for (let k = 1; k < segs.length; k++) {
    const s = segs[k]
    const sHdr = groEligible(s, 0, s.length)
    assert.equal(sHdr, hdr, `segment ${k} eligible with the same header length`)
    assert.ok(groCanAppend(out, m, hdr, nextSeq, s, 0, sHdr), `segment ${k} appends`)
    out.set(s.subarray(sHdr), m + frameLen)
    frameLen += s.length - sHdr
    nextSeq = (nextSeq + s.length - sHdr) >>> 0
    psh = (view(s).flags & TCP_PSH) !== 0
  }
  groFinish(out, 0, frameLen, hdr, mss, segs.length, psh)
  return { out, frameLen, hdr, mss }
}

function segmentAll(frame: Uint8Array, mss: number): Uint8Array[] {
  const out = new Uint8Array(frame.length * 2 + 4096)
  const n = tsoSegment(frame, 0, frame.length, false, mss, out, 0, 0, 1024)
  assert.ok(n > 1, `segmented into ${n}`)
  const hdr = view(frame).payloadOff
  const segs: Uint8Array[] = []
  for (let k = 0; k < n; k++) {
    const chunk = Math.min(mss, frame.length - hdr - k * mss)
    segs.push(out.slice(k * (hdr + mss), k * (hdr + mss) + hdr + chunk))
  }
  return segs
}

const ROUND_TRIPS: { name: string; opts: TcpOpts; mss: number }[] = [
  { name: '20000 bytes at MSS 1448, PSH on the super-frame', opts: { payload: pattern(20000, 3), flags: TCP_ACK | TCP_PSH, seq: 0xffff0000, id: 65530 }, mss: 1448 },
  { name: 'timestamps, CWR|ECE, MSS 1436', opts: { payload: pattern(30001, 4), flags: TCP_ACK | TCP_CWR | TCP_ECE, tcpOptions: tsOption(9, 8), tos: 0x02 }, mss: 1436 },
  { name: 'a full 64 KiB IPv4 packet (65495 payload) at MSS 8948', opts: { payload: pattern(65495, 5), df: false }, mss: 8948 },
  { name: 'two segments, the second one byte', opts: { payload: pattern(1449, 6) }, mss: 1448 },
]

for (const rt of ROUND_TRIPS) {
  test(`GRO round trip: tsoSegment then merge gives the super-frame back: ${rt.name}`, () => {
    const orig = tcpFrame(rt.opts)
    const ov = view(orig)
    const segs = segmentAll(orig, rt.mss)
    for (const s of segs) assert.ok(l4ChecksumOk(s), 'segments verify before the merge')
    const { out, frameLen, hdr, mss } = merge(segs)
    assert.equal(hdr, ov.payloadOff)
    assert.equal(mss, rt.mss)
    assert.equal(frameLen, orig.length)
    const merged = out.slice(VNET_HLEN, VNET_HLEN + frameLen)
    // Everything but the TCP checksum field equals the super-frame (IP id and
    // total length, header checksum, flags, sequence number included).
    const csumAt = ov.l4Off + 16
    const a = merged.slice()
    const b = orig.slice()
    a.fill(0, csumAt, csumAt + 2)
    b.fill(0, csumAt, csumAt + 2)
    assert.deepEqual(a, b)
    assert.ok(ipv4HeaderOk(merged), 'IPv4 header checksum')
    assert.deepEqual(readVnet(out, 0), {
      flags: 1, // VIRTIO_NET_HDR_F_NEEDS_CSUM
      gsoType: 1, // VIRTIO_NET_HDR_GSO_TCPV4
      hdrLen: ov.payloadOff,
      gsoSize: rt.mss,
      csumStart: 34,
      csumOffset: 16,
    })
    // The partial checksum: the folded pseudo-header sum (not complemented).
    assert.equal(get16(merged, csumAt), csumFold(csumPseudoV4(0x0a000001, 0x0a000002, 6, frameLen - 34)))
    // Completing it as the receiving kernel would gives a checksum that verifies.
    assert.equal(vnetCompleteChecksum(out, VNET_HLEN, frameLen, 34, 16), true)
    const done = out.slice(VNET_HLEN, VNET_HLEN + frameLen)
    assert.ok(l4ChecksumOk(done), 'completed checksum verifies')
    const want = get16(orig, csumAt)
    assert.equal(get16(done, csumAt), want === 0 ? 0xffff : want, 'and equals the super-frame\'s')
  })
}

test('groFinish with one segment leaves the frame as it came and writes a "no offload" header', () => {
  const f = tcpFrame({ payload: P100, flags: TCP_ACK })
  const out = new Uint8Array(VNET_HLEN + f.length).fill(0xa5)
  out.set(f, VNET_HLEN)
  groFinish(out, 0, f.length, 54, 100, 1, true)
  assert.deepEqual(Array.from(out.subarray(0, VNET_HLEN)), new Array(VNET_HLEN).fill(0))
  assert.deepEqual(out.subarray(VNET_HLEN), f)
})

test('groFinish at an offset writes only [vnet, vnet + 10 + frameLen)', () => {
  const segs = segmentAll(tcpFrame({ payload: pattern(3000, 7) }), 1000)
  const { out, frameLen } = merge(segs)
  const at = 17
  const big = new Uint8Array(at + VNET_HLEN + frameLen + 9).fill(0xa5)
  big.set(segs[0], at + VNET_HLEN)
  big.set(out.subarray(VNET_HLEN + segs[0].length, VNET_HLEN + frameLen), at + VNET_HLEN + segs[0].length)
  groFinish(big, at, frameLen, 54, 1000, 3, false)
  assert.deepEqual(big.subarray(at, at + VNET_HLEN + frameLen), out.subarray(0, VNET_HLEN + frameLen))
  assert.ok(big.subarray(0, at).every((b) => b === 0xa5))
  assert.ok(big.subarray(at + VNET_HLEN + frameLen).every((b) => b === 0xa5))
})

// ---- vnetWriteForDelivery: the header of a single frame from the underlay ----

const NONE: Required<VnetFields> = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }
const partialAt = (csumStart: number, csumOffset: number): Required<VnetFields> => ({ ...NONE, flags: 1, csumStart, csumOffset })

function corruptCsum(f: Uint8Array): Uint8Array {
  const c = f.slice()
  c[14 + 20 + 16] ^= 0x40
  return c
}

const DELIVERY: { name: string; frame: Uint8Array; frameLen?: number; want: Required<VnetFields> }[] = [
  { name: 'TCP with a full checksum', frame: tcpFrame({ payload: P100 }), want: NONE },
  { name: 'TCP with a partial checksum (a Linux sender over a veth)', frame: tcpFrame({ payload: P100, csum: 'partial' }), want: partialAt(34, 16) },
  { name: 'UDP with a partial checksum', frame: udpFrame({ payload: P100, csum: 'partial' }), want: partialAt(34, 6) },
  { name: 'partial behind IP options', frame: tcpFrame({ payload: P100, csum: 'partial', ipOptions: Uint8Array.of(1, 1, 1, 0) }), want: partialAt(38, 16) },
  { name: 'partial with Ethernet padding after the packet', frame: (() => { const f = tcpFrame({ payload: Uint8Array.of(7), csum: 'partial' }); const p = new Uint8Array(60); p.set(f); return p })(), want: partialAt(34, 16) },
  { name: 'UDP without a checksum (0)', frame: udpFrame({ payload: P100, csum: 0 }), want: NONE },
  { name: 'TCP with a wrong checksum that is not the pseudo-header sum', frame: corruptCsum(tcpFrame({ payload: P100 })), want: NONE },
  { name: 'TCP over IPv6 with a partial checksum (only IPv4 is recognised)', frame: tcpFrame({ v6: true, payload: P100, csum: 'partial' }), want: NONE },
  { name: 'a fragment', frame: tcpFrame({ payload: P100, csum: 'partial', df: false, mf: true }), want: NONE },
  { name: 'ARP', frame: arpFrame({ tpa: '10.0.0.2' }), want: NONE },
  { name: 'cut short of its total length', frame: tcpFrame({ payload: P100, csum: 'partial' }), frameLen: 100, want: NONE },
]

for (const row of DELIVERY) {
  test(`vnetWriteForDelivery: ${row.name}`, () => {
    const len = row.frameLen ?? row.frame.length
    const out = new Uint8Array(VNET_HLEN + len).fill(0xa5)
    out.set(row.frame.subarray(0, len), VNET_HLEN)
    vnetWriteForDelivery(out, 0, len)
    assert.deepEqual(readVnet(out, 0), row.want)
    assert.deepEqual(out.subarray(VNET_HLEN), row.frame.subarray(0, len), 'the frame is not touched')
  })
}
