/**
 * Every inspection and change subcommand of the CLI, once with --json against a
 * running agent, its output parsed and checked.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { stringify } from 'yaml'
import { Lab } from '../harness/lab'
import { Cluster, hostConfig, TAPESTRY_BIN } from '../harness/overlay'

test('every CLI subcommand answers --json with parseable output', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const p1 = c.podNs('p1')
  const x1 = c.podNs('x1')
  const sock = path.join(c.dir, 'a.sock')
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: '10.244.1.0/24' }]
  const svc = { name: 'web', clusterIP: '10.96.0.10', ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: [{ ip: '10.244.1.2' }] }
  const cfg = hostConfig(a, c.hosts, nets, [{ name: 'p1', network: 'blue', netns: p1, ip: '10.244.1.2/16' }], { api: { socket: sock }, services: [svc] })
  await c.startAgent(a, cfg)
  await c.startAgent(b, hostConfig(b, c.hosts, nets, []))
  const cli = async (...args: string[]): Promise<unknown> => {
    const r = await lab.execAsync(a.ns, [process.execPath, TAPESTRY_BIN, ...args, '--socket', sock, '--json'])
    assert.equal(r.code, 0, `tapestry ${args.join(' ')}: ${r.stderr}`)
    return JSON.parse(r.stdout)
  }
  await lab.execAsync(p1, ['ping', '-c', '1', '-W', '1', '10.244.0.1'])

  const pods = await cli('pod', 'list') as { name: string; ip: string; gateway: string; mtu: number }[]
  assert.deepEqual(pods.map((p) => [p.name, p.ip, p.gateway, p.mtu]), [['p1', '10.244.1.2/16', '10.244.0.1', 1450]])
  const added = await cli('pod', 'add', 'x1', '--netns', x1) as { name: string; ip: string; gateway: string }
  assert.equal(added.name, 'x1')
  assert.equal(added.gateway, '10.244.0.1')
  const fdb = await cli('fdb', 'show') as { mac: string; type: string; pod: string | null }[]
  assert.ok(fdb.some((e) => e.pod === 'p1' && e.type === 'static'))
  const fdb42 = await cli('fdb', 'show', '--vni', '42') as unknown[]
  assert.equal(fdb42.length, fdb.length)
  assert.deepEqual(await cli('fdb', 'show', '--vni', '7'), [])
  const deleted = await cli('pod', 'del', 'x1') as { deleted: boolean }
  assert.equal(deleted.deleted, true)

  const svcs = await cli('svc', 'list') as { name: string; clusterIP: string }[]
  assert.deepEqual(svcs.map((s) => [s.name, s.clusterIP]), [['web', '10.96.0.10']])
  const file = path.join(c.dir, 'svc.yaml')
  fs.writeFileSync(file, stringify({ services: [{ ...svc, name: 'api', clusterIP: '10.96.0.11' }] }))
  const applied = await cli('svc', 'apply', '-f', file) as { applied: string[] }
  assert.deepEqual(applied.applied, ['default/api'])
  assert.equal(((await cli('svc', 'list')) as unknown[]).length, 2)
  assert.deepEqual(await cli('svc', 'del', 'api'), { deleted: true })

  assert.ok(Array.isArray(await cli('conntrack', 'list')))
  assert.ok(Array.isArray(await cli('conntrack', 'list', '--service', 'web')))
  assert.equal(typeof ((await cli('conntrack', 'flush')) as { flushed: number }).flushed, 'number')

  const stats = await cli('stats') as { node: string; drops: Record<string, number>; pods: Record<string, unknown> }
  assert.equal(stats.node, 'ha')
  assert.ok('malformed' in stats.drops)
  assert.ok('p1' in stats.pods)
  const peers = await cli('peers') as { address: string }[]
  assert.deepEqual(peers.map((p) => p.address), [b.underlayIP])

  const full = path.join(c.dir, 'full.yaml')
  fs.writeFileSync(full, stringify({ ...cfg, pods: [] }))
  const r = await cli('apply', '-f', full) as { removed: string[] }
  assert.deepEqual(r.removed, ['p1'])
})
