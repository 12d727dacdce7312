import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Fdb, LearnResult as R } from '../../../src/switch/fdb'
import { counters, learn, lookup, mac, runSteps, Step, sweep } from './fdb-steps'

// Age 1000 ms: an entry learned at t is live while now < t + 1000.
const AGE = 1000
const A = '02:00:00:00:00:0a'
const B = '02:00:00:00:00:0b'
const C = '02:00:00:00:00:0c'

interface Row {
  name: string
  steps: Step[]
  counters: Record<string, number>
  size: number
}

const rows: Row[] = [
  {
    name: 'an entry is live until its age has passed, then lookup misses and drops it',
    steps: [learn(1, A, 10, 0, R.Learned), lookup(1, A, AGE - 1, 10), lookup(1, A, AGE, -1), lookup(1, A, AGE + 1, -1)],
    counters: { Learned: 1, Aged: 1 },
    size: 0,
  },
  {
    name: 'a refresh pushes the expiry out from the last frame',
    steps: [learn(1, A, 10, 0, R.Learned), learn(1, A, 10, 900, R.Refreshed), lookup(1, A, 1899, 10), lookup(1, A, 1900, -1)],
    counters: { Learned: 1, Aged: 1 },
    size: 0,
  },
  {
    name: 'lookup does not refresh',
    steps: [learn(1, A, 10, 0, R.Learned), lookup(1, A, 900, 10), lookup(1, A, AGE, -1)],
    counters: { Learned: 1, Aged: 1 },
    size: 0,
  },
  {
    name: 'sweep removes only expired entries and counts them',
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 500, R.Learned), learn(2, C, 11, 999, R.Learned),
      sweep(999, 0), sweep(AGE, 1), sweep(1499, 0), sweep(1500, 1), sweep(1500, 0),
      lookup(1, A, 1500, -1), lookup(1, B, 1500, -1), lookup(2, C, 1500, 11),
    ],
    counters: { Learned: 3, Aged: 2 },
    size: 1,
  },
  {
    name: 'an expired entry met by learn on another port is learned afresh, not moved',
    steps: [learn(1, A, 10, 0, R.Learned), learn(1, A, 11, AGE, R.Learned), lookup(1, A, AGE, 11)],
    counters: { Learned: 2, Aged: 1 },
    size: 1,
  },
  {
    name: 'an expired entry met by learn on its own port is learned afresh',
    steps: [learn(1, A, 10, 0, R.Learned), learn(1, A, 10, 5000, R.Learned), lookup(1, A, 5999, 10)],
    counters: { Learned: 2, Aged: 1 },
    size: 1,
  },
  {
    name: 'a moved entry ages from the move',
    steps: [learn(1, A, 10, 0, R.Learned), learn(1, A, 11, 800, R.Moved), sweep(1799, 0), lookup(1, A, 1799, 11), sweep(1800, 1)],
    counters: { Learned: 1, Moved: 1, Aged: 1 },
    size: 0,
  },
]

for (const row of rows) {
  test(`fdb aging: ${row.name}`, () => {
    const fdb = new Fdb({ ageMs: AGE, seed: 2 })
    runSteps(fdb, row.steps)
    assert.deepEqual(counters(fdb), row.counters)
    assert.equal(fdb.size, row.size)
  })
}

test('sweep keeps per-VNI and per-port sizes in step', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 2 })
  runSteps(fdb, [learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 600, R.Learned), learn(2, A, 10, 0, R.Learned)])
  assert.equal(fdb.sweep(AGE), 2)
  assert.deepEqual([fdb.sizeOfVni(1), fdb.sizeOfVni(2), fdb.sizeOfPort(10)], [1, 0, 1])
})

test('sweep over many entries leaves only the fresh ones', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 2 })
  const buf = new Uint8Array(6)
  buf[0] = 0x02
  for (let i = 0; i < 10_000; i++) {
    buf[4] = i >>> 8
    buf[5] = i & 255
    assert.equal(fdb.learn(1, buf, 0, i % 7, i % 2 === 0 ? 0 : 500), R.Learned)
  }
  assert.equal(fdb.sweep(AGE), 5000)
  assert.equal(fdb.size, 5000)
  assert.equal(fdb.sizeOfVni(1), 5000)
  const { hi } = mac('02:00:00:00:00:00')
  for (let i = 0; i < 10_000; i++) {
    assert.equal(fdb.lookupMac(1, hi, i, AGE), i % 2 === 0 ? -1 : i % 7)
  }
  assert.deepEqual(counters(fdb), { Learned: 10_000, Aged: 5000 })
})

test('entries() reports the time since each MAC was last seen and hides expired ones', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 2 })
  runSteps(fdb, [learn(1, A, 10, 100, R.Learned), learn(1, B, 10, 0, R.Learned), learn(1, A, 10, 400, R.Refreshed)])
  assert.deepEqual(fdb.entries(999), [
    { vni: 1, mac: A, port: 10, isStatic: false, ageMs: 599 },
    { vni: 1, mac: B, port: 10, isStatic: false, ageMs: 999 },
  ])
  assert.deepEqual(fdb.entries(AGE), [{ vni: 1, mac: A, port: 10, isStatic: false, ageMs: 600 }])
})
