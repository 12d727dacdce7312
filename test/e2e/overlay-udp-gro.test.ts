/**
 * UDP GRO into a pod, end to end: a pod on ha sends 20,000 numbered datagrams
 * (mostly 200 bytes; every 50th shorter, every 37th larger, in bursts of 64)
 * to a pod on hb. hb's agent merges runs of them into GSO_UDP_L4 frames for
 * the pod's TAP (USO), and the pod's kernel cuts them back. The receiver
 * checks every datagram it gets against the one sent: the same size, the same
 * bytes, no duplicate. hb's agent must have written fewer frames to the pod
 * than datagrams arrived (merging happened), and the pod's UDP stack must
 * count no checksum errors (each re-cut datagram carries a right checksum).
 * With TAPESTRY_E2E_OFFLOADS=off the same datagrams must arrive intact with
 * nothing merged.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { parsePing, waitFor } from '../harness/lab'
import { stats, udpSnmp } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'
import { E2E_OFFLOADS } from '../harness/overlay'

const STREAM = path.join(__dirname, '..', '..', '..', 'test', 'e2e', 'fixtures', 'udp-stream.py')
const COUNT = 20_000
const PORT = 7700

test('20,000 datagrams of mixed sizes cross two agents: every one intact; with offloads, UDP GRO merges them into fewer pod writes', { timeout: 120_000 }, async (t) => {
  const { lab, b, sockB, start } = twoHosts(t)
  const { s, r } = await start({
    a: [{ name: 's', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
    b: [{ name: 'r', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
  })
  const warm = await lab.execAsync(s.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', r.ip])
  assert.equal(parsePing(warm.stdout).received, 2, `warm-up: ${warm.stdout}`)
  const before = await stats(lab, b, sockB)
  const snmpBefore = udpSnmp(lab, r.ns)
  const rcv = lab.spawn(r.ns, ['python3', STREAM, 'recv', String(PORT), String(COUNT), '3'])
  await waitFor('receiver ready', () => rcv.stdout().includes('ready'))
  const snd = await lab.execAsync(s.ns, ['python3', STREAM, 'send', r.ip, String(PORT), String(COUNT)], 60_000)
  assert.equal(snd.code, 0, `sender: ${snd.stderr}`)
  await rcv.exited
  const after = await stats(lab, b, sockB)
  const snmpAfter = udpSnmp(lab, r.ns)
  const line = rcv.stdout().split('\n').find((l) => l.startsWith('{'))
  assert.ok(line, `receiver printed no summary: ${rcv.stdout()} ${rcv.stderr()}`)
  const got = JSON.parse(line) as { received: number; datagrams: number; bad: number; firstBad: unknown[]; duplicates: number }
  const pod = (x: typeof before) => x.pods.r as { txFrames: number }
  const off = (x: typeof before, k: string) => (x as unknown as { offloads: Record<string, number> }).offloads[k]
  const writes = pod(after).txFrames - pod(before).txFrames
  const csumErrors = (snmpAfter.InCsumErrors ?? 0) - (snmpBefore.InCsumErrors ?? 0)
  t.diagnostic(JSON.stringify({ ...got, podWrites: writes, csumErrors }))
  assert.equal(got.bad, 0, `datagrams that differ from what was sent: ${JSON.stringify(got.firstBad)}`)
  assert.equal(got.duplicates, 0)
  assert.equal(csumErrors, 0, 'the pod counted UDP checksum errors')
  // The path is not loaded beyond what it carries; allow a sliver of loss on a shared machine.
  assert.ok(got.received >= COUNT * 0.99, `only ${got.received} of ${COUNT} datagrams arrived`)
  const merges = off(after, 'gro_udp_merges') - off(before, 'gro_udp_merges')
  const merged = off(after, 'gro_udp_datagrams') - off(before, 'gro_udp_datagrams')
  t.diagnostic(JSON.stringify({ offloads: E2E_OFFLOADS, merges, merged }))
  if (!E2E_OFFLOADS) {
    // Offloads off (TAPESTRY_E2E_OFFLOADS=off): no vnet headers, nothing merged, one write per datagram.
    assert.equal(merges, 0)
    assert.ok(writes >= got.datagrams, `${writes} pod writes for ${got.datagrams} datagrams without offloads`)
    return
  }
  assert.ok(writes < got.datagrams * 0.75, `hb's agent wrote ${writes} frames for ${got.datagrams} datagrams: UDP GRO did not merge`)
  // The agent's own account (stats --json offloads, the metric tapestry_offload_total) says the same.
  assert.ok(merges > 0 && merges < writes, `gro_udp_merges grew by ${merges} (pod writes ${writes})`)
  // Frames written alone are the unmerged datagrams plus whatever else reached the pod (an ARP, say).
  assert.ok(merged <= got.datagrams && merged + (writes - merges) >= got.datagrams,
    `${merged} datagrams merged in ${merges} frames, ${writes - merges} written alone, for ${got.datagrams} received`)
})
