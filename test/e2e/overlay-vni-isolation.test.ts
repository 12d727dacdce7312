/**
 * VNI isolation: two networks (blue VNI 42, red VNI 43) with the same subnet and
 * the same pod IPs on two hosts. Each pod reaches its own network's peer, its
 * ARP answer carries that peer's MAC, and no frame of one network ever reaches
 * a pod of the other (checked by capture, with distinctive ping sizes).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { startCapture, quietPeriod } from '../harness/capture'
import { apiSocket } from '../harness/fdb'

const BLUE_SIZE = 1234 // ICMP length 1242 in tcpdump's output
const RED_SIZE = 1111 // ICMP length 1119

test('2 networks, same subnet and pod IPs: each reaches only its own VNI', { timeout: 60_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const nets = [
    { name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' },
    { name: 'red', vni: 43, subnet: '10.244.0.0/16', gateway: '10.244.0.1' },
  ]
  const pods = {
    'blue-a': { ns: c.podNs('ba'), net: 'blue', ip: '10.244.1.2', mac: '02:00:00:42:01:02' },
    'red-a': { ns: c.podNs('ra'), net: 'red', ip: '10.244.1.2', mac: '02:00:00:43:01:02' },
    'blue-b': { ns: c.podNs('bb'), net: 'blue', ip: '10.244.2.2', mac: '02:00:00:42:02:02' },
    'red-b': { ns: c.podNs('rb'), net: 'red', ip: '10.244.2.2', mac: '02:00:00:43:02:02' },
  }
  type PodName = keyof typeof pods
  const podCfg = (names: PodName[]) => names.map((n) => ({ name: n, network: pods[n].net, netns: pods[n].ns, ip: `${pods[n].ip}/16`, mac: pods[n].mac }))
  await c.startAgent(a, hostConfig(a, c.hosts, nets, podCfg(['blue-a', 'red-a']), { api: { socket: apiSocket(c.dir, a.name) } }))
  await c.startAgent(b, hostConfig(b, c.hosts, nets, podCfg(['blue-b', 'red-b']), { api: { socket: apiSocket(c.dir, b.name) } }))

  // Everything each pod receives, with MAC addresses.
  const caps = Object.fromEntries(await Promise.all((Object.keys(pods) as PodName[]).map(
    async (n) => [n, await startCapture(lab, pods[n].ns, [], { direction: 'in' })] as const)))

  const peer: Record<PodName, PodName> = { 'blue-a': 'blue-b', 'blue-b': 'blue-a', 'red-a': 'red-b', 'red-b': 'red-a' }
  // Blue first, so red resolves the same IPs while blue's entries are fresh in every table.
  for (const from of ['blue-a', 'blue-b', 'red-a', 'red-b'] as PodName[]) {
    const to = peer[from]
    const size = pods[from].net === 'blue' ? BLUE_SIZE : RED_SIZE
    const r = await lab.execAsync(pods[from].ns, ['ping', '-c', '3', '-i', '0.05', '-W', '2', '-s', String(size), pods[to].ip])
    assert.equal(parsePing(r.stdout).received, 3, `${from} -> ${to}: ${r.stdout}${r.stderr}`)
    // The neighbour entry names the peer in the same network, not the pod with the same IP in the other.
    const neigh = lab.exec(pods[from].ns, ['ip', 'neigh', 'show', pods[to].ip, 'dev', 'eth0'])
    assert.match(neigh, new RegExp(`lladdr ${pods[to].mac}\\b`), `${from}: ${pods[to].ip} resolved to the wrong MAC: ${neigh}`)
  }
  // Let any frame that leaked arrive before the captures stop.
  await quietPeriod(500)

  for (const n of Object.keys(pods) as PodName[]) {
    const lines = await caps[n].stop()
    const own = pods[n].net
    const foreignLen = own === 'blue' ? `length ${RED_SIZE + 8}` : `length ${BLUE_SIZE + 8}`
    const ownLen = own === 'blue' ? `length ${BLUE_SIZE + 8}` : `length ${RED_SIZE + 8}`
    const foreignMacs = (Object.keys(pods) as PodName[]).filter((m) => pods[m].net !== own).map((m) => pods[m].mac)
    const leaked = lines.filter((l) => l.includes(foreignLen) || foreignMacs.some((m) => l.includes(m)))
    assert.deepEqual(leaked, [], `pod ${n} (${own}) received frames of the other network`)
    // The capture works: it saw its own network's pings.
    assert.ok(lines.some((l) => l.includes(ownLen)), `pod ${n} captured none of its own network's pings:\n${lines.join('\n')}`)
  }
})
