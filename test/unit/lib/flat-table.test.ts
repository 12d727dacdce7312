import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FlatTable, flatHash, growF64, growI32, growU32, growU8 } from '../../../src/lib/flat-table'

const SEED = 0x1234abcd

function table1(opts: { initialCapacity?: number; maxEntries?: number; onGrow?: (n: number) => void } = {}): FlatTable {
  return new FlatTable({ keyWords: 1, seed: SEED, ...opts })
}

function put(t: FlatTable, k: number): number {
  t.key[0] = k
  return t.insert()
}

function get(t: FlatTable, k: number): number {
  t.key[0] = k
  return t.find()
}

/** The first `n` one-word keys (from `from`) whose home slot is `home` in an index of `size` slots. */
function keysWithHome(home: number, size: number, n: number, from = 0): number[] {
  const out: number[] = []
  const k = new Uint32Array(1)
  for (let v = from; out.length < n; v++) {
    k[0] = v
    if ((flatHash(k, 0, 1, SEED) & (size - 1)) === home) out.push(v)
  }
  return out
}

test('find on an empty table is -1; insert then find returns the same id', () => {
  const t = table1()
  assert.equal(get(t, 7), -1)
  const id = put(t, 7)
  assert.equal(id, 0)
  assert.equal(get(t, 7), 0)
  assert.equal(get(t, 8), -1)
  assert.equal(t.size, 1)
  assert.equal(t.has(0), true)
  assert.equal(t.has(1), false)
})

test('multi-word keys compare every word', () => {
  const t = new FlatTable({ keyWords: 3, seed: SEED })
  const rows = [[1, 2, 3], [1, 2, 4], [1, 5, 3], [9, 2, 3], [0, 0, 0]]
  const ids = rows.map((r) => { t.key.set(r); return t.insert() })
  assert.deepEqual(ids, [0, 1, 2, 3, 4])
  rows.forEach((r, i) => { t.key.set(r); assert.equal(t.find(), i, `key ${r}`) })
  t.key.set([1, 2, 5])
  assert.equal(t.find(), -1)
  assert.equal(t.keyWord(2, 1), 5)
})

test('findOrInsert reports whether it inserted', () => {
  const t = table1()
  t.key[0] = 42
  const a = t.findOrInsert()
  assert.equal(t.lastInserted, true)
  const b = t.findOrInsert()
  assert.equal(t.lastInserted, false)
  assert.equal(a, b)
  assert.equal(t.size, 1)
})

test('insert returns -1 at maxEntries; a freed id is reused', () => {
  const t = table1({ initialCapacity: 2, maxEntries: 3 })
  assert.deepEqual([put(t, 10), put(t, 11), put(t, 12)], [0, 1, 2])
  assert.equal(put(t, 13), -1)
  t.key[0] = 13
  assert.equal(t.findOrInsert(), -1)
  assert.equal(t.lastInserted, false)
  assert.equal(t.size, 3)
  assert.equal(t.remove(1), true)
  assert.equal(put(t, 13), 1)
  assert.equal(get(t, 13), 1)
  assert.equal(get(t, 11), -1)
  assert.equal(t.capacity, 3)
})

test('remove of a dead or out-of-range id is refused', () => {
  const t = table1()
  put(t, 1)
  assert.equal(t.remove(-1), false)
  assert.equal(t.remove(1), false)
  assert.equal(t.remove(1000), false)
  assert.equal(t.remove(0), true)
  assert.equal(t.remove(0), false)
  assert.equal(t.size, 0)
})

test('remove leaves the key scratch alone', () => {
  const t = new FlatTable({ keyWords: 2, seed: SEED })
  t.key.set([1, 2]); const id = t.insert()
  t.key.set([3, 4])
  t.remove(id)
  assert.deepEqual([...t.key], [3, 4])
})

test('growth doubles the slab up to maxEntries, calls onGrow, keeps ids and keys', () => {
  const grows: number[] = []
  let vals: Uint32Array = new Uint32Array(0)
  const t = table1({ initialCapacity: 16, maxEntries: 100, onGrow: (n) => { grows.push(n); vals = growU32(vals, n) } })
  vals = growU32(vals, t.capacity)
  for (let k = 0; k < 100; k++) {
    const id = put(t, k * 3)
    assert.equal(id, k)
    vals[id] = k * 3 + 1
  }
  assert.deepEqual(grows, [32, 64, 100])
  assert.equal(t.capacity, 100)
  assert.equal(t.indexSize, 256)
  for (let k = 0; k < 100; k++) {
    const id = get(t, k * 3)
    assert.equal(id, k)
    assert.equal(vals[id], k * 3 + 1)
  }
  assert.equal(put(t, 1), -1)
  t.selfCheck()
})

test('index load stays at or below one half', () => {
  const t = table1({ initialCapacity: 1 })
  for (let k = 0; k < 5000; k++) {
    put(t, k)
    assert.ok(t.size * 2 <= t.indexSize, `size ${t.size} index ${t.indexSize}`)
  }
})

test('backward shift: removing the head of a cluster pulls the rest back', () => {
  // maxEntries 8 keeps the index at 16 slots for the whole test.
  const t = table1({ initialCapacity: 8, maxEntries: 8 })
  assert.equal(t.indexSize, 16)
  const [a, b, c] = keysWithHome(3, 16, 3)
  const [d] = keysWithHome(4, 16, 1)
  for (const k of [a, b, c, d]) put(t, k) // slots 3, 4, 5, 6
  t.key[0] = a
  t.remove(t.find())
  // Without the shift, b would sit behind an empty home slot and be lost.
  assert.equal(get(t, a), -1)
  assert.equal(get(t, b), 1)
  assert.equal(get(t, c), 2)
  assert.equal(get(t, d), 3)
  t.selfCheck()
  // Removing from the middle too.
  t.remove(2)
  assert.equal(get(t, b), 1)
  assert.equal(get(t, d), 3)
  t.selfCheck()
})

test('backward shift across the wrap does not move an entry before its home', () => {
  const t = table1({ initialCapacity: 8, maxEntries: 8 })
  const [x, y] = keysWithHome(15, 16, 2) // slots 15, 0
  const [z] = keysWithHome(0, 16, 1)     // slot 1
  const [w] = keysWithHome(1, 16, 1)     // slot 2
  const ids = [x, y, z, w].map((k) => put(t, k))
  t.remove(ids[1]) // y at slot 0: z moves to 0, w to 1
  t.selfCheck()
  t.remove(ids[0]) // x at slot 15: z (home 0) must stay at 0
  t.selfCheck()
  assert.equal(get(t, z), ids[2])
  assert.equal(get(t, w), ids[3])
  assert.equal(t.size, 2)
})

test('clear empties the table and keeps its capacity', () => {
  const t = table1({ initialCapacity: 4 })
  for (let k = 0; k < 50; k++) put(t, k)
  const cap = t.capacity
  t.clear()
  assert.equal(t.size, 0)
  assert.equal(t.capacity, cap)
  assert.equal(get(t, 3), -1)
  assert.equal(put(t, 3), 0)
  t.selfCheck()
})

test('forEach visits each live id once and tolerates removal of any entry', () => {
  const t = table1()
  for (let k = 0; k < 40; k++) put(t, k)
  t.remove(5)
  const seen: number[] = []
  t.forEach((id) => {
    seen.push(id)
    if (id % 2 === 0) t.remove(id)
    if (id === 10) t.remove(11)
  })
  const want = [...Array(40).keys()].filter((i) => i !== 5 && i !== 11)
  assert.deepEqual(seen, want)
  assert.equal(t.size, 40 - 1 - 20 - 1)
  t.selfCheck()
})

test('the same keys under different seeds land in different slots', () => {
  const k = Uint32Array.of(1, 2, 3)
  assert.notEqual(flatHash(k, 0, 3, 1), flatHash(k, 0, 3, 2))
  assert.equal(flatHash(k, 0, 3, 1), flatHash(Uint32Array.of(9, 1, 2, 3), 1, 3, 1))
})

test('constructor rejects bad sizes with the name and value', () => {
  const cases: [string, () => FlatTable, RegExp][] = [
    ['keyWords 0', () => new FlatTable({ keyWords: 0 }), /keyWords must be an integer in \[1, 1024\] \(got 0\)/],
    ['keyWords 1.5', () => new FlatTable({ keyWords: 1.5 }), /keyWords/],
    ['maxEntries 0', () => new FlatTable({ keyWords: 1, maxEntries: 0 }), /maxEntries .* \(got 0\)/],
    ['maxEntries huge', () => new FlatTable({ keyWords: 1, maxEntries: 2 ** 31 }), /maxEntries/],
    ['initialCapacity -1', () => new FlatTable({ keyWords: 1, initialCapacity: -1 }), /initialCapacity/],
  ]
  for (const [name, make, msg] of cases) assert.throws(make, { name: 'RangeError', message: msg }, name)
})

test('grow helpers copy into a longer array and keep an array long enough already', () => {
  const u32 = growU32(Uint32Array.of(1, 0xffffffff), 4)
  assert.deepEqual([...u32], [1, 0xffffffff, 0, 0])
  const i32 = growI32(Int32Array.of(-1), 2)
  assert.deepEqual([...i32], [-1, 0])
  const f64 = growF64(Float64Array.of(Infinity, 0.5), 3)
  assert.deepEqual([...f64], [Infinity, 0.5, 0])
  const u8 = growU8(Uint8Array.of(255), 2)
  assert.deepEqual([...u8], [255, 0])
  const same = new Uint32Array(4)
  assert.equal(growU32(same, 4), same)
  assert.equal(growU32(same, 2), same)
})
