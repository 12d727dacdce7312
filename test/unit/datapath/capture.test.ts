/**
 * The capture hook sees every frame at the four points (pod rx/tx, underlay
 * rx/tx), with the metadata a pcap writer needs, and frames that are dropped
 * after the rx point are still seen there.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { UNDERLAY_PORT } from '../../../src/datapath/datapath'
import {
  TCP_ACK, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, arpFrame, pattern, readVnet, tcpFrame, vnetHeader, vxlanPacket,
} from '../wire/frames'
import { A, B, PEER_1, PEER_SPORT, R, RecordingCapture, Rig, STRANGER, VNI_A, VXLAN_PORT, fromPeer } from './rig'

function tcpTo(from: { mac: string; ip: string }, to: { mac: string; ip: string }, len = 100): Uint8Array {
  return tcpFrame({ ethSrc: from.mac, ethDst: to.mac, src: from.ip, dst: to.ip, payload: pattern(len) })
}

function setup(o: { gso?: boolean; vnet?: boolean } = {}): { rig: Rig; cap: RecordingCapture; a: ReturnType<Rig['addPod']>; b: ReturnType<Rig['addPod']> } {
  const rig = new Rig({ gso: o.gso, peers: [PEER_1] })
  const a = rig.addPod({ ...A, vnetHdr: o.vnet })
  const b = rig.addPod({ ...B, vnetHdr: o.vnet })
  // R behind PEER_1, learned before the capture starts.
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, arpFrame({ ethSrc: R.mac, spa: R.ip, tpa: '10.1.0.250' })))])
  rig.take(a)
  rig.take(b)
  const cap = new RecordingCapture()
  rig.dp.capture = cap
  return { rig, cap, a, b }
}

test('capture: pod to pod is seen at PodRx (sender) and PodTx (receiver)', () => {
  const { rig, cap, a, b } = setup()
  const f = tcpTo(A, B)
  rig.fromPod(a, [f])
  assert.deepEqual(cap.seen, [
    { point: 'PodRx', port: a.id, vni: VNI_A, bytes: f, vnet: null, addr: 0, udpPort: 0, localPort: 0 },
    { point: 'PodTx', port: b.id, vni: VNI_A, bytes: f, vnet: null, addr: 0, udpPort: 0, localPort: 0 },
  ])
})

test('capture: pod to peer is seen at PodRx and UnderlayTx (UDP payload, remote VTEP, ports)', () => {
  const { rig, cap, a } = setup()
  const f = tcpTo(A, R)
  rig.fromPod(a, [f])
  assert.deepEqual(cap.seen, [
    { point: 'PodRx', port: a.id, vni: VNI_A, bytes: f, vnet: null, addr: 0, udpPort: 0, localPort: 0 },
    { point: 'UnderlayTx', port: UNDERLAY_PORT, vni: VNI_A, bytes: vxlanPacket(VNI_A, f), vnet: null, addr: PEER_1, udpPort: VXLAN_PORT, localPort: VXLAN_PORT },
  ])
})

test('capture: underlay to pod is seen at UnderlayRx (with the sender) and PodTx', () => {
  const { rig, cap, b } = setup()
  const f = tcpTo(R, B)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, f))])
  assert.deepEqual(cap.seen, [
    { point: 'UnderlayRx', port: UNDERLAY_PORT, vni: VNI_A, bytes: vxlanPacket(VNI_A, f), vnet: null, addr: PEER_1, udpPort: PEER_SPORT, localPort: VXLAN_PORT },
    { point: 'PodTx', port: b.id, vni: VNI_A, bytes: f, vnet: null, addr: 0, udpPort: 0, localPort: 0 },
  ])
})

test('capture: dropped frames are still seen where they came in, and nowhere else', () => {
  const { rig, cap, a } = setup()
  const spoofed = tcpTo({ mac: '02:00:00:00:00:77', ip: A.ip }, B)
  rig.fromPod(a, [spoofed])
  const stray = vxlanPacket(VNI_A, tcpTo(R, B))
  rig.fromUnderlay([fromPeer(STRANGER, stray)])
  assert.deepEqual(cap.seen.map((s) => [s.point, s.bytes]), [['PodRx', spoofed], ['UnderlayRx', stray]])
  assert.deepEqual(rig.drops(), { Spoofed: 1, UnknownPeer: 1 })
})

test('capture: a GSO run is seen as the datagrams it becomes; a vnet pod\'s header is shown', () => {
  const { rig, cap, a } = setup({ gso: true, vnet: true })
  const o = { ethSrc: A.mac, ethDst: R.mac, src: A.ip, dst: R.ip, payload: pattern(5000), flags: TCP_ACK }
  const vnet = { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 }
  const partial = tcpFrame({ ...o, csum: 'partial' })
  rig.fromPod(a, [partial], vnet)
  assert.deepEqual(cap.seen[0], { point: 'PodRx', port: a.id, vni: VNI_A, bytes: partial, vnet: vnetHeader(vnet), addr: 0, udpPort: 0, localPort: 0 })
  const tx = cap.seen.slice(1)
  assert.deepEqual(tx.map((s) => [s.point, s.bytes.length, s.addr, s.vni]), [
    ['UnderlayTx', 1510, PEER_1, VNI_A], ['UnderlayTx', 1510, PEER_1, VNI_A], ['UnderlayTx', 1510, PEER_1, VNI_A],
    ['UnderlayTx', 8 + 54 + 5000 - 3 * 1448, PEER_1, VNI_A],
  ])
  const sent = rig.takeUnderlay()
  assert.equal(sent.length, 1)
  assert.deepEqual(tx.map((s) => s.bytes), [0, 1, 2, 3].map((k) => sent[0].bytes.slice(k * 1510, (k + 1) * 1510)))
})

test('capture: a merged GRO frame is seen once at PodTx with its GSO header', () => {
  const { rig, cap, b } = setup({ vnet: true })
  const segs = [0, 1, 2].map((k) => tcpFrame({ ethSrc: R.mac, ethDst: B.mac, src: R.ip, dst: B.ip, seq: k * 1000, id: k, payload: pattern(1000, k) }))
  rig.fromUnderlay(segs.map((s) => fromPeer(PEER_1, vxlanPacket(VNI_A, s))))
  assert.deepEqual(cap.seen.map((s) => s.point), ['UnderlayRx', 'UnderlayRx', 'UnderlayRx', 'PodTx'])
  const tx = cap.seen[3]
  assert.equal(tx.port, b.id)
  assert.equal(tx.bytes.length, 54 + 3000)
  assert.deepEqual(readVnet(tx.vnet!), { flags: 1, gsoType: 1, hdrLen: 54, gsoSize: 1000, csumStart: 34, csumOffset: 16 })
  assert.deepEqual([tx.bytes, tx.vnet], (() => { const r = rig.take(b)[0]; return [r.frame, vnetHeader(r.vnet!)] })())
})

test('capture: nothing is seen once the hook is removed', () => {
  const { rig, cap, a } = setup()
  rig.dp.capture = null
  rig.fromPod(a, [tcpTo(A, B), tcpTo(A, R)])
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, tcpTo(R, A)))])
  assert.deepEqual(cap.seen, [])
})
