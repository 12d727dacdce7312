import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CaptureHook, CapturePoint } from '../../../src/datapath/datapath'
import {
  CAPTURE_MIN_BUFFER_BYTES, CaptureEnd, CaptureHub, CaptureOptions, POD_POINTS, UNDERLAY_HLEN, UNDERLAY_POINTS,
  pointBit, writeUnderlayHeaders,
} from '../../../src/observe/capture'
import { compileFilter } from '../../../src/observe/filter'
import { PCAP_FILE_HLEN, PCAP_REC_HLEN, PcapFramer, PcapRecord } from '../../../src/observe/pcap'
import { ipv4Parse } from '../../../src/wire/addr'
import { csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import { ETH_HLEN } from '../../../src/wire/ethernet'
import { IPV4_HLEN_MIN, PROTO_TCP, ipv4HeaderChecksumOk } from '../../../src/wire/ipv4'
import { TCP_OFF_CSUM, tcpChecksumOkV4 } from '../../../src/wire/tcp'
import { VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HLEN, vnetWrite } from '../../../src/wire/vnet'
import { VXLAN_HLEN, vxlanWrite } from '../../../src/wire/vxlan'
import { filled, hex, toHex } from '../wire/bytes'
import { tcp4, udp4 } from './frames'

const LOCAL = ipv4Parse('192.168.250.1')
const PEER = ipv4Parse('192.168.250.2')
/** 2023-11-14T22:13:20.000250Z: the injected wall clock. */
const NOW_MS = 1700000000000.25

// Outer headers for 58 bytes of VXLAN payload from 192.168.250.1:40000 to 192.168.250.2:4789.
const OUTER_TX = hex(`
  02 00 c0 a8 fa 02   # dst MAC 02:00:<192.168.250.2> (placeholder)
  02 00 c0 a8 fa 01   # src MAC 02:00:<192.168.250.1>
  08 00               # IPv4
  45 00 00 56         # version 4, IHL 5, TOS 0, total length 20 + 8 + 58 = 86
  00 00 00 00         # ID 0, no flags, offset 0
  40 11 05 42         # TTL 64, UDP, header checksum 0x0542
  c0 a8 fa 01         # src 192.168.250.1
  c0 a8 fa 02         # dst 192.168.250.2
  9c 40 12 b5         # UDP 40000 > 4789
  00 42 00 00         # UDP length 8 + 58 = 66, checksum 0 (none)
`)

test('outer headers: every byte, checksum right, UDP checksum 0', () => {
  const buf = filled(UNDERLAY_HLEN + 2)
  assert.equal(writeUnderlayHeaders(buf, 1, LOCAL, 40000, PEER, 4789, 58), UNDERLAY_HLEN)
  assert.equal(UNDERLAY_HLEN, 42)
  assert.equal(toHex(buf, 1, UNDERLAY_HLEN), toHex(OUTER_TX))
  assert.ok(ipv4HeaderChecksumOk(buf, 1 + ETH_HLEN))
  assert.deepEqual([buf[0], buf[UNDERLAY_HLEN + 1]], [0xa5, 0xa5])
})

/** A target (the datapath's one field) and a sink that records what a capture writes. */
function rig(opts: Partial<CaptureOptions> & { points: number }, sinkOpts: { pauseAfter?: number } = {}) {
  const target: { capture: CaptureHook | null } = { capture: null }
  const hub = new CaptureHub(target, LOCAL)
  const chunks: Buffer[] = []
  const ends: CaptureEnd[] = []
  let writes = 0
  const session = hub.start({ now: () => NOW_MS, ...opts }, {
    write: (c) => { chunks.push(Buffer.from(c)); writes++; return sinkOpts.pauseAfter === undefined || writes <= sinkOpts.pauseAfter },
    end: (r) => { ends.push(r) },
  })
  const records = (): PcapRecord[] => {
    const out: PcapRecord[] = []
    const f = new PcapFramer()
    f.push(Buffer.concat(chunks), (r) => out.push({ ...r, data: Buffer.from(r.data) }))
    assert.equal(f.pendingBytes, 0, 'the stream holds whole records only')
    return out
  }
  return { target, hub, session, chunks, ends, records }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

/** [VXLAN(vni) | frame] at offset `off` of a slab, as the datapath hands it over. */
function vxlanIn(frame: Uint8Array, vni: number, off = 64): { buf: Uint8Array; off: number; len: number } {
  const buf = filled(off + VXLAN_HLEN + frame.length + 16)
  vxlanWrite(buf, off, vni)
  buf.set(frame, off + VXLAN_HLEN)
  return { buf, off, len: VXLAN_HLEN + frame.length }
}

test('underlay tx: outer headers from us to the peer, then the VXLAN datagram', async () => {
  const r = rig({ points: UNDERLAY_POINTS })
  const inner = udp4('10.244.1.2', '10.244.2.2', 1000, 2000, 8) // 14 + 20 + 8 + 8 = 50 bytes
  const d = vxlanIn(inner, 42)
  r.target.capture!.frame(CapturePoint.UnderlayTx, 0, 42, d.buf, d.off, d.len, -1, PEER, 4789, 40000)
  await tick()
  const [rec] = r.records()
  assert.equal(toHex(rec.data, 0, UNDERLAY_HLEN), toHex(OUTER_TX))
  assert.equal(toHex(rec.data, UNDERLAY_HLEN), toHex(d.buf, d.off, d.len))
  assert.deepEqual([rec.tsSec, rec.tsFrac, rec.origLen], [1700000000, 250, UNDERLAY_HLEN + 58])
})

test('underlay rx: outer headers from the peer to us (reversed)', async () => {
  const r = rig({ points: UNDERLAY_POINTS })
  const d = vxlanIn(udp4('10.244.2.2', '10.244.1.2', 2000, 1000, 8), 42)
  r.target.capture!.frame(CapturePoint.UnderlayRx, 0, 42, d.buf, d.off, d.len, -1, PEER, 51000, 4789)
  await tick()
  const [rec] = r.records()
  const want = filled(UNDERLAY_HLEN)
  writeUnderlayHeaders(want, 0, PEER, 51000, LOCAL, 4789, d.len)
  assert.equal(toHex(rec.data, 0, UNDERLAY_HLEN), toHex(want))
  assert.equal(toHex(rec.data, 14 + 12, 8), 'c0 a8 fa 02 c0 a8 fa 01', 'IPv4 src = peer, dst = us')
  assert.equal(toHex(rec.data, 34, 4), 'c7 38 12 b5', 'UDP 51000 > 4789')
})

test('--vni: underlay frames are recorded as the inner frame alone', async () => {
  const r = rig({ points: pointBit(CapturePoint.PodRx) | pointBit(CapturePoint.UnderlayRx), vni: 42, outerHeaders: false })
  const inner = tcp4('10.244.2.2', '10.244.1.2', 80, 40000)
  const d42 = vxlanIn(inner, 42)
  const d43 = vxlanIn(inner, 43)
  r.target.capture!.frame(CapturePoint.UnderlayRx, 0, 42, d42.buf, d42.off, d42.len, -1, PEER, 51000, 4789)
  r.target.capture!.frame(CapturePoint.UnderlayRx, 0, 43, d43.buf, d43.off, d43.len, -1, PEER, 51000, 4789)
  r.target.capture!.frame(CapturePoint.UnderlayTx, 0, 42, d42.buf, d42.off, d42.len, -1, PEER, 4789, 40000)
  await tick()
  const recs = r.records()
  assert.equal(recs.length, 1, 'only VNI 42, only rx')
  assert.equal(toHex(recs[0].data), toHex(inner))
})

test('pod frame with a partial checksum: completed in the copy, the datapath buffer untouched', async () => {
  const r = rig({ points: POD_POINTS, port: 3 })
  const frame = tcp4('10.244.1.2', '10.244.2.2', 40000, 80, 100)
  const l4len = frame.length - ETH_HLEN - IPV4_HLEN_MIN
  const csumAt = ETH_HLEN + IPV4_HLEN_MIN + TCP_OFF_CSUM
  // What the pod's kernel leaves with NEEDS_CSUM: the folded pseudo-header sum, not complemented.
  const partial = csumFold(csumPseudoV4(ipv4Parse('10.244.1.2'), ipv4Parse('10.244.2.2'), PROTO_TCP, l4len))
  frame[csumAt] = partial >>> 8
  frame[csumAt + 1] = partial & 255
  const base = 64
  const slab = filled(base + VNET_HLEN + frame.length)
  vnetWrite(slab, base, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, ETH_HLEN + IPV4_HLEN_MIN, TCP_OFF_CSUM)
  slab.set(frame, base + VNET_HLEN)
  const before = toHex(slab)
  r.target.capture!.frame(CapturePoint.PodRx, 3, 42, slab, base + VNET_HLEN, frame.length, base, 0, 0, 0)
  r.target.capture!.frame(CapturePoint.PodRx, 4, 42, slab, base + VNET_HLEN, frame.length, base, 0, 0, 0) // other pod
  await tick()
  assert.equal(toHex(slab), before, 'the datapath buffer is not written')
  const recs = r.records()
  assert.equal(recs.length, 1, 'only port 3')
  assert.ok(!tcpChecksumOkV4(frame, ETH_HLEN, ETH_HLEN + IPV4_HLEN_MIN, l4len), 'the original holds a partial sum')
  assert.ok(tcpChecksumOkV4(recs[0].data, ETH_HLEN, ETH_HLEN + IPV4_HLEN_MIN, l4len), 'the copy holds the full checksum')
  assert.equal(toHex(recs[0].data, 0, csumAt), toHex(frame, 0, csumAt), 'nothing else changed')
})

test('filter and snaplen: the filter sees the inner frame; records keep snaplen bytes and the original length', async () => {
  const r = rig({ points: UNDERLAY_POINTS, snaplen: 64, filter: compileFilter('tcp port 80') })
  const web = vxlanIn(tcp4('10.244.1.2', '10.244.2.2', 40000, 80, 200), 42)
  const dns = vxlanIn(udp4('10.244.1.2', '10.244.2.2', 40000, 53), 42)
  r.target.capture!.frame(CapturePoint.UnderlayTx, 0, 42, web.buf, web.off, web.len, -1, PEER, 4789, 40000)
  r.target.capture!.frame(CapturePoint.UnderlayTx, 0, 42, dns.buf, dns.off, dns.len, -1, PEER, 4789, 40000)
  await tick()
  const recs = r.records()
  assert.equal(recs.length, 1)
  assert.equal(recs[0].data.length, 64)
  assert.equal(recs[0].origLen, UNDERLAY_HLEN + web.len)
})

test('-c: stops taking frames at the count, then ends and detaches', async () => {
  const r = rig({ points: POD_POINTS, count: 3 })
  assert.equal(r.target.capture, r.session, 'one capture: the session itself is the hook')
  const f = udp4('10.244.1.2', '10.244.2.2', 1, 2)
  for (let i = 0; i < 5; i++) r.target.capture!.frame(CapturePoint.PodTx, 1, 42, f, 0, f.length, -1, 0, 0, 0)
  assert.equal(r.session.captured, 3)
  assert.equal(r.target.capture, r.session, 'never detached inside frame()')
  await tick()
  assert.deepEqual(r.ends, ['count'])
  assert.equal(r.target.capture, null, 'detached after: zero cost again')
  assert.equal(r.records().length, 3)
})

test('slow reader: the ring fills, further frames are dropped and counted, memory stays bounded', async () => {
  // The sink takes the file header, then pauses (as a full socket would).
  const r = rig({ points: POD_POINTS, bufferBytes: CAPTURE_MIN_BUFFER_BYTES }, { pauseAfter: 1 })
  const f = udp4('10.244.1.2', '10.244.2.2', 1, 2, 1000 - 42) // 1000-byte frame
  const per = PCAP_REC_HLEN + f.length
  const fit = Math.floor(CAPTURE_MIN_BUFFER_BYTES / per)
  for (let i = 0; i < 200; i++) {
    r.target.capture!.frame(CapturePoint.PodRx, 1, 42, f, 0, f.length, -1, 0, 0, 0)
    await tick() // the drain runs between batches
  }
  assert.equal(r.chunks.length, 2, 'the header, then one chunk before the pause')
  assert.equal(r.session.captured + r.session.dropped, 200)
  assert.ok(r.session.captured <= fit + 1, `at most one ring full (${fit}) after the paused chunk, got ${r.session.captured}`)
  assert.ok(r.session.dropped >= 200 - fit - 1)
  r.session.resume()
  r.session.finish('stopped')
  assert.deepEqual(r.ends, ['stopped'])
  assert.equal(r.records().length, r.session.captured, 'every record captured was delivered, whole')
})

test('--duration ends the capture; finish writes what is left', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const r = rig({ points: POD_POINTS, durationS: 2 })
  const f = udp4('10.244.1.2', '10.244.2.2', 1, 2)
  r.target.capture!.frame(CapturePoint.PodRx, 1, 42, f, 0, f.length, -1, 0, 0, 0)
  t.mock.timers.tick(1999)
  assert.deepEqual(r.ends, [])
  t.mock.timers.tick(1)
  assert.deepEqual(r.ends, ['duration'])
  assert.equal(r.records().length, 1)
  assert.equal(r.target.capture, null)
})

test('hub: several captures share the hook; each sees its own frames; the last one out detaches', async () => {
  const target: { capture: CaptureHook | null } = { capture: null }
  const hub = new CaptureHub(target, LOCAL)
  const got: Buffer[][] = [[], []]
  const sink = (k: number) => ({ write: (c: Buffer) => { got[k].push(Buffer.from(c)); return true }, end: () => undefined })
  const a = hub.start({ points: POD_POINTS, port: 1 }, sink(0))
  const b = hub.start({ points: POD_POINTS, port: 2 }, sink(1))
  assert.equal(target.capture, hub)
  assert.equal(hub.size, 2)
  const f = udp4('10.244.1.2', '10.244.2.2', 1, 2)
  target.capture!.frame(CapturePoint.PodRx, 1, 42, f, 0, f.length, -1, 0, 0, 0)
  target.capture!.frame(CapturePoint.PodRx, 2, 42, f, 0, f.length, -1, 0, 0, 0)
  target.capture!.frame(CapturePoint.PodRx, 2, 42, f, 0, f.length, -1, 0, 0, 0)
  await tick()
  assert.deepEqual([a.captured, b.captured], [1, 2])
  a.abort()
  assert.equal(target.capture, b)
  hub.stopAll('shutdown')
  assert.equal(target.capture, null)
  assert.equal(b.endReason, 'shutdown')
  const total = Buffer.concat(got[1])
  assert.equal(total.length, PCAP_FILE_HLEN + 2 * (PCAP_REC_HLEN + f.length))
})
