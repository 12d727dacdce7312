import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FlatTable, growU32 } from '../../../src/lib/flat-table'
import { mulberry32 } from './prng'

// FlatTable against a Map reference model: random findOrInsert / insert /
// find / remove with a seeded PRNG. Each row picks a shape that stresses
// something: a tiny full table (every slot collides, refusals, backward shift
// on every removal), growth from one entry, and a large churn.

interface Row {
  name: string
  seed: number
  keyWords: number
  initialCapacity: number
  maxEntries: number
  /** Keys are drawn from [0, keySpace). */
  keySpace: number
  ops: number
  /** Run selfCheck() every this many operations. */
  checkEvery: number
}

const rows: Row[] = [
  { name: 'tiny full table, one word', seed: 1, keyWords: 1, initialCapacity: 4, maxEntries: 8, keySpace: 24, ops: 20_000, checkEvery: 1 },
  { name: 'non-power-of-two cap, three words', seed: 2, keyWords: 3, initialCapacity: 1, maxEntries: 100, keySpace: 300, ops: 30_000, checkEvery: 7 },
  { name: 'growth from one entry, five words', seed: 3, keyWords: 5, initialCapacity: 1, maxEntries: 1 << 20, keySpace: 5_000, ops: 50_000, checkEvery: 997 },
  { name: 'large churn, three words', seed: 4, keyWords: 3, initialCapacity: 16, maxEntries: 1 << 20, keySpace: 60_000, ops: 200_000, checkEvery: 20_011 },
]

/**
 * Key words for key number k. All words but the last depend only on k >>> 3,
 * so groups of eight keys share every word but the last: equality must look
 * at every word.
 */
function writeKey(dst: Uint32Array, k: number): void {
  const K = dst.length
  for (let w = 0; w < K - 1; w++) dst[w] = Math.imul((k >>> 3) + w, 0x9e3779b1)
  dst[K - 1] = k
}

for (const row of rows) {
  test(`flat table matches a Map model: ${row.name}`, () => {
    const rnd = mulberry32(row.seed)
    const grows: number[] = []
    let vals: Uint32Array = new Uint32Array(0)
    const t = new FlatTable({
      keyWords: row.keyWords,
      initialCapacity: row.initialCapacity,
      maxEntries: row.maxEntries,
      seed: row.seed * 7919,
      onGrow: (n) => { grows.push(n); vals = growU32(vals, n) },
    })
    vals = growU32(vals, t.capacity)
    const model = new Map<number, number>() // key number -> entry id
    const owner = new Map<number, number>() // entry id -> key number
    let inserted = 0
    let removed = 0
    let refused = 0

    for (let op = 0; op < row.ops; op++) {
      // Phases: fill (70% inserts), churn (50%), drain (30%).
      const phase = op < row.ops / 3 ? 0.7 : op < (2 * row.ops) / 3 ? 0.5 : 0.3
      const k = rnd() % row.keySpace
      const r = rnd() / 0x100000000
      writeKey(t.key, k)
      const known = model.get(k)
      const ctx = `op ${op}, key ${k}`

      if (r < phase) {
        const useInsert = known === undefined && (rnd() & 1) === 1
        const id = useInsert ? t.insert() : t.findOrInsert()
        if (known !== undefined) {
          assert.equal(id, known, ctx)
          assert.equal(t.lastInserted, false, ctx)
        } else if (model.size === row.maxEntries) {
          assert.equal(id, -1, ctx)
          if (!useInsert) assert.equal(t.lastInserted, false, ctx)
          refused++
        } else {
          assert.ok(id >= 0 && id < t.capacity, ctx)
          assert.equal(owner.has(id), false, `${ctx}: id ${id} handed out twice`)
          if (!useInsert) assert.equal(t.lastInserted, true, ctx)
          model.set(k, id)
          owner.set(id, k)
          vals[id] = k
          inserted++
        }
      } else if (r < phase + 0.25) {
        if (known !== undefined) {
          assert.equal(t.remove(known), true, ctx)
          assert.equal(t.remove(known), false, `${ctx}: second remove`)
          model.delete(k)
          owner.delete(known)
          removed++
        } else {
          assert.equal(t.find(), -1, ctx)
        }
      } else {
        const id = t.find()
        assert.equal(id, known ?? -1, ctx)
        if (id >= 0) assert.equal(vals[id], k, `${ctx}: value kept across growth`)
      }
      assert.equal(t.size, model.size, ctx)
      if (op % row.checkEvery === 0) t.selfCheck()
    }

    t.selfCheck()
    for (const [k, id] of model) {
      writeKey(t.key, k)
      assert.equal(t.find(), id)
      assert.equal(t.keyWord(id, row.keyWords - 1), k)
    }
    let walked = 0
    t.forEach((id) => { walked++; assert.equal(owner.has(id), true) })
    assert.equal(walked, model.size)
    // Each capacity after growth doubles, up to maxEntries.
    let cap = Math.min(row.initialCapacity, row.maxEntries)
    for (const g of grows) { cap = Math.min(cap * 2, row.maxEntries); assert.equal(g, cap) }
    // The run exercised what it was meant to.
    assert.ok(inserted > 0 && removed > 0)
    if (row.maxEntries < row.keySpace) assert.ok(refused > 0, 'expected refusals when full')
  })
}
