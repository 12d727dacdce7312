/**
 * Allocation at steady state: frames pushed through the whole datapath in
 * memory, with the V8 heap and the garbage collector watched.
 *
 *   node --expose-gc dist/bench/alloc.js [--short] [--frames N] [--warmup N] [--only <text>] [--where]
 *
 * --short     CI mode: 300,000 frames per mix after 100,000 of warm-up.
 * (default)   10,000,000 frames per mix after 200,000 of warm-up.
 * --frames N  frames per mix; --warmup N frames of warm-up per mix.
 * --only T    only the mixes whose name contains T (the controls always run).
 * --where     after the measurement, run the sampling heap profiler over
 *             every mix that allocates and print the stacks that allocate.
 *
 * Per mix: warm up, two full GCs, heap figures (v8.getHeapStatistics), a
 * PerformanceObserver on 'gc' entries and a v8.GCProfiler, then the frames in
 * one synchronous run with nothing forced, heap figures again, the GC counts
 * by kind and the bytes allocated, two full GCs and the heap once more. A mix
 * allocates per frame when its heap grows by more than
 * MAX_RETAINED_BYTES_PER_FRAME per frame (after the GC), it allocates more
 * than MAX_ALLOCATED_BYTES_PER_FRAME per frame (garbage included), it makes
 * more than MAX_SCAVENGES_PER_MILLION scavenges per million frames, or any
 * full GC. Two control mixes allocate per frame on purpose (garbage; kept
 * objects) and must be caught, or the run is invalid.
 *
 * Prints a markdown table, writes bench/results/alloc-<ISO date>.json, and
 * exits 1 when a real mix allocates per frame or a control goes unnoticed.
 * See bench/README.md.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { environment, table } from './lib/report'
import { COUNTER_NAMES, Mix, Pipeline, buildMixes, controlSink } from './lib/alloc-rig'
import { AllocationMeter, AllocationSite, GcCounter, GcCounts, HeapFigures, allocationSites, fullGc, gcHow, heapFigures, tick } from './lib/alloc-measure'

/** Heap kept per frame (after a full GC, code space excluded, ArrayBuffers included) above which a mix allocates. */
export const MAX_RETAINED_BYTES_PER_FRAME = 1
/** Scavenges per million frames above which a mix allocates. */
export const MAX_SCAVENGES_PER_MILLION = 2
/**
 * Bytes allocated per frame (garbage included) above which a mix allocates.
 * Per-batch allocations stay under it (the clock read boxes a number once per
 * batch of up to 64 frames); one object per frame, 16 bytes at least, does not.
 */
export const MAX_ALLOCATED_BYTES_PER_FRAME = 2

const FULL_FRAMES = 10_000_000
const SHORT_FRAMES = 300_000
const FULL_WARMUP = 200_000
const SHORT_WARMUP = 100_000

interface Args { short: boolean; frames: number; warmup: number; only: string; where: boolean }

const USAGE = 'usage: node --expose-gc dist/bench/alloc.js [--short] [--frames N] [--warmup N] [--only <text in a mix name>] [--where]'

function count(v: string | undefined, what: string): number {
  const n = Number(v?.replace(/_/g, ''))
  if (!Number.isInteger(n) || n < 0) throw new Error(`${what} takes a whole number (got ${v ?? 'nothing'})\n${USAGE}`)
  return n
}

function parseArgs(argv: string[]): Args {
  const a: Args = { short: false, frames: -1, warmup: -1, only: '', where: false }
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]
    if (v === '--short') a.short = true
    else if (v === '--frames') a.frames = count(argv[++i], '--frames')
    else if (v === '--warmup') a.warmup = count(argv[++i], '--warmup')
    else if (v === '--only') {
      a.only = argv[++i] ?? ''
      if (!a.only) throw new Error(`--only takes a piece of a mix name\n${USAGE}`)
    } else if (v === '--where') a.where = true
    else if (v === '--help' || v === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else throw new Error(`unknown argument ${v}\n${USAGE}`)
  }
  if (a.frames < 0) a.frames = a.short ? SHORT_FRAMES : FULL_FRAMES
  if (a.warmup < 0) a.warmup = a.short ? SHORT_WARMUP : FULL_WARMUP
  if (a.frames === 0) throw new Error('--frames must be at least 1')
  return a
}

function log(msg: string): void {
  process.stderr.write(`[alloc] ${msg}\n`)
}

export interface MixResult {
  name: string
  what: string
  control: 'garbage' | 'retained' | null
  framesPerRound: number
  rounds: number
  /** Frames pushed in the measured window (MTU-sized packets: a GRO run or TSO super-frame counts its segments). */
  frames: number
  warmupFrames: number
  seconds: number
  framesPerSec: number
  before: HeapFigures
  /** Right after the window, nothing collected on purpose. */
  after: HeapFigures
  /** After two full GCs. */
  afterGc: HeapFigures
  /** (after - before) / frames, V8 heap used: includes garbage not collected yet. */
  rawBytesPerFrame: number
  /** (afterGc - before) / frames, heap used without code space, plus ArrayBuffers: what stays. */
  retainedBytesPerFrame: number
  /** Bytes allocated on the V8 heap in the window (v8.GCProfiler: garbage included) / frames. */
  allocatedBytesPerFrame: number
  /** GCs in the window by V8's type name, as v8.GCProfiler saw them (a cross-check of `gc`). */
  gcTypes: Record<string, number>
  gc: GcCounts
  scavengesPerMillion: number
  /** Counter deltas of the window, and the set-up round's deltas times the rounds (they must be equal). */
  counters: Record<string, number>
  /** Why the mix counts as allocating per frame (empty: it does not). */
  allocates: string[]
  /** A check of what the mix did failed (not an allocation finding: the figures describe the wrong thing). */
  error: string | null
  sites?: AllocationSite[]
}

function judge(r: Pick<MixResult, 'retainedBytesPerFrame' | 'allocatedBytesPerFrame' | 'scavengesPerMillion' | 'gc'>): string[] {
  const why: string[] = []
  if (r.retainedBytesPerFrame > MAX_RETAINED_BYTES_PER_FRAME) {
    why.push(`keeps ${r.retainedBytesPerFrame.toFixed(2)} B/frame (limit ${MAX_RETAINED_BYTES_PER_FRAME})`)
  }
  if (r.allocatedBytesPerFrame > MAX_ALLOCATED_BYTES_PER_FRAME) {
    why.push(`allocates ${r.allocatedBytesPerFrame.toFixed(1)} B/frame (limit ${MAX_ALLOCATED_BYTES_PER_FRAME})`)
  }
  if (r.scavengesPerMillion > MAX_SCAVENGES_PER_MILLION) {
    why.push(`${r.scavengesPerMillion.toFixed(1)} scavenges per million frames (limit ${MAX_SCAVENGES_PER_MILLION})`)
  }
  if (r.gc.markSweeps + r.gc.incremental > 0) why.push(`${r.gc.markSweeps} mark-sweeps, ${r.gc.incremental} incremental marks (limit 0)`)
  return why
}

async function measure(pl: Pipeline, mix: Mix, args: Args): Promise<MixResult> {
  const nc = COUNTER_NAMES.length
  const c0 = new Float64Array(nc)
  const c1 = new Float64Array(nc)
  const perRound = new Float64Array(nc)
  // Set-up round: what one round does, checked against what the mix must do.
  pl.snapshot(c0)
  mix.round()
  pl.snapshot(c1)
  for (let i = 0; i < nc; i++) perRound[i] = c1[i] - c0[i]
  const bad = mix.expect(perRound)
  if (bad) throw new Error(`${mix.name}: the set-up round did not do what the mix says: ${bad} (drops: ${pl.dropSummary()})`)

  const warmRounds = Math.ceil(args.warmup / mix.framesPerRound)
  for (let r = 0; r < warmRounds; r++) mix.round()
  const rounds = Math.max(1, Math.ceil(args.frames / mix.framesPerRound))
  const frames = rounds * mix.framesPerRound

  fullGc()
  await tick()
  fullGc()
  pl.snapshot(c0)
  const before = heapFigures()
  const gcs = new GcCounter()
  const meter = new AllocationMeter()
  gcs.start()
  meter.start()
  // The measured window: synchronous, nothing forced, nothing else running.
  const t0 = performance.now()
  for (let r = 0; r < rounds; r++) mix.round()
  const t1 = performance.now()
  const allocated = meter.stop()
  const after = heapFigures()
  pl.snapshot(c1)
  const gc = await gcs.stop(t0, t1)
  fullGc()
  const afterGc = heapFigures()
  mix.release?.()

  const counters: Record<string, number> = {}
  let error: string | null = null
  for (let i = 0; i < nc; i++) {
    const d = c1[i] - c0[i]
    counters[COUNTER_NAMES[i]] = d
    if (d !== perRound[i] * rounds) {
      error = `${error ? error + '; ' : ''}${COUNTER_NAMES[i]} moved by ${d}, expected ${perRound[i] * rounds} (${rounds} rounds of ${perRound[i]})`
    }
  }
  if (error) error += ` (drops: ${pl.dropSummary()})`
  const seconds = (t1 - t0) / 1000
  const retained = afterGc.usedNoCode - before.usedNoCode + afterGc.arrayBuffers - before.arrayBuffers
  const res: MixResult = {
    name: mix.name, what: mix.what, control: mix.control, framesPerRound: mix.framesPerRound, rounds, frames,
    warmupFrames: warmRounds * mix.framesPerRound, seconds, framesPerSec: frames / seconds,
    before, after, afterGc,
    rawBytesPerFrame: (after.used - before.used) / frames,
    retainedBytesPerFrame: retained / frames,
    allocatedBytesPerFrame: allocated.bytes / frames, gcTypes: allocated.gcTypes,
    gc, scavengesPerMillion: (gc.scavenges * 1e6) / frames,
    counters, allocates: [], error,
  }
  res.allocates = judge(res)
  return res
}

function mb(b: number): string { return (b / 1048576).toFixed(2) }

function mixTable(rs: MixResult[]): string {
  const head = ['mix', 'frames', 's', 'Mframes/s', 'heap before MB', 'after MB', 'after GC MB', 'growth B/frame',
    'allocated B/frame', 'scavenges', 'mark-sweeps', 'scavenges/M frames', 'GC ms', 'verdict']
  const rows = rs.map((r) => [
    r.name, String(r.frames), r.seconds.toFixed(2), (r.framesPerSec / 1e6).toFixed(2),
    mb(r.before.used), mb(r.after.used), mb(r.afterGc.used), r.retainedBytesPerFrame.toFixed(3), r.allocatedBytesPerFrame.toFixed(2),
    String(r.gc.scavenges), String(r.gc.markSweeps + r.gc.incremental), r.scavengesPerMillion.toFixed(2), r.gc.ms.toFixed(1),
    r.error ? 'ERROR' : r.control
      ? (r.allocates.length > 0 ? 'control: caught' : 'control: MISSED')
      : (r.allocates.length > 0 ? 'ALLOCATES' : 'flat'),
  ])
  return table(head, rows, head.map((_, i) => i > 0 && i < head.length - 1))
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  const repo = path.resolve(__dirname, '..', '..')
  const mode = args.short ? 'short' : 'full'
  const env = environment(mode, repo)
  const started = performance.now()
  log(`mode ${mode}: ${args.frames} frames per mix after ${args.warmup} of warm-up; commit ${env.commit}${env.dirty ? ' (uncommitted changes)' : ''}, node ${env.node}, gc: ${gcHow}`)

  const pl = new Pipeline()
  const mixes = buildMixes(pl).filter((m) => m.control !== null || m.name.includes(args.only))
  if (!mixes.some((m) => m.control === null)) throw new Error(`no mix name contains ${JSON.stringify(args.only)}`)

  const results: MixResult[] = []
  for (const mix of mixes) {
    log(`${mix.name}: ${mix.what}`)
    const r = await measure(pl, mix, args)
    log(`  ${r.frames} frames in ${r.seconds.toFixed(2)} s: heap growth ${r.retainedBytesPerFrame.toFixed(3)} B/frame, ` +
      `allocated ${r.allocatedBytesPerFrame.toFixed(2)} B/frame, ` +
      `${r.gc.scavenges} scavenges, ${r.gc.markSweeps + r.gc.incremental} mark-sweeps${r.error ? `; ERROR ${r.error}` : ''}`)
    results.push(r)
  }

  if (args.where) {
    for (const mix of mixes) {
      const r = results.find((x) => x.name === mix.name)!
      if (r.allocates.length === 0 || mix.control === 'retained') continue
      const rounds = Math.max(1, Math.ceil(Math.min(args.frames, 1_000_000) / mix.framesPerRound))
      log(`where: ${mix.name}, sampling heap profiler over ${rounds * mix.framesPerRound} frames`)
      r.sites = await allocationSites(() => { for (let k = 0; k < rounds; k++) mix.round() }, rounds * mix.framesPerRound, repo)
    }
  }

  const real = results.filter((r) => r.control === null)
  const controls = results.filter((r) => r.control !== null)
  const failures: string[] = []
  for (const r of results) if (r.error) failures.push(`${r.name}: ${r.error}`)
  for (const r of real) if (r.allocates.length > 0) failures.push(`${r.name} allocates per frame: ${r.allocates.join(', ')}`)
  for (const r of controls) {
    const caught = r.control === 'garbage'
      ? r.scavengesPerMillion > MAX_SCAVENGES_PER_MILLION && r.allocatedBytesPerFrame > MAX_ALLOCATED_BYTES_PER_FRAME
      : r.retainedBytesPerFrame > MAX_RETAINED_BYTES_PER_FRAME
    if (!caught) failures.push(`${r.name} was not detected (${r.control === 'garbage' ? 'scavenges' : 'heap growth'} under the limit): the measurement is blind, the run is invalid`)
  }
  const valid = controls.length === 2 && controls.every((r) => r.allocates.length > 0 && !r.error) &&
    failures.every((f) => !f.includes('not detected'))
  const pass = valid && failures.length === 0

  const elapsedS = (performance.now() - started) / 1000
  env.loadAvgEnd = os.loadavg()[0]
  const out: string[] = []
  out.push(`## Tapestry allocation at steady state (${mode}, ${env.date}, commit ${env.commit}${env.dirty ? '+dirty' : ''})`)
  out.push('')
  out.push(`node ${env.node} (V8 ${env.v8}), ${env.kernel}, ${env.cpus} x ${env.cpu}; ` +
    `load average ${env.loadAvgStart.toFixed(2)} at start, ${env.loadAvgEnd.toFixed(2)} at end; gc: ${gcHow}`)
  out.push(`${args.frames} frames per mix (a frame is one MTU-sized packet: a GRO run or a TSO super-frame counts its segments), ` +
    `${args.warmup} frames of warm-up. A mix allocates per frame when its heap grows by more than ${MAX_RETAINED_BYTES_PER_FRAME} B/frame ` +
    `(after a full GC), it allocates more than ${MAX_ALLOCATED_BYTES_PER_FRAME} B/frame (garbage included), it makes more than ` +
    `${MAX_SCAVENGES_PER_MILLION} scavenges per million frames, or any mark-sweep.`)
  out.push('')
  out.push(mixTable(results))
  for (const r of results) {
    if (!r.sites || r.sites.length === 0) continue
    out.push('')
    out.push(`where ${r.name} allocates (sampling heap profiler, garbage included; innermost frame first):`)
    for (const s of r.sites) out.push(`- ${s.bytesPerFrame.toFixed(1)} B/frame: ${s.stack.join(' <- ')}`)
  }
  out.push('')
  if (failures.length > 0) for (const f of failures) out.push(`FAIL: ${f}`)
  out.push(pass ? 'PASS: every real mix is flat, and both controls were caught.'
    : valid ? 'FAIL: a real mix allocates per frame (or did not do what it should).' : 'FAIL: invalid run.')
  out.push(`elapsed ${elapsedS.toFixed(1)} s`)
  console.log(out.join('\n'))

  const dir = path.join(repo, 'bench', 'results')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `alloc-${env.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
  fs.writeFileSync(file, JSON.stringify({
    environment: env,
    settings: {
      framesPerMix: args.frames, warmupFrames: args.warmup, only: args.only || null, gc: gcHow, execArgv: process.execArgv,
      maxRetainedBytesPerFrame: MAX_RETAINED_BYTES_PER_FRAME, maxAllocatedBytesPerFrame: MAX_ALLOCATED_BYTES_PER_FRAME,
      maxScavengesPerMillion: MAX_SCAVENGES_PER_MILLION, maxMarkSweeps: 0,
    },
    elapsedS, pass, valid, failures, mixes: results, sink: controlSink.value,
  }, null, 2) + '\n')
  console.log(`results: ${path.relative(process.cwd(), file) || file}`)
  return pass ? 0 : 1
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : err)
      process.exit(2)
    },
  )
}
