/**
 * Endpoint changes and established connections:
 *  - a long TCP stream through a VIP goes on, and ends with every byte, when its
 *    backend is removed from the service (svc apply without it); new
 *    connections avoid the removed backend; an endpoint marked terminating
 *    gets no new connections; deleting the service (svc del) leaves a stream
 *    through it working;
 *  - a whole-config apply (API, `tapestry apply -f`) and a SIGHUP reload that
 *    change another service leave an established connection of this one intact
 *    (and services added over the API in place).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { stringify } from 'yaml'
import { Lab } from '../harness/lab'
import { HttpResult, SvcInfo, applyServices, client, openStream, startBackend, svc, svcCluster, svcList, tapestryJson } from '../harness/svc'

const PORTS = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }]
/** 64 KiB every 10 ms: a steady stream for as long as the test keeps it open. */
const CHUNK = 64 * 1024
const EVERY_MS = 10

interface CtRow { proto: string; state: string; client: string; vip: string; backend: string; service: string | null }

test('svc endpoint removal: the established stream survives, new connections avoid removed and terminating endpoints', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { era: ['ec1'], erb: ['eb1', 'eb2'], erc: ['eb3'] })
  const backends = ['eb1', 'eb2', 'eb3'].map((n) => sc.pods[n])
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080, sink: 9000 })))
  const host = sc.hosts.era
  const cli = sc.pods.ec1
  const VIP = '10.96.3.10'
  await applyServices(lab, sc, host, [svc('er-web', VIP, backends.map((p) => p.ip), { algorithm: 'roundRobin' }, PORTS)])

  const stream = await openStream(lab, cli, VIP, 9000, CHUNK, EVERY_MS)
  const gone = sc.pods[stream.backend]
  assert.ok(gone, `the stream reached a backend: ${stream.backend}`)
  const rest = backends.filter((p) => p !== gone)

  // Remove the stream's backend from the service.
  await applyServices(lab, sc, host, [svc('er-web', VIP, rest.map((p) => p.ip), { algorithm: 'roundRobin' }, PORTS)])
  const listed = (await svcList(lab, sc, host)).find((s) => s.name === 'er-web') as SvcInfo
  assert.deepEqual(listed.endpoints.map((e) => e.ip).sort(), rest.map((p) => p.ip).sort())
  // Its connection is still tracked, to the removed backend.
  const ct = await tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list', '--service', 'er-web'])
  const mine = ct.find((r) => r.client === `${cli.ip}:${stream.localPort}` && r.vip === `${VIP}:9000`)
  assert.ok(mine, `stream still in conntrack: ${JSON.stringify(ct)}`)
  assert.equal(mine.backend, `${gone.ip}:9000`)

  // New connections avoid the removed backend (its server still runs and would answer).
  const after = await client<HttpResult>(lab, cli, ['http', VIP, 80, 60])
  assert.equal(after.ok, 60, JSON.stringify(after))
  assert.equal(after.counts[gone.name], undefined, `removed backend ${gone.name} got new connections: ${JSON.stringify(after.counts)}`)
  assert.deepEqual(Object.keys(after.counts).sort(), rest.map((p) => p.name).sort())

  // The stream, kept sending through all this, ends with every byte at the removed backend.
  const done = await stream.stop()
  t.diagnostic(`stream: sent ${done.sent.bytes} bytes to ${done.reply.name}`)
  assert.equal(done.reply.name, gone.name)
  assert.ok(done.sent.bytes > 0)
  assert.equal(done.reply.bytes, done.sent.bytes, 'bytes received = bytes sent')
  assert.equal(done.reply.sha256, done.sent.sha256, 'data intact')

  // Back in the service, but another backend terminating: it gets no new connection.
  const term = rest[0]
  await applyServices(lab, sc, host, [svc('er-web', VIP, backends.map((p) => (p === term ? { ip: p.ip, terminating: true } : p.ip)), { algorithm: 'roundRobin' }, PORTS)])
  const eps = ((await svcList(lab, sc, host)).find((s) => s.name === 'er-web') as SvcInfo).endpoints
  assert.equal(eps.find((e) => e.ip === term.ip)?.terminating, true)
  assert.notEqual(eps.find((e) => e.ip === term.ip)?.state, 'eligible')
  const third = await client<HttpResult>(lab, cli, ['http', VIP, 80, 60])
  assert.equal(third.ok, 60, JSON.stringify(third))
  assert.equal(third.counts[term.name], undefined, `terminating ${term.name} got new connections: ${JSON.stringify(third.counts)}`)
  assert.deepEqual(Object.keys(third.counts).sort(), backends.filter((p) => p !== term).map((p) => p.name).sort())

  // Deleting the whole service leaves its established connection working too.
  const last = await openStream(lab, cli, VIP, 9000, CHUNK, EVERY_MS)
  assert.deepEqual(await tapestryJson(lab, sc, host, ['svc', 'del', 'er-web']), { deleted: true })
  assert.equal((await svcList(lab, sc, host)).some((s) => s.name === 'er-web'), false)
  const fin = await last.stop()
  t.diagnostic(`stream across svc del: sent ${fin.sent.bytes} bytes to ${fin.reply.name}`)
  assert.equal(fin.reply.name, last.backend)
  assert.equal(fin.reply.bytes, fin.sent.bytes, 'bytes received = bytes sent after svc del')
  assert.equal(fin.reply.sha256, fin.sent.sha256, 'data intact after svc del')
})

test('svc endpoint removal: whole-config apply and SIGHUP reload changing another service keep this one\'s connection', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const KEEP = '10.96.3.20'
  const OTHER = '10.96.3.21'
  const ip = { wb1: '10.244.2.2', wb2: '10.244.2.3' }
  const services = (otherEndpoints: string[], otherAlgorithm: string): unknown[] => [
    svc('keep', KEEP, [ip.wb1], {}, PORTS),
    svc('other', OTHER, otherEndpoints, { algorithm: otherAlgorithm }),
  ]
  const sc = await svcCluster(lab, { wra: ['wc1'], wrb: ['wb1', 'wb2'] }, (h) => (h.name === 'wra' ? { services: services([ip.wb1, ip.wb2], 'maglev') } : {}))
  const host = sc.hosts.wra
  const cli = sc.pods.wc1
  await Promise.all(['wb1', 'wb2'].map((n) => startBackend(lab, sc.pods[n], { http: 8080, sink: 9000 })))
  const base = sc.configs.get(host.name) as Record<string, unknown>

  // A service added over the API: a whole-config apply must not drop it.
  const API_VIP = '10.96.3.22'
  await applyServices(lab, sc, host, [svc('from-api', API_VIP, [ip.wb2])])

  const stream = await openStream(lab, cli, KEEP, 9000, CHUNK, EVERY_MS)
  assert.equal(stream.backend, 'wb1')

  // 1. `tapestry apply -f` (POST /v1/apply): other loses wb1 and changes algorithm.
  const file = path.join(sc.c.dir, 'wra-next.yaml')
  fs.writeFileSync(file, stringify({ ...base, services: services([ip.wb2], 'random') }))
  await tapestryJson(lab, sc, host, ['apply', '-f', file])
  let other = (await svcList(lab, sc, host)).find((s) => s.name === 'other') as SvcInfo
  assert.deepEqual(other.endpoints.map((e) => e.ip), [ip.wb2], 'the apply changed the other service')
  assert.equal(other.algorithm, 'random')
  const viaOther = await client<HttpResult>(lab, cli, ['http', OTHER, 80, 10])
  assert.deepEqual(viaOther.counts, { wb2: 10 })

  // 2. SIGHUP reload of the file: other gets wb1 back.
  await sc.c.reload(host, { ...base, services: services([ip.wb1, ip.wb2], 'roundRobin') })
  other = (await svcList(lab, sc, host)).find((s) => s.name === 'other') as SvcInfo
  assert.deepEqual(other.endpoints.map((e) => e.ip).sort(), [ip.wb1, ip.wb2])
  assert.equal(other.algorithm, 'roundRobin')

  assert.ok((await svcList(lab, sc, host)).some((s) => s.name === 'from-api'), 'the API service survives apply and reload')
  assert.deepEqual((await client<HttpResult>(lab, cli, ['http', API_VIP, 80, 3])).counts, { wb2: 3 })

  const ct = await tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list', '--service', 'keep'])
  assert.ok(ct.some((r) => r.client === `${cli.ip}:${stream.localPort}` && r.vip === `${KEEP}:9000` && r.backend === `${ip.wb1}:9000`), `keep's connection still tracked: ${JSON.stringify(ct)}`)
  const done = await stream.stop()
  t.diagnostic(`stream: sent ${done.sent.bytes} bytes`)
  assert.equal(done.reply.name, 'wb1')
  assert.equal(done.reply.bytes, done.sent.bytes, 'bytes received = bytes sent')
  assert.equal(done.reply.sha256, done.sent.sha256, 'data intact')
})
