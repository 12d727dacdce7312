/**
 * Offloads on the way out of a pod with vnet headers: a TSO/USO super-frame to
 * a peer is cut into segments (one UDP GSO run per peer where the socket can,
 * else one datagram per segment); a partial checksum (NEEDS_CSUM) is completed
 * before the frame leaves the host. Each segment must be a valid frame on its
 * own: checksums recomputed from scratch, sequence numbers, payload.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  BROADCAST, TCP_ACK, TCP_PSH, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP, VNET_GSO_UDP_L4,
  VnetFields, arpFrame, concatBytes, ipv4HeaderOk, l4ChecksumOk, pattern, tcpFrame, udpFrame, view, vxlanPacket,
} from '../wire/frames'
import { A, B, PEER_1, PEER_2, R, R2, Rig, VNI_A, VXLAN_PORT, fromPeer, splitRun } from './rig'
import { SentDatagram } from '../../../src/ports/memory-port'
import { Offload } from '../../../src/datapath/drops'

/** Teaches the datapath that R sits behind PEER_1. */
function learnR(rig: Rig): void {
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, arpFrame({ ethSrc: R.mac, spa: R.ip, tpa: '10.1.0.250' })))])
}

interface Super {
  /** The super-frame with a full checksum (what the segments must add up to). */
  full: Uint8Array
  /** The same with the partial checksum a kernel hands over with NEEDS_CSUM. */
  partial: Uint8Array
  vnet: VnetFields
  mss: number
}

function tcpSuper(payloadLen: number, mss: number, v6 = false, dstMac = R.mac): Super {
  const o = {
    v6, ethSrc: A.mac, ethDst: dstMac, src: v6 ? '2001:db8::a' : A.ip, dst: v6 ? '2001:db8::65' : R.ip,
    payload: pattern(payloadLen, payloadLen), seq: 0x10000000, id: 0x4000, flags: TCP_ACK | TCP_PSH,
  }
  const full = tcpFrame(o)
  const l4 = v6 ? 54 : 34
  return {
    full, partial: tcpFrame({ ...o, csum: 'partial' }), mss,
    vnet: { flags: VNET_F_NEEDS_CSUM, gsoType: v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4, hdrLen: l4 + 20, gsoSize: mss, csumStart: l4, csumOffset: 16 },
  }
}

/**
 * Checks that `datagrams` (as on the wire, GSO runs split) are VXLAN packets
 * carrying exactly the segments of `s`, in order.
 */
function checkSegmentsOnWire(s: Super, datagrams: Uint8Array[], udp = false): void {
  const sv = view(s.full)
  const n = Math.ceil((s.full.length - sv.payloadOff) / s.mss)
  assert.equal(datagrams.length, n, 'one datagram per segment')
  const payloads: Uint8Array[] = []
  datagrams.forEach((d, k) => {
    assert.deepEqual(Array.from(d.subarray(0, 8)), [0x08, 0, 0, 0, 0, 0, VNI_A, 0], `segment ${k}: VXLAN header`)
    const inner = d.subarray(8)
    const v = view(inner)
    assert.ok(l4ChecksumOk(inner), `segment ${k}: L4 checksum verifies`)
    assert.ok(ipv4HeaderOk(inner), `segment ${k}: IPv4 header checksum`)
    assert.equal(v.payload.length, k < n - 1 ? s.mss : s.full.length - sv.payloadOff - (n - 1) * s.mss, `segment ${k}: size`)
    if (!udp) {
      assert.equal(v.seq, (sv.seq + k * s.mss) >>> 0, `segment ${k}: seq`)
      assert.equal(v.flags, k < n - 1 ? TCP_ACK : TCP_ACK | TCP_PSH, `segment ${k}: flags`)
    } else {
      assert.equal(v.udpLen, 8 + v.payload.length, `segment ${k}: UDP length`)
    }
    payloads.push(v.payload)
  })
  assert.deepEqual(concatBytes(...payloads), s.full.subarray(sv.payloadOff), 'payloads reassemble')
}

function wire(sent: SentDatagram[]): Uint8Array[] {
  return sent.flatMap(splitRun)
}

test('TSO super-frame to a peer, socket with UDP GSO: one GSO run of valid TCP segments', () => {
  const rig = new Rig({ gso: true })
  const a = rig.addPod({ ...A, vnetHdr: true })
  learnR(rig)
  rig.takeFrames(a)
  // 10000 bytes at MSS 1448: 6 full segments and one of 1312.
  const s = tcpSuper(10000, 1448)
  rig.fromPod(a, [s.partial], s.vnet)
  const sent = rig.takeUnderlay()
  assert.equal(sent.length, 1)
  const stride = 8 + 54 + 1448
  assert.deepEqual({ addr: sent[0].addr, port: sent[0].port, gso: sent[0].gso, len: sent[0].bytes.length },
    { addr: PEER_1, port: VXLAN_PORT, gso: stride, len: 6 * stride + 8 + 54 + 1312 })
  checkSegmentsOnWire(s, wire(sent))
  assert.deepEqual(rig.drops(), {})
})

test('TSO super-frame to a peer, socket without GSO: one datagram per segment', () => {
  const rig = new Rig({ gso: false })
  const a = rig.addPod({ ...A, vnetHdr: true })
  learnR(rig)
  const s = tcpSuper(10000, 1448)
  rig.fromPod(a, [s.partial], s.vnet)
  const sent = rig.takeUnderlay()
  assert.equal(sent.length, 7)
  for (const d of sent) assert.deepEqual({ addr: d.addr, port: d.port, gso: d.gso }, { addr: PEER_1, port: VXLAN_PORT, gso: 0 })
  checkSegmentsOnWire(s, wire(sent))
  assert.equal(rig.underlay.txCounters[1], 0, 'no send refused')
  assert.deepEqual(rig.drops(), {})
})

test('TSO with a GSO twin socket: the run goes out on the twin, nothing on the plain socket', () => {
  const rig = new Rig({ gso: false, gsoTwin: true })
  const a = rig.addPod({ ...A, vnetHdr: true })
  learnR(rig)
  const s = tcpSuper(5000, 1448)
  rig.fromPod(a, [s.partial], s.vnet)
  assert.equal(rig.underlay.sent.length, 0)
  assert.equal(rig.gsoTwin!.sent.length, 1)
  assert.equal(rig.gsoTwin!.sent[0].gso, 8 + 54 + 1448)
  checkSegmentsOnWire(s, wire(rig.takeUnderlay()))
  assert.deepEqual([rig.dp.offloads[Offload.TsoFrames], rig.dp.offloads[Offload.TsoSegments]], [1, 4])
})

test('a super-frame of more than 64 segments is sent as several GSO runs (UDP_MAX_SEGMENTS)', () => {
  const rig = new Rig({ gso: true })
  const a = rig.addPod({ ...A, vnetHdr: true, mtu: 9000 })
  learnR(rig)
  // 60000 bytes at MSS 500: 120 segments of stride 562 -> runs of 64 and 56.
  const s = tcpSuper(60000, 500)
  rig.fromPod(a, [s.partial], s.vnet)
  const sent = rig.takeUnderlay()
  assert.deepEqual(sent.map((d) => [d.gso, d.bytes.length]), [[562, 64 * 562], [562, 56 * 562]])
  checkSegmentsOnWire(s, wire(sent))
  assert.equal(rig.underlay.txCounters[1], 0, 'the kernel (double) accepted every run')
  assert.deepEqual(rig.drops(), {})
})

test('a run never exceeds 65507 bytes: 42 segments of stride 1510 fit one run', () => {
  const rig = new Rig({ gso: true })
  const a = rig.addPod({ ...A, vnetHdr: true })
  learnR(rig)
  const s = tcpSuper(60000, 1448)
  rig.fromPod(a, [s.partial], s.vnet)
  const sent = rig.takeUnderlay()
  assert.deepEqual(sent.map((d) => [d.gso, d.bytes.length]), [[1510, 41 * 1510 + 8 + 54 + (60000 - 41 * 1448)]])
  checkSegmentsOnWire(s, wire(sent))
})

test('TCPv6 TSO and UDP USO super-frames to a peer are segmented too', () => {
  const rig = new Rig({ gso: true })
  const a = rig.addPod({ ...A, vnetHdr: true, portSecurity: false })
  learnR(rig)
  const s6 = tcpSuper(7000, 1428, true)
  rig.fromPod(a, [s6.partial], s6.vnet)
  checkSegmentsOnWire(s6, wire(rig.takeUnderlay()))

  const o = { ethSrc: A.mac, ethDst: R.mac, src: A.ip, dst: R.ip, payload: pattern(5000, 9) }
  const uso: Super = {
    full: udpFrame(o), partial: udpFrame({ ...o, csum: 'partial' }), mss: 1200,
    vnet: { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_UDP_L4, hdrLen: 42, gsoSize: 1200, csumStart: 34, csumOffset: 6 },
  }
  rig.fromPod(a, [uso.partial], uso.vnet)
  checkSegmentsOnWire(uso, wire(rig.takeUnderlay()), true)
  assert.deepEqual(rig.drops(), {})
})

test('unknown-unicast TSO super-frame: local vnet pods get it whole, every peer gets the segments', () => {
  const rig = new Rig({ gso: true })
  const a = rig.addPod({ ...A, vnetHdr: true })
  const b = rig.addPod({ ...B, vnetHdr: true })
  const s = tcpSuper(4000, 1448, false, '02:00:00:00:00:99')
  rig.fromPod(a, [s.partial], s.vnet)
  const got = rig.take(b)
  assert.equal(got.length, 1)
  assert.deepEqual(got[0].frame, s.partial, 'the super-frame passes to a vnet pod as it came')
  assert.deepEqual(got[0].vnet, { flags: 1, gsoType: 1, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 })
  const sent = rig.takeUnderlay()
  assert.deepEqual(sent.map((d) => d.addr), [PEER_1, PEER_2])
  checkSegmentsOnWire(s, splitRun(sent[0]))
  checkSegmentsOnWire(s, splitRun(sent[1]))
  assert.deepEqual(rig.drops(), {})
})

test('NEEDS_CSUM without GSO to a peer: the checksum is completed before encapsulation', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true })
  learnR(rig)
  const o = { ethSrc: A.mac, ethDst: R.mac, src: A.ip, dst: R.ip, payload: pattern(999, 4) }
  rig.fromPod(a, [tcpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 })
  rig.fromPod(a, [udpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 })
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_A, tcpFrame(o)), vxlanPacket(VNI_A, udpFrame(o))])
  assert.deepEqual(rig.drops(), {})
})

test('NEEDS_CSUM broadcast: peers get the completed copy, a local vnet pod the partial one with its header', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true })
  const b = rig.addPod({ ...B, vnetHdr: true })
  const o = { ethSrc: A.mac, ethDst: BROADCAST, src: A.ip, dst: '10.1.0.255', payload: pattern(300, 5) }
  const vnet = { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 }
  rig.fromPod(a, [udpFrame({ ...o, csum: 'partial' })], vnet)
  const got = rig.take(b)
  assert.deepEqual(got.map((r) => r.frame), [udpFrame({ ...o, csum: 'partial' })])
  assert.deepEqual(got[0].vnet, { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 6 })
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_A, udpFrame(o)), vxlanPacket(VNI_A, udpFrame(o))])
  assert.deepEqual(rig.drops(), {})
})

test('NEEDS_CSUM to a local pod without vnet headers: completed; GSO to it: bad_offload', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true })
  const b = rig.addPod({ ...B, vnetHdr: false })
  const o = { ethSrc: A.mac, ethDst: B.mac, src: A.ip, dst: B.ip, payload: pattern(500, 6) }
  rig.fromPod(a, [tcpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 })
  assert.deepEqual(rig.takeFrames(b), [tcpFrame(o)])
  const s = tcpSuper(4000, 1448, false, B.mac)
  rig.fromPod(a, [s.partial], s.vnet)
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.drops(), { BadOffload: 1 })
})

// Mixed pods (with and without vnet headers) in one VNI: the agent opens every
// TAP alike, but Datapath.addPod accepts both and toLocal documents the case.
test('NEEDS_CSUM broadcast to a pod without vnet headers, a pod with, and the peers: every copy has a right checksum', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true })
  const plain = rig.addPod({ ...B, vnetHdr: false })
  const withHdr = rig.addPod({ mac: '02:00:00:00:00:0c', ip: '10.1.0.12', vnetHdr: true })
  const o = { ethSrc: A.mac, ethDst: BROADCAST, src: A.ip, dst: '10.1.0.255', payload: pattern(300, 8) }
  rig.fromPod(a, [udpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 })
  const got = rig.take(withHdr)
  const sent = rig.takeUnderlay()
  // Facts gathered first so a failure shows all three copies at once.
  assert.deepEqual({
    plainPodGetsCompleted: rig.takeFrames(plain).map((f) => f.every((x, i) => x === udpFrame(o)[i])),
    vnetPodGetsPartialAsSent: got.map((r) => r.vnet!.flags === VNET_F_NEEDS_CSUM && r.frame.every((x, i) => x === udpFrame({ ...o, csum: 'partial' })[i])),
    peersGetVerifyingChecksum: sent.map((d) => l4ChecksumOk(d.bytes.subarray(8))),
  }, {
    plainPodGetsCompleted: [true],
    vnetPodGetsPartialAsSent: [true],
    peersGetVerifyingChecksum: [true, true],
  })
  assert.equal(rig.takeUnderlay().length, 0)
})

test('offload requests that cannot be honoured are dropped as bad_offload', () => {
  const rig = new Rig({ gso: true })
  const a = rig.addPod({ ...A, vnetHdr: true })
  learnR(rig)
  const s = tcpSuper(4000, 1448)
  const bad: VnetFields[] = [
    { ...s.vnet, gsoType: VNET_GSO_UDP }, // UFO (IP fragmentation offload): not supported
    { ...s.vnet, gsoSize: 0 },
    { ...s.vnet, gsoType: VNET_GSO_UDP_L4 }, // says UDP, frame is TCP
  ]
  for (const v of bad) rig.fromPod(a, [s.partial], v)
  const o = { ethSrc: A.mac, ethDst: R.mac, src: A.ip, dst: R.ip, payload: pattern(100) }
  rig.fromPod(a, [tcpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 200 })
  rig.fromPod(a, [tcpFrame({ ...o, csum: 'partial' })], { flags: VNET_F_NEEDS_CSUM, csumStart: 5000, csumOffset: 16 })
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), { BadOffload: 5 })
})

// ---- single frames coalesced into GSO runs

/** Teaches the datapath that R2 sits behind PEER_2. */
function learnR2(rig: Rig): void {
  rig.fromUnderlay([fromPeer(PEER_2, vxlanPacket(VNI_A, arpFrame({ ethSrc: R2.mac, spa: R2.ip, tpa: '10.1.0.250' })))])
}

function small(to: typeof R, k: number, size = 64): Uint8Array {
  return udpFrame({ ethSrc: A.mac, ethDst: to.mac, src: A.ip, dst: to.ip, sport: 40000 + (k % 3), payload: pattern(size, k) })
}

test('a batch of small frames to a peer leaves as ONE GSO run on the twin socket, each datagram as it would be alone', () => {
  const rig = new Rig({ gso: false, gsoTwin: true })
  const a = rig.addPod({ ...A, vnetHdr: false })
  learnR(rig)
  const frames = Array.from({ length: 20 }, (_, k) => small(R, k))
  rig.fromPod(a, frames)
  assert.equal(rig.underlay.sent.length, 0, 'nothing one by one on the plain socket')
  assert.equal(rig.gsoTwin!.sent.length, 1)
  const run = rig.gsoTwin!.sent[0]
  assert.deepEqual([run.addr, run.port, run.gso], [PEER_1, VXLAN_PORT, 8 + frames[0].length])
  assert.deepEqual(splitRun(run), frames.map((f) => vxlanPacket(VNI_A, f)))
  assert.deepEqual(rig.drops(), {})
  assert.deepEqual([rig.dp.offloads[Offload.GsoRuns], rig.dp.offloads[Offload.GsoRunDatagrams]], [1, 20])
})

test('runs break at a change of peer and at a longer frame; a shorter frame ends its run; order is kept per peer', () => {
  // Pods with batches of their own (every datagram copied), and pods reading into the
  // datapath's arena, as the agent's do (a datagram that makes no run is sent where it is).
  for (const arena of [false, true]) {
    const rig = new Rig({ gso: false, gsoTwin: true, arena })
    const a = rig.addPod({ ...A, vnetHdr: false })
    learnR(rig)
    learnR2(rig)
    // [R R R(short)] [R] [R2 R2] [R(long) R(long)]
    const frames = [small(R, 0), small(R, 1), small(R, 2, 10), small(R, 3), small(R2, 4), small(R2, 5), small(R, 6, 300), small(R, 7, 300)]
    rig.fromPod(a, frames)
    const sent = rig.gsoTwin!.sent
    assert.deepEqual(sent.map((d) => [d.addr, splitRun(d).length, d.gso]), [
      [PEER_1, 3, 8 + frames[0].length],
      [PEER_1, 1, 0],
      [PEER_2, 2, 8 + frames[4].length],
      [PEER_1, 2, 8 + frames[6].length],
    ], `arena ${arena}`)
    assert.deepEqual(sent.flatMap(splitRun), frames.map((f) => vxlanPacket(VNI_A, f)), `arena ${arena}`)
    assert.deepEqual([rig.dp.offloads[Offload.GsoRuns], rig.dp.offloads[Offload.GsoRunDatagrams]], [3, 7])
  }
})

test('a run holds at most 65507 bytes (and a full batch of 64 small frames is one run)', () => {
  const rig = new Rig({ gso: false, gsoTwin: true })
  const a = rig.addPod({ ...A, vnetHdr: false })
  learnR(rig)
  rig.fromPod(a, Array.from({ length: 64 }, (_, k) => small(R, k)))
  assert.deepEqual(rig.gsoTwin!.sent.map((d) => splitRun(d).length), [64])
  rig.gsoTwin!.take()
  // 1400-byte payloads: 1450-byte datagrams, 45 fit in 65507 bytes.
  rig.fromPod(a, Array.from({ length: 50 }, (_, k) => small(R, k, 1400)))
  const runs = rig.gsoTwin!.sent
  assert.deepEqual(runs.map((d) => splitRun(d).length), [45, 5])
  assert.ok(runs.every((d) => d.bytes.length <= 65507))
})

test('without a GSO socket, small frames go one datagram each as before; a single frame is never copied into a run', () => {
  const plain = new Rig({ gso: false })
  const a = plain.addPod({ ...A, vnetHdr: false })
  learnR(plain)
  const frames = [small(R, 0), small(R, 1), small(R, 2)]
  plain.fromPod(a, frames)
  assert.deepEqual(plain.underlay.sent.map((d) => d.gso), [0, 0, 0])
  assert.deepEqual(plain.underlay.sent.map((d) => d.bytes), frames.map((f) => vxlanPacket(VNI_A, f)))
  const twin = new Rig({ gso: false, gsoTwin: true })
  const b = twin.addPod({ ...A, vnetHdr: false })
  learnR(twin)
  twin.fromPod(b, [frames[0]])
  assert.equal(twin.gsoTwin!.sent.length, 0)
  assert.deepEqual(twin.underlay.sent.map((d) => d.bytes), [vxlanPacket(VNI_A, frames[0])])
})
