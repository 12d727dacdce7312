/**
 * Frames from pods: switching between local pods, flooding, encapsulation to a
 * peer, VNI isolation, MTU, port security and the ARP answers the agent gives
 * itself. Every test also checks that nothing went anywhere else and which
 * drop counters moved.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { hex } from '../wire/bytes'
import { BROADCAST, arpFrame, pattern, tcpFrame, udpFrame, vxlanPacket } from '../wire/frames'
import { A, B, C, GATEWAY, PEER_1, PEER_2, R, ROUTER_MAC, Rig, VNI_A, VNI_B, VXLAN_PORT, fromPeer } from './rig'

/** A broadcast UDP frame from `who` (to 10.1.0.255), as DHCP or service discovery send. */
function bcastFrom(who: { mac: string; ip: string }, seed = 1): Uint8Array {
  return udpFrame({ ethSrc: who.mac, ethDst: BROADCAST, src: who.ip, dst: '10.1.0.255', payload: pattern(64, seed) })
}

function tcpTo(from: { mac: string; ip: string }, to: { mac: string; ip: string }, seed = 1): Uint8Array {
  return tcpFrame({ ethSrc: from.mac, ethDst: to.mac, src: from.ip, dst: to.ip, payload: pattern(200, seed) })
}

/** Teaches the datapath that `who` sits behind `peer` (a broadcast ARP from it). */
function learnRemote(rig: Rig, peer: number, who: { mac: string; ip: string }, vni = VNI_A): void {
  rig.fromUnderlay([fromPeer(peer, vxlanPacket(vni, arpFrame({ ethSrc: who.mac, spa: who.ip, tpa: '10.1.0.250' })))])
}

test('broadcast from a pod: once to the other local pod and once to every peer, not back, not to another VNI', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const other = rig.addPod({ ...C, vni: VNI_B })
  const f = bcastFrom(A)
  rig.fromPod(a, [f])
  assert.deepEqual(rig.takeFrames(b), [f])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.takeFrames(other), [])
  assert.deepEqual(rig.takeUnderlay(), [
    { bytes: vxlanPacket(VNI_A, f), addr: PEER_1, port: VXLAN_PORT, gso: 0 },
    { bytes: vxlanPacket(VNI_A, f), addr: PEER_2, port: VXLAN_PORT, gso: 0 },
  ])
  assert.deepEqual(rig.drops(), {})
})

test('unicast to a local pod: only that pod, nothing to the peers', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const c = rig.addPod(C)
  const f = tcpTo(A, B)
  rig.fromPod(a, [f])
  assert.deepEqual(rig.takeFrames(b), [f])
  assert.deepEqual(rig.takeFrames(c), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), {})
})

test('a batch of frames between two pods arrives in order, in one write', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const frames = [1, 2, 3, 4, 5].map((s) => tcpTo(A, B, s))
  rig.fromPod(a, frames)
  assert.equal(b.io.writes, 1)
  assert.deepEqual(rig.takeFrames(b), frames)
})

test('a MAC learned behind a local pod: flooded while unknown, then unicast to that pod only', () => {
  const rig = new Rig()
  // The pod bridges other MACs (a VM or a nested bridge): no port security.
  const a = rig.addPod({ ...A, portSecurity: false })
  const b = rig.addPod(B)
  const x = { mac: '02:00:00:00:00:77', ip: '10.1.0.77' }
  const toX = tcpTo(B, x)
  rig.fromPod(b, [toX])
  assert.deepEqual(rig.takeFrames(a), [toX], 'unknown unicast floods to local pods')
  assert.equal(rig.takeUnderlay().length, 2, 'and to both peers')

  rig.fromPod(a, [bcastFrom(x)])
  assert.equal(rig.takeFrames(b).length, 1)
  assert.equal(rig.takeUnderlay().length, 2)

  rig.fromPod(b, [toX])
  assert.deepEqual(rig.takeFrames(a), [toX], 'learned: unicast to the pod')
  assert.deepEqual(rig.takeUnderlay(), [], 'no longer flooded to the peers')
  assert.deepEqual(rig.drops(), {})
})

test('to a MAC behind a peer: one VXLAN datagram to that peer, frame unchanged behind the header', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  learnRemote(rig, PEER_1, R)
  rig.takeFrames(a)
  rig.takeFrames(b)
  const f = tcpTo(A, R)
  rig.fromPod(a, [f])
  const sent = rig.takeUnderlay()
  assert.equal(sent.length, 1)
  assert.equal(sent[0].addr, PEER_1)
  assert.equal(sent[0].port, VXLAN_PORT)
  assert.equal(sent[0].gso, 0)
  // RFC 7348 §5: flags 0x08 (I), 24 reserved bits, VNI 100 = 0x000064, 8 reserved bits.
  assert.deepEqual(sent[0].bytes.subarray(0, 8), hex('08 00 00 00  00 00 64 00'))
  assert.deepEqual(sent[0].bytes.subarray(8), f)
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.drops(), {})
})

test('VNI isolation: two VNIs with the same MACs and IPs never cross', () => {
  const rig = new Rig({ peers: [PEER_1] })
  const a1 = rig.addPod({ ...A, vni: VNI_A })
  const b1 = rig.addPod({ ...B, vni: VNI_A })
  const c1 = rig.addPod({ ...C, vni: VNI_A })
  const a2 = rig.addPod({ ...A, vni: VNI_B })
  const b2 = rig.addPod({ ...B, vni: VNI_B })
  const all = [a1, b1, c1, a2, b2]
  const quiet = (except: typeof all): void => {
    for (const p of all) if (!except.includes(p)) assert.deepEqual(rig.takeFrames(p), [], `pod ${p.spec.name} (VNI ${p.spec.vni}) got nothing`)
  }

  const bc = bcastFrom(A, 1)
  rig.fromPod(a1, [bc])
  assert.deepEqual(rig.takeFrames(b1), [bc])
  assert.deepEqual(rig.takeFrames(c1), [bc])
  quiet([b1, c1])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_A, bc)])
  rig.fromPod(a2, [bc])
  assert.deepEqual(rig.takeFrames(b2), [bc])
  quiet([b2])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_B, bc)])

  // Unicast to the shared MAC stays in the sender's VNI.
  const u = tcpTo(A, B)
  rig.fromPod(a1, [u])
  assert.deepEqual(rig.takeFrames(b1), [u])
  quiet([b1])
  rig.fromPod(a2, [u])
  assert.deepEqual(rig.takeFrames(b2), [u])
  quiet([b2])

  // ARP suppression answers from the sender's VNI only: 10.1.0.12 exists in VNI A, not B.
  const ask = arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: C.ip })
  rig.fromPod(a2, [ask])
  assert.deepEqual(rig.takeFrames(b2), [ask], 'no answer in VNI B: flooded')
  quiet([b2])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_B, ask)])

  // From the underlay, the VNI picks the pod.
  const fromR = tcpTo(R, B)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_B, fromR))])
  assert.deepEqual(rig.takeFrames(b2), [fromR])
  quiet([b2])
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_A, fromR))])
  assert.deepEqual(rig.takeFrames(b1), [fromR])
  quiet([b1])
  const bcR = bcastFrom(R, 2)
  rig.fromUnderlay([fromPeer(PEER_1, vxlanPacket(VNI_B, bcR))])
  assert.deepEqual(rig.takeFrames(a2), [bcR])
  assert.deepEqual(rig.takeFrames(b2), [bcR])
  quiet([])

  // R was learned in both VNIs now; a MAC learned in VNI A only stays unknown in B.
  learnRemote(rig, PEER_1, { mac: '02:00:00:00:03:03', ip: '10.1.0.103' }, VNI_A)
  for (const p of [b1, c1, a1]) rig.takeFrames(p)
  const toNew = tcpTo(A, { mac: '02:00:00:00:03:03', ip: '10.1.0.103' })
  rig.fromPod(a1, [toNew])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_A, toNew)])
  quiet([])
  rig.fromPod(a2, [toNew])
  assert.deepEqual(rig.takeFrames(b2), [toNew], 'unknown in VNI B: flooded')
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_B, toNew)])
  quiet([])
  assert.deepEqual(rig.drops(), {})
})

test('MTU: an IP packet of the pod MTU passes, one byte more is dropped as mtu', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, mtu: 1500 })
  const b = rig.addPod(B)
  // IPv4 20 + TCP 20 + 1460 = 1500; frame 1514.
  const fits = tcpFrame({ ethSrc: A.mac, ethDst: B.mac, src: A.ip, dst: B.ip, payload: pattern(1460) })
  const over = tcpFrame({ ethSrc: A.mac, ethDst: B.mac, src: A.ip, dst: B.ip, payload: pattern(1461) })
  rig.fromPod(a, [fits, over])
  assert.deepEqual(rig.takeFrames(b), [fits])
  assert.deepEqual(rig.drops(), { Mtu: 1 })
})

test('MTU on a pod with vnet headers: a frame without GSO over the MTU is dropped as mtu', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, mtu: 1400, vnetHdr: true })
  const b = rig.addPod({ ...B, vnetHdr: true })
  const fits = tcpFrame({ ethSrc: A.mac, ethDst: B.mac, src: A.ip, dst: B.ip, payload: pattern(1360) })
  const over = tcpFrame({ ethSrc: A.mac, ethDst: B.mac, src: A.ip, dst: B.ip, payload: pattern(1361) })
  rig.fromPod(a, [fits, over])
  assert.deepEqual(rig.takeFrames(b), [fits])
  assert.deepEqual(rig.drops(), { Mtu: 1 })
})

test('port security: spoofed source MAC, source IP and ARP sender are dropped as spoofed; the spoofed MAC is not learned', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const x = { mac: '02:00:00:00:00:77', ip: '10.1.0.77' }
  const spoofs = [
    // Someone else's source MAC.
    udpFrame({ ethSrc: x.mac, ethDst: BROADCAST, src: A.ip, dst: '10.1.0.255', payload: pattern(20) }),
    // Own MAC, someone else's IP.
    udpFrame({ ethSrc: A.mac, ethDst: B.mac, src: x.ip, dst: B.ip, payload: pattern(20) }),
    // ARP from the own MAC, claiming another hardware address as sender.
    arpFrame({ ethSrc: A.mac, sha: x.mac, spa: A.ip, tpa: B.ip }),
    // ARP claiming another IP (ARP cache poisoning).
    arpFrame({ ethSrc: A.mac, sha: A.mac, spa: x.ip, tpa: B.ip }),
  ]
  rig.fromPod(a, spoofs)
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), { Spoofed: 4 })

  // Not learned: a frame to x is still unknown unicast, so it floods to the peers too.
  const toX = tcpTo(B, x)
  rig.fromPod(b, [toX])
  assert.deepEqual(rig.takeFrames(a), [toX])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.addr), [PEER_1, PEER_2])
  assert.deepEqual(rig.drops(), { Spoofed: 4 })
})

test('port security lets through the pod as itself, source 0.0.0.0 (DHCP) and an ARP probe', () => {
  const rig = new Rig({ peers: [] })
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const ok = [
    tcpTo(A, B),
    udpFrame({ ethSrc: A.mac, ethDst: BROADCAST, src: '0.0.0.0', dst: '255.255.255.255', sport: 68, dport: 67, payload: pattern(240) }),
    // RFC 5227 probe: sender IP 0.0.0.0.
    arpFrame({ ethSrc: A.mac, spa: '0.0.0.0', tpa: '10.1.0.200' }),
  ]
  rig.fromPod(a, ok)
  assert.deepEqual(rig.takeFrames(b), ok)
  assert.deepEqual(rig.drops(), {})
})

test('without port security a pod may send as anyone', () => {
  const rig = new Rig({ peers: [] })
  const a = rig.addPod({ ...A, portSecurity: false })
  const b = rig.addPod(B)
  const f = udpFrame({ ethSrc: '02:00:00:00:00:77', ethDst: B.mac, src: '10.9.9.9', dst: B.ip, payload: pattern(20) })
  rig.fromPod(a, [f])
  assert.deepEqual(rig.takeFrames(b), [f])
  assert.deepEqual(rig.drops(), {})
})

test('ARP for the gateway is answered with the router MAC, back to the asking pod only', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  rig.fromPod(a, [arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: GATEWAY })])
  const reply = arpFrame({ op: 2, ethDst: A.mac, ethSrc: ROUTER_MAC, sha: ROUTER_MAC, spa: GATEWAY, tha: A.mac, tpa: A.ip })
  assert.deepEqual(rig.takeFrames(a), [reply])
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.equal(rig.dp.arpAnswered, 1)
  assert.deepEqual(rig.drops(), {})
})

test('ARP for the gateway from a pod with vnet headers: the reply carries a "no offload" header', () => {
  const rig = new Rig()
  const a = rig.addPod({ ...A, vnetHdr: true })
  // A stale header on the request must not leak into the reply.
  rig.fromPod(a, [arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: GATEWAY })], { flags: 1, csumStart: 20, csumOffset: 6 })
  const got = rig.take(a)
  assert.equal(got.length, 1)
  assert.deepEqual(got[0].vnet, { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 })
  assert.deepEqual(got[0].frame, arpFrame({ op: 2, ethDst: A.mac, ethSrc: ROUTER_MAC, sha: ROUTER_MAC, spa: GATEWAY, tha: A.mac, tpa: A.ip }))
})

test('ARP suppression answers for a known pod IP (local, and learned from a peer); unknown IPs flood', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  rig.fromPod(a, [arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: B.ip })])
  assert.deepEqual(rig.takeFrames(a), [arpFrame({ op: 2, ethDst: A.mac, ethSrc: B.mac, sha: B.mac, spa: B.ip, tha: A.mac, tpa: A.ip })])
  assert.deepEqual(rig.takeFrames(b), [], 'the owner is not bothered')
  assert.deepEqual(rig.takeUnderlay(), [], 'nor the peers')

  learnRemote(rig, PEER_1, R)
  rig.takeFrames(a)
  rig.takeFrames(b)
  rig.fromPod(a, [arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: R.ip })])
  assert.deepEqual(rig.takeFrames(a), [arpFrame({ op: 2, ethDst: A.mac, ethSrc: R.mac, sha: R.mac, spa: R.ip, tha: A.mac, tpa: A.ip })])
  assert.deepEqual(rig.takeUnderlay(), [])

  const unknown = arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: '10.1.0.200' })
  rig.fromPod(a, [unknown])
  assert.deepEqual(rig.takeFrames(b), [unknown])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.addr), [PEER_1, PEER_2])
  assert.equal(rig.dp.arpAnswered, 2)
  assert.deepEqual(rig.drops(), {})
})

test('with ARP suppression off, a request for a pod IP floods like any broadcast', () => {
  const rig = new Rig({ arpSuppression: false })
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  const ask = arpFrame({ ethSrc: A.mac, spa: A.ip, tpa: B.ip })
  rig.fromPod(a, [ask])
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.takeFrames(b), [ask])
  assert.deepEqual(rig.takeUnderlay().map((d) => d.bytes), [vxlanPacket(VNI_A, ask), vxlanPacket(VNI_A, ask)])
  assert.equal(rig.dp.arpAnswered, 0)
})

test('a frame to the router MAC has no route (no_route), a runt is malformed', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  const b = rig.addPod(B)
  rig.fromPod(a, [tcpTo(A, { mac: ROUTER_MAC, ip: '8.8.8.8' }), tcpTo(A, B).subarray(0, 13)])
  assert.deepEqual(rig.takeFrames(b), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), { NoRoute: 1, Malformed: 1 })
})

test('a routed frame the local responder drops is counted as dns_invalid, one it does not take as no_route', () => {
  const rig = new Rig()
  const a = rig.addPod(A)
  let calls = 0
  // The responder takes frames to 10.96.0.10 (and drops them: unreadable), not others.
  rig.dp.responder = (buf, _frame, l3) => { calls++; return buf[l3 + 16] === 10 && buf[l3 + 17] === 96 ? -1 : 0 }
  rig.fromPod(a, [tcpTo(A, { mac: ROUTER_MAC, ip: '10.96.0.10' }), tcpTo(A, { mac: ROUTER_MAC, ip: '8.8.8.8' })])
  assert.equal(calls, 2)
  assert.deepEqual(rig.takeFrames(a), [])
  assert.deepEqual(rig.takeUnderlay(), [])
  assert.deepEqual(rig.drops(), { DnsInvalid: 1, NoRoute: 1 })
})
