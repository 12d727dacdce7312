/**
 * Two hosts joined by an underlay bridge, two pods on each, one agent per host:
 * every pod pings every other pod, and TCP works same-host and cross-host.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing, waitFor } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { tcpTransfer } from '../harness/xfer'

test('2 hosts x 2 pods: all pods reach each other by ping and TCP', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const pods = {
    a1: { ns: c.podNs('a1'), ip: '10.244.1.2' },
    a2: { ns: c.podNs('a2'), ip: '10.244.1.3' },
    b1: { ns: c.podNs('b1'), ip: '10.244.2.2' },
    b2: { ns: c.podNs('b2'), ip: '10.244.2.3' },
  }
  const podCfg = (names: (keyof typeof pods)[]) => names.map((n) => ({ name: n, network: 'blue', netns: pods[n].ns, ip: `${pods[n].ip}/16` }))
  await c.startAgent(a, hostConfig(a, c.hosts, nets, podCfg(['a1', 'a2'])))
  await c.startAgent(b, hostConfig(b, c.hosts, nets, podCfg(['b1', 'b2'])))

  // The agent configured eth0 in each pod: address, MTU (1500 - 50) and default route.
  const link = lab.exec(pods.a1.ns, ['ip', '-o', 'link', 'show', 'dev', 'eth0'])
  assert.match(link, /mtu 1450/)
  assert.match(lab.exec(pods.a1.ns, ['ip', 'route']), /default via 10\.244\.0\.1 dev eth0/)

  for (const [from, p] of Object.entries(pods)) {
    for (const [to, q] of Object.entries(pods)) {
      if (from === to) continue
      const r = await lab.execAsync(p.ns, ['ping', '-c', '3', '-i', '0.05', '-W', '2', q.ip])
      const s = parsePing(r.stdout)
      assert.equal(s.received, 3, `${from} -> ${to}: ${r.stdout}${r.stderr}`)
    }
  }

  // TCP same host (a1 -> a2) and cross host (a1 -> b1): 20 MB of random bytes, hashes equal on both ends.
  for (const [server, ip] of [['a2', pods.a2.ip], ['b1', pods.b1.ip]] as const) {
    const r = await tcpTransfer(lab, pods.a1.ns, pods[server].ns, ip, 20_000_000)
    assert.equal(r.received.bytes, 20_000_000, `to ${server}`)
    assert.equal(r.received.sha256, r.sent.sha256, `to ${server}: data differs`)
  }

  // iperf3 across hosts completes and moves data.
  const srv = lab.spawn(pods.b2.ns, ['iperf3', '-s', '-1', '-J'])
  await waitFor('iperf3 server listening', () => lab.exec(pods.b2.ns, ['ss', '-ltn']).includes(':5201'))
  const cli = await lab.execAsync(pods.a2.ns, ['iperf3', '-c', pods.b2.ip, '-t', '2', '-J'], 30_000)
  assert.equal(cli.code, 0, cli.stdout + cli.stderr)
  assert.ok(JSON.parse(cli.stdout).end.sum_received.bytes > 1_000_000)
  await srv.exited
})
