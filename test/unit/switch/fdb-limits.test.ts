import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Fdb, FdbOptions, LearnResult as R } from '../../../src/switch/fdb'
import { counters, learn, lookup, mac, runSteps, Step, sweep } from './fdb-steps'

const AGE = 1000
const A = '02:00:00:00:00:0a'
const B = '02:00:00:00:00:0b'
const C = '02:00:00:00:00:0c'
const D = '02:00:00:00:00:0d'

interface Row {
  name: string
  opts: FdbOptions
  steps: Step[]
  counters: Record<string, number>
  size: number
}

const rows: Row[] = [
  {
    name: 'a full table learns nothing new but known MACs keep refreshing and forwarding',
    opts: { maxEntries: 2 },
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, B, 11, 0, R.Learned),
      learn(1, C, 12, 1, R.LimitTable), learn(2, C, 12, 1, R.LimitTable),
      learn(1, A, 10, 900, R.Refreshed), lookup(1, A, 1500, 10), lookup(1, C, 1500, -1),
      learn(1, B, 12, 1, R.Moved), // a move needs no room
    ],
    counters: { Learned: 2, Moved: 1, LimitTable: 2 },
    size: 2,
  },
  {
    name: 'room made by aging is learned into',
    opts: { maxEntries: 2 },
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, B, 11, 500, R.Learned), learn(1, C, 12, 600, R.LimitTable),
      sweep(AGE, 1), learn(1, C, 12, AGE, R.Learned), lookup(1, C, AGE, 12),
    ],
    counters: { Learned: 3, Aged: 1, LimitTable: 1 },
    size: 2,
  },
  {
    name: 'an expired entry holds its room until swept, except from its own MAC',
    opts: { maxEntries: 1 },
    steps: [
      learn(1, A, 10, 0, R.Learned),
      learn(1, B, 10, AGE, R.LimitTable), // A is expired but not swept: sizes count it
      learn(1, A, 11, AGE, R.Learned),    // meeting A drops it, which makes the room
      lookup(1, A, AGE, 11),
    ],
    counters: { Learned: 2, Aged: 1, LimitTable: 1 },
    size: 1,
  },
  {
    name: 'a VNI at its cap learns nothing new; other VNIs are unaffected',
    opts: { maxPerVni: 2 },
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 0, R.Learned), learn(1, C, 11, 0, R.LimitVni),
      learn(2, C, 11, 0, R.Learned), learn(1, A, 10, 1, R.Refreshed), learn(1, A, 11, 2, R.Moved),
      lookup(1, A, 3, 11), lookup(1, B, 3, 10), lookup(1, C, 3, -1), lookup(2, C, 3, 11),
    ],
    counters: { Learned: 3, Moved: 1, LimitVni: 1 },
    size: 3,
  },
  {
    name: 'a port at its cap learns nothing new and cannot take MACs over',
    opts: { maxPerPort: 1 },
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 0, R.LimitPort), learn(2, B, 10, 0, R.LimitPort),
      learn(1, B, 11, 0, R.Learned),
      learn(1, A, 11, 1, R.LimitPort), // the move is refused: A stays on 10
      lookup(1, A, 2, 10), lookup(1, B, 2, 11), learn(1, A, 10, 3, R.Refreshed),
    ],
    counters: { Learned: 2, LimitPort: 3 },
    size: 2,
  },
  {
    name: 'refusals come from the tightest cap, table first',
    opts: { maxEntries: 2, maxPerVni: 1, maxPerPort: 1 },
    steps: [
      learn(1, A, 10, 0, R.Learned),
      learn(1, B, 11, 0, R.LimitVni),
      learn(2, B, 10, 0, R.LimitPort),
      learn(2, B, 11, 0, R.Learned),
      learn(3, C, 12, 0, R.LimitTable),
    ],
    counters: { Learned: 2, LimitTable: 1, LimitVni: 1, LimitPort: 1 },
    size: 2,
  },
]

for (const row of rows) {
  test(`fdb limits: ${row.name}`, () => {
    const fdb = new Fdb({ ageMs: AGE, seed: 4, ...row.opts })
    runSteps(fdb, row.steps)
    assert.deepEqual(counters(fdb), row.counters)
    assert.equal(fdb.size, row.size)
  })
}

test('refused learning leaves per-VNI and per-port sizes unchanged', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 4, maxPerVni: 1, maxPerPort: 1 })
  runSteps(fdb, [learn(1, A, 10, 0, R.Learned), learn(1, B, 11, 0, R.LimitVni), learn(2, B, 10, 0, R.LimitPort)])
  assert.deepEqual([fdb.sizeOfVni(1), fdb.sizeOfVni(2), fdb.sizeOfPort(10), fdb.sizeOfPort(11)], [1, 0, 1, 0])
})

test('removing a port gives its room back', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 4, maxPerPort: 2 })
  runSteps(fdb, [learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 0, R.Learned), learn(1, C, 10, 0, R.LimitPort)])
  assert.equal(fdb.removePort(10), 2)
  runSteps(fdb, [learn(1, C, 10, 1, R.Learned), learn(1, D, 10, 1, R.Learned)])
})

test('static entries ignore the per-VNI and per-port caps but count toward them', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 4, maxPerVni: 1, maxPerPort: 1 })
  const a = mac(A)
  const b = mac(B)
  assert.equal(fdb.addStatic(1, a.hi, a.lo, 10), true)
  assert.equal(fdb.addStatic(1, b.hi, b.lo, 10), true)
  assert.deepEqual([fdb.sizeOfVni(1), fdb.sizeOfPort(10)], [2, 2])
  runSteps(fdb, [learn(1, C, 11, 0, R.LimitVni), learn(2, C, 10, 0, R.LimitPort), lookup(1, A, 0, 10), lookup(1, B, 0, 10)])
})
