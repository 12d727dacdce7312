/**
 * Cluster mode on a real etcd: three agents with no peer list find each other
 * through etcd, lease distinct pod blocks, publish their pods so the others
 * install static FDB/ARP entries ahead of traffic, drop a SIGKILLed agent when
 * its lease expires, keep forwarding while etcd is down, and resync (services
 * too) when it is back.
 *
 * One cluster, steps as subtests in order: each step builds on the state the
 * previous ones left.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab, parsePing, waitFor } from '../harness/lab'
import { Cluster, Host, hostConfig, TAPESTRY_BIN } from '../harness/overlay'
import { EtcdServer } from '../harness/etcd'
import { apiSocket, fdbFind, fdbShow } from '../harness/fdb'
import { startCapture } from '../harness/capture'
import { request } from '../../src/cli/client'

const VNI = 42
const nets = [{ name: 'blue', vni: VNI, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
const LEASE_TTL = 5

interface PodRow { name: string; ip: string; mac: string }

test('cluster mode on etcd: 3 agents, no static peers', { timeout: 120_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const etcd = new EtcdServer(lab, c)
  await etcd.start()
  const hosts = { a: c.addHost('ha', 1), b: c.addHost('hb', 2), c: c.addHost('hc', 3) }
  const sock = (h: Host) => apiSocket(c.dir, h.name)
  const cfgOf = (h: Host) => hostConfig(h, [], nets, [], {
    api: { socket: sock(h) },
    cluster: { etcd: [etcd.url], prefix: '/tapestry', leaseTTL: LEASE_TTL },
  })
  const cli = async (h: Host, ...args: string[]): Promise<any> => {
    const r = await lab.execAsync(h.ns, [process.execPath, TAPESTRY_BIN, ...args, '--socket', sock(h), '--json'], 15_000)
    if (r.code !== 0) throw new Error(`tapestry ${args.join(' ')} on ${h.name} exited ${r.code}: ${r.stderr}`)
    return JSON.parse(r.stdout)
  }
  const peersOf = async (h: Host): Promise<string[]> => (await cli(h, 'peers') as { address: string }[]).map((p) => p.address).sort()
  const logOf = (h: Host) => c.agent(h)?.stdout() ?? ''
  const count = (text: string, msg: string) => text.split('\n').filter((l) => l.includes(`"msg":"${msg}`)).length
  const pods: Record<string, PodRow & { ns: string; host: Host }> = {}
  // TAPESTRY_E2E_LOGS=DIR keeps each agent's log there, for a look after a failure.
  t.after(() => {
    const dir = process.env.TAPESTRY_E2E_LOGS
    if (!dir) return
    fs.mkdirSync(dir, { recursive: true })
    for (const h of Object.values(hosts)) fs.writeFileSync(path.join(dir, `cluster-${h.name}.log`), logOf(h) + (c.agent(h)?.stderr() ?? ''))
  })

  await t.test('two agents starting at once lease different pod blocks and see each other', async () => {
    await Promise.all([c.startAgent(hosts.a, cfgOf(hosts.a)), c.startAgent(hosts.b, cfgOf(hosts.b))])
    await waitFor('a and b to list each other as peers', async () =>
      (await peersOf(hosts.a)).join() === hosts.b.underlayIP && (await peersOf(hosts.b)).join() === hosts.a.underlayIP, 5_000)
    const blocks = [hosts.a, hosts.b].map((h) => JSON.parse(fs.readFileSync(path.join(c.dir, `${h.name}.cluster.json`), 'utf8')).blocks.blue as string)
    assert.match(blocks[0], /^10\.244\.\d+\.0\/24$/)
    assert.match(blocks[1], /^10\.244\.\d+\.0\/24$/)
    assert.notEqual(blocks[0], blocks[1], 'both agents got the same block')
    const keys = await etcd.keys('/tapestry/')
    assert.deepEqual(keys.filter((k) => k.startsWith('/tapestry/blocks/')).sort(), blocks.map((b) => `/tapestry/blocks/blue/${b.replace('/', '-')}`).sort())
    assert.ok(keys.includes('/tapestry/nodes/ha') && keys.includes('/tapestry/nodes/hb'), keys.join('\n'))
  })

  await t.test('a new agent is seen by the others within 2 s', async () => {
    await c.startAgent(hosts.c, cfgOf(hosts.c))
    const ready = Date.now()
    await waitFor('a and b to list c as a peer', async () => {
      const [pa, pb] = await Promise.all([peersOf(hosts.a), peersOf(hosts.b)])
      return pa.includes(hosts.c.underlayIP) && pb.includes(hosts.c.underlayIP)
    }, 5_000, 20)
    const seenAfter = Date.now() - ready
    assert.ok(seenAfter <= 2000, `c was seen ${seenAfter} ms after it was ready`)
    assert.deepEqual(await peersOf(hosts.c), [hosts.a.underlayIP, hosts.b.underlayIP])
  })

  await t.test('pods added without an IP get one from their node block; all reach each other', async () => {
    for (const [name, h] of [['pa', hosts.a], ['pb', hosts.b], ['pc', hosts.c]] as const) {
      const ns = c.podNs(name)
      const row = await cli(h, 'pod', 'add', name, '--netns', ns) as PodRow
      const block = JSON.parse(fs.readFileSync(path.join(c.dir, `${h.name}.cluster.json`), 'utf8')).blocks.blue as string
      assert.equal(row.ip.split('.').slice(0, 3).join('.'), block.split('.').slice(0, 3).join('.'), `${name} ${row.ip} is outside ${h.name}'s block ${block}`)
      pods[name] = { ...row, ns, host: h }
    }
    // Every agent has static entries for the other hosts' pods before any traffic.
    for (const h of Object.values(hosts)) {
      await waitFor(`${h.name} to install the remote pods`, async () => {
        const fdb = await fdbShow(lab, h.ns, sock(h))
        return Object.values(pods).filter((p) => p.host !== h).every((p) => {
          const e = fdbFind(fdb, VNI, p.mac)
          return e?.type === 'static' && e.remote === p.host.underlayIP
        })
      }, 5_000)
    }
    const ips = Object.values(pods).map((p) => p.ip.split('/')[0])
    for (const p of Object.values(pods)) {
      for (const ip of ips) {
        if (p.ip.startsWith(`${ip}/`)) continue
        const r = await lab.execAsync(p.ns, ['ping', '-c', '2', '-i', '0.05', '-W', '1', ip])
        assert.equal(parsePing(r.stdout).received, 2, `${p.name} -> ${ip}: ${r.stdout}${r.stderr}`)
      }
    }
  })

  await t.test('with ARP suppression, the ARP request for a remote pod is answered locally', async () => {
    const from = pods.pa
    const to = pods.pb
    const toIp = to.ip.split('/')[0]
    lab.exec(from.ns, ['ip', 'neigh', 'flush', 'all'])
    const atB = await startCapture(lab, to.ns, ['arp'])
    const before = (await cli(hosts.a, 'stats')).arp.answered as number
    const r = await lab.execAsync(from.ns, ['ping', '-c', '2', '-i', '0.05', '-W', '1', toIp])
    assert.equal(parsePing(r.stdout).received, 2, r.stdout)
    const after = (await cli(hosts.a, 'stats')).arp.answered as number
    const seen = await atB.stop()
    assert.ok(after > before, `agent a answered no ARP request (${before} -> ${after})`)
    assert.deepEqual(seen.filter((l) => l.includes(`who-has ${toIp}`)), [], `the request reached pod pb:\n${seen.join('\n')}`)
    assert.match(lab.exec(from.ns, ['ip', 'neigh', 'show', toIp]), new RegExp(to.mac))
  })

  await t.test('a SIGKILLed agent is removed with its pods when its lease expires', async () => {
    const killed = Date.now()
    c.agent(hosts.c)!.child.kill('SIGKILL')
    await c.agent(hosts.c)!.exited
    await waitFor('a and b to drop c', async () => {
      const [pa, pb] = await Promise.all([peersOf(hosts.a), peersOf(hosts.b)])
      return !pa.includes(hosts.c.underlayIP) && !pb.includes(hosts.c.underlayIP)
    }, (LEASE_TTL + 4) * 1000, 100)
    const after = Date.now() - killed
    // The client renews the lease every TTL/3, so it expires between 2/3 TTL and TTL after
    // the last renewal; far sooner would mean something else removed c (a clean stop
    // revokes at once).
    assert.ok(after >= (LEASE_TTL * 2 / 3 - 0.5) * 1000, `c was dropped after ${after} ms, before its lease could expire`)
    for (const h of [hosts.a, hosts.b]) {
      assert.equal(fdbFind(await fdbShow(lab, h.ns, sock(h)), VNI, pods.pc.mac), undefined, `${h.name} still forwards to pod pc`)
    }
    const keys = await etcd.keys('/tapestry/')
    assert.ok(!keys.some((k) => k.startsWith('/tapestry/nodes/hc') || k.startsWith('/tapestry/pods/hc/')), keys.join('\n'))
    assert.ok(keys.some((k) => k.startsWith('/tapestry/blocks/blue/')), 'blocks stay leased to their node')
  })

  const svcFile = path.join(c.dir, 'svc.json')
  const service = (endpoints: string[]) => ({
    name: 'web', namespace: 'default', clusterIP: '10.96.0.10',
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    algorithm: 'maglev', sessionAffinity: 'None',
    endpoints: endpoints.map((ip) => ({ ip, ready: true, terminating: false })),
  })
  const servicesOf = async (h: Host): Promise<{ name: string; namespace?: string; clusterIP: string; endpoints: unknown[] }[]> =>
    request(sock(h), 'GET', '/v1/services')
  const webEndpoints = async (h: Host): Promise<string | null> => {
    const web = (await servicesOf(h)).find((s) => s.name === 'web')
    return web ? JSON.stringify(web.endpoints) : null
  }

  await t.test('stopping etcd does not stop traffic, and is logged once', async () => {
    const toIp = pods.pb.ip.split('/')[0]
    const ping = lab.execAsync(pods.pa.ns, ['ping', '-c', '50', '-i', '0.1', '-W', '1', toIp], 30_000)
    await new Promise((r) => setTimeout(r, 300))
    await etcd.stop('SIGKILL')
    await waitFor('a and b to notice etcd is gone', () => count(logOf(hosts.a), 'etcd unreachable') === 1 && count(logOf(hosts.b), 'etcd unreachable') === 1, 8_000)
    const p = parsePing((await ping).stdout)
    assert.equal(p.received, 50, `the ping lost ${50 - p.received} of 50 packets while etcd was down`)
    // Several retries have failed by now: still one line each.
    assert.equal(count(logOf(hosts.a), 'etcd unreachable'), 1, 'agent a logged the outage more than once')
    assert.equal(count(logOf(hosts.b), 'etcd unreachable'), 1, 'agent b logged the outage more than once')
    assert.deepEqual(await peersOf(hosts.a), [hosts.b.underlayIP], 'the last known peers are kept')
  })

  await t.test('restarting etcd resyncs a service change made while it was down', async () => {
    // While the agents cannot reach etcd (it listens on its own loopback only), a service changes.
    await etcd.start('loopback')
    fs.writeFileSync(svcFile, JSON.stringify(service([pods.pa.ip.split('/')[0], pods.pb.ip.split('/')[0]])))
    const put = await lab.execAsync(etcd.ns, [process.execPath, TAPESTRY_BIN, 'cluster', 'svc', 'put', '-f', svcFile, '--etcd', etcd.localUrl])
    assert.equal(put.code, 0, put.stderr)
    await etcd.stop()
    await etcd.start('underlay')
    for (const h of [hosts.a, hosts.b]) {
      await waitFor(`${h.name} to resync`, () => count(logOf(h), 'etcd reachable again') >= 1, 10_000)
    }
    assert.deepEqual(await peersOf(hosts.a), [hosts.b.underlayIP])
    const r = await lab.execAsync(pods.pa.ns, ['ping', '-c', '2', '-i', '0.05', '-W', '1', pods.pb.ip.split('/')[0]])
    assert.equal(parsePing(r.stdout).received, 2, r.stdout)
    for (const h of [hosts.a, hosts.b]) {
      await waitFor(`${h.name} to apply the service changed while etcd was down`, async () => {
        const web = (await servicesOf(h)).find((s) => s.name === 'web')
        return web?.clusterIP === '10.96.0.10' && JSON.stringify(web.endpoints).includes(pods.pa.ip.split('/')[0]) &&
          JSON.stringify(web.endpoints).includes(pods.pb.ip.split('/')[0])
      }, 5_000, 100)
    }
  })

  await t.test('a service put or deleted with `tapestry cluster svc` is applied by every agent within a second', async () => {
    fs.writeFileSync(svcFile, JSON.stringify(service([pods.pb.ip.split('/')[0]])))
    const put = await lab.execAsync(hosts.a.ns, [process.execPath, TAPESTRY_BIN, 'cluster', 'svc', 'put', '-f', svcFile, '--etcd', etcd.url])
    assert.equal(put.code, 0, put.stderr)
    const stored = Date.now()
    const want = JSON.stringify(service([pods.pb.ip.split('/')[0]]).endpoints)
    for (const h of [hosts.a, hosts.b]) {
      await waitFor(`${h.name} to apply the new endpoints`, async () => {
        const eps = await webEndpoints(h)
        return eps !== null && eps.includes(pods.pb.ip.split('/')[0]) && !eps.includes(`"${pods.pa.ip.split('/')[0]}"`)
      }, 3_000, 50)
    }
    assert.ok(Date.now() - stored < 1500, `applied after ${Date.now() - stored} ms (want: ${want})`)
    const del = await lab.execAsync(hosts.a.ns, [process.execPath, TAPESTRY_BIN, 'cluster', 'svc', 'del', 'web', '--etcd', etcd.url])
    assert.equal(del.code, 0, del.stderr)
    for (const h of [hosts.a, hosts.b]) {
      await waitFor(`${h.name} to remove the service`, async () => (await webEndpoints(h)) === null, 3_000, 50)
    }
  })

  await t.test('a stopped agent leaves at once (lease revoked) and gets its block back on restart', async () => {
    const blockBefore = JSON.parse(fs.readFileSync(path.join(c.dir, `${hosts.b.name}.cluster.json`), 'utf8')).blocks.blue
    const stopped = Date.now()
    assert.equal(await c.stopAgent(hosts.b), 0)
    await waitFor('a to drop b', async () => !(await peersOf(hosts.a)).includes(hosts.b.underlayIP), 3_000, 50)
    assert.ok(Date.now() - stopped < LEASE_TTL * 1000, 'b was dropped only when its lease expired')
    fs.rmSync(path.join(c.dir, `${hosts.b.name}.cluster.json`)) // etcd alone must give it back
    await c.startAgent(hosts.b, cfgOf(hosts.b))
    const blockAfter = JSON.parse(fs.readFileSync(path.join(c.dir, `${hosts.b.name}.cluster.json`), 'utf8')).blocks.blue
    assert.equal(blockAfter, blockBefore)
    await waitFor('a to see b again', async () => (await peersOf(hosts.a)).includes(hosts.b.underlayIP), 2_000, 50)
    // pb was re-attached from b's run-time pod state and published again.
    await waitFor('a to reinstall pod pb', async () => fdbFind(await fdbShow(lab, hosts.a.ns, sock(hosts.a)), VNI, pods.pb.mac)?.type === 'static', 3_000)
  })
})
