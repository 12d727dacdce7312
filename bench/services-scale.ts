/**
 * Service control-plane scale: what a change costs with a big table loaded,
 * and what a conntrack entry costs in memory.
 *
 *   node dist/bench/services-scale.js [--short]
 *   node --expose-gc dist/bench/services-scale.js     (gc through global.gc)
 *
 * 1. Loads S services x 10 endpoints x 2 ports (TCP 80 -> 8080, UDP 53 -> 5353)
 *    into a ServiceTable with the agent's defaults (Maglev size 16381);
 *    S = 10,000 (--short: 1,000).
 * 2. Times, median of 20 each, with the table loaded:
 *    - adding one more service (ServiceTable.upsert of a new name and VIP;
 *      removed again outside the timing, so the table stays at S);
 *    - changing one existing service's endpoints (upsert of the same service
 *      with one endpoint replaced by a new address: one Maglev rebuild);
 *    - removing a service (ServiceTable.remove; added back outside the timing).
 * 3. Memory per conntrack connection at 1,000,000 connections (both modes):
 *    growth of process.memoryUsage() arrayBuffers + heapUsed across the fill,
 *    each read after a full GC (global.gc under --expose-gc, else gc obtained
 *    with v8.setFlagsFromString('--expose-gc'), as conntrack-memory.test.ts does).
 *
 * Targets (the services issue): add < 10 ms at 10k x 10; conntrack <= 200
 * bytes per connection. Prints a markdown table and writes
 * bench/results/services-<ISO date>.json.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { Conntrack } from '../src/service/conntrack'
import { ServiceTable } from '../src/service/service-table'
import { ServiceSpec } from '../src/service/service-model'
import { PROTO_TCP } from '../src/wire/ipv4'
import { TCP_SYN } from '../src/wire/tcp'
import { environment } from './lib/report'

const USAGE = 'usage: node [--expose-gc] dist/bench/services-scale.js [--short]'
const ENDPOINTS = 10
const REPEATS = 20
const CT_CONNECTIONS = 1_000_000
const TARGET_ADD_MS = 10
const TARGET_CT_BYTES = 200
const TARGET_SERVICES = 10_000

function log(msg: string): void {
  process.stderr.write(`[services-scale] ${msg}\n`)
}

const globalGc = (globalThis as { gc?: () => void }).gc
const gcHow = globalGc ? 'global.gc (--expose-gc)' : "gc from v8.setFlagsFromString('--expose-gc') + vm.runInNewContext('gc')"
function gc(): void {
  let collect = globalGc
  if (!collect) {
    v8.setFlagsFromString('--expose-gc')
    collect = vm.runInNewContext('gc') as () => void
  }
  collect()
  collect()
}
function used(): { arrayBuffers: number; heapUsed: number; total: number } {
  const m = process.memoryUsage()
  return { arrayBuffers: m.arrayBuffers, heapUsed: m.heapUsed, total: m.arrayBuffers + m.heapUsed }
}

const ip = (a: number): string => `${(a >>> 24) & 255}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`
/** Service i: VIP 10.96.0.0 + 1 + i; endpoints in 10.128.0.0/9, unique per service. */
function spec(i: number, name = `svc-${i}`, firstEndpoint?: string): ServiceSpec {
  const base = (0x0a800000 + i * 16) >>> 0
  const eps = Array.from({ length: ENDPOINTS }, (_, k) => ({ ip: ip(base + k + 1) }))
  if (firstEndpoint) eps[0] = { ip: firstEndpoint }
  return {
    name, namespace: 'bench', clusterIP: ip((0x0a600000 + 1 + i) >>> 0),
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }],
    endpoints: eps,
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function timeMs(f: () => void): number {
  const t0 = process.hrtime.bigint()
  f()
  return Number(process.hrtime.bigint() - t0) / 1e6
}

interface Timing { medianMs: number; minMs: number; maxMs: number; samplesMs: number[] }
const timing = (xs: number[]): Timing => ({ medianMs: median(xs), minMs: Math.min(...xs), maxMs: Math.max(...xs), samplesMs: xs })

function conntrackMemory(): { connections: number; bytesPerConnection: number; fillMs: number; before: ReturnType<typeof used>; after: ReturnType<typeof used> } {
  gc()
  const before = used()
  let ct: Conntrack | null = null
  const fillMs = timeMs(() => {
    ct = new Conntrack({ maxConnections: CT_CONNECTIONS, seed: 3 })
    const vip = 0x0a600001
    for (let i = 0; i < CT_CONNECTIONS; i++) {
      // 1000 clients x 1000 ports to one VIP, 100 backends (as conntrack-memory.test.ts)
      const client = (0x0af40000 + (i % 1000)) >>> 0
      const cport = 10000 + Math.floor(i / 1000)
      if (ct.create(client, vip, cport, 80, PROTO_TCP, (0x0af50000 + (i % 100)) >>> 0, 8080, client, 0, i % 100, TCP_SYN, 0) < 0) {
        throw new Error(`conntrack: create ${i} failed`)
      }
    }
  })
  const t = ct as unknown as Conntrack
  if (t.size !== CT_CONNECTIONS) throw new Error(`conntrack holds ${t.size} connections, expected ${CT_CONNECTIONS}`)
  gc()
  const after = used()
  // Keep the table alive until measured.
  if (t.lookup(0x0af40000, 0x0a600001, 10000, 80, PROTO_TCP, 1) < 0) throw new Error('conntrack: first connection not found')
  return { connections: CT_CONNECTIONS, bytesPerConnection: (after.total - before.total) / CT_CONNECTIONS, fillMs, before, after }
}

function main(): number {
  const argv = process.argv.slice(2)
  let short = false
  for (const a of argv) {
    if (a === '--short') short = true
    else if (a === '--help' || a === '-h') { console.log(USAGE); return 0 } else throw new Error(`unknown argument ${a}\n${USAGE}`)
  }
  const repo = path.resolve(__dirname, '..', '..')
  const mode = short ? 'short' : 'full'
  const env = environment(mode, repo)
  const S = short ? 1_000 : TARGET_SERVICES
  log(`mode ${mode}, commit ${env.commit}${env.dirty ? ' (uncommitted changes)' : ''}, gc: ${gcHow}`)

  // Conntrack memory first, in a heap with nothing else big in it.
  log(`conntrack: filling ${CT_CONNECTIONS} connections`)
  const ctMem = conntrackMemory()
  log(`  ${ctMem.bytesPerConnection.toFixed(1)} bytes per connection, fill ${ctMem.fillMs.toFixed(0)} ms`)
  gc()

  log(`loading ${S} services x ${ENDPOINTS} endpoints x 2 ports`)
  const memBefore = used()
  const table = new ServiceTable({ seed: 11 })
  const loadMs = timeMs(() => { for (let i = 0; i < S; i++) table.upsert(spec(i)) })
  if (table.size !== S || table.portCount !== 2 * S) throw new Error(`table has ${table.size} services, ${table.portCount} ports`)
  gc()
  const memAfter = used()
  log(`  ${loadMs.toFixed(0)} ms, ${((memAfter.total - memBefore.total) / 2 ** 20).toFixed(0)} MiB`)

  // Add one more (then remove it, untimed).
  const add: number[] = []
  for (let r = 0; r < REPEATS; r++) {
    const s = spec(S + r, `extra-${r}`)
    let created = false
    add.push(timeMs(() => { created = table.upsert(s).created }))
    if (!created) throw new Error('add: upsert did not create the service')
    if (!table.remove(s.name, 'bench')) throw new Error('add: could not remove the extra service')
  }
  // Change an existing service's endpoints: one endpoint replaced by a new address.
  const change: number[] = []
  for (let r = 0; r < REPEATS; r++) {
    const i = Math.floor((r + 0.5) * S / REPEATS)
    const s = spec(i, `svc-${i}`, ip((0x0b000000 + r + 1) >>> 0))
    let res = { created: true, rebalanced: false, endpointsAdded: 0, endpointsRemoved: 0 }
    change.push(timeMs(() => { res = table.upsert(s) }))
    if (res.created || !res.rebalanced || res.endpointsAdded !== 1 || res.endpointsRemoved !== 1) {
      throw new Error(`change: unexpected upsert result ${JSON.stringify(res)}`)
    }
  }
  // Remove one (then add it back, untimed).
  const remove: number[] = []
  for (let r = 0; r < REPEATS; r++) {
    const i = Math.floor((r + 0.25) * S / REPEATS)
    let ok = false
    remove.push(timeMs(() => { ok = table.remove(`svc-${i}`, 'bench') }))
    if (!ok) throw new Error(`remove: svc-${i} not found`)
    table.upsert(spec(i))
  }
  if (table.size !== S) throw new Error(`table ended with ${table.size} services`)

  const addT = timing(add)
  const changeT = timing(change)
  const removeT = timing(remove)
  const svcBytes = (memAfter.total - memBefore.total) / S
  const atTarget = S === TARGET_SERVICES
  const verdict = (ok: boolean, comparable = true): string => (comparable ? (ok ? 'met' : 'NOT met') : `${ok ? 'met' : 'NOT met'} at ${S / 1000}k (target is at 10k: run without --short)`)
  const ms = (t: Timing): string => `${t.medianMs.toFixed(3)} ms (min ${t.minMs.toFixed(3)}, max ${t.maxMs.toFixed(3)})`

  env.loadAvgEnd = os.loadavg()[0]
  const out: string[] = []
  out.push(`## Tapestry service scale (${mode}, ${env.date}, commit ${env.commit}${env.dirty ? '+dirty' : ''})`)
  out.push('')
  out.push(`node ${env.node} (V8 ${env.v8}), ${env.kernel}, ${env.cpus} x ${env.cpu}; ` +
    `load average ${env.loadAvgStart.toFixed(2)} at start, ${env.loadAvgEnd.toFixed(2)} at end`)
  out.push('')
  out.push(`Table: ${S.toLocaleString('en')} services x ${ENDPOINTS} endpoints x 2 ports (TCP 80->8080, UDP 53->5353), Maglev size ${table.maglevSize}; timings are the median of ${REPEATS}.`)
  out.push('')
  out.push('| figure | value | target | verdict |')
  out.push('|---|---|---|---|')
  out.push(`| add one service (${S / 1000}k x ${ENDPOINTS} loaded) | ${ms(addT)} | < ${TARGET_ADD_MS} ms at 10k x 10 | ${verdict(addT.medianMs < TARGET_ADD_MS, atTarget)} |`)
  out.push(`| change one service's endpoints (1 of ${ENDPOINTS} replaced) | ${ms(changeT)} | - | - |`)
  out.push(`| remove one service | ${ms(removeT)} | - | - |`)
  out.push(`| conntrack memory per connection (${(CT_CONNECTIONS / 1e6).toFixed(0)}M connections) | ${ctMem.bytesPerConnection.toFixed(1)} B | <= ${TARGET_CT_BYTES} B | ${verdict(ctMem.bytesPerConnection <= TARGET_CT_BYTES)} |`)
  out.push(`| load ${S.toLocaleString('en')} services (one upsert each) | ${loadMs.toFixed(0)} ms (${(loadMs / S).toFixed(3)} ms/service) | - | - |`)
  out.push(`| service table memory | ${(svcBytes / 1024).toFixed(1)} KiB per service (${((memAfter.total - memBefore.total) / 2 ** 20).toFixed(0)} MiB) | - | - |`)
  out.push(`| conntrack fill, ${(CT_CONNECTIONS / 1e6).toFixed(0)}M creates | ${ctMem.fillMs.toFixed(0)} ms | - | - |`)
  out.push('')
  out.push(`Memory: growth of process.memoryUsage() arrayBuffers + heapUsed across the fill, each read after two full GCs (${gcHow}). ` +
    'The conntrack figure includes the table\'s slack (capacity beyond the entries) and excludes arrays dropped while growing.')
  console.log(out.join('\n'))

  const dir = path.join(repo, 'bench', 'results')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `services-${env.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
  fs.writeFileSync(file, JSON.stringify({
    environment: env,
    settings: { services: S, endpointsPerService: ENDPOINTS, portsPerService: 2, maglevSize: table.maglevSize, repeats: REPEATS, conntrackConnections: CT_CONNECTIONS, gc: gcHow },
    targets: { addMs: TARGET_ADD_MS, addAtServices: TARGET_SERVICES, conntrackBytesPerConnection: TARGET_CT_BYTES },
    load: { ms: loadMs, memory: { before: memBefore, after: memAfter, bytesPerService: svcBytes } },
    add: addT, change: changeT, remove: removeT,
    conntrack: ctMem,
    verdicts: { add: atTarget ? addT.medianMs < TARGET_ADD_MS : 'not comparable (short mode)', conntrack: ctMem.bytesPerConnection <= TARGET_CT_BYTES },
  }, null, 2) + '\n')
  console.log(`results: ${path.relative(process.cwd(), file) || file}`)
  return 0
}

try {
  process.exitCode = main()
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err)
  process.exitCode = 1
}
