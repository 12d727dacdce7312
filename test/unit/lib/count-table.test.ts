import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CountTable } from '../../../src/lib/count-table'

test('counts go up and down per key and a key at zero is dropped', () => {
  const c = new CountTable(100, 5)
  assert.equal(c.get(7), 0)
  assert.equal(c.increment(7), 1)
  assert.equal(c.increment(7), 2)
  assert.equal(c.increment(0xffffffff), 1)
  assert.equal(c.size, 2)
  assert.equal(c.get(7), 2)
  assert.equal(c.decrement(7), 1)
  assert.equal(c.decrement(7), 0)
  assert.equal(c.size, 1)
  assert.equal(c.get(7), 0)
  assert.equal(c.decrement(7), 0, 'absent key stays at zero')
  assert.equal(c.get(0xffffffff), 1)
  c.clear()
  assert.equal(c.size, 0)
  assert.equal(c.get(0xffffffff), 0)
})

test('a new key beyond maxKeys is refused; a re-used slot starts from zero', () => {
  const c = new CountTable(2, 5)
  c.increment(1); c.increment(1); c.increment(2)
  assert.equal(c.increment(3), -1)
  assert.equal(c.get(3), 0)
  c.decrement(2)
  assert.equal(c.increment(3), 1)
})

test('counts survive growth', () => {
  const c = new CountTable(1 << 16, 5)
  for (let k = 0; k < 5000; k++) for (let i = 0; i <= k % 3; i++) c.increment(k * 1000)
  for (let k = 0; k < 5000; k++) assert.equal(c.get(k * 1000), (k % 3) + 1)
})
