/**
 * The worker pool (datapath/workers.ts) with stand-in workers
 * (fixtures/worker-stub.ts): operations are answered in worker order; a worker
 * that dies after start is reported through onFatal and its pending and later
 * operations fail; one that dies while starting fails start(); stop() ends
 * every thread.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { WorkerPool } from '../../../src/datapath/workers'

const STUB = path.join(__dirname, 'fixtures', 'worker-stub.js')
/** The stub reads its mode from busyPollUs: 0 ok, 1 exit before ready, 2 throw on the first operation. */
const init = (mode: number) => ({
  options: { vxlanPort: 4789, fdb: { ageMs: 1000, maxEntries: 10, maxPerVni: 0, maxPerPort: 0 }, arpSuppression: true, learnPeers: false, floodPerSecond: 0, floodBurst: 1 },
  busyPollUs: mode, rxBatchBytes: 0, sweepMs: 1000,
})

test('three workers answer in order; stop ends them', async () => {
  const fatal: Error[] = []
  const pool = await WorkerPool.start(3, init(0), { onFatal: (e) => fatal.push(e), onCapture: () => undefined }, STUB)
  assert.equal(pool.size, 3)
  assert.equal(pool.counters.length, 3)
  assert.deepEqual(await pool.ask({ op: 'query', what: 'fdb' }), [[1], [2], [3]])
  await pool.all({ op: 'sync' })
  await pool.stop()
  await assert.rejects(pool.all({ op: 'sync' }), /not running/)
  assert.deepEqual(fatal, [], 'a stop is not a failure')
})

test('a worker that dies after start is fatal, and its operations fail', async () => {
  const fatal: Error[] = []
  const pool = await WorkerPool.start(1, init(2), { onFatal: (e) => fatal.push(e), onCapture: () => undefined }, STUB)
  await assert.rejects(pool.all({ op: 'sync' }), /datapath worker 1 failed: stub worker failed/)
  assert.equal(fatal.length, 1)
  assert.match(fatal[0].message, /datapath worker 1 failed/)
  await assert.rejects(pool.all({ op: 'sync' }), /not running/)
  await pool.stop()
})

test('a worker that exits while starting fails start()', async () => {
  const fatal: Error[] = []
  await assert.rejects(WorkerPool.start(2, init(1), { onFatal: (e) => fatal.push(e), onCapture: () => undefined }, STUB), /exited/)
  assert.deepEqual(fatal, [])
})
