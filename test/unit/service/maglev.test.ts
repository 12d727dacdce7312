import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAGLEV_DEFAULT_SIZE, isPrime, maglevBuild, maglevFill } from '../../../src/service/maglev'
import { mulberry32 } from '../lib/prng'

const FLOWS = 100_000

/** 10.0.x.y addresses as u32 ids. */
function backends(n: number): number[] {
  return Array.from({ length: n }, (_, i) => (0x0a000000 + ((i + 1) << 8) + 5) >>> 0)
}

function flows(n: number, seed: number): Uint32Array {
  const rng = mulberry32(seed)
  const out = new Uint32Array(n)
  for (let i = 0; i < n; i++) out[i] = rng()
  return out
}

test('every slot is filled and each backend gets M/N slots, give or take one', () => {
  for (const [M, N] of [[251, 1], [251, 7], [1021, 10], [MAGLEV_DEFAULT_SIZE, 10], [MAGLEV_DEFAULT_SIZE, 333]]) {
    const t = maglevBuild(backends(N), M)
    assert.equal(t.length, M)
    const counts = new Array<number>(N).fill(0)
    for (const b of t) { assert.ok(b >= 0 && b < N, `slot holds ${b}`); counts[b]++ }
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `M=${M} N=${N} shares ${Math.min(...counts)}..${Math.max(...counts)}`)
  }
})

test('the table depends on the set of names, not their order', () => {
  const names = backends(10)
  const a = maglevBuild(names, 1021)
  const shuffled = [names[3], names[9], names[0], names[7], names[1], names[2], names[8], names[5], names[4], names[6]]
  const b = maglevBuild(shuffled, 1021)
  for (let i = 0; i < 1021; i++) assert.equal(shuffled[b[i]], names[a[i]], `slot ${i}`)
})

test('string names work the same way and differ from other names', () => {
  const names = ['10.0.1.5:8080', '10.0.2.5:8080', '10.0.3.5:8080']
  const a = maglevBuild(names, 251)
  const b = maglevBuild([names[2], names[0], names[1]], 251)
  for (let i = 0; i < 251; i++) assert.equal(names[a[i]], [names[2], names[0], names[1]][b[i]])
  const c = maglevBuild(['x', 'y', 'z'], 251)
  assert.notDeepEqual(Array.from(c), Array.from(a))
})

test('no backends: every slot is -1', () => {
  assert.ok(maglevBuild([], 251).every((v) => v === -1))
})

test('a table size that is not prime is refused', () => {
  assert.throws(() => maglevBuild(backends(3), 1000), RangeError)
  assert.throws(() => maglevFill(backends(3), new Int32Array(65536)), RangeError)
  assert.equal(isPrime(65537), true)
  assert.equal(isPrime(16381), true)
  assert.equal(isPrime(1), false)
})

test('removing 1 of 10 backends moves about 1/10 of flows, and every flow of the removed one', () => {
  const names = backends(10)
  const before = maglevBuild(names, MAGLEV_DEFAULT_SIZE)
  for (const removed of [0, 4, 9]) {
    const rest = names.filter((_, i) => i !== removed)
    const after = maglevBuild(rest, MAGLEV_DEFAULT_SIZE)
    let moved = 0
    let ofRemoved = 0
    for (const h of flows(FLOWS, 1 + removed)) {
      const was = names[before[h % MAGLEV_DEFAULT_SIZE]]
      const now = rest[after[h % MAGLEV_DEFAULT_SIZE]]
      if (was === names[removed]) { ofRemoved++; assert.notEqual(now, was) }
      if (was !== now) moved++
    }
    const share = moved / FLOWS
    assert.ok(ofRemoved > 0.08 * FLOWS, `removed backend had ${ofRemoved} flows`)
    assert.ok(share >= 0.08 && share <= 0.13, `removing backend ${removed} moved ${(share * 100).toFixed(2)}% of flows`)
  }
})

test('adding an 11th backend moves about 1/11 of flows, all of them to the new one', () => {
  const names = backends(11)
  const before = maglevBuild(names.slice(0, 10), MAGLEV_DEFAULT_SIZE)
  const after = maglevBuild(names, MAGLEV_DEFAULT_SIZE)
  let moved = 0
  let toNew = 0
  for (const h of flows(FLOWS, 42)) {
    const was = names[before[h % MAGLEV_DEFAULT_SIZE]]
    const now = names[after[h % MAGLEV_DEFAULT_SIZE]]
    if (was !== now) { moved++; if (now === names[10]) toNew++ }
  }
  assert.ok(moved / FLOWS >= 0.07 && moved / FLOWS <= 0.13, `moved ${moved}`)
  assert.ok(toNew / moved > 0.85, `${toNew} of ${moved} moved flows went to the new backend`)
})
