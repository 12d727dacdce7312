/**
 * With workers, a service connection's NAT entry lives in one worker, but an
 * ICMP error about it may be read by another (worker 0 reads every ICMP
 * through the priority lane). Two datapaths as workers 0 and 1 of one agent,
 * wired to each other as the agent wires them: the error goes to the worker
 * whose flow it is about, which translates it, for an error to the client
 * (the endpoint's port unreachable) and one from the client (its port
 * unreachable about a reply from the VIP), and the number of hand-overs is
 * bounded.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { A, B, Pod, ROUTER_MAC, Rig } from './rig'
import { ServiceStat } from '../../../src/service/service-path'
import { HANDOVER_PER_SECOND } from '../../../src/datapath/datapath'
import { steerWorkerV4 } from '../../../src/wire/steer-hash'
import { ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH } from '../../../src/wire/icmp'
import { macParse } from '../../../src/wire/addr'
import { macWrite } from '../../../src/wire/ethernet'
import { Frame, decode, embedded, frame, icmpErrorFrame, icmpOk, ip } from '../service/frames'
import { get16 } from '../wire/frames'
import { ipv4Format } from '../../../src/wire/addr'

const VIP = '10.96.0.10'

function bytes(f: Frame, dstMac?: string, srcMac?: string): Uint8Array {
  for (const [m, at] of [[dstMac, 0], [srcMac, 6]] as const) {
    if (m === undefined) continue
    const p = macParse(m)!
    macWrite(f.buf, f.off + at, p.hi, p.lo)
  }
  return f.buf.slice(f.off, f.off + f.len)
}

/** The addresses and ports of the packet an ICMP error quotes. */
function quoted(err: Frame): { src: string; dst: string; sport: number; dport: number } {
  const q = embedded(err)
  const l4 = q.l3 + ((q.buf[q.l3] & 0x0f) << 2)
  const addr = (at: number): string => ipv4Format(((q.buf[at] << 24) | (q.buf[at + 1] << 16) | (q.buf[at + 2] << 8) | q.buf[at + 3]) >>> 0)
  return { src: addr(q.l3 + 12), dst: addr(q.l3 + 16), sport: get16(q.buf, l4), dport: get16(q.buf, l4 + 2) }
}

function asFrame(b: Uint8Array): Frame {
  const buf = new Uint8Array(b.length + 64)
  buf.set(b, 64)
  return { buf, off: 64, l3: 64 + 14, len: b.length }
}

test('workers: ICMP errors about a service connection go to the worker that holds it, both ways', () => {
  const handed: Array<{ worker: number; pod: number; fromPod: boolean }> = []
  const rigs: Rig[] = []
  for (const worker of [0, 1]) {
    rigs.push(new Rig({
      steer: { workers: 2, worker },
      onHandOver: (to, pod, f, fromPod) => { handed.push({ worker: to, pod, fromPod }); rigs[to].dp.deliverHandedOver(pod, f, fromPod) },
    }))
  }
  const pods: Pod[][] = rigs.map((r) => [r.addPod({ mac: A.mac, ip: A.ip }), r.addPod({ mac: B.mac, ip: B.ip })])
  assert.deepEqual(pods[0].map((p) => p.id), pods[1].map((p) => p.id), 'the same port ids in every worker')
  for (const r of rigs) r.dp.services.upsert({ name: 'dns', clusterIP: VIP, ports: [{ port: 53, targetPort: 5353, protocol: 'UDP' }], endpoints: [{ ip: B.ip }] })
  // A client port whose flow worker 1 reads, as the steering programs would give it.
  let cport = 40000
  while (steerWorkerV4(ip(A.ip), ip(VIP), cport, 53, 2) !== 1) cport++
  const [w0, w1] = rigs
  const [a1, b1] = pods[1]
  const [a0, b0] = pods[0]

  // The query: worker 1 makes the connection and forwards it to the endpoint.
  w1.fromPod(a1, [bytes(frame({ proto: 'udp', src: A.ip, dst: VIP, sport: cport, dport: 53, payload: [1, 2, 3], srcMac: A.mac, dstMac: ROUTER_MAC }))])
  const [atB] = w1.takeFrames(b1)
  assert.ok(atB, 'the endpoint got the query')
  const q = decode(asFrame(atB))
  assert.deepEqual([q.src, q.dst, q.dport], [A.ip, B.ip, 5353])
  const seenPort = q.sport
  assert.equal(steerWorkerV4(ip(B.ip), ip(A.ip), 5353, seenPort, 2), 1, 'the reply tuple is pinned to worker 1')

  // The endpoint's port unreachable, read by worker 0 (the lane): handed to worker 1, delivered as from the VIP.
  const unreach = icmpErrorFrame(B.ip, A.ip, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, asFrame(atB))
  w0.fromPod(b0, [bytes(unreach, A.mac, B.mac)])
  assert.deepEqual(w0.takeFrames(a0), [], 'worker 0 did not deliver it untranslated')
  assert.deepEqual(handed, [{ worker: 1, pod: a1.id, fromPod: false }])
  const [toClient] = w1.takeFrames(a1)
  assert.ok(toClient, 'worker 1 delivered it')
  const err = asFrame(toClient)
  assert.ok(icmpOk(err))
  const outer = decode(err)
  assert.deepEqual([outer.src, outer.dst], [VIP, A.ip])
  assert.deepEqual(quoted(err), { src: A.ip, dst: VIP, sport: cport, dport: 53 }, 'about the packet the client sent')
  assert.equal(w0.dp.servicePath.stats[ServiceStat.IcmpHandedOver], 1)
  assert.equal(w1.dp.servicePath.stats[ServiceStat.IcmpTranslated], 1)

  // A reply from the endpoint (worker 1 reads it, by the pinned tuple), then the client's port unreachable about it.
  w1.fromPod(b1, [bytes(frame({ proto: 'udp', src: B.ip, dst: A.ip, sport: 5353, dport: seenPort, payload: [4, 5], srcMac: B.mac, dstMac: A.mac }))])
  const [reply] = w1.takeFrames(a1)
  const r = decode(asFrame(reply))
  assert.deepEqual([r.src, r.sport, r.dst, r.dport], [VIP, 53, A.ip, cport])
  const back = icmpErrorFrame(A.ip, VIP, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, asFrame(reply))
  w0.fromPod(a0, [bytes(back, ROUTER_MAC, A.mac)])
  assert.deepEqual(handed[1], { worker: 1, pod: a0.id, fromPod: true })
  assert.deepEqual(w0.takeFrames(b0), [], 'worker 0 did not forward it')
  assert.equal(w0.dp.servicePath.drops.reduce((x, y) => x + y, 0), 0, 'nor counted it as unmatched')
  const [toEndpoint] = w1.takeFrames(b1)
  assert.ok(toEndpoint, 'worker 1 translated it toward the endpoint')
  const e = asFrame(toEndpoint)
  assert.ok(icmpOk(e))
  assert.deepEqual([decode(e).src, decode(e).dst], [A.ip, B.ip])
  assert.deepEqual(quoted(e), { src: B.ip, dst: A.ip, sport: 5353, dport: seenPort }, 'about the packet the endpoint sent')
  assert.equal(w1.dp.servicePath.stats[ServiceStat.IcmpTranslated], 2)

  // An error about a flow of the worker that reads it is not handed anywhere.
  const before = handed.length
  let own = 41000
  while (steerWorkerV4(ip(A.ip), ip(VIP), own, 53, 2) !== 0) own++
  w0.fromPod(a0, [bytes(frame({ proto: 'udp', src: A.ip, dst: VIP, sport: own, dport: 53, payload: [1], srcMac: A.mac, dstMac: ROUTER_MAC }))])
  const [atB0] = w0.takeFrames(b0)
  w0.fromPod(b0, [bytes(icmpErrorFrame(B.ip, A.ip, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, asFrame(atB0)), A.mac, B.mac)])
  assert.equal(handed.length, before)
  assert.equal(decode(asFrame(w0.takeFrames(a0)[0])).src, VIP, 'translated where it was read')
})

test(`workers: hand-overs are bounded to ${HANDOVER_PER_SECOND} a second per worker; the rest are dropped and counted`, () => {
  let handed = 0
  const rig = new Rig({ steer: { workers: 2, worker: 0 }, onHandOver: () => { handed++ } })
  const a = rig.addPod({ mac: A.mac, ip: A.ip })
  const b = rig.addPod({ mac: B.mac, ip: B.ip })
  let port = 40000
  while (steerWorkerV4(ip(A.ip), ip(B.ip), port, 5353, 2) !== 1) port++
  const about = frame({ proto: 'udp', src: A.ip, dst: B.ip, sport: port, dport: 5353, payload: [1] })
  const err = bytes(icmpErrorFrame(B.ip, A.ip, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, about), A.mac, B.mac)
  const send = (n: number): void => { for (let i = 0; i < n; i += 50) rig.fromPod(b, Array.from({ length: Math.min(50, n - i) }, () => err)) }
  send(HANDOVER_PER_SECOND + 100)
  assert.equal(handed, HANDOVER_PER_SECOND)
  assert.deepEqual(rig.drops(), { HandOverLimit: 100 })
  assert.deepEqual(rig.takeFrames(a), [], 'none delivered untranslated either')
  // Half a second refills half the bucket.
  rig.now += 500
  send(600)
  assert.equal(handed, HANDOVER_PER_SECOND + HANDOVER_PER_SECOND / 2)
  assert.deepEqual(rig.drops(), { HandOverLimit: 200 })
})
