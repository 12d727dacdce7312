/**
 * Pod churn with address reuse (found by bench/soak.ts): a pod added over the
 * API takes the lowest free address of the network's podRange, so a pod added
 * right after another was deleted gets its IP, with a new MAC. A pod on
 * another host must reach the new pod at once, as it reached the old one.
 *
 * What happens (the bug): host B's agent learned old-pod IP -> old MAC into its
 * ARP suppression table from the old pod's ARP reply that crossed the underlay,
 * and keeps it for fdb.ageSeconds (300 s by default): when the remote pod asks
 * for the address again it is answered with the deleted pod's MAC. Nothing
 * replaces the entry: the agent sends no gratuitous ARP for a new pod, and the
 * new pod's own ARP requests are answered by its host's agent, so they never
 * reach host B. The new pod stays unreachable from host B for minutes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { apiSocket } from '../harness/fdb'
import { assertAgentAlive, tapestry } from '../harness/harden'

test('a pod that takes a deleted pod\'s IP is reachable from another host at once', { timeout: 120_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const nets = (range: string) => [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: range }]
  const b1 = { ns: c.podNs('b1'), ip: '10.244.2.2' }
  const sockA = apiSocket(c.dir, a.name)
  await c.startAgent(a, hostConfig(a, c.hosts, nets('10.244.1.128/25'), [], { api: { socket: sockA } }))
  await c.startAgent(b, hostConfig(b, c.hosts, nets('10.244.2.128/25'), [{ name: 'b1', network: 'blue', netns: b1.ns, ip: `${b1.ip}/16` }], { api: { socket: apiSocket(c.dir, b.name) } }))
  const n1 = c.podNs('x1')
  const n2 = c.podNs('x2')

  const x1 = JSON.parse(await tapestry(lab, a, sockA, 'pod', 'add', 'x1', '--netns', n1, '--json'))
  const first = await lab.execAsync(n1, ['ping', '-c', '3', '-i', '0.2', '-W', '2', b1.ip])
  assert.equal(parsePing(first.stdout).received, 3, `x1 (${x1.ip}) -> b1: ${first.stdout}`)
  await tapestry(lab, a, sockA, 'pod', 'del', 'x1', '--json')
  const x2 = JSON.parse(await tapestry(lab, a, sockA, 'pod', 'add', 'x2', '--netns', n2, '--json'))
  assert.equal(x2.ip, x1.ip, 'the freed address is given again (lowest free in podRange)')
  assert.notEqual(x2.mac, x1.mac)
  // b1 forgets its neighbour entry, as it would after a while: it must learn x2's MAC now.
  lab.exec(b1.ns, ['ip', 'neigh', 'flush', 'all'])
  const r = await lab.execAsync(n2, ['ping', '-c', '5', '-i', '0.2', '-W', '2', b1.ip])
  const neigh = lab.exec(b1.ns, ['ip', 'neigh', 'show', x2.ip.split('/')[0]]).trim()
  assertAgentAlive(c, a)
  assertAgentAlive(c, b)
  assert.ok(parsePing(r.stdout).received > 0, `x2 (${x2.ip}, ${x2.mac}) cannot reach b1 in another host; b1's neighbour entry: "${neigh}" (x1 had ${x1.mac})`)
})
