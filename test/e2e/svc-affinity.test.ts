/**
 * ClientIP session affinity: 100 connections from one client all reach one
 * backend (while the same service without affinity spreads them), and 20
 * clients (20 pods on one host, 5 connections each) each stick to one backend
 * while more than one backend is used between them. When a client's backend
 * leaves the service, the client is pinned to another one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab } from '../harness/lab'
import { HttpResult, applyServices, client, startBackend, svc, svcCluster } from '../harness/svc'

test('svc affinity: ClientIP pins each client to one backend; many clients spread', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const clients = Array.from({ length: 20 }, (_, i) => `ac${String(i + 1).padStart(2, '0')}`)
  const sc = await svcCluster(lab, { afa: clients, afb: ['ab1', 'ab2'], afc: ['ab3', 'ab4'] })
  const backends = ['ab1', 'ab2', 'ab3', 'ab4'].map((n) => sc.pods[n])
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080 })))
  const ips = backends.map((p) => p.ip)
  const STICKY = '10.96.2.10'
  const LOOSE = '10.96.2.11'
  await applyServices(lab, sc, sc.hosts.afa, [
    svc('aff-sticky', STICKY, ips, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } }),
    svc('aff-loose', LOOSE, ips),
  ])

  const one = sc.pods.ac01
  const loose = await client<HttpResult>(lab, one, ['http', LOOSE, 80, 100])
  assert.equal(loose.ok, 100, JSON.stringify(loose))
  assert.ok(Object.keys(loose.counts).length > 1, `without affinity one client's connections spread: ${JSON.stringify(loose.counts)}`)

  const sticky = await client<HttpResult>(lab, one, ['http', STICKY, 80, 100])
  assert.equal(sticky.ok, 100, JSON.stringify(sticky))
  assert.equal(Object.keys(sticky.counts).length, 1, `ClientIP affinity: all 100 connections to one backend: ${JSON.stringify(sticky.counts)}`)

  // 20 clients, 5 connections each (run at once).
  const per = await Promise.all(clients.map((n) => client<HttpResult>(lab, sc.pods[n], ['http', STICKY, 80, 5], 90_000)))
  const used = new Set<string>()
  per.forEach((r, i) => {
    assert.equal(r.ok, 5, `${clients[i]}: ${JSON.stringify(r)}`)
    assert.equal(Object.keys(r.counts).length, 1, `${clients[i]} sticks to one backend: ${JSON.stringify(r.counts)}`)
    used.add(Object.keys(r.counts)[0])
  })
  // ac01 already had its backend: it keeps it.
  assert.deepEqual(per[0].counts, { [Object.keys(sticky.counts)[0]]: 5 })
  t.diagnostic(`backends used by 20 clients: ${[...used].sort().join(' ')}`)
  assert.ok(used.size > 1, `20 clients use more than one backend (got ${[...used].join(', ')})`)

  // ac01's backend leaves the service: its affinity must not send new connections there.
  const pinned = Object.keys(sticky.counts)[0]
  const remaining = backends.filter((p) => p.name !== pinned)
  await applyServices(lab, sc, sc.hosts.afa, [
    svc('aff-sticky', STICKY, remaining.map((p) => p.ip), { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } }),
  ])
  const moved = await client<HttpResult>(lab, one, ['http', STICKY, 80, 20])
  assert.equal(moved.ok, 20, JSON.stringify(moved))
  assert.equal(moved.counts[pinned], undefined, `removed backend ${pinned} still gets ac01's connections: ${JSON.stringify(moved.counts)}`)
  assert.equal(Object.keys(moved.counts).length, 1, `ac01 sticks to one new backend: ${JSON.stringify(moved.counts)}`)
})
