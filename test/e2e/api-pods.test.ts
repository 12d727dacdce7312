/**
 * Pods added and removed over the API while traffic flows between other pods:
 * the running ping loses nothing; a bad request is refused whole with the key
 * and reason, and the running state stays as it was.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { Lab, parsePing } from '../harness/lab'
import { Cluster, hostConfig, TAPESTRY_BIN } from '../harness/overlay'

const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: '10.244.1.0/24' }]

test('pod add/del over the API while a ping between other pods loses nothing', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const p1 = c.podNs('p1')
  const p2 = c.podNs('p2')
  const extra = [c.podNs('x1'), c.podNs('x2'), c.podNs('x3')]
  const sock = path.join(c.dir, 'a.sock')
  await c.startAgent(a, hostConfig(a, c.hosts, nets, [
    { name: 'p1', network: 'blue', netns: p1, ip: '10.244.1.2/16' },
    { name: 'p2', network: 'blue', netns: p2, ip: '10.244.1.3/16' },
  ], { api: { socket: sock } }))
  const cli = (...args: string[]) => lab.execAsync(a.ns, [process.execPath, TAPESTRY_BIN, ...args, '--socket', sock, '--json'])

  const ping = lab.execAsync(p1, ['ping', '-c', '300', '-i', '0.01', '-W', '1', '10.244.1.3'], 60_000)
  const added: { name: string; ip: string }[] = []
  for (let i = 0; i < extra.length; i++) {
    const r = await cli('pod', 'add', `x${i + 1}`, '--netns', extra[i])
    assert.equal(r.code, 0, r.stderr)
    const row = JSON.parse(r.stdout)
    added.push(row)
    // No --ip: the next free address of the network's podRange, never one a pod already has.
    assert.match(row.ip, /^10\.244\.1\.\d+\/16$/)
    assert.match(lab.exec(extra[i], ['ip', '-o', 'addr', 'show', 'dev', 'eth0']), new RegExp(row.ip.split('/')[0].replace(/\./g, '\\.')))
  }
  assert.equal(new Set(added.map((x) => x.ip)).size, 3, 'three distinct addresses')
  assert.ok(!added.some((x) => x.ip.startsWith('10.244.1.2/') || x.ip.startsWith('10.244.1.3/')))
  // The new pod reaches an old one.
  const r1 = await lab.execAsync(extra[0], ['ping', '-c', '2', '-i', '0.1', '-W', '1', '10.244.1.2'])
  assert.equal(parsePing(r1.stdout).received, 2)
  const list = JSON.parse((await cli('pod', 'list')).stdout)
  assert.deepEqual(list.map((p: { name: string }) => p.name).sort(), ['p1', 'p2', 'x1', 'x2', 'x3'])

  for (const x of ['x1', 'x2', 'x3']) {
    const r = await cli('pod', 'del', x)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).deleted, true)
  }
  // Deleting twice is fine; the TAP is gone.
  assert.equal(JSON.parse((await cli('pod', 'del', 'x1')).stdout).deleted, false)
  assert.equal(lab.exec(extra[0], ['ip', '-o', 'link', 'show', 'dev', 'eth0'], { allowFail: true }), '')

  const p = parsePing((await ping).stdout)
  assert.equal(p.received, 300, `the ping between p1 and p2 lost ${300 - p.received} packets`)
})

test('a bad pod request is refused with the key and reason and changes nothing', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const p1 = c.podNs('p1')
  const x = c.podNs('x1')
  const sock = path.join(c.dir, 'a.sock')
  await c.startAgent(a, hostConfig(a, c.hosts, nets, [{ name: 'p1', network: 'blue', netns: p1, ip: '10.244.1.2/16' }], { api: { socket: sock } }))
  const cli = (...args: string[]) => lab.execAsync(a.ns, [process.execPath, TAPESTRY_BIN, ...args, '--socket', sock, '--json'])

  const dupIp = await cli('pod', 'add', 'x1', '--netns', x, '--ip', '10.244.1.2/16')
  assert.notEqual(dupIp.code, 0)
  assert.match(dupIp.stderr, /pods\[1\]\.ip/)
  assert.match(dupIp.stderr, /10\.244\.1\.2/)
  const badCidr = await cli('pod', 'add', 'x1', '--netns', x, '--ip', '10.244.1.300/16')
  assert.notEqual(badCidr.code, 0)
  assert.match(badCidr.stderr, /is not an IPv4 CIDR/)
  const noNs = await cli('pod', 'add', 'x1', '--netns', 'tpy-no-such-ns')
  assert.notEqual(noNs.code, 0)
  assert.match(noNs.stderr, /does not exist/)
  assert.equal(lab.exec(x, ['ip', '-o', 'link', 'show', 'dev', 'eth0'], { allowFail: true }), '')
  const list = JSON.parse((await cli('pod', 'list')).stdout)
  assert.deepEqual(list.map((p: { name: string }) => p.name), ['p1'])
})
