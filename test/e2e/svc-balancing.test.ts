/**
 * Balancing through a VIP: 3 hosts, 4 HTTP backends on two of them (2 + 2), a
 * client pod on the third makes 1,000 requests, one TCP connection each, to
 * one service per algorithm. Every request is answered; roundRobin is exactly
 * even, random and Maglev give each backend 15-35 %, leastConnections uses
 * every backend (and spreads 8 held connections 2 per backend). The client agent's `picked` counts match the answers.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab } from '../harness/lab'
import { HttpResult, SvcInfo, applyServices, client, openStream, startBackend, svc, svcCluster, svcList } from '../harness/svc'

const N = 1000

test('svc balancing: 1,000 connections per algorithm over 4 backends on 2 hosts', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { bla: ['bc1'], blb: ['bb1', 'bb2'], blc: ['bb3', 'bb4'] })
  const backends = ['bb1', 'bb2', 'bb3', 'bb4'].map((n) => sc.pods[n])
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080, sink: 9000 })))
  const cli = sc.pods.bc1
  const algorithms = ['roundRobin', 'random', 'maglev', 'leastConnections'] as const
  const vip = (i: number): string => `10.96.1.${10 + i}`
  await applyServices(lab, sc, sc.hosts.bla, algorithms.map((a, i) => svc(`bal-${a.toLowerCase()}`, vip(i), backends.map((p) => p.ip), { algorithm: a })))

  const results: Record<string, HttpResult> = {}
  for (const [i, a] of algorithms.entries()) {
    const r = await client<HttpResult>(lab, cli, ['http', vip(i), 80, N], 120_000)
    results[a] = r
    t.diagnostic(`${a}: ${JSON.stringify(r)}`)
    assert.equal(r.ok, N, `${a}: every request answered (${JSON.stringify(r)})`)
    assert.deepEqual(Object.keys(r.counts).sort(), backends.map((p) => p.name), `${a}: answers only from the 4 backends, each used`)
  }
  for (const p of backends) assert.equal(results.roundRobin.counts[p.name], N / 4, `roundRobin exactly even: ${JSON.stringify(results.roundRobin.counts)}`)
  for (const a of ['random', 'maglev'] as const) {
    for (const p of backends) {
      const share = results[a].counts[p.name] / N
      assert.ok(share >= 0.15 && share <= 0.35, `${a}: ${p.name} got ${(share * 100).toFixed(1)} % (want 15-35 %): ${JSON.stringify(results[a].counts)}`)
    }
  }

  // leastConnections with long connections: 8 held open one after the other land 2 per backend.
  const LC = '10.96.1.20'
  await applyServices(lab, sc, sc.hosts.bla, [svc('bal-lc-held', LC, backends.map((p) => p.ip), { algorithm: 'leastConnections' }, [{ name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }])])
  const held: Record<string, number> = {}
  for (let i = 0; i < 8; i++) {
    const s = await openStream(lab, cli, LC, 9000, 0, 100)
    held[s.backend] = (held[s.backend] ?? 0) + 1
  }
  assert.deepEqual(held, Object.fromEntries(backends.map((p) => [p.name, 2])), `leastConnections spreads held connections evenly: ${JSON.stringify(held)}`)

  // The client's agent picked each endpoint as often as that backend answered.
  const list = await svcList(lab, sc, sc.hosts.bla)
  for (const [i, a] of algorithms.entries()) {
    const s: SvcInfo | undefined = list.find((x) => x.clusterIP === vip(i))
    assert.ok(s, `service ${vip(i)} listed`)
    assert.equal(s.algorithm, a)
    for (const p of backends) {
      const ep: SvcInfo['endpoints'][number] | undefined = s.endpoints.find((e) => e.ip === p.ip)
      assert.equal(ep?.picked, results[a].counts[p.name], `${a}: picked count of ${p.name} (${JSON.stringify(s.endpoints)})`)
    }
  }
})
