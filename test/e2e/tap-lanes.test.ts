/**
 * The pod side of the priority lane on a real multi-queue TAP: the steering
 * program (overlay/steering.ts podLaneProgram, loaded with bpf() and set with
 * TUNSETSTEERINGEBPF) sends the frames a namespace's kernel transmits to queue 1
 * when they are ARP, ICMP or ICMPv6, and everything else (TCP, UDP, IPv6 with
 * extension headers) to queue 0.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { Lab } from '../harness/lab'

const FIXTURE = path.join(__dirname, 'fixtures', 'tap-lanes.js')

test('a multi-queue TAP with the lane program: ARP, ICMP and ICMPv6 on queue 1, TCP and UDP on queue 0', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const ns = lab.netns('taplanes')
  const p = lab.spawn(ns, [process.execPath, FIXTURE])
  assert.equal(await p.exited, 0, p.stderr())
  const seen = JSON.parse(p.stdout().trim()) as Record<string, [number, number]>
  t.diagnostic(JSON.stringify(seen))
  assert.deepEqual(seen.udp, [20, 0])
  assert.ok(seen.tcp[0] >= 10 && seen.tcp[1] === 0, `tcp ${seen.tcp}`)
  assert.deepEqual(seen.icmp, [0, 5])
  assert.ok(seen.arp[0] === 0 && seen.arp[1] >= 1, `arp ${seen.arp}`)
  assert.ok(seen.icmp6[0] === 0 && seen.icmp6[1] >= 1, `icmp6 ${seen.icmp6}`)
})
