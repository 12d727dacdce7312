/**
 * bench/lib/shared-flat-table.ts, the shared-tables design measured by
 * bench/shared-tables.ts: its answers must be right before its speed means
 * anything. A Map reference model on one thread, then two threads churning
 * one table at once (the bench's own load, which counts wrong ids), then the
 * table's invariants after they stop.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawnSync } from 'node:child_process'
import { SharedFlatTable } from '../../../bench/lib/shared-flat-table'
import { runDesign, sharedTableFor } from '../../../bench/shared-tables'
import { mulberry32 } from '../lib/prng'

function writeKey(dst: Uint32Array, k: number): void {
  for (let w = 0; w < dst.length - 1; w++) dst[w] = Math.imul((k >>> 3) + w, 0x9e3779b1)
  dst[dst.length - 1] = k
}

for (const segments of [1, 8]) {
  test(`one thread against a Map: ${segments} segment(s), random finds, inserts and removes`, () => {
    const t = SharedFlatTable.create({ keyWords: 3, maxEntries: 400, segments, seed: 7 })
    const model = new Map<number, number>()
    const u32 = mulberry32(segments)
    const rnd = (): number => u32() / 0x100000000
    for (let op = 0; op < 40_000; op++) {
      const k = Math.floor(rnd() * 600)
      writeKey(t.key, k)
      const r = rnd()
      if (r < 0.4) {
        assert.equal(t.find(), model.get(k) ?? -1, `find ${k} at op ${op}`)
      } else if (r < 0.75) {
        const id = t.findOrInsert()
        if (model.has(k)) {
          assert.equal(id, model.get(k)); assert.equal(t.lastInserted, false)
        } else if (id >= 0) {
          assert.equal(t.lastInserted, true)
          assert.ok(![...model.values()].includes(id), `id ${id} handed out twice`)
          for (let w = 0; w < 3; w++) assert.equal(t.keyWord(id, w), t.key[w])
          model.set(k, id)
        } else {
          // Refused: only when the key's segment is full (the whole table with one segment).
          if (segments === 1) assert.equal(model.size, 400)
        }
      } else if (model.has(k)) {
        assert.equal(t.remove(model.get(k)!), true)
        assert.equal(t.remove(model.get(k)!), false, 'a second remove of the same id')
        model.delete(k)
      }
      if (op % 997 === 0) t.selfCheck()
    }
    t.selfCheck()
    assert.equal(t.size, model.size)
    assert.ok(model.size > 200, `the model held ${model.size} keys: the test must fill the table`)
  })
}

test('a full segment refuses the insert and the table stays consistent', () => {
  const t = SharedFlatTable.create({ keyWords: 1, maxEntries: 32, segments: 1, seed: 1 })
  for (let k = 0; k < 32; k++) { t.key[0] = k; assert.ok(t.findOrInsert() >= 0) }
  t.key[0] = 99
  assert.equal(t.findOrInsert(), -1)
  assert.equal(t.lastInserted, false)
  t.key[0] = 5
  assert.ok(t.find() >= 0)
  t.selfCheck()
})

test('bad shapes are refused with the reason', () => {
  assert.throws(() => SharedFlatTable.create({ keyWords: 4, maxEntries: 10, segments: 3 }), /segments must be a power of two/)
  assert.throws(() => SharedFlatTable.create({ keyWords: 0, maxEntries: 10, segments: 1 }), /keyWords/)
})

for (const design of ['shared-1', 'shared-4']) {
  test(`two threads churn one ${design} table at once: every lookup finds its own id, invariants hold after`, async () => {
    // Small tables: a writer's backward shift then often moves an entry a
    // reader is probing for. With the sequence check taken out of find(),
    // both of these tests failed in each of 5 runs; with 3,000 connections the
    // pair failed in 1 run of 3.
    const connections = 32
    const table = sharedTableFor(design, 2, connections, 11)
    // One connection closed and opened per lookup: as many writes as the load can make.
    const run = await runDesign(design, 2, connections, 1, 400, 11, table)
    assert.equal(run.results.length, 2)
    for (const r of run.results) {
      assert.ok(r.packets > 0 && r.churned > 0, `thread ${r.thread} did nothing`)
      assert.equal(r.mismatches, 0, `thread ${r.thread}: lookups that found a wrong id`)
      assert.equal(r.refused, 0, `thread ${r.thread}: inserts refused`)
    }
    table.selfCheck()
    assert.equal(table.size, 2 * 2 * connections)
  })
}

test('the partitioned design runs the same load', async () => {
  const run = await runDesign('partitioned', 2, 2_000, 10, 200, 3)
  for (const r of run.results) {
    assert.ok(r.packets > 0)
    assert.equal(r.mismatches + r.refused, 0)
    assert.equal(r.retries + r.spins, 0)
  }
})

test('npm run bench:tables runs (a short invocation): its table, the atomics line and its result file', () => {
  const root = path.join(__dirname, '..', '..', '..', '..')
  const results = path.join(root, 'bench', 'results')
  const before = new Set(fs.existsSync(results) ? fs.readdirSync(results) : [])
  const r = spawnSync(process.execPath, [path.join(root, 'dist', 'bench', 'shared-tables.js'), '--seconds', '1', '--rounds', '1', '--connections', '2000', '--mix', '10', '--threads', '2'], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stdout.slice(-2000) + r.stderr.slice(-2000))
  for (const d of ['partitioned', 'shared-1', 'shared-256']) assert.match(r.stdout, new RegExp(`\\| +10 \\| +2 \\| ${d} +\\|`))
  assert.match(r.stdout, /Atomics\.load \d+\.\d+/)
  const files = (fs.existsSync(results) ? fs.readdirSync(results) : []).filter((f) => !before.has(f) && f.startsWith('shared-tables-'))
  assert.equal(files.length, 1, `result files: ${files.join(', ')}`)
  for (const f of files) fs.rmSync(path.join(results, f))
})
