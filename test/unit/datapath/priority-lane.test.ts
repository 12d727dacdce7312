/**
 * The priority lane's socket (overlay/steering.ts) beside the underlay socket:
 * what it reads takes the same path as a bulk datagram (peer check, learning,
 * delivery, drops) and is counted apart in priorityRx.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BROADCAST, arpFrame, icmpLikeFrame, pattern, tcpFrame, vxlanPacket } from '../wire/frames'
import { A, B, PEER_1, R, Rig, STRANGER, VNI_A, fromPeer } from './rig'

function icmpFrom(from: { mac: string; ip: string }, to: { mac: string; ip: string }): Uint8Array {
  return icmpLikeFrame({ ethSrc: from.mac, ethDst: to.mac, src: from.ip, dst: to.ip, payload: pattern(56) })
}

test('a datagram read from the priority lane is delivered as from the bulk socket, and counted', () => {
  const rig = new Rig({ priority: true })
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const ping = icmpFrom(R, A)
  const arp = arpFrame({ ethSrc: R.mac, ethDst: BROADCAST, op: 1, sha: R.mac, spa: R.ip, tha: '00:00:00:00:00:00', tpa: '10.1.0.200' })
  const d1 = vxlanPacket(VNI_A, ping)
  const d2 = vxlanPacket(VNI_A, arp)
  rig.fromPriority([fromPeer(PEER_1, d1), fromPeer(PEER_1, d2)])
  assert.deepEqual(rig.takeFrames(a), [ping, arp])
  assert.deepEqual(rig.takeFrames(b), [arp], 'the broadcast floods to the other local pod too')
  assert.deepEqual([...rig.dp.priorityRx], [2, d1.length + d2.length])
  // R's MAC was learned behind the peer from the lane's datagram: a reply from A goes to PEER_1 only.
  rig.fromPod(a, [tcpFrame({ ethSrc: A.mac, ethDst: R.mac, src: A.ip, dst: R.ip, payload: pattern(20) })])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.addr), [PEER_1])
  assert.deepEqual(rig.drops(), {})
})

test('the bulk socket does not count as the priority lane', () => {
  const rig = new Rig({ priority: true })
  const a = rig.addPod(A)
  const f = tcpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, payload: pattern(300) })
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, f))])
  assert.deepEqual(rig.takeFrames(a), [f])
  assert.deepEqual([...rig.dp.priorityRx], [0, 0])
})

test('the priority lane does not bypass the peer check or VXLAN validation', () => {
  const rig = new Rig({ priority: true })
  const a = rig.addPod(A)
  rig.fromPriority([fromPeer(STRANGER, vxlanPacket(VNI_A, icmpFrom(R, A))), fromPeer(PEER_1, vxlanPacket(VNI_A, icmpFrom(R, A), 0x00))])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.drops(), { UnknownPeer: 1, VxlanNoIFlag: 1 })
  assert.equal(rig.dp.priorityRx[0], 2)
})

test('detaching the underlay stops both sockets', () => {
  const rig = new Rig({ priority: true })
  rig.dp.detachUnderlay()
  assert.equal(rig.underlay.started, false)
  assert.equal(rig.priority?.started, false)
})

test("a pod's priority queue: its frames are switched like the bulk queue's, counted apart, and written back through the bulk queue", () => {
  const rig = new Rig({ priority: true })
  const a = rig.addPod({ ...A, prio: true })
  const b = rig.addPod(B)
  const ping = icmpFrom(A, B)
  const toPeer = icmpFrom(A, R)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, tcpFrame({ ethSrc: R.mac, ethDst: A.mac, src: R.ip, dst: A.ip, payload: pattern(10) })))])
  rig.takeFrames(a)
  rig.fromPodPriority(a, [ping, toPeer])
  assert.deepEqual(rig.takeFrames(b), [ping])
  const sent = rig.takeUnderlay()
  assert.equal(sent.length, 1)
  assert.equal(sent[0].addr, PEER_1)
  const pod = rig.dp.pod(a.id)
  assert.ok(pod)
  assert.deepEqual([...pod.prioRx], [2, ping.length + toPeer.length])
  // A reply to A goes out through A's bulk queue (the only one written).
  rig.fromPod(b, [icmpFrom(B, A)])
  assert.equal(a.io.take().length, 1)
  assert.equal(a.prio?.take().length, 0)
  assert.deepEqual(rig.drops(), {})
})

test("port security holds on a pod's priority queue", () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, prio: true })
  const b = rig.addPod(B)
  rig.fromPodPriority(a, [icmpFrom({ mac: A.mac, ip: '10.1.0.99' }, B)])
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.drops(), { Spoofed: 1 })
})

test('removing a pod stops both of its queues', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, prio: true })
  rig.dp.removePod(a.id)
  assert.equal(a.io.started, false)
  assert.equal(a.prio?.started, false)
})
