import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EndpointState } from '../../../src/service/endpoint-slots'
import { ServiceError, ServiceSpec } from '../../../src/service/service-model'
import { ServiceTable } from '../../../src/service/service-table'
import { PROTO_TCP, PROTO_UDP } from '../../../src/wire/ipv4'
import { ip } from './frames'

function web(over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name: 'web', namespace: 'shop', clusterIP: '10.96.0.10',
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'q', port: 80, targetPort: 9090, protocol: 'UDP' }],
    endpoints: [{ ip: '10.244.1.5', ready: true, terminating: false }, { ip: '10.244.2.5', ready: true, terminating: false }],
    ...over,
  }
}

const table = (): ServiceTable => new ServiceTable({ maglevSize: 251, seed: 1 })

test('upsert makes each (VIP, protocol, port) resolve to the service and target port', () => {
  const t = table()
  const r = t.upsert(web())
  assert.deepEqual(r, { id: 0, created: true, endpointsAdded: 2, endpointsRemoved: 0, rebalanced: true })
  const e = t.lookup(ip('10.96.0.10'), PROTO_TCP, 80)
  assert.ok(e >= 0)
  assert.equal(t.portSvc[e], 0)
  assert.equal(t.portTarget[e], 8080)
  assert.equal(t.portTarget[t.lookup(ip('10.96.0.10'), PROTO_UDP, 80)], 9090)
  assert.equal(t.lookup(ip('10.96.0.10'), PROTO_TCP, 81), -1)
  assert.equal(t.lookup(ip('10.96.0.11'), PROTO_TCP, 80), -1)
  assert.equal(t.isVip(ip('10.96.0.10')), true)
  assert.equal(t.isVip(ip('10.96.0.11')), false)
  assert.equal(t.balancers[0]?.candidates, 2)
  assert.equal(t.size, 1)
  assert.equal(t.portCount, 2)
})

test('defaults: namespace default, protocol TCP, targetPort = port, maglev, no affinity', () => {
  const t = table()
  t.upsert({ name: 'a', clusterIP: '10.96.0.1', ports: [{ port: 443 }], endpoints: [] })
  const info = t.get('a')
  assert.deepEqual(info && { ns: info.namespace, ports: info.ports, alg: info.algorithm, aff: info.affinityTimeoutS },
    { ns: 'default', ports: [{ name: '', port: 443, targetPort: 443, protocol: 'TCP' }], alg: 'maglev', aff: 0 })
})

test('ClientIP affinity defaults to 10800 s', () => {
  const t = table()
  t.upsert(web({ sessionAffinity: 'ClientIP' }))
  assert.equal(t.get('web', 'shop')?.affinityTimeoutS, 10800)
  t.upsert(web({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }))
  assert.equal(t.balancers[0]?.affinityTimeoutMs, 60_000)
})

test('a bad service is refused with every problem listed, and changes nothing', () => {
  const t = table()
  t.upsert(web())
  const bad = {
    name: 'web', namespace: 'shop', clusterIP: '10.96.0.300',
    ports: [{ port: 0, protocol: 'SCTP' }, { port: 80, targetPort: 'http' }],
    algorithm: 'fastest', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } },
    endpoints: [{ ip: 'pod-1' }],
  } as unknown as ServiceSpec
  assert.throws(() => t.upsert(bad), (err: unknown) => {
    assert.ok(err instanceof ServiceError)
    assert.equal(err.code, 'TAPESTRY_SERVICE_INVALID')
    assert.deepEqual(err.issues, [
      'clusterIP must be an IPv4 address, "None" or "" (got "10.96.0.300")',
      'ports[0].protocol must be "TCP" or "UDP" (got "SCTP")',
      'ports[0].port must be an integer in [1, 65535] (got 0)',
      'ports[0].targetPort must be an integer in [1, 65535] (got 0)',
      'ports[1].targetPort must be a number: named ports are not supported (got "http")',
      'algorithm must be one of maglev, random, roundRobin, leastConnections (got "fastest")',
      'sessionAffinityConfig.clientIP.timeoutSeconds must be an integer in [1, 86400] (got 0)',
      'endpoints[0].ip must be an IPv4 address (got "pod-1")',
    ])
    assert.match(err.message, /^service shop\/web: clusterIP must be/)
    return true
  })
  assert.equal(t.portTarget[t.lookup(ip('10.96.0.10'), PROTO_TCP, 80)], 8080)
  assert.equal(t.balancers[0]?.candidates, 2)
})

test('a VIP port owned by another service is refused', () => {
  const t = table()
  t.upsert(web())
  assert.throws(() => t.upsert(web({ name: 'other' })), /10.96.0.10:80\/TCP already belongs to service shop\/web/)
  assert.equal(t.size, 1)
  t.upsert(web({ name: 'other', ports: [{ port: 81 }] })) // another port of the same VIP is fine
  assert.equal(t.size, 2)
})

test('an update applies port and VIP changes', () => {
  const t = table()
  t.upsert(web())
  t.upsert(web({ clusterIP: '10.96.0.20', ports: [{ port: 443, targetPort: 8443 }] }))
  assert.equal(t.lookup(ip('10.96.0.10'), PROTO_TCP, 80), -1)
  assert.equal(t.isVip(ip('10.96.0.10')), false)
  assert.equal(t.portTarget[t.lookup(ip('10.96.0.20'), PROTO_TCP, 443)], 8443)
  assert.equal(t.portCount, 1)
  assert.equal(t.vipCount, 1)
})

test('endpoint changes: new slots, re-flagging, retirement, rebuild only on change', () => {
  const removed: number[][] = []
  const t = table()
  t.onEndpointsRemoved = (s) => removed.push([...s])
  t.upsert(web())
  const s1 = t.slotOf(0, ip('10.244.1.5'))
  const s2 = t.slotOf(0, ip('10.244.2.5'))
  assert.equal(t.upsert(web()).rebalanced, false, 'same endpoints: no rebuild')
  // 1.5 terminating, 2.5 removed, 3.5 added not ready
  const r = t.upsert(web({ endpoints: [{ ip: '10.244.1.5', ready: true, terminating: true }, { ip: '10.244.3.5', ready: false }] }))
  assert.deepEqual(r, { id: 0, created: false, endpointsAdded: 1, endpointsRemoved: 1, rebalanced: true })
  assert.deepEqual(removed, [[s2]])
  assert.equal(t.eps.state[s1], EndpointState.Standby)
  assert.equal(t.eps.state[s2], EndpointState.Free, 'no connections: freed at once')
  assert.equal(t.balancers[0]?.candidates, 0)
  const s3 = t.slotOf(0, ip('10.244.3.5'))
  t.upsert(web({ endpoints: [{ ip: '10.244.1.5' }, { ip: '10.244.3.5' }] }))
  assert.equal(t.eps.state[s3], EndpointState.Eligible)
  assert.deepEqual(t.balancers[0]?.candidateSlots(), [s1, s3])
})

test('a removed endpoint with connections keeps its slot until the last one closes', () => {
  const t = table()
  t.upsert(web())
  const s = t.slotOf(0, ip('10.244.2.5'))
  t.eps.acquire(s)
  t.eps.acquire(s)
  t.upsert(web({ endpoints: [{ ip: '10.244.1.5' }] }))
  assert.equal(t.eps.state[s], EndpointState.Removed)
  assert.equal(t.eps.ip[s], ip('10.244.2.5'))
  t.upsert(web({ endpoints: [{ ip: '10.244.1.5' }, { ip: '10.244.9.9' }] }))
  assert.notEqual(t.slotOf(0, ip('10.244.9.9')), s, 'a retired slot is not reused while in use')
  t.eps.release(s)
  assert.equal(t.eps.state[s], EndpointState.Removed)
  t.eps.release(s)
  assert.equal(t.eps.state[s], EndpointState.Free)
})

test('remove takes everything of the service away', () => {
  const t = table()
  const removed: number[] = []
  t.onEndpointsRemoved = (s) => removed.push(...s)
  t.upsert(web({ sessionAffinity: 'ClientIP' }))
  t.upsert(web({ name: 'api', clusterIP: '10.96.0.11' }))
  t.balancers[0]?.pick(1, ip('10.244.7.7'), 0)
  assert.equal(t.affinity.size, 1)
  assert.equal(t.remove('web', 'shop'), true)
  assert.equal(t.remove('web', 'shop'), false)
  assert.equal(t.lookup(ip('10.96.0.10'), PROTO_TCP, 80), -1)
  assert.equal(t.isVip(ip('10.96.0.10')), false)
  assert.equal(t.balancers[0], null)
  assert.equal(removed.length, 2)
  assert.equal(t.affinity.size, 0)
  assert.equal(t.eps.size, 2, 'only api\'s endpoints remain')
  assert.equal(t.upsert(web()).id, 0, 'the id is reused')
  assert.deepEqual(t.list().map((s) => `${s.namespace}/${s.name}`), ['shop/api', 'shop/web'])
})

test('a headless service is accepted and has no VIP', () => {
  const t = table()
  t.upsert(web({ clusterIP: 'None' }))
  assert.equal(t.size, 1)
  assert.equal(t.vipCount, 0)
  assert.equal(t.portCount, 0)
})

test('list() shows endpoints with their state and connection counts', () => {
  const t = table()
  t.upsert(web({ endpoints: [{ ip: '10.244.1.5' }, { ip: '10.244.2.5', terminating: true }] }))
  t.eps.acquire(t.slotOf(0, ip('10.244.1.5')))
  assert.deepEqual(t.list()[0].endpoints, [
    { ip: '10.244.1.5', state: 'eligible', ready: true, terminating: false, connections: 1, picked: 1 },
    { ip: '10.244.2.5', state: 'standby', ready: true, terminating: true, connections: 0, picked: 0 },
  ])
})

test('one more service on top of 10,000 services x 10 endpoints', (t) => {
  // Timing is not asserted (see the notes in service-table.ts); the small
  // Maglev size keeps the fill quick, the measured upsert uses the default.
  const st = new ServiceTable({ maglevSize: 251 })
  const spec = (i: number): ServiceSpec => ({
    name: `svc-${i}`, namespace: 'bench', clusterIP: `10.96.${i >> 8}.${i & 255}`,
    ports: [{ port: 80, targetPort: 8080 }, { port: 53, protocol: 'UDP' }],
    endpoints: Array.from({ length: 10 }, (_, k) => ({ ip: `10.${100 + k}.${i >> 8}.${i & 255}` })),
  })
  for (let i = 0; i < 10_000; i++) st.upsert(spec(i))
  const full = new ServiceTable()
  const t0 = process.hrtime.bigint()
  full.upsert(spec(10_000))
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const t1 = process.hrtime.bigint()
  st.upsert(spec(10_000))
  const msSmall = Number(process.hrtime.bigint() - t1) / 1e6
  t.diagnostic(`upsert of 1 service x 10 endpoints: ${ms.toFixed(2)} ms at M=${full.maglevSize}, ${msSmall.toFixed(2)} ms into 10,000 services at M=251`)
  assert.equal(st.size, 10_001)
  assert.equal(st.portCount, 20_002)
  const e = st.lookup(ip('10.96.39.16'), PROTO_UDP, 53)
  assert.equal(st.keyOf(st.portSvc[e]), 'bench/svc-10000')
  assert.equal(st.balancers[st.portSvc[e]]?.candidates, 10)
})
