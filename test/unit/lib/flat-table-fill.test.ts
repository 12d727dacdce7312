import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FlatTable } from '../../../src/lib/flat-table'

// Two million entries through every growth step from the default capacity:
// every key must be found at the id it was given, and absent keys must miss.
// Timings are not asserted; the run takes about a second.

const N = 2_000_000

test('a table filled with 2,000,000 entries finds every key', () => {
  const t = new FlatTable({ keyWords: 2, seed: 99 })
  const key = t.key
  for (let i = 0; i < N; i++) {
    key[0] = i
    key[1] = Math.imul(i, 0x9e3779b1)
    assert.equal(t.insert(), i)
  }
  assert.equal(t.size, N)
  assert.equal(t.capacity, 2_097_152)
  assert.equal(t.indexSize, 4_194_304)
  let missing = 0
  for (let i = 0; i < N; i++) {
    key[0] = i
    key[1] = Math.imul(i, 0x9e3779b1)
    if (t.find() !== i) missing++
  }
  assert.equal(missing, 0)
  let found = 0
  for (let i = 0; i < 100_000; i++) {
    key[0] = i
    key[1] = Math.imul(i, 0x9e3779b1) + 1
    if (t.find() !== -1) found++
  }
  assert.equal(found, 0)
})
