import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AffinityTable } from '../../../src/service/affinity'
import { Algorithm, Balancer } from '../../../src/service/balancer'
import { EndpointSlots, EndpointState } from '../../../src/service/endpoint-slots'
import { mulberry32 } from '../lib/prng'
import { ip } from './frames'

const SVC = 7

function setup(n: number, algorithm: Algorithm, extra: { affinityTimeoutMs?: number } = {}) {
  const eps = new EndpointSlots()
  const slots = Array.from({ length: n }, (_, i) => eps.alloc(ip(`10.0.${i + 1}.5`), SVC, true))
  const affinity = new AffinityTable(1024, 1)
  const b = new Balancer(SVC, eps, { algorithm, maglevSize: 1021, seed: 12345, affinity, ...extra })
  b.update(slots)
  return { eps, slots, b, affinity }
}

function spread(b: Balancer, flows: number, seed: number): Map<number, number> {
  const rng = mulberry32(seed)
  const m = new Map<number, number>()
  for (let i = 0; i < flows; i++) {
    const s = b.pick(rng(), rng(), 0)
    m.set(s, (m.get(s) ?? 0) + 1)
  }
  return m
}

for (const [name, alg] of [['maglev', Algorithm.Maglev], ['random', Algorithm.Random]] as const) {
  test(`${name} spreads 1000 flows over 4 endpoints within 15-35% each`, () => {
    const { b, slots } = setup(4, alg)
    const m = spread(b, 1000, 9)
    assert.deepEqual([...m.keys()].sort(), [...slots].sort())
    for (const [s, n] of m) assert.ok(n >= 150 && n <= 350, `slot ${s} got ${n}`)
  })
}

test('roundRobin is exactly even', () => {
  const { b, slots } = setup(4, Algorithm.RoundRobin)
  const m = spread(b, 1000, 3)
  for (const s of slots) assert.equal(m.get(s), 250)
})

test('maglev maps the same flow hash to the same endpoint, also in a fresh balancer', () => {
  const a = setup(5, Algorithm.Maglev).b
  const b = setup(5, Algorithm.Maglev).b
  const rng = mulberry32(5)
  for (let i = 0; i < 1000; i++) {
    const h = rng()
    assert.equal(a.pick(h, 1, 0), a.pick(h, 2, 0))
    assert.equal(a.pick(h, 1, 0), b.pick(h, 1, 0))
  }
})

test('leastConnections picks the endpoint with fewest connections; ties go round robin', () => {
  const { b, eps, slots } = setup(3, Algorithm.LeastConnections)
  eps.acquire(slots[0]); eps.acquire(slots[0]); eps.acquire(slots[1])
  assert.equal(b.pick(0, 1, 0), slots[2])
  eps.acquire(slots[2]); eps.acquire(slots[2])
  assert.equal(b.pick(0, 1, 0), slots[1]) // 2, 1, 2
  eps.release(slots[0]); eps.release(slots[0]); eps.release(slots[1]); eps.release(slots[2]); eps.release(slots[2])
  const seen = [b.pick(0, 1, 0), b.pick(0, 1, 0), b.pick(0, 1, 0)]
  assert.deepEqual([...seen].sort(), [...slots].sort())
})

test('leastConnections follows counts as connections open', () => {
  const { b, eps, slots } = setup(4, Algorithm.LeastConnections)
  for (let i = 0; i < 400; i++) eps.acquire(b.pick(i, 1, 0))
  for (const s of slots) assert.equal(eps.conns[s], 100)
})

test('only eligible endpoints get new connections', () => {
  for (const alg of [Algorithm.Maglev, Algorithm.Random, Algorithm.RoundRobin, Algorithm.LeastConnections]) {
    const { b, eps, slots } = setup(4, alg)
    eps.setEligible(slots[1], false) // not ready
    eps.setEligible(slots[3], false) // terminating
    assert.equal(b.update(slots), true)
    assert.equal(b.candidates, 2)
    const m = spread(b, 500, 1)
    assert.deepEqual([...m.keys()].sort(), [slots[0], slots[2]].sort(), `algorithm ${Algorithm[alg]}`)
    eps.setEligible(slots[0], false)
    eps.setEligible(slots[2], false)
    b.update(slots)
    assert.equal(b.pick(1, 1, 0), -1)
  }
})

test('update with an unchanged eligible set does not rebuild', () => {
  const { b, slots } = setup(4, Algorithm.Maglev)
  const n = b.rebuilds
  assert.equal(b.update([...slots].reverse()), false)
  assert.equal(b.rebuilds, n)
})

test('maglev with the same endpoints is the same whatever their slot numbers', () => {
  const a = setup(4, Algorithm.Maglev)
  const eps = new EndpointSlots()
  eps.alloc(ip('10.9.9.9'), 99, true) // shift slot numbers
  const slots = ['10.0.4.5', '10.0.2.5', '10.0.3.5', '10.0.1.5'].map((t) => eps.alloc(ip(t), SVC, true))
  const b = new Balancer(SVC, eps, { maglevSize: 1021 })
  b.update(slots)
  for (let h = 0; h < 5000; h++) assert.equal(eps.ip[b.pick(h * 7919, 0, 0)], a.eps.ip[a.b.pick(h * 7919, 0, 0)])
})


test('ClientIP affinity: the same client goes to the same endpoint until the timeout', () => {
  const T = 10_000
  for (const alg of [Algorithm.RoundRobin, Algorithm.Random, Algorithm.Maglev]) {
    const { b } = setup(4, alg, { affinityTimeoutMs: T })
    const rng = mulberry32(2)
    const first = b.pick(rng(), ip('10.1.0.1'), 0)
    // Many flows of the same client, each use refreshing the entry.
    for (let i = 1; i <= 50; i++) assert.equal(b.pick(rng(), ip('10.1.0.1'), i * 1000), first)
    // Other clients spread (round robin moves on).
    const others = new Set<number>()
    for (let i = 0; i < 40; i++) others.add(b.pick(rng(), ip(`10.1.1.${i + 1}`), 50_000))
    assert.ok(others.size > 1)
  }
})

test('ClientIP affinity expires after the timeout without use', () => {
  const T = 10_000
  const { b, affinity } = setup(4, Algorithm.RoundRobin, { affinityTimeoutMs: T })
  const c = ip('10.1.0.1')
  const s0 = b.pick(1, c, 0)
  assert.equal(b.pick(2, c, T - 1), s0) // refreshed: expires at 2T - 1
  assert.equal(affinity.size, 1)
  const s1 = b.pick(3, c, 2 * T - 1) // expired: round robin moves on
  assert.notEqual(s1, s0)
  assert.equal(b.pick(4, c, 2 * T), s1)
})

test('ClientIP affinity is dropped when its endpoint stops being eligible', () => {
  const { b, eps, slots } = setup(4, Algorithm.RoundRobin, { affinityTimeoutMs: 10_000 })
  const c = ip('10.1.0.1')
  const s0 = b.pick(1, c, 0)
  eps.setEligible(s0, false)
  b.update(slots)
  const s1 = b.pick(1, c, 1)
  assert.notEqual(s1, s0)
  assert.equal(eps.state[s0], EndpointState.Standby)
  eps.setEligible(s0, true)
  b.update(slots)
  assert.equal(b.pick(1, c, 2), s1, 'the new choice sticks')
})

test('affinity entries are per service', () => {
  const eps = new EndpointSlots()
  const affinity = new AffinityTable(1024, 1)
  const s1 = [eps.alloc(ip('10.0.0.1'), 1, true), eps.alloc(ip('10.0.0.2'), 1, true)]
  const s2 = [eps.alloc(ip('10.0.0.1'), 2, true), eps.alloc(ip('10.0.0.2'), 2, true)]
  const b1 = new Balancer(1, eps, { algorithm: Algorithm.RoundRobin, affinityTimeoutMs: 1000, affinity })
  const b2 = new Balancer(2, eps, { algorithm: Algorithm.RoundRobin, affinityTimeoutMs: 1000, affinity })
  b1.update(s1)
  b2.update(s2)
  assert.ok(s1.includes(b1.pick(0, 5, 0)))
  assert.ok(s2.includes(b2.pick(0, 5, 0)))
  assert.equal(affinity.size, 2)
  assert.equal(affinity.sweep(999), 0)
  assert.equal(affinity.sweep(1000), 2)
})

