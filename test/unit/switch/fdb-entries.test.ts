import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Fdb, LearnResult as R } from '../../../src/switch/fdb'
import { learn, mac, runSteps } from './fdb-steps'

test('entries() lists live entries sorted by VNI then MAC, for fdb show', () => {
  const fdb = new Fdb({ ageMs: 1000, seed: 6 })
  runSteps(fdb, [
    learn(2, '02:00:00:00:00:01', 5, 0, R.Learned),
    learn(1, 'fe:ff:ff:ff:ff:fe', 4, 10, R.Learned),
    learn(1, '02:00:00:00:00:02', 0xffffffff, 20, R.Learned),
    learn(1, '02:00:00:00:00:10', 3, 0, R.Learned),
  ])
  const s = mac('0a:00:00:00:00:01')
  fdb.addStatic(1, s.hi, s.lo, 7)
  assert.deepEqual(fdb.entries(100), [
    { vni: 1, mac: '02:00:00:00:00:02', port: 0xffffffff, isStatic: false, ageMs: 80 },
    { vni: 1, mac: '02:00:00:00:00:10', port: 3, isStatic: false, ageMs: 100 },
    { vni: 1, mac: '0a:00:00:00:00:01', port: 7, isStatic: true, ageMs: 0 },
    { vni: 1, mac: 'fe:ff:ff:ff:ff:fe', port: 4, isStatic: false, ageMs: 90 },
    { vni: 2, mac: '02:00:00:00:00:01', port: 5, isStatic: false, ageMs: 100 },
  ])
  assert.deepEqual(fdb.entries(1015).map((e) => e.mac), ['02:00:00:00:00:02', '0a:00:00:00:00:01'])
  assert.equal(fdb.size, 5, 'listing does not remove expired entries')
})

test('entries() of an empty table is empty', () => {
  assert.deepEqual(new Fdb({ seed: 6 }).entries(0), [])
})
