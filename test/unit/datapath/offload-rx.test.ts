/**
 * Offloads on the way into a pod with vnet headers: TCP segments from the
 * underlay are merged (GRO) into one GSO super-frame per run of in-order
 * segments of one flow; anything else is delivered as it came. UDP GRO
 * datagrams (several VXLAN packets in one, rx.meta segment size > 0) are
 * processed packet by packet.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tsoSegment } from '../../../src/wire/tso'
import { vnetCompleteChecksum } from '../../../src/wire/vnet'
import {
  TCP_ACK, TCP_PSH, TcpOpts, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, arpFrame, concatBytes, get16, l4ChecksumOk,
  pattern, tcpFrame, udpFrame, view, vxlanPacket,
} from '../wire/frames'
import { A, B, PEER_1, R, Received, RecordingCapture, Rig, VNI_A, VNI_B, fromPeer, splitRun } from './rig'
import { Offload } from '../../../src/datapath/drops'

/** Cuts a super-frame into MSS-sized segment frames with tsoSegment (full checksums each). */
function segments(superFrame: Uint8Array, mss: number): Uint8Array[] {
  const out = new Uint8Array(2 * superFrame.length + 8192)
  const n = tsoSegment(superFrame, 0, superFrame.length, false, mss, out, 0, 0, 1024)
  assert.ok(n > 0)
  const hdr = view(superFrame).payloadOff
  return Array.from({ length: n }, (_, k) => out.slice(k * (hdr + mss), k * (hdr + mss) + hdr + Math.min(mss, superFrame.length - hdr - k * mss)))
}

function flow(o: Partial<TcpOpts> & { payload: Uint8Array }): Uint8Array {
  return tcpFrame({ ethSrc: R.mac, ethDst: B.mac, src: R.ip, dst: B.ip, seq: 0x20000000, id: 100, ...o })
}

/**
 * Checks that `r` is the merge of `superFrame` (all of it): a GSO TCPv4 vnet
 * header and the super-frame's bytes with a partial checksum that completes to
 * a verifying one.
 */
function assertMerged(r: Received, superFrame: Uint8Array, mss: number): void {
  const v = view(superFrame)
  assert.deepEqual(r.vnet, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: v.payloadOff, gsoSize: mss, csumStart: 34, csumOffset: 16 })
  const csumAt = v.l4Off + 16
  const got = r.frame.slice()
  const want = superFrame.slice()
  got.fill(0, csumAt, csumAt + 2)
  want.fill(0, csumAt, csumAt + 2)
  assert.deepEqual(got, want, 'merged frame = super-frame but for the checksum')
  const done = r.frame.slice()
  assert.ok(vnetCompleteChecksum(done, 0, done.length, 34, 16))
  assert.ok(l4ChecksumOk(done), 'completed checksum verifies')
}

test('a run of in-order segments of one flow reaches a vnet pod as ONE merged GSO frame', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  // 7000 bytes at MSS 1448: 4 full segments and one of 1208 with PSH.
  const sup = flow({ payload: pattern(7000, 1), flags: TCP_ACK | TCP_PSH })
  const segs = segments(sup, 1448)
  assert.equal(segs.length, 5)
  rig.fromUnderlay(segs.map((s) => fromPeer(PEER_1, vxlanPacket(VNI_A, s))))
  const got = rig.take(b)
  assert.equal(got.length, 1)
  assertMerged(got[0], sup, 1448)
  assert.equal(b.io.writes, 1)
  assert.deepEqual(rig.drops(), {})
  assert.deepEqual([rig.dp.offloads[Offload.GroTcpMerges], rig.dp.offloads[Offload.GroTcpSegments]], [1, 5])
})

test('the same segments reach a pod without vnet headers one by one, unchanged', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: false })
  const segs = segments(flow({ payload: pattern(7000, 1), ethDst: A.mac, dst: A.ip }), 1448)
  rig.fromUnderlay(segs.map((s) => fromPeer(PEER_1, vxlanPacket(VNI_A, s))))
  assert.deepEqual(rig.takeFrames(a), segs)
})

test('two interleaved flows are not merged together', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const x = segments(flow({ payload: pattern(3 * 1448, 2), sport: 40000 }), 1448)
  const y = segments(flow({ payload: pattern(3 * 1448, 3), sport: 40001, seq: 0x30000000 }), 1448)
  const interleaved = [x[0], y[0], x[1], y[1], x[2], y[2]]
  rig.fromUnderlay(interleaved.map((s) => fromPeer(PEER_1, vxlanPacket(VNI_A, s))))
  // Each segment closes the other flow's merge: every frame arrives alone, as it came.
  assert.deepEqual(rig.takeFrames(b), interleaved)
  assert.deepEqual(rig.drops(), {})
})

test('two flows one after the other: one merged frame each, never one frame with both', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const xs = flow({ payload: pattern(3 * 1448, 2), sport: 40000 })
  const ys = flow({ payload: pattern(3 * 1448, 3), sport: 40001, seq: 0x30000000 })
  const x = segments(xs, 1448)
  const y = segments(ys, 1448)
  rig.fromUnderlay([...x, ...y].map((s) => fromPeer(PEER_1, vxlanPacket(VNI_A, s))))
  const got = rig.take(b)
  assert.equal(got.length, 2)
  assertMerged(got[0], xs, 1448)
  assertMerged(got[1], ys, 1448)
})

test('an out-of-order segment ends the merge', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const sup = flow({ payload: pattern(5 * 1000, 4), flags: TCP_ACK | TCP_PSH })
  const s = segments(sup, 1000)
  // S1 S2 | S4 | S3 | S5: the merge holds S1+S2; S4, S3 and S5 each fail to continue the open one.
  rig.fromUnderlay([s[0], s[1], s[3], s[2], s[4]].map((f) => fromPeer(PEER_1, vxlanPacket(VNI_A, f))))
  const got = rig.take(b)
  assert.equal(got.length, 4)
  // The first two segments as one super-frame: seq and IP id of the first, 2000 bytes.
  assertMerged(got[0], flow({ payload: sup.subarray(54, 54 + 2000), flags: TCP_ACK }), 1000)
  assert.deepEqual(got.slice(1).map((r) => r.frame), [s[3], s[2], s[4]])
  assert.deepEqual(got.slice(1).map((r) => r.vnet!.gsoType), [0, 0, 0])
  assert.deepEqual(rig.drops(), {})
})

test('a short segment or one with PSH ends the merge; the next in-order segment starts a new one', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  // Five writes of one flow, back to back: 1000, 1000, 500 | 1000 PSH | 1000, 1000.
  const sizes = [1000, 1000, 500, 1000, 1000, 1000]
  const flags = [TCP_ACK, TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK, TCP_ACK]
  const data = pattern(5500, 10)
  let at = 0
  const segs = sizes.map((n, k) => { const f = flow({ payload: data.subarray(at, at + n), seq: 0x20000000 + at, id: 100 + k, flags: flags[k] }); at += n; return f })
  rig.fromUnderlay(segs.map((f) => fromPeer(PEER_1, vxlanPacket(VNI_A, f))))
  const got = rig.take(b)
  assert.equal(got.length, 3)
  // A GSO frame's segments are all gso_size but the last: nothing may follow the short one.
  assertMerged(got[0], flow({ payload: data.subarray(0, 2500) }), 1000)
  // The PSH segment starts a merge and ends it at once: delivered as it came.
  assert.deepEqual(got[1], { vnet: { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, frame: segs[3] })
  assertMerged(got[2], flow({ payload: data.subarray(3500), seq: 0x20000000 + 3500, id: 104 }), 1000)
})

test('PSH on a full-sized segment ends the merge with PSH set', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const data = pattern(4000, 11)
  const segs = [0, 1, 2, 3].map((k) => flow({ payload: data.subarray(k * 1000, (k + 1) * 1000), seq: 0x20000000 + k * 1000, id: 100 + k, flags: k === 1 ? TCP_ACK | TCP_PSH : TCP_ACK }))
  rig.fromUnderlay(segs.map((f) => fromPeer(PEER_1, vxlanPacket(VNI_A, f))))
  const got = rig.take(b)
  assert.equal(got.length, 2)
  assertMerged(got[0], flow({ payload: data.subarray(0, 2000), flags: TCP_ACK | TCP_PSH }), 1000)
  assertMerged(got[1], flow({ payload: data.subarray(2000), seq: 0x20000000 + 2000, id: 102 }), 1000)
})

test('a non-TCP frame between segments closes the merge and keeps the order', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const sup = flow({ payload: pattern(4 * 1000, 5) })
  const s = segments(sup, 1000)
  const ping = udpFrame({ ethSrc: R.mac, ethDst: B.mac, src: R.ip, dst: B.ip, payload: pattern(30) })
  rig.fromUnderlay([s[0], s[1], ping, s[2], s[3]].map((f) => fromPeer(PEER_1, vxlanPacket(VNI_A, f))))
  const got = rig.take(b)
  assert.equal(got.length, 3)
  assertMerged(got[0], flow({ payload: sup.subarray(54, 2054) }), 1000)
  assert.deepEqual(got[1].frame, ping)
  assertMerged(got[2], flow({ payload: sup.subarray(2054), seq: 0x20000000 + 2000, id: 102 }), 1000)
})

test('a merge stops before the IPv4 packet would pass 64 KiB', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  // 50 segments of 1448 (no one super-frame holds them): 45 fit one IP packet
  // (20 + 20 + 45 * 1448 = 65200), 46 do not.
  const data = pattern(50 * 1448, 6)
  const s = Array.from({ length: 50 }, (_, k) => flow({ payload: data.subarray(k * 1448, (k + 1) * 1448), seq: 0x20000000 + k * 1448, id: 100 + k }))
  rig.fromUnderlay(s.map((f) => fromPeer(PEER_1, vxlanPacket(VNI_A, f))))
  const got = rig.take(b)
  assert.equal(got.length, 2)
  assertMerged(got[0], flow({ payload: data.subarray(0, 45 * 1448) }), 1448)
  assertMerged(got[1], flow({ payload: data.subarray(45 * 1448), seq: 0x20000000 + 45 * 1448, id: 145 }), 1448)
  assert.deepEqual(rig.drops(), {})
})

test('a UDP GRO datagram is processed as its VXLAN packets', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: false })
  // Four equal-sized VXLAN packets and a shorter last one, as the kernel's UDP GRO hands them over.
  const frames = [1, 2, 3, 4].map((k) => udpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, payload: pattern(500, k) }))
  frames.push(udpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, payload: pattern(100, 5) }))
  const packets = frames.map((f) => vxlanPacket(VNI_A, f))
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets), packets[0].length)])
  assert.deepEqual(rig.takeFrames(a), frames)
  assert.deepEqual(rig.drops(), {})
})

test('a UDP GRO datagram whose packets go to different pods: each packet goes where its own headers say', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: false })
  const b = rig.addPod({ ...B, vnetHdr: false })
  // Equal-sized packets: the later ones of a run repeat the headers before them (the fast path), then change.
  const to = (p: typeof A, k: number): Uint8Array => udpFrame({ ethSrc: R.mac, ethDst: p.mac, src: R.ip, dst: p.ip, payload: pattern(300, k) })
  const frames = [to(A, 1), to(A, 2), to(B, 3), to(B, 4), to(A, 5), to(B, 6)]
  const packets = frames.map((f) => vxlanPacket(VNI_A, f))
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets), packets[0].length)])
  assert.deepEqual(rig.takeFrames(a), [frames[0], frames[1], frames[4]])
  assert.deepEqual(rig.takeFrames(b), [frames[2], frames[3], frames[5]])
  assert.deepEqual(rig.drops(), {})
  // The same run in another VNI with the same MACs: the VXLAN header differs, so no packet rides on the one before.
  const other = frames.map((f, k) => vxlanPacket(k === 1 ? VNI_B : VNI_A, f))
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...other), other[0].length)])
  assert.deepEqual(rig.takeFrames(a), [frames[0], frames[4]])
  assert.deepEqual(rig.takeFrames(b), [frames[2], frames[3], frames[5]])
  assert.deepEqual(rig.drops(), {})
})

test('with a capture attached, every packet of a UDP GRO datagram is seen on its own', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true })
  const cap = new RecordingCapture()
  rig.dp.capture = cap
  const sup = flow({ payload: pattern(5000, 9), ethDst: A.mac, dst: A.ip })
  const packets = segments(sup, 1448).map((s) => vxlanPacket(VNI_A, s))
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets), packets[0].length)])
  const rx = cap.seen.filter((x) => x.point === 'UnderlayRx')
  assert.deepEqual(rx.map((x) => x.bytes), packets)
  assert.equal(rig.take(a).length, 1)
})

test('a UDP GRO datagram of TCP segments to a vnet pod becomes one merged frame', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const sup = flow({ payload: pattern(6000, 7), flags: TCP_ACK | TCP_PSH })
  const packets = segments(sup, 1448).map((s) => vxlanPacket(VNI_A, s))
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets), packets[0].length)])
  const got = rig.take(b)
  assert.equal(got.length, 1)
  assertMerged(got[0], sup, 1448)
})

test('each packet of a UDP GRO datagram is checked on its own: a bad one in the middle is dropped alone', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: false })
  const frames = [1, 2, 3].map((k) => udpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, payload: pattern(200, k) }))
  const packets = [vxlanPacket(VNI_A, frames[0]), vxlanPacket(VNI_A, frames[1], 0x00), vxlanPacket(999, frames[2])]
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets), packets[0].length)])
  assert.deepEqual(rig.takeFrames(a), [frames[0]])
  assert.deepEqual(rig.drops(), { VxlanNoIFlag: 1, UnknownVni: 1 })
})

test('end to end: a TSO super-frame sent by one datapath arrives merged at the other', () => {
  const h1 = new Rig({ gso: true })
  const h2 = new Rig({ peers: [PEER_1] })
  const a = h1.addPod({ ...A, vnetHdr: true })
  const b = h2.addPod({ ...B, vnetHdr: true })
  // h1 learns B behind PEER_1 (h2's address).
  h1.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, arpFrame({ ethSrc: B.mac, spa: B.ip, tpa: '10.1.0.250' })))])
  const o = { ethSrc: A.mac, ethDst: B.mac, src: A.ip, dst: B.ip, payload: pattern(30000, 8), seq: 77, id: 9, flags: TCP_ACK | TCP_PSH }
  const full = tcpFrame(o)
  h1.fromPod(a, [tcpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 })
  const sent = h1.takeUnderlay()
  assert.equal(sent.length, 1)
  // The kernel's UDP GRO at h2 hands the run over as it was sent: same bytes, same segment size.
  h2.fromUnderlay([fromPeer(PEER_1, sent[0].bytes, sent[0].gso)])
  const got = h2.take(b)
  assert.equal(got.length, 1)
  assertMerged(got[0], full, 1448)
  assert.equal(get16(got[0].frame, 14 + 2), 20 + 20 + 30000)
  assert.equal(splitRun(sent[0]).length, 21)
  assert.deepEqual(h1.drops(), {})
  assert.deepEqual(h2.drops(), {})
})

test('a segment whose TCP checksum fails is not merged: its corruption stays visible to the pod', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  const s = segments(flow({ payload: pattern(3 * 1000, 9) }), 1000)
  // One bit flipped in the second segment's payload after its checksum was computed.
  const bad = s[1].slice()
  bad[54 + 500] ^= 0x01
  assert.ok(!l4ChecksumOk(bad))
  rig.fromUnderlay([s[0], bad, s[2]].map((f) => fromPeer(PEER_1, vxlanPacket(VNI_A, f))))
  // Linux's tcp4_gro_receive validates the checksum before merging; a merged
  // frame is marked NEEDS_CSUM, which the pod's kernel takes as verified. So the
  // flipped bit may only reach the pod in a frame whose checksum fails.
  const needle = Buffer.from(bad.subarray(54))
  for (const r of rig.take(b)) {
    if (Buffer.from(r.frame).indexOf(needle) < 0) continue
    assert.equal(r.vnet!.flags & VNET_F_NEEDS_CSUM, 0, 'the corrupted bytes are not handed over as checksum-partial (trusted)')
    assert.ok(!l4ChecksumOk(r.frame), 'and their checksum still fails')
  }
})

test('GRO datagrams of small PSH segments: every segment is delivered (192 in one batch)', () => {
  const rig = new Rig()
  const b = rig.addPod({ ...B, vnetHdr: true })
  // Request/response traffic: equal-sized messages, PSH on each, which the
  // sender's UDP GSO and our UDP GRO pack 64 to a datagram. A PSH segment is
  // merged with nothing, so each is delivered alone.
  const datagrams = [0, 1, 2].map((d) => {
    const packets = Array.from({ length: 64 }, (_, k) => vxlanPacket(VNI_A, flow({ payload: pattern(100, d * 64 + k), seq: 1000 + (d * 64 + k) * 100, flags: TCP_ACK | TCP_PSH })))
    return fromPeer(PEER_1, concatBytes(...packets), packets[0].length)
  })
  rig.fromUnderlay(datagrams)
  const got = rig.takeFrames(b)
  assert.deepEqual(rig.drops(), {})
  assert.equal(got.length, 192)
  assert.deepEqual(got.map((f) => view(f).seq), Array.from({ length: 192 }, (_, i) => 1000 + i * 100))
})
