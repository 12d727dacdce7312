import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Fdb, LearnResult as R } from '../../../src/switch/fdb'
import { counters, learn, lookup, mac, runSteps } from './fdb-steps'

const AGE = 1000
const A = '02:00:00:00:00:0a'
const B = '02:00:00:00:00:0b'
const a = mac(A)

function withStaticA(port = 10): Fdb {
  const fdb = new Fdb({ ageMs: AGE, seed: 3 })
  assert.equal(fdb.addStatic(1, a.hi, a.lo, port), true)
  return fdb
}

test('a static entry is looked up without any learning', () => {
  const fdb = withStaticA()
  runSteps(fdb, [lookup(1, A, 0, 10), lookup(2, A, 0, -1)])
  assert.equal(fdb.size, 1)
  assert.deepEqual([fdb.sizeOfVni(1), fdb.sizeOfPort(10)], [1, 1])
})

test('learning never moves a static entry and counts each refusal', () => {
  const fdb = withStaticA()
  runSteps(fdb, [learn(1, A, 11, 0, R.StaticKept), learn(1, A, 12, 1, R.StaticKept), lookup(1, A, 2, 10)])
  assert.deepEqual(counters(fdb), { StaticMoveRefused: 2 })
  assert.deepEqual([fdb.sizeOfPort(10), fdb.sizeOfPort(11)], [1, 0])
})

test('a frame from a static MAC on its own port is a refresh that changes nothing', () => {
  const fdb = withStaticA()
  runSteps(fdb, [learn(1, A, 10, 0, R.Refreshed)])
  assert.deepEqual(counters(fdb), {})
  assert.deepEqual(fdb.entries(5), [{ vni: 1, mac: A, port: 10, isStatic: true, ageMs: 0 }])
})

test('a static entry never ages', () => {
  const fdb = withStaticA()
  runSteps(fdb, [learn(1, B, 10, 0, R.Learned)])
  assert.equal(fdb.sweep(1e12), 1)
  runSteps(fdb, [lookup(1, A, 1e12, 10), lookup(1, A, Number.MAX_VALUE, 10)])
  assert.deepEqual(counters(fdb), { Learned: 1, Aged: 1 })
  assert.equal(fdb.size, 1)
})

test('addStatic overrides a learned entry, moving it and pinning it', () => {
  const fdb = new Fdb({ ageMs: AGE, seed: 3 })
  runSteps(fdb, [learn(1, A, 10, 0, R.Learned)])
  assert.equal(fdb.addStatic(1, a.hi, a.lo, 20), true)
  runSteps(fdb, [lookup(1, A, 5000, 20), learn(1, A, 10, 5000, R.StaticKept)])
  assert.equal(fdb.size, 1)
  assert.deepEqual([fdb.sizeOfPort(10), fdb.sizeOfPort(20), fdb.sizeOfVni(1)], [0, 1, 1])
  assert.deepEqual(counters(fdb), { Learned: 1, StaticMoveRefused: 1 })
})

test('addStatic again with another port repoints it', () => {
  const fdb = withStaticA(10)
  assert.equal(fdb.addStatic(1, a.hi, a.lo, 11), true)
  runSteps(fdb, [lookup(1, A, 0, 11)])
  assert.deepEqual([fdb.size, fdb.sizeOfPort(10), fdb.sizeOfPort(11)], [1, 0, 1])
})

test('removeStatic removes a static entry but not a learned one', () => {
  const fdb = withStaticA()
  runSteps(fdb, [learn(1, B, 10, 0, R.Learned)])
  const b = mac(B)
  assert.equal(fdb.removeStatic(1, b.hi, b.lo), false, 'B was learned')
  assert.equal(fdb.removeStatic(2, a.hi, a.lo), false, 'no A in VNI 2')
  assert.equal(fdb.removeStatic(1, a.hi, a.lo), true)
  assert.equal(fdb.removeStatic(1, a.hi, a.lo), false, 'already gone')
  runSteps(fdb, [lookup(1, A, 1, -1), lookup(1, B, 1, 10)])
  assert.deepEqual([fdb.size, fdb.sizeOfVni(1), fdb.sizeOfPort(10)], [1, 1, 1])
  // With the static gone, A can be learned anywhere.
  runSteps(fdb, [learn(1, A, 11, 2, R.Learned), lookup(1, A, 3, 11)])
})

test('addStatic refuses a group or zero MAC and bad numbers', () => {
  const fdb = new Fdb({ seed: 3 })
  const cases: [string, () => boolean, RegExp][] = [
    ['broadcast', () => fdb.addStatic(1, 0xffff, 0xffffffff, 1), /ff:ff:ff:ff:ff:ff is a group MAC/],
    ['IPv4 multicast', () => fdb.addStatic(1, 0x0100, 0x5e000001, 1), /01:00:5e:00:00:01 is a group MAC/],
    ['zero', () => fdb.addStatic(1, 0, 0, 1), /not a station MAC/],
    ['hi too wide', () => fdb.addStatic(1, 0x10000, 0, 1), /mac hi16/],
    ['negative port', () => fdb.addStatic(1, a.hi, a.lo, -1), /fdb port .*\(got -1\)/],
  ]
  for (const [name, call, msg] of cases) assert.throws(call, { name: 'RangeError', message: msg }, name)
  assert.equal(fdb.size, 0)
})

test('addStatic returns false when the table is full', () => {
  const fdb = new Fdb({ maxEntries: 1, seed: 3 })
  runSteps(fdb, [learn(1, B, 10, 0, R.Learned)])
  assert.equal(fdb.addStatic(1, a.hi, a.lo, 10), false)
  assert.equal(fdb.size, 1)
  const b = mac(B)
  assert.equal(fdb.addStatic(1, b.hi, b.lo, 11), true, 'pinning a present key needs no room')
})
