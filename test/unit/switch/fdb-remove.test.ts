import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Fdb, LearnResult as R } from '../../../src/switch/fdb'
import { counters, learn, lookup, mac, runSteps } from './fdb-steps'

const A = '02:00:00:00:00:0a'
const B = '02:00:00:00:00:0b'
const C = '02:00:00:00:00:0c'

/** VNI 1: A@10, B@10, C@11. VNI 2: A@10 (static), B@12. */
function populated(): Fdb {
  const fdb = new Fdb({ ageMs: 1000, seed: 5 })
  runSteps(fdb, [
    learn(1, A, 10, 0, R.Learned), learn(1, B, 10, 0, R.Learned), learn(1, C, 11, 0, R.Learned),
    learn(2, B, 12, 0, R.Learned),
  ])
  const a = mac(A)
  assert.equal(fdb.addStatic(2, a.hi, a.lo, 10), true)
  return fdb
}

test('removePort drops every entry behind the port, static ones too, and nothing else', () => {
  const fdb = populated()
  assert.equal(fdb.removePort(10), 3)
  runSteps(fdb, [lookup(1, A, 1, -1), lookup(1, B, 1, -1), lookup(2, A, 1, -1), lookup(1, C, 1, 11), lookup(2, B, 1, 12)])
  assert.deepEqual([fdb.size, fdb.sizeOfPort(10), fdb.sizeOfVni(1), fdb.sizeOfVni(2)], [2, 0, 1, 1])
  assert.deepEqual(counters(fdb), { Learned: 4, Flushed: 3 })
  assert.equal(fdb.removePort(10), 0)
  assert.equal(fdb.removePort(99), 0)
})

test('removeVni drops every entry of the VNI, static ones too, and nothing else', () => {
  const fdb = populated()
  assert.equal(fdb.removeVni(2), 2)
  runSteps(fdb, [lookup(2, A, 1, -1), lookup(2, B, 1, -1), lookup(1, A, 1, 10), lookup(1, B, 1, 10), lookup(1, C, 1, 11)])
  assert.deepEqual([fdb.size, fdb.sizeOfVni(2), fdb.sizeOfPort(10), fdb.sizeOfPort(12)], [3, 0, 2, 0])
  assert.deepEqual(counters(fdb), { Learned: 4, Flushed: 2 })
  assert.equal(fdb.removeVni(2), 0)
})

test('a removed MAC is learned again from scratch', () => {
  const fdb = populated()
  fdb.removePort(11)
  runSteps(fdb, [learn(1, C, 13, 5, R.Learned), lookup(1, C, 6, 13)])
})

test('removePort over many entries across growth', () => {
  const fdb = new Fdb({ seed: 5 })
  const buf = Uint8Array.of(0x02, 0, 0, 0, 0, 0)
  // MAC i is in VNI i % 3 behind port i % 5.
  for (let i = 0; i < 20_000; i++) {
    buf[3] = i >>> 16; buf[4] = (i >>> 8) & 255; buf[5] = i & 255
    assert.equal(fdb.learn(i % 3, buf, 0, i % 5, 0), R.Learned)
  }
  assert.equal(fdb.removePort(4), 4000)         // i % 5 === 4
  assert.equal(fdb.removeVni(0), 6667 - 1333)   // i % 3 === 0, less the 1333 with i % 15 === 9 gone with port 4
  assert.equal(fdb.size, 20_000 - 4000 - 5334)
  for (let i = 0; i < 20_000; i++) {
    const gone = i % 5 === 4 || i % 3 === 0
    assert.equal(fdb.lookupMac(i % 3, 0x0200, i, 1), gone ? -1 : i % 5)
  }
})
