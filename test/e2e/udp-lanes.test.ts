/**
 * The two receive-side knobs of the underlay socket, on real sockets in a
 * namespace of the test's own: the priority lane's program as the kernel runs it
 * (SO_ATTACH_REUSEPORT_CBPF), and the byte budget of a receive batch.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { Lab } from '../harness/lab'

const FIXTURE = path.join(__dirname, 'fixtures', 'udp-lanes.js')

async function runFixture(lab: Lab, ns: string, args: string[]): Promise<Record<string, unknown>> {
  const p = lab.spawn(ns, [process.execPath, FIXTURE, ...args])
  const code = await p.exited
  assert.equal(code, 0, p.stderr())
  return JSON.parse(p.stdout().trim()) as Record<string, unknown>
}

test('the kernel steers ARP, ICMP and ICMPv6 to the priority socket and TCP/UDP to the bulk socket, from every source port', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const ns = lab.netns('lanes')
  const r = await runFixture(lab, ns, ['lanes']) as { perKind: number; seen: Record<string, { bulk: number; priority: number }> }
  for (const kind of ['arp', 'icmp', 'icmp6']) assert.deepEqual(r.seen[kind], { bulk: 0, priority: r.perKind }, kind)
  for (const kind of ['tcp', 'udp', 'tcp6']) assert.deepEqual(r.seen[kind], { bulk: r.perKind, priority: 0 }, kind)
})

test('a receive batch ends once it holds the byte budget; without one, it takes every datagram queued', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const ns = lab.netns('budget')
  const capped = await runFixture(lab, ns, ['budget', '20000']) as { batches: number[] }
  // 8,000-byte datagrams: 3 reach 20,000 bytes (2 do not), so batches of 3, 3, 3, then the 1 left.
  assert.deepEqual(capped.batches, [3, 3, 3, 1])
  const whole = await runFixture(lab, ns, ['budget', '0']) as { batches: number[] }
  assert.deepEqual(whole.batches, [10])
})
