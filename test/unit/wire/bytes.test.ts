import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyInto } from '../../../src/wire/bytes'
import { Batch, SLOT_PLAIN } from '../../../src/lib/batch'

function filled(n: number, seed: number): Uint8Array {
  const a = new Uint8Array(n)
  for (let i = 0; i < n; i++) a[i] = (i * 7 + seed) & 255
  return a
}

test('copyInto copies the same bytes as set(subarray) for views of one buffer and of two', () => {
  const arena = filled(4096, 1)
  const src = arena.subarray(1024, 2048)
  // One ArrayBuffer, src after out's start: copyWithin.
  const want = arena.slice()
  want.set(src.subarray(10, 110), 3000)
  copyInto(arena, 3000, src, 10, 110)
  assert.deepEqual(arena, want)
  // src before out's start in the same buffer, and separate buffers: the set() path.
  const out = arena.subarray(2048)
  const before = arena.subarray(0, 512)
  const want2 = out.slice()
  want2.set(before.subarray(5, 50), 100)
  copyInto(out, 100, before, 5, 50)
  assert.deepEqual(out, want2)
  const other = filled(300, 9)
  const want3 = out.slice()
  want3.set(other.subarray(0, 300), 0)
  copyInto(out, 0, other, 0, 300)
  assert.deepEqual(out, want3)
})

test('a batch over given memory uses it, and refuses memory that is too small', () => {
  const mem = new Uint8Array(4 * SLOT_PLAIN + 100)
  const b = new Batch(4, SLOT_PLAIN, mem)
  assert.equal(b.data.buffer, mem.buffer)
  assert.equal(b.data.length, 4 * SLOT_PLAIN)
  assert.throws(() => new Batch(4, SLOT_PLAIN, new Uint8Array(SLOT_PLAIN)), RangeError)
})
