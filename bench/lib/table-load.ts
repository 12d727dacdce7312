/**
 * The load of bench/shared-tables.ts, run in each of its worker threads: a
 * conntrack-like mix of lookups and connection churn on either a table of the
 * thread's own (the partitioned design the datapath workers use) or one
 * SharedFlatTable all threads use at once.
 *
 * Each thread keeps `connections` live connections, each filed under two
 * 4-word keys (original and reply tuple, as the conntrack files them). A
 * packet is a lookup of one direction of a random live connection, checked
 * against the id it was filed under (a wrong id is a `mismatch`: the bench and
 * the tests fail on any), then a last-seen write to that id's value slot.
 * Every `packetsPerConnection` packets the oldest connection closes (both keys
 * removed) and a new one opens (both inserted). Threads use disjoint keys,
 * as flow steering gives them; in the shared design they still share
 * segments, locks and cache lines.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { FlatTable } from '../../src/lib/flat-table'
import { SharedFlatTable, SharedFlatTableShape } from './shared-flat-table'

export const TABLE_KEY_WORDS = 4

export interface TableLoadSpec {
  /** partitioned: a FlatTable of this thread's own; shared: attach `shape`. */
  design: 'partitioned' | 'shared'
  shape?: SharedFlatTableShape
  /** Float64 last-seen values indexed by shared id (shared design). */
  values?: SharedArrayBuffer
  /** Int32[2]: [0] is 0 until every thread is ready, then 1 (the start line); [1] counts threads ready. */
  go: SharedArrayBuffer
  thread: number
  connections: number
  packetsPerConnection: number
  ms: number
  seed: number
}

export interface TableLoadResult {
  thread: number
  packets: number
  /** Connections closed and opened during the timed part. */
  churned: number
  mismatches: number
  /** Inserts refused (a full segment); the bench fails on any. */
  refused: number
  retries: number
  spins: number
  elapsedMs: number
}

interface Table {
  readonly key: Uint32Array
  find(): number
  findOrInsert(): number
  remove(id: number): boolean
}

function writeKey(key: Uint32Array, thread: number, serial: number, reply: number): void {
  // Original: 10.T.0.0 -> 10.96.0.10, port serial & 0xffff -> 80; reply reversed.
  // The serial's high half goes into the protocol word so keys never repeat.
  const client = (0x0a000000 | (thread << 16)) >>> 0
  const vip = 0x0a60000a
  const cport = serial & 0xffff
  const proto = ((serial >>> 16) << 8) | 6
  if (reply === 0) {
    key[0] = client; key[1] = vip; key[2] = ((cport << 16) | 80) >>> 0
  } else {
    key[0] = vip; key[1] = client; key[2] = ((80 << 16) | cport) >>> 0
  }
  key[3] = proto
}

/** Runs the load on this thread; returns when `spec.ms` have passed after the start line. */
export function runTableLoad(spec: TableLoadSpec): TableLoadResult {
  const C = spec.connections
  let table: Table
  let values: Float64Array
  if (spec.design === 'shared') {
    if (spec.shape === undefined || spec.values === undefined) throw new Error('shared design needs shape and values')
    table = SharedFlatTable.attach(spec.shape)
    values = new Float64Array(spec.values)
  } else {
    table = new FlatTable({ keyWords: TABLE_KEY_WORDS, maxEntries: 2 * C, initialCapacity: 2 * C, seed: spec.seed })
    values = new Float64Array(2 * C)
  }
  const key = table.key
  const ids = new Int32Array(2 * C)
  const serials = new Uint32Array(C)
  let next = 0
  let refused = 0
  const open = (slot: number): void => {
    const serial = next++
    serials[slot] = serial
    for (let d = 0; d < 2; d++) {
      writeKey(key, spec.thread, serial, d)
      const id = table.findOrInsert()
      if (id < 0) refused++
      ids[2 * slot + d] = id
    }
  }
  for (let slot = 0; slot < C; slot++) open(slot)

  const go = new Int32Array(spec.go)
  Atomics.add(go, 1, 1)
  while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0, 50)

  // Count only the timed part: the fill above ran while other threads filled too.
  const shared = table instanceof SharedFlatTable ? table : null
  if (shared !== null) { shared.retries = 0; shared.spins = 0 }
  let rng = (spec.seed ^ (spec.thread * 0x9e3779b9)) | 1
  let packets = 0
  let churned = 0
  let mismatches = 0
  let oldest = 0
  let untilChurn = spec.packetsPerConnection
  const start = performance.now()
  const end = start + spec.ms
  let now = start
  for (;;) {
    for (let n = 0; n < 1024; n++) {
      rng ^= rng << 13; rng ^= rng >>> 17; rng ^= rng << 5
      const slot = (rng >>> 1) % C
      const dir = rng & 1
      writeKey(key, spec.thread, serials[slot], dir)
      const id = table.find()
      if (id !== ids[2 * slot + dir] || id < 0) mismatches++
      else values[id] = now
      if (--untilChurn === 0) {
        untilChurn = spec.packetsPerConnection
        if (!table.remove(ids[2 * oldest])) mismatches++
        if (!table.remove(ids[2 * oldest + 1])) mismatches++
        open(oldest)
        oldest = oldest + 1 === C ? 0 : oldest + 1
        churned++
      }
    }
    packets += 1024
    now = performance.now()
    if (now >= end) break
  }
  return {
    thread: spec.thread, packets, churned, mismatches, refused,
    retries: shared?.retries ?? 0, spins: shared?.spins ?? 0, elapsedMs: now - start,
  }
}

if (!isMainThread && (workerData as { tableLoad?: TableLoadSpec } | null)?.tableLoad !== undefined) {
  const result = runTableLoad((workerData as { tableLoad: TableLoadSpec }).tableLoad)
  parentPort!.postMessage(result)
}
