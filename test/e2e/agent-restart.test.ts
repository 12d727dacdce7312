/**
 * Faults and restarts: pod TAPs are persistent, so `kill -9` of the agent leaves
 * the pods' interfaces and addresses in place; a restarted agent re-attaches to
 * them and traffic resumes. SIGTERM stops within a second and removes the API
 * socket; removing a pod from the config deletes its TAP for good.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab, parsePing, waitFor } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'

const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]

test('kill -9 of the agent: pod interfaces stay, the restarted agent re-attaches and traffic resumes', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const pa = c.podNs('pa')
  const pb = c.podNs('pb')
  const cfgA = hostConfig(a, c.hosts, nets, [{ name: 'a1', network: 'blue', netns: pa, ip: '10.244.1.2/16' }], { api: { socket: path.join(c.dir, 'a.sock') } })
  const cfgB = hostConfig(b, c.hosts, nets, [{ name: 'b1', network: 'blue', netns: pb, ip: '10.244.2.2/16' }])
  const agentA = await c.startAgent(a, cfgA)
  await c.startAgent(b, cfgB)
  assert.equal(parsePing((await lab.execAsync(pa, ['ping', '-c', '2', '-i', '0.1', '-W', '1', '10.244.2.2'])).stdout).received, 2)

  // A long-running TCP stream across the crash: it must survive the outage.
  const srv = lab.spawn(pb, ['iperf3', '-s', '-1', '-J'])
  await waitFor('iperf3 server', () => lab.exec(pb, ['ss', '-ltn']).includes(':5201'))
  const stream = lab.execAsync(pa, ['iperf3', '-c', '10.244.2.2', '-t', '8', '-J'], 60_000)
  await new Promise((r) => setTimeout(r, 2000))

  agentA.child.kill('SIGKILL')
  await agentA.exited
  // The pod keeps its interface and address with no agent running.
  const addr = lab.exec(pa, ['ip', '-o', 'addr', 'show', 'dev', 'eth0'])
  assert.match(addr, /10\.244\.1\.2\/16/)
  assert.match(lab.exec(pa, ['ip', '-d', 'link', 'show', 'dev', 'eth0']), /tun type tap/)

  const restartedAt = Date.now()
  const again = await c.startAgent(a, cfgA)
  assert.match(again.stdout(), /"pod re-attached"/)
  // Traffic resumes within 2 s of the restart.
  await waitFor('ping through the restarted agent', async () => {
    const r = await lab.execAsync(pa, ['ping', '-c', '1', '-W', '1', '10.244.2.2'])
    return r.code === 0
  }, 2000 + 1500, 100)
  assert.ok(Date.now() - restartedAt < 5000)

  const r = await stream
  assert.equal(r.code, 0, `iperf3 across the restart failed: ${r.stdout.slice(-400)}${r.stderr}`)
  const j = JSON.parse(r.stdout)
  assert.ok(j.end.sum_received.bytes > 10_000_000, `only ${j.end.sum_received.bytes} bytes`)
  await srv.exited
})

test('SIGTERM stops within 1 s and removes the API socket; a pod removed from the config loses its TAP', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const p1 = c.podNs('p1')
  const p2 = c.podNs('p2')
  const sock = path.join(c.dir, 'a.sock')
  const pods = [
    { name: 'a1', network: 'blue', netns: p1, ip: '10.244.1.2/16' },
    { name: 'a2', network: 'blue', netns: p2, ip: '10.244.1.3/16' },
  ]
  await c.startAgent(a, hostConfig(a, c.hosts, nets, pods, { api: { socket: sock } }))
  assert.equal(fs.statSync(sock).mode & 0o777, 0o600)

  await c.reload(a, hostConfig(a, c.hosts, nets, [pods[0]], { api: { socket: sock } }))
  assert.equal(lab.exec(p2, ['ip', '-o', 'link', 'show', 'dev', 'eth0'], { allowFail: true }), '')
  assert.match(lab.exec(p1, ['ip', '-o', 'link', 'show', 'dev', 'eth0']), /eth0/)

  const t0 = Date.now()
  const code = await c.stopAgent(a)
  assert.equal(code, 0)
  // The target is 1 s; the bound leaves room for a loaded CI machine.
  assert.ok(Date.now() - t0 < 3000, `SIGTERM took ${Date.now() - t0} ms`)
  assert.equal(fs.existsSync(sock), false)
  // The remaining pod's TAP is persistent: it stays for the next agent.
  assert.match(lab.exec(p1, ['ip', '-d', 'link', 'show', 'dev', 'eth0']), /tun type tap/)
})
