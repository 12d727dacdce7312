/**
 * MAC learning and aging across the overlay, read through `tapestry fdb show`:
 * a remote pod's MAC is learned behind its host's VTEP, disappears once idle for
 * longer than fdb.ageSeconds, and follows the pod when it moves to another host
 * (same IP and MAC): one frame from the new place is enough for the old
 * neighbour to reach it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing, waitFor } from '../harness/lab'
import { Cluster, Host, hostConfig } from '../harness/overlay'
import { apiSocket, fdbFind, fdbShow } from '../harness/fdb'

const VNI = 42
const AGE_S = 2

test('fdb: remote MAC learned, aged out when idle, and moved with its pod', { timeout: 60_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const h3 = c.addHost('hc', 3)
  const nets = [{ name: 'blue', vni: VNI, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const a1 = { name: 'a1', ns: c.podNs('a1'), ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }
  const b1 = { name: 'b1', ns: c.podNs('b1'), ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }
  // The same pod after its move to host C: same IP and MAC, a new namespace.
  const c1 = { name: 'b1', ns: c.podNs('c1'), ip: b1.ip, mac: b1.mac }

  // Quiet pods: no IPv6 chatter (router solicitations, MLD) and no delayed ARP
  // probes, so the only frames are the ones this test makes and "idle" means idle.
  for (const p of [a1, b1, c1]) {
    lab.exec(p.ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'])
  }
  const noDelayedProbe = (p: typeof a1) => lab.exec(p.ns, ['sysctl', '-qw', 'net.ipv4.neigh.eth0.delay_first_probe_time=60'])

  const podCfg = (p: typeof a1) => ({ name: p.name, network: 'blue', netns: p.ns, ip: `${p.ip}/16`, mac: p.mac })
  const cfg = (h: Host, pods: (typeof a1)[]) =>
    hostConfig(h, c.hosts, nets, pods.map(podCfg), { fdb: { ageSeconds: AGE_S }, api: { socket: apiSocket(c.dir, h.name) } })
  await c.startAgent(a, cfg(a, [a1]))
  await c.startAgent(b, cfg(b, [b1]))
  await c.startAgent(h3, cfg(h3, []))
  noDelayedProbe(a1)
  noDelayedProbe(b1)
  const fdbA = () => fdbShow(lab, a.ns, apiSocket(c.dir, a.name))

  const ping = async (from: typeof a1, to: string, what: string) => {
    const r = await lab.execAsync(from.ns, ['ping', '-c', '1', '-W', '1', to], 10_000)
    assert.equal(parsePing(r.stdout).received, 1, `${what}: ${r.stdout}${r.stderr}`)
  }

  // Learned: a1 -> b1 puts b1's MAC behind host B's VTEP in host A's FDB.
  await ping(a1, b1.ip, 'a1 -> b1')
  const learned = await fdbA()
  const own = fdbFind(learned, VNI, a1.mac)
  assert.ok(own, `a1's own MAC is missing from host A's FDB: ${JSON.stringify(learned)}`)
  assert.equal(own.type, 'static')
  assert.equal(own.pod, 'a1')
  assert.equal(own.remote, null)
  const remote = fdbFind(learned, VNI, b1.mac)
  assert.ok(remote, `b1's MAC was not learned on host A: ${JSON.stringify(learned)}`)
  assert.equal(remote.type, 'learned')
  assert.equal(remote.remote, b.underlayIP)
  assert.equal(remote.pod, null)

  // Aged: with no frame from b1, the entry goes once ageSeconds have passed.
  await waitFor(`b1's MAC to age out of host A's FDB (ageSeconds ${AGE_S})`,
    async () => fdbFind(await fdbA(), VNI, b1.mac) === undefined, (AGE_S + 4) * 1000, 200)
  // The static entry of the local pod never ages.
  const after = await fdbA()
  assert.equal(fdbFind(after, VNI, a1.mac)?.type, 'static', `a1's static entry is gone: ${JSON.stringify(after)}`)

  // Moved: learn b1 behind B afresh, then move the pod (same IP and MAC) to host C.
  await ping(a1, b1.ip, 'a1 -> b1 before the move')
  assert.equal(fdbFind(await fdbA(), VNI, b1.mac)?.remote, b.underlayIP, 'b1 not learned behind host B before the move')
  await c.reload(b, cfg(b, []))
  await c.reload(h3, cfg(h3, [c1]))
  await waitFor('b1 eth0 in its new namespace on host C', () => lab.exec(c1.ns, ['ip', '-o', 'link', 'show', 'dev', 'eth0']).includes('UP'))
  noDelayedProbe(c1)

  // Its first frame from the new place: host A must now send to host C.
  await ping(c1, a1.ip, 'moved b1 -> a1')
  const moved = fdbFind(await fdbA(), VNI, b1.mac)
  assert.ok(moved, 'b1 MAC missing from host A FDB after the move')
  assert.equal(moved.remote, h3.underlayIP, `b1's MAC still points at ${moved.remote} after the move`)
  // a1 still has b1's IP -> MAC in its neighbour cache, so it sends unicast right away.
  await ping(a1, b1.ip, 'a1 -> moved b1 (1 s deadline)')
})
