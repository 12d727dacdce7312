/**
 * Shared or partitioned tables for datapath workers: which is faster.
 *
 *   node dist/bench/shared-tables.js [--seconds S] [--connections C] [--mix P,..]
 *                                    [--threads W,..] [--designs D,..] [--rounds R]
 *
 * Each of W worker threads runs bench/lib/table-load.ts: C live connections of
 * its own filed under two 4-word keys each (original and reply tuple, as the
 * conntrack files them), lookups of random live connections with a last-seen
 * write, and one connection closed and one opened every P lookups. Designs:
 *   partitioned   each thread its own FlatTable (what the datapath workers
 *                 have: src/lib/flat-table.ts; steering and Conntrack.pin keep
 *                 a flow's packets on one thread, so no table is shared)
 *   shared-S      one SharedFlatTable (bench/lib/shared-flat-table.ts) for all
 *                 threads, in S seqlocked segments, values in a shared
 *                 Float64Array: lookups probe without a lock and check the
 *                 segment's sequence; inserts and removes take its lock
 * Threads use disjoint keys, as the steering gives each its own flows. Within
 * a round the designs run one after the other, each in fresh threads, and the
 * order alternates between rounds.
 *
 * Prints a markdown table (lookups per second summed over threads, ratio to
 * partitioned with the same thread count, lookups that waited for a writer or
 * probed again, lock spins per write) and what the shared design's atomics
 * cost on one thread, and writes bench/results/shared-tables-<ISO date>.json.
 * Exits 1 if any lookup found a wrong id or any insert was refused (a broken
 * table, not a figure).
 * Defaults: 3 s per figure, 50,000 connections per thread, mixes 1000,10,1,
 * threads 1,2, designs partitioned,shared-1,shared-256, 2 rounds.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'
import { SharedFlatTable } from './lib/shared-flat-table'
import { TABLE_KEY_WORDS, TableLoadResult, TableLoadSpec } from './lib/table-load'
import { environment, si, table } from './lib/report'

const USAGE = 'usage: node dist/bench/shared-tables.js [--seconds S] [--connections C] [--mix P,..] [--threads W,..] [--designs partitioned,shared-S,..] [--rounds R]'

interface Args {
  seconds: number
  connections: number
  mixes: number[]
  threads: number[]
  designs: string[]
  rounds: number
}

function parseArgs(argv: string[]): Args {
  const a: Args = { seconds: 3, connections: 50_000, mixes: [1000, 10, 1], threads: [1, 2], designs: ['partitioned', 'shared-1', 'shared-256'], rounds: 2 }
  const ints = (v: string | undefined, flag: string): number[] => {
    const out = (v ?? '').split(',').map(Number)
    if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${flag} takes positive integers, comma-separated (got ${v ?? 'nothing'})\n${USAGE}`)
    return out
  }
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]
    const v = argv[++i]
    if (f === '--seconds') a.seconds = ints(v, f)[0]
    else if (f === '--connections') a.connections = ints(v, f)[0]
    else if (f === '--mix') a.mixes = ints(v, f)
    else if (f === '--threads') a.threads = ints(v, f)
    else if (f === '--rounds') a.rounds = ints(v, f)[0]
    else if (f === '--designs') {
      a.designs = (v ?? '').split(',')
      for (const d of a.designs) {
        if (d !== 'partitioned' && !/^shared-\d+$/.test(d)) throw new Error(`--designs: unknown design ${d}\n${USAGE}`)
      }
    } else throw new Error(`unknown argument ${f}\n${USAGE}`)
  }
  return a
}

export interface TableRun {
  design: string
  threads: number
  packetsPerConnection: number
  results: TableLoadResult[]
}

/** The shared table a shared-S design needs for `threads` threads of `connections` each. */
export function sharedTableFor(design: string, threads: number, connections: number, seed: number): SharedFlatTable {
  const segments = Number(design.slice('shared-'.length))
  return SharedFlatTable.create({ keyWords: TABLE_KEY_WORDS, maxEntries: 2 * connections * threads, segments, seed })
}

/**
 * Runs one design with `threads` worker threads for `ms` after they all filled
 * their tables. A shared design uses `shared` when given (tests check it
 * afterwards), else a new table.
 */
export async function runDesign(
  design: string, threads: number, connections: number, packetsPerConnection: number, ms: number, seed: number,
  shared?: SharedFlatTable,
): Promise<TableRun> {
  const go = new SharedArrayBuffer(8)
  let shape: TableLoadSpec['shape']
  let values: SharedArrayBuffer | undefined
  if (design !== 'partitioned') {
    const t = shared ?? sharedTableFor(design, threads, connections, seed)
    shape = t.description
    values = new SharedArrayBuffer(8 * t.segments * t.segmentCapacity)
  }
  const script = path.join(__dirname, 'lib', 'table-load.js')
  const workers: Worker[] = []
  const done: Array<Promise<TableLoadResult>> = []
  for (let k = 0; k < threads; k++) {
    const tableLoad: TableLoadSpec = {
      design: design === 'partitioned' ? 'partitioned' : 'shared', shape, values, go,
      thread: k, connections, packetsPerConnection, ms, seed: (seed + k * 7919) >>> 0,
    }
    const w = new Worker(script, { workerData: { tableLoad } })
    workers.push(w)
    done.push(new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
      w.once('exit', (code) => reject(new Error(`table load thread ${k} exited (${code}) before reporting`)))
    }))
  }
  try {
    const flags = new Int32Array(go)
    while (Atomics.load(flags, 1) < threads) await new Promise((r) => setTimeout(r, 10))
    Atomics.store(flags, 0, 1)
    Atomics.notify(flags, 0)
    return { design, threads, packetsPerConnection, results: await Promise.all(done) }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

/**
 * What the shared design's primitives cost on this Node.js, ns per operation
 * on one thread with no other thread touching the words: a plain read of an
 * Int32Array over a SharedArrayBuffer, Atomics.load (a lookup does two),
 * Atomics.add (a write does two, for the sequence) and compareExchange +
 * store (a write's lock and unlock).
 */
export function atomicsCosts(n = 20_000_000): Record<string, number> {
  const w = new Int32Array(new SharedArrayBuffer(4096))
  let sink = 0
  const time = (f: () => void): number => {
    const t0 = process.hrtime.bigint()
    f()
    return Number(process.hrtime.bigint() - t0) / n
  }
  const plain = (): void => { let x = 0; for (let i = 0; i < n; i++) x += w[i & 1023]; sink ^= x }
  const load = (): void => { let x = 0; for (let i = 0; i < n; i++) x += Atomics.load(w, i & 1023); sink ^= x }
  const add = (): void => { let x = 0; for (let i = 0; i < n; i++) x += Atomics.add(w, i & 1023, 1); sink ^= x }
  const lock = (): void => {
    let x = 0
    for (let i = 0; i < n; i++) { x += Atomics.compareExchange(w, i & 1023, 0, 1); Atomics.store(w, i & 1023, 0) }
    sink ^= x
  }
  const out: Record<string, number> = {}
  for (const [name, f] of [['plain read', plain], ['Atomics.load', load], ['Atomics.add', add], ['compareExchange + store', lock]] as const) {
    w.fill(0)
    f() // warm-up: optimised before it is timed
    w.fill(0)
    out[name] = time(f)
  }
  if (sink === 0.5) console.log(sink) // keeps the loops' results alive
  return out
}

/** Lookups per second summed over the run's threads. */
export function lookupsPerSecond(r: TableRun): number {
  return r.results.reduce((s, x) => s + x.packets / (x.elapsedMs / 1000), 0)
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const repo = path.resolve(__dirname, '..', '..')
  const env = environment('full', repo)
  const runs: TableRun[] = []
  let broken = 0
  for (let round = 0; round < args.rounds; round++) {
    const order = round % 2 === 0 ? args.designs : [...args.designs].reverse()
    for (const P of args.mixes) {
      for (const W of args.threads) {
        for (const d of order) {
          const r = await runDesign(d, W, args.connections, P, args.seconds * 1000, 0x5eed + round)
          runs.push(r)
          const bad = r.results.reduce((s, x) => s + x.mismatches + x.refused, 0)
          broken += bad
          process.stderr.write(`round ${round + 1} mix ${P} threads ${W} ${d}: ${si(lookupsPerSecond(r))} lookups/s${bad > 0 ? ` BROKEN: ${bad} wrong ids or refused inserts` : ''}\n`)
        }
      }
    }
  }
  const costs = atomicsCosts()
  const rows: string[][] = []
  for (const P of args.mixes) {
    for (const W of args.threads) {
      const base = median(runs.filter((r) => r.design === 'partitioned' && r.threads === W && r.packetsPerConnection === P).map(lookupsPerSecond))
      for (const d of args.designs) {
        const these = runs.filter((r) => r.design === d && r.threads === W && r.packetsPerConnection === P)
        const rates = these.map(lookupsPerSecond)
        const lookups = these.reduce((s, r) => s + r.results.reduce((t, x) => t + x.packets, 0), 0)
        const churn = these.reduce((s, r) => s + r.results.reduce((t, x) => t + x.churned, 0), 0)
        const retries = these.reduce((s, r) => s + r.results.reduce((t, x) => t + x.retries, 0), 0)
        const spins = these.reduce((s, r) => s + r.results.reduce((t, x) => t + x.spins, 0), 0)
        const m = median(rates)
        rows.push([
          String(P), String(W), d, si(m), (1e9 / (m / W)).toFixed(0),
          Number.isNaN(base) ? '-' : (m / base).toFixed(2) + 'x',
          rates.map(si).join(' / '),
          lookups > 0 ? ((retries / lookups) * 1e6).toFixed(0) : '0',
          churn > 0 ? (spins / (churn * 4)).toFixed(2) : '0',
        ])
      }
    }
  }
  console.log(`\nShared or partitioned tables: ${args.connections} connections per thread (2 keys each), ${args.seconds} s per figure, ${args.rounds} round(s), median\n`)
  console.log(table(
    ['lookups per connection', 'threads', 'design', 'lookups/s', 'ns per lookup per thread', 'vs partitioned', 'each round', 'lookups per M that waited or retried', 'lock spins per write'],
    rows, [true, true, false, true, true, true, true, true, true]))
  console.log(`\nThe shared design's primitives, one thread, ns per operation: ${Object.entries(costs).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`)
  const dir = path.join(repo, 'bench', 'results')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `shared-tables-${env.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
  fs.writeFileSync(file, JSON.stringify({ environment: env, args, atomicsNs: costs, runs }, null, 2) + '\n')
  console.log(`\nresults: ${path.relative(process.cwd(), file) || file}`)
  if (broken > 0) {
    console.error(`FAILED: ${broken} wrong lookups or refused inserts: the shared table is broken`)
    process.exitCode = 1
  }
}

if (require.main === module) {
  main().catch((err: Error) => { console.error(err.message); process.exit(2) })
}
