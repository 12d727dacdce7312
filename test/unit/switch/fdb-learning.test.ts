import { test } from 'node:test'
import assert from 'node:assert/strict'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Fdb, FdbMovedMessage, LearnResult as R } from '../../../src/switch/fdb'
import { counters, frameWith, learn, lookup, MAC_OFF, runSteps, Step } from './fdb-steps'

const A = '02:00:00:00:00:0a'
const B = '02:00:00:00:00:0b'
const A_HI = '06:00:00:00:00:0a'  // differs from A only in the high 16 bits
const HIGH = 'fe:ff:ff:ff:ff:fe'  // every byte >= 0x80 but the group bit clear
const MCAST4 = '01:00:5e:00:00:01'
const MCAST6 = '33:33:00:00:00:01'
const BCAST = 'ff:ff:ff:ff:ff:ff'
const ZERO = '00:00:00:00:00:00'

interface Row {
  name: string
  steps: Step[]
  counters: Record<string, number>
  size: number
}

const rows: Row[] = [
  {
    name: 'the first frame from a MAC is learned on its port',
    steps: [learn(1, A, 10, 0, R.Learned), lookup(1, A, 1, 10)],
    counters: { Learned: 1 },
    size: 1,
  },
  {
    name: 'a known MAC on the same port is only refreshed',
    steps: [learn(1, A, 10, 0, R.Learned), learn(1, A, 10, 5, R.Refreshed), learn(1, A, 10, 6, R.Refreshed), lookup(1, A, 7, 10)],
    counters: { Learned: 1 },
    size: 1,
  },
  {
    name: 'a MAC seen on another port moves there and the move is counted',
    steps: [learn(1, A, 10, 0, R.Learned), learn(1, A, 11, 5, R.Moved), lookup(1, A, 6, 11), learn(1, A, 11, 7, R.Refreshed)],
    counters: { Learned: 1, Moved: 1 },
    size: 1,
  },
  {
    name: 'a flapping MAC counts every move',
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, A, 11, 1, R.Moved), learn(1, A, 10, 2, R.Moved), learn(1, A, 11, 3, R.Moved),
      lookup(1, A, 4, 11),
    ],
    counters: { Learned: 1, Moved: 3 },
    size: 1,
  },
  {
    name: 'the same MAC in two VNIs is two entries',
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(2, A, 20, 0, R.Learned),
      lookup(1, A, 1, 10), lookup(2, A, 1, 20), lookup(3, A, 1, -1),
      learn(2, A, 21, 2, R.Moved), lookup(1, A, 3, 10), // a move in VNI 2 leaves VNI 1 alone
    ],
    counters: { Learned: 2, Moved: 1 },
    size: 2,
  },
  {
    name: 'MACs differing in either half are different entries',
    steps: [
      learn(1, A, 10, 0, R.Learned), learn(1, B, 11, 0, R.Learned), learn(1, A_HI, 12, 0, R.Learned), learn(1, HIGH, 13, 0, R.Learned),
      lookup(1, A, 1, 10), lookup(1, B, 1, 11), lookup(1, A_HI, 1, 12), lookup(1, HIGH, 1, 13),
    ],
    counters: { Learned: 4 },
    size: 4,
  },
  {
    name: 'group source MACs are never learned and group destinations never looked up',
    steps: [
      learn(1, MCAST4, 10, 0, R.Multicast), learn(1, MCAST6, 10, 0, R.Multicast), learn(1, BCAST, 10, 0, R.Multicast),
      lookup(1, MCAST4, 1, -1), lookup(1, BCAST, 1, -1),
    ],
    counters: {},
    size: 0,
  },
  {
    name: 'the all-zero MAC is not learned',
    steps: [learn(1, ZERO, 10, 0, R.Invalid), lookup(1, ZERO, 1, -1)],
    counters: {},
    size: 0,
  },
  {
    name: 'unknown MACs and VNIs miss',
    steps: [learn(1, A, 10, 0, R.Learned), lookup(1, B, 1, -1), lookup(2, A, 1, -1), lookup(0xffffff, A, 1, -1)],
    counters: { Learned: 1 },
    size: 1,
  },
  {
    name: 'port numbers are opaque u32s',
    steps: [learn(1, A, 0xffffffff, 0, R.Learned), learn(1, B, 0, 0, R.Learned), lookup(1, A, 1, 0xffffffff), lookup(1, B, 1, 0)],
    counters: { Learned: 2 },
    size: 2,
  },
]

for (const row of rows) {
  test(`fdb learning: ${row.name}`, () => {
    const fdb = new Fdb({ ageMs: 1000, seed: 1 })
    runSteps(fdb, row.steps)
    assert.deepEqual(counters(fdb), row.counters)
    assert.equal(fdb.size, row.size)
  })
}

test('per-VNI and per-port sizes follow learning and moves', () => {
  const fdb = new Fdb({ seed: 1 })
  runSteps(fdb, [learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 0, R.Learned), learn(2, A, 11, 0, R.Learned), learn(1, B, 11, 1, R.Moved)])
  assert.deepEqual([fdb.sizeOfVni(1), fdb.sizeOfVni(2), fdb.sizeOfVni(3)], [2, 1, 0])
  assert.deepEqual([fdb.sizeOfPort(10), fdb.sizeOfPort(11), fdb.sizeOfPort(12)], [1, 2, 0])
})

test('learn and lookup read the MAC at the given offset and leave the buffer alone', () => {
  const fdb = new Fdb({ seed: 1 })
  const buf = frameWith(A)
  const before = [...buf]
  assert.equal(fdb.learn(7, buf, MAC_OFF, 3, 0), R.Learned)
  assert.equal(fdb.lookup(7, buf, MAC_OFF, 1), 3)
  assert.equal(fdb.lookup(7, buf, 0, 1), -1, 'bytes 0..5 are 0xa5 filler, another MAC')
  assert.deepEqual([...buf], before)
  const m = { hi: 0x0200, lo: 0x0000000a }
  assert.equal(fdb.lookupMac(7, m.hi, m.lo, 1), 3)
})

test('moves are published on tapestry:fdb:moved', () => {
  const fdb = new Fdb({ seed: 1 })
  const got: FdbMovedMessage[] = []
  const onMessage = (msg: unknown): void => { got.push(msg as FdbMovedMessage) }
  subscribe('tapestry:fdb:moved', onMessage)
  try {
    runSteps(fdb, [learn(5, A, 1, 0, R.Learned), learn(5, A, 1, 1, R.Refreshed), learn(5, A, 2, 2, R.Moved)])
  } finally {
    unsubscribe('tapestry:fdb:moved', onMessage)
  }
  assert.deepEqual(got, [{ vni: 5, mac: A, fromPort: 1, toPort: 2 }])
})

test('constructor rejects bad options with the name and value', () => {
  const cases: [string, () => Fdb, RegExp][] = [
    ['ageMs 0', () => new Fdb({ ageMs: 0 }), /fdb ageMs must be a positive finite number \(got 0\)/],
    ['ageMs Infinity', () => new Fdb({ ageMs: Infinity }), /ageMs/],
    ['maxEntries 0', () => new Fdb({ maxEntries: 0 }), /fdb maxEntries .*\(got 0\)/],
    ['maxPerVni -1', () => new Fdb({ maxPerVni: -1 }), /fdb maxPerVni .*\(got -1\)/],
    ['maxPerPort 0.5', () => new Fdb({ maxPerPort: 0.5 }), /fdb maxPerPort/],
  ]
  for (const [name, make, msg] of cases) assert.throws(make, { name: 'RangeError', message: msg }, name)
})
