/**
 * UDP GRO on the way into a pod whose TAP takes USO: consecutive datagrams of
 * one flow from the underlay become one GSO_UDP_L4 frame per run, which the
 * pod's kernel cuts back into the very same datagrams. The property checked:
 * segmenting the merged frame as the kernel does (tsoSegment in USO mode, the
 * reference of wire/tso.ts) gives back the original datagrams byte for byte.
 * Anything a receiver would see per datagram that differs ends a merge.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tsoSegment } from '../../../src/wire/tso'
import { GRO_UDP_HLEN } from '../../../src/wire/gro-udp'
import { VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, UdpOpts, concatBytes, pattern, tcpFrame, udpFrame, vxlanPacket } from '../wire/frames'
import { A, PEER_1, R, Received, Rig, VNI_A, fromPeer } from './rig'
import { Offload } from '../../../src/datapath/drops'

function dgram(k: number, o: Partial<UdpOpts> = {}, size = 200): Uint8Array {
  return udpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, sport: 5000, dport: 6000, id: 0x100 + k, payload: pattern(size, k), ...o })
}

/** The datagrams the pod's kernel makes of a received frame: itself, or its USO segments. */
function asPodSees(r: Received): Uint8Array[] {
  if (r.vnet === null || r.vnet.gsoType !== VNET_GSO_UDP_L4) return [r.frame]
  assert.deepEqual(r.vnet, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_UDP_L4, hdrLen: GRO_UDP_HLEN, gsoSize: r.vnet.gsoSize, csumStart: 34, csumOffset: 6 })
  const mss = r.vnet.gsoSize
  const out = new Uint8Array(2 * r.frame.length + 4096)
  const n = tsoSegment(r.frame, 0, r.frame.length, true, mss, out, 0, 0, 1024)
  assert.ok(n > 1, `segmentation of the merged frame failed (${n})`)
  const stride = GRO_UDP_HLEN + mss
  return Array.from({ length: n }, (_, k) => out.slice(k * stride, k * stride + (k < n - 1 ? stride : GRO_UDP_HLEN + (r.frame.length - GRO_UDP_HLEN) - (n - 1) * mss)))
}

function deliver(rig: Rig, frames: Uint8Array[], gro = true): void {
  const packets = frames.map((f) => vxlanPacket(VNI_A, f))
  if (gro) rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets), packets[0].length)])
  else rig.fromUnderlay(packets.map((p) => fromPeer(PEER_1, p)))
}

test('a run of datagrams of one flow reaches a USO pod as ONE GSO_UDP_L4 frame that segments back into the same datagrams', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true, uso: true })
  const frames = [0, 1, 2, 3, 4].map((k) => dgram(k))
  frames.push(dgram(5, {}, 120)) // a shorter last one
  deliver(rig, frames)
  const got = rig.take(a)
  assert.equal(got.length, 1)
  assert.equal(a.io.writes, 1)
  assert.equal(got[0].vnet!.gsoSize, 200)
  assert.deepEqual(asPodSees(got[0]), frames)
  assert.deepEqual(rig.drops(), {})
  assert.deepEqual([rig.dp.offloads[Offload.GroUdpMerges], rig.dp.offloads[Offload.GroUdpDatagrams], rig.dp.offloads[Offload.GroTcpMerges]], [1, 6, 0])
})

test('datagrams one per underlay datagram (no UDP GRO) are merged the same way', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true, uso: true })
  const frames = [0, 1, 2].map((k) => dgram(k, {}, 64))
  deliver(rig, frames, false)
  const got = rig.take(a)
  assert.equal(got.length, 1)
  assert.deepEqual(asPodSees(got[0]), frames)
})

test('a pod without USO gets every datagram on its own, unchanged', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true, uso: false })
  const frames = [0, 1, 2].map((k) => dgram(k))
  deliver(rig, frames)
  assert.deepEqual(rig.takeFrames(a), frames)
})

test('what ends a merge: another flow, an IP id gap, a larger datagram, other TTL, TOS or DF; each datagram still arrives as it was', () => {
  const cases: [string, Uint8Array[], number][] = [
    ['interleaved ports', [dgram(0), dgram(1, { sport: 5001 }), dgram(2)], 3],
    ['id gap', [dgram(0), dgram(1), dgram(3)], 2],
    ['larger after smaller', [dgram(0, {}, 100), dgram(1, {}, 200)], 2],
    ['other TTL', [dgram(0), dgram(1, { ttl: 3 })], 2],
    ['other TOS', [dgram(0), dgram(1, { tos: 0x10 })], 2],
    ['other DF', [dgram(0), dgram(1, { df: false })], 2],
    ['other source address', [dgram(0), dgram(1, { src: '10.1.0.102' })], 2],
    ['a shorter one ends it', [dgram(0), dgram(1, {}, 50), dgram(2, {}, 50)], 2],
  ]
  for (const [what, frames, writes] of cases) {
    const rig = new Rig()
    const a = rig.addPod({ ...A, vnetHdr: true, uso: true, portSecurity: false })
    // One underlay datagram each: a UDP GRO datagram never has a larger packet after a smaller one.
    deliver(rig, frames, false)
    const got = rig.take(a)
    assert.equal(got.length, writes, `${what}: writes`)
    assert.deepEqual(got.flatMap(asPodSees), frames, `${what}: the pod sees the datagrams as sent, in order`)
  }
})

test('a datagram with a bad checksum, or none, is never merged: it arrives alone and unchanged', () => {
  const bad = dgram(1)
  bad[bad.length - 1] ^= 0xff
  const none = dgram(2, { csum: 0 })
  const frames = [dgram(0), bad, none, dgram(3), dgram(4)]
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true, uso: true })
  deliver(rig, frames)
  const got = rig.take(a)
  // [0] alone (the next is bad), bad alone, none alone, [3, 4] merged.
  assert.deepEqual(got.map((r) => r.vnet!.gsoType), [0, 0, 0, VNET_GSO_UDP_L4])
  assert.deepEqual(got.flatMap(asPodSees), frames)
})

test('datagrams whose checksum a Linux sender left partial are merged, and segment into datagrams with full checksums', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true, uso: true })
  const full = [0, 1, 2].map((k) => dgram(k))
  deliver(rig, [0, 1, 2].map((k) => dgram(k, { csum: 'partial' })))
  const got = rig.take(a)
  assert.equal(got.length, 1)
  assert.deepEqual(asPodSees(got[0]), full)
})

test('a merge holds at most 64 datagrams; UDP and TCP merges do not mix', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true, uso: true })
  const frames = Array.from({ length: 100 }, (_, k) => dgram(k, {}, 32))
  deliver(rig, frames.slice(0, 50))
  deliver(rig, frames.slice(50))
  // Batches of 50: each is one merge (<= 64).
  assert.deepEqual(rig.take(a).map((r) => asPodSees(r).length), [50, 50])
  const many = Array.from({ length: 130 }, (_, k) => dgram(k, {}, 16))
  const packets = many.map((f) => vxlanPacket(VNI_A, f))
  rig.fromUnderlay([fromPeer(PEER_1, concatBytes(...packets.slice(0, 70)), packets[0].length), fromPeer(PEER_1, concatBytes(...packets.slice(70)), packets[0].length)])
  const got = rig.take(a)
  assert.ok(got.every((r) => asPodSees(r).length <= 64))
  assert.deepEqual(got.flatMap(asPodSees), many)
  const tcp = tcpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, payload: pattern(200, 1), id: 0x102 })
  const mixed = [dgram(0), dgram(1), tcp, dgram(2), dgram(3)]
  deliver(rig, mixed.map((f) => f), false)
  assert.deepEqual(rig.take(a).flatMap(asPodSees), mixed)
})
