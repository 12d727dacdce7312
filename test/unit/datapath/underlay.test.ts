/**
 * Datagrams from the underlay: who may send (peers only), what a VXLAN packet
 * must look like (RFC 7348 §5), which VNI it belongs to, and where its frame
 * goes (local pods only: split horizon).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BROADCAST, arpFrame, pattern, tcpFrame, udpFrame, vxlanPacket } from '../wire/frames'
import { A, B, PEER_1, PEER_2, R, R2, Rig, STRANGER, VNI_A, VNI_B, fromPeer } from './rig'

function tcpTo(from: { mac: string; ip: string }, to: { mac: string; ip: string }, seed = 1): Uint8Array {
  return tcpFrame({ ethSrc: from.mac, ethDst: to.mac, src: from.ip, dst: to.ip, payload: pattern(300, seed) })
}

const BCAST_FROM_R = udpFrame({ ethSrc: R.mac, ethDst: BROADCAST, src: R.ip, dst: '10.1.0.255', payload: pattern(50) })

test('a unicast from a peer reaches its local pod, unchanged', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const f = tcpTo(R, A)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, f))])
  assert.deepEqual(rig.takeFrames(a), [f])
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.drops(), {})
})

test('from an address that is not a peer: dropped as unknown_peer', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  rig.fromUnderlay([fromPeer(STRANGER, vxlanPacket(VNI_A, tcpTo(R, A))), fromPeer(STRANGER, vxlanPacket(VNI_A, BCAST_FROM_R))])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.drops(), { UnknownPeer: 2 })
})

test('with learnPeers on, a new sender becomes a peer', () => {
  const rig = new Rig({ learnPeers: true, peers: [] })
  const a = rig.addPod(A)
  const f = tcpTo(R, A)
  rig.fromUnderlay([fromPeer(STRANGER, vxlanPacket(VNI_A, f))])
  assert.deepEqual(rig.takeFrames(a), [f])
  assert.equal(rig.dp.peers.indexOf(STRANGER) >= 0, true)
  assert.deepEqual(rig.drops(), {})
})

test('a VNI no network uses: dropped as unknown_vni', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(999, tcpTo(R, A)))])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.drops(), { UnknownVni: 1 })
})

test('VXLAN without the I flag: dropped as vxlan_no_i_flag (RFC 7348 §5)', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  // Flags 0x00, and 0xf7 (every bit but I).
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, tcpTo(R, A), 0x00)), fromPeer(PEER_1, vxlanPacket(VNI_A, tcpTo(R, A), 0xf7))])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.drops(), { VxlanNoIFlag: 2 })
})

test('reserved bits beside the I flag are ignored on receipt (RFC 7348 §5, our documented policy)', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const f = tcpTo(R, A)
  const p = vxlanPacket(VNI_A, f, 0xff)
  p[1] = 0xff
  p[7] = 0xff
  rig.fromUnderlay([fromPeer(PEER_1, p)])
  assert.deepEqual(rig.takeFrames(a), [f])
  assert.deepEqual(rig.drops(), {})
})

test('truncated datagrams are malformed: empty, shorter than VXLAN, inner frame shorter than Ethernet', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const full = vxlanPacket(VNI_A, tcpTo(R, A))
  rig.fromUnderlay([
    fromPeer(PEER_1, new Uint8Array(0)),
    fromPeer(PEER_1, full.subarray(0, 7)),
    fromPeer(PEER_1, full.subarray(0, 8)),
    fromPeer(PEER_1, full.subarray(0, 8 + 13)),
  ])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.drops(), { Malformed: 4 })
})

test('split horizon: a broadcast from a peer goes to every local pod of its VNI once and to no peer', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const other = rig.addPod({ mac: '02:00:00:00:00:0c', ip: '10.1.0.12', vni: VNI_B })
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, BCAST_FROM_R))])
  assert.deepEqual(rig.takeFrames(a), [BCAST_FROM_R])
  assert.deepEqual(rig.takeFrames(b), [BCAST_FROM_R])
  assert.deepEqual(rig.takeFrames(other), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), {})
})

test('split horizon: unknown unicast from a peer floods to local pods only', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const f = tcpTo(R, { mac: '02:00:00:00:00:55', ip: '10.1.0.55' })
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, f))])
  assert.deepEqual(rig.takeFrames(a), [f])
  assert.deepEqual(rig.takeFrames(b), [f])
  assert.deepEqual(rig.takeUnderlay(), [])
})

test('unicast from a peer to a MAC behind another peer is not forwarded (not_local)', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  rig.fromUnderlay([fromPeer(PEER_2, vxlanPacket(VNI_A, arpFrame({ ethSrc: R2.mac, spa: R2.ip, tpa: '10.1.0.250' })))])
  rig.takeFrames(a)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, tcpTo(R, R2)))])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), { NotLocal: 1 })
})

test('source MACs from the underlay are learned per peer, and move when seen behind another peer', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, BCAST_FROM_R))])
  rig.takeFrames(a)
  rig.fromPod(a, [tcpTo(A, R)])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.addr), [PEER_1])
  rig.now += 10
  rig.fromUnderlay([fromPeer(PEER_2, vxlanPacket(VNI_A, BCAST_FROM_R))])
  rig.takeFrames(a)
  rig.fromPod(a, [tcpTo(A, R)])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.addr), [PEER_2])
  assert.deepEqual(rig.drops(), {})
})

test('a datagram claiming a local pod\'s MAC does not move it (static entry)', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, udpFrame({ ethSrc: B.mac, ethDst: BROADCAST, src: B.ip, dst: '10.1.0.255', payload: pattern(10) })))])
  rig.takeFrames(a)
  rig.takeFrames(b)
  const f = tcpTo(A, B)
  rig.fromPod(a, [f])
  assert.deepEqual(rig.takeFrames(b), [f])
  assert.deepEqual(rig.takeUnderlay(), [])
})
