/**
 * Broadcast across three hosts: an ARP request for an address nobody has is
 * flooded by head-end replication to every other host's pod exactly once: no
 * duplicates, no loops between the VTEPs, and no copy back to the sender.
 * (ARP suppression does not answer an unknown address, so the request floods.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, waitFor } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { startCapture, quietPeriod } from '../harness/capture'
import { apiSocket } from '../harness/fdb'

const NOBODY = '10.244.9.99'
const WHO_HAS = /Request who-has 10\.244\.9\.99 tell 10\.244\.1\.2/

test('3 hosts: one broadcast ARP request reaches each remote pod exactly once', { timeout: 60_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const h3 = c.addHost('hc', 3)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const pods = {
    a1: { ns: c.podNs('a1'), ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' },
    b1: { ns: c.podNs('b1'), ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' },
    c1: { ns: c.podNs('c1'), ip: '10.244.3.2', mac: '02:00:0a:f4:03:02' },
  }
  const pod = (n: keyof typeof pods) => [{ name: n, network: 'blue', netns: pods[n].ns, ip: `${pods[n].ip}/16`, mac: pods[n].mac }]
  await c.startAgent(a, hostConfig(a, c.hosts, nets, pod('a1'), { api: { socket: apiSocket(c.dir, a.name) } }))
  await c.startAgent(b, hostConfig(b, c.hosts, nets, pod('b1'), { api: { socket: apiSocket(c.dir, b.name) } }))
  await c.startAgent(h3, hostConfig(h3, c.hosts, nets, pod('c1'), { api: { socket: apiSocket(c.dir, h3.name) } }))

  // One ARP request per failed resolution (the kernel default is 3, a second apart).
  lab.exec(pods.a1.ns, ['sysctl', '-qw', 'net.ipv4.neigh.eth0.mcast_solicit=1'])
  lab.exec(pods.a1.ns, ['ip', 'neigh', 'flush', 'all'])

  const filter = ['arp', 'host', NOBODY]
  const sentByA = await startCapture(lab, pods.a1.ns, filter, { direction: 'out' })
  const backToA = await startCapture(lab, pods.a1.ns, filter, { direction: 'in' })
  const atB = await startCapture(lab, pods.b1.ns, filter)
  const atC = await startCapture(lab, pods.c1.ns, filter)

  const ping = await lab.execAsync(pods.a1.ns, ['ping', '-c', '1', '-W', '1', NOBODY], 10_000)
  assert.notEqual(ping.code, 0, `nobody has ${NOBODY}, yet the ping was answered: ${ping.stdout}`)

  const count = (lines: string[]) => lines.filter((l) => WHO_HAS.test(l)).length
  await waitFor('pod a1 to have sent its ARP request', () => count(sentByA.lines()) >= 1, 5_000)
  const sentSoFar = count(sentByA.lines())
  await waitFor('the request to reach pods b1 and c1', () => count(atB.lines()) >= sentSoFar && count(atC.lines()) >= sentSoFar, 5_000)
    .catch((err: Error) => { throw new Error(`${err.message}\nb1 saw:\n${atB.lines().join('\n')}\nc1 saw:\n${atC.lines().join('\n')}`) })
  // Duplicates and loops show up as extra copies; give them time to arrive.
  await quietPeriod(1_500)

  const [out, back, seenB, seenC] = await Promise.all([sentByA.stop(), backToA.stop(), atB.stop(), atC.stop()])
  const sent = count(out)
  assert.ok(sent >= 1, `pod a1 sent no ARP request for ${NOBODY}:\n${out.join('\n')}`)
  for (const [name, lines] of [['b1', seenB], ['c1', seenC]] as const) {
    const reqs = lines.filter((l) => WHO_HAS.test(l))
    assert.equal(reqs.length, sent, `pod ${name} saw ${reqs.length} requests, pod a1 sent ${sent}:\n${lines.join('\n')}`)
    for (const l of reqs) {
      assert.ok(l.includes(`${pods.a1.mac} > ff:ff:ff:ff:ff:ff`), `pod ${name}: not a broadcast from a1's MAC: ${l}`)
    }
  }
  assert.equal(count(back), 0, `the request came back to pod a1:\n${back.join('\n')}`)
})
