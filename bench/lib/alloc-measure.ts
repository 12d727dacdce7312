/**
 * The instruments of the allocation benchmark: a full GC on demand, V8 heap
 * figures, a PerformanceObserver counting 'gc' entries by kind, and the
 * sampling heap profiler (inspector HeapProfiler) that names the functions
 * that allocate, with their TypeScript lines from the build's source maps.
 */
import * as fs from 'node:fs'
import * as inspector from 'node:inspector'
import * as path from 'node:path'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { PerformanceObserver, PerformanceObserverEntryList, constants as perf } from 'node:perf_hooks'
import { SourceMap } from 'node:module'

const globalGc = (globalThis as { gc?: () => void }).gc
/** How the full GCs are obtained (recorded in the results). */
export const gcHow = globalGc ? 'global.gc (--expose-gc)' : "gc from v8.setFlagsFromString('--expose-gc') + vm.runInNewContext('gc')"
let collect: (() => void) | null = globalGc ?? null

/** A full, synchronous GC (twice: the first may leave work for weak callbacks). */
export function fullGc(): void {
  if (collect === null) {
    v8.setFlagsFromString('--expose-gc')
    collect = vm.runInNewContext('gc') as () => void
  }
  collect()
  collect()
}

/** Lets pending callbacks (GC performance entries among them) run. */
export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export interface HeapFigures {
  /** v8.getHeapStatistics().used_heap_size: every space of the V8 heap. */
  used: number
  /** The same without code space (compiled code is not what packets allocate). */
  usedNoCode: number
  /** Young generation (new_space) in use, and its capacity. */
  newSpaceUsed: number
  newSpaceSize: number
  total: number
  /** process.memoryUsage().arrayBuffers: ArrayBuffer backing stores outside the V8 heap. */
  arrayBuffers: number
}

export function heapFigures(): HeapFigures {
  const h = v8.getHeapStatistics()
  let code = 0
  let newUsed = 0
  let newSize = 0
  for (const s of v8.getHeapSpaceStatistics()) {
    if (s.space_name === 'code_space' || s.space_name === 'code_large_object_space') code += s.space_used_size
    if (s.space_name === 'new_space') { newUsed = s.space_used_size; newSize = s.space_size }
  }
  return {
    used: h.used_heap_size, usedNoCode: h.used_heap_size - code, newSpaceUsed: newUsed, newSpaceSize: newSize,
    total: h.total_heap_size, arrayBuffers: process.memoryUsage().arrayBuffers,
  }
}

export interface GcCounts {
  /** Scavenges (young generation). */
  scavenges: number
  /** Mark-sweep-compact (full GCs). */
  markSweeps: number
  /** Incremental marking steps (the start of a full GC). */
  incremental: number
  /** Weak callback processing. */
  weak: number
  /** Time spent in those GCs, ms. */
  ms: number
}

/**
 * Counts 'gc' performance entries by kind. Entries reach the observer from
 * the event loop, so a synchronous measured window delivers them after it
 * ends: stop() yields until they are in, and counts those that started
 * within the window only (not the GCs of the bookkeeping after it).
 */
export class GcCounter {
  private readonly seen: Array<{ kind: number; start: number; duration: number }> = []
  private readonly observer = new PerformanceObserver((list) => this.add(list.getEntries()))

  start(): void {
    this.observer.observe({ entryTypes: ['gc'] })
  }

  /** Counts the GCs that started in [from, to] (performance.now() times). */
  async stop(from: number, to: number): Promise<GcCounts> {
    await tick()
    await tick(10)
    this.add(this.observer.takeRecords())
    this.observer.disconnect()
    const c: GcCounts = { scavenges: 0, markSweeps: 0, incremental: 0, weak: 0, ms: 0 }
    for (const e of this.seen) {
      if (e.start < from || e.start > to) continue
      if (e.kind === perf.NODE_PERFORMANCE_GC_MINOR) c.scavenges++
      else if (e.kind === perf.NODE_PERFORMANCE_GC_MAJOR) c.markSweeps++
      else if (e.kind === perf.NODE_PERFORMANCE_GC_INCREMENTAL) c.incremental++
      else c.weak++
      c.ms += e.duration
    }
    return c
  }

  private add(entries: ReturnType<PerformanceObserverEntryList['getEntries']>): void {
    for (const e of entries) {
      const kind = ((e as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind ?? -1
      this.seen.push({ kind, start: e.startTime, duration: e.duration })
    }
  }
}

interface GcStat { gcType: string; beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }

/**
 * Bytes allocated on the V8 heap over a window, exactly: v8.GCProfiler records
 * the heap before and after every GC, so what was allocated is the growth
 * between GCs summed, plus the growth since the last one. Garbage collected
 * in the window is counted, which the heap figures alone cannot show.
 */
export class AllocationMeter {
  private readonly profiler = new v8.GCProfiler()
  private startUsed = 0

  start(): void {
    this.profiler.start()
    this.startUsed = v8.getHeapStatistics().used_heap_size
  }

  /** Stops; returns the bytes allocated since start() and the GC types seen. */
  stop(): { bytes: number; gcTypes: Record<string, number> } {
    const endUsed = v8.getHeapStatistics().used_heap_size
    const stats = (this.profiler.stop()?.statistics ?? []) as GcStat[]
    let bytes = 0
    let last = this.startUsed
    const gcTypes: Record<string, number> = {}
    for (const g of stats) {
      bytes += g.beforeGC.heapStatistics.usedHeapSize - last
      last = g.afterGC.heapStatistics.usedHeapSize
      gcTypes[g.gcType] = (gcTypes[g.gcType] ?? 0) + 1
    }
    bytes += endUsed - last
    return { bytes, gcTypes }
  }
}

// ---- where: the sampling heap profiler ----

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface SamplingNode { callFrame: CallFrame; selfSize: number; children: SamplingNode[] }

export interface AllocationSite {
  /** Innermost frames first, each "function (file.ts:line)". */
  stack: string[]
  /** Bytes the sampler attributes to this stack over the profiled frames. */
  bytes: number
  bytesPerFrame: number
}

function post<T>(s: inspector.Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => s.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))))
}

const maps = new Map<string, SourceMap | null>()

/** "name (src/x.ts:123)" for a profile frame, through the .js.map tsc wrote next to the file. */
function frameName(f: CallFrame, repo: string): string {
  const name = f.functionName || '(anonymous)'
  if (!f.url) return `${name} (builtin)`
  const file = f.url.startsWith('file://') ? new URL(f.url).pathname : f.url
  let map = maps.get(file)
  if (map === undefined) {
    try { map = new SourceMap(JSON.parse(fs.readFileSync(file + '.map', 'utf8'))) } catch { map = null }
    maps.set(file, map)
  }
  const e = map?.findEntry(f.lineNumber, f.columnNumber) as { originalSource?: string; originalLine?: number } | undefined
  if (e && e.originalSource !== undefined && e.originalLine !== undefined) {
    const src = e.originalSource.startsWith('file://') ? new URL(e.originalSource).pathname : path.resolve(path.dirname(file), e.originalSource)
    return `${name} (${path.relative(repo, src)}:${e.originalLine + 1})`
  }
  return `${name} (${path.relative(repo, file)}:${f.lineNumber + 1})`
}

/**
 * Runs `work` under the sampling heap profiler (objects the GC already
 * collected included, so short-lived garbage shows) and returns the stacks
 * that allocated most, three frames deep.
 */
export async function allocationSites(work: () => void, frames: number, repo: string, top = 5): Promise<AllocationSite[]> {
  const s = new inspector.Session()
  s.connect()
  try {
    await post(s, 'HeapProfiler.enable')
    await post(s, 'HeapProfiler.startSampling', {
      samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true,
    })
    work()
    const { profile } = await post<{ profile: { head: SamplingNode } }>(s, 'HeapProfiler.stopSampling')
    await post(s, 'HeapProfiler.disable')
    const byStack = new Map<string, { stack: string[]; bytes: number }>()
    const walk = (n: SamplingNode, up: CallFrame[]): void => {
      const chain = [n.callFrame, ...up]
      if (n.selfSize > 0) {
        const stack = chain.filter((f) => f.functionName !== '(root)').slice(0, 3).map((f) => frameName(f, repo))
        const key = stack.join(' <- ')
        const e = byStack.get(key) ?? { stack, bytes: 0 }
        e.bytes += n.selfSize
        byStack.set(key, e)
      }
      for (const c of n.children) walk(c, chain)
    }
    walk(profile.head, [])
    return [...byStack.values()].sort((a, b) => b.bytes - a.bytes).slice(0, top)
      .map((e) => ({ stack: e.stack, bytes: e.bytes, bytesPerFrame: e.bytes / frames }))
  } finally {
    s.disconnect()
  }
}
