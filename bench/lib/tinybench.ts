/**
 * Loading tinybench and running cases whose single operation is far shorter
 * than a timer read.
 *
 * Loading: tinybench 6 is ESM only. TypeScript's CommonJS output rewrites
 * `import()` into `require()`, which cannot load an ES module on Node 20, so
 * the import goes through a Function that TypeScript does not see into, with
 * the entry point resolved by Node's own resolver (the package's "default"
 * export condition) and passed as a file URL.
 *
 * Timing: a VXLAN parse takes a few nanoseconds; performance.now() costs tens
 * of nanoseconds and is what tinybench wraps around each call. So each
 * tinybench iteration runs the case `opsPerSample` times in a loop and
 * reports the per-operation mean as `overriddenDuration` (the samples, and
 * so ns/op and ops/s, are per operation), and the whole elapsed time as
 * `overriddenIterationCost` (so the time budget is real time). opsPerSample
 * is calibrated so a sample lasts about SAMPLE_TARGET_MS.
 */
import { pathToFileURL } from 'node:url'
import type * as Tinybench from 'tinybench'

export type TinybenchModule = typeof Tinybench

const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>

export async function loadTinybench(): Promise<TinybenchModule> {
  const entry = require.resolve('tinybench')
  return (await importEsm(pathToFileURL(entry).href)) as TinybenchModule
}

export interface MicroCase {
  name: string
  /** What one operation is, in words, for the table. */
  op: string
  /** Runs `ops` operations back to back. Must not allocate. */
  run(ops: number): void
  /** Frames handled by one operation (the table then shows frames/s). */
  framesPerOp?: number
  /** Bytes processed by one operation (the table then shows Gbit/s). */
  bytesPerOp?: number
  /** Checks, after the measurement, that the case still did what it claims; returns a sentence if not. */
  verify?(): string | null
}

export interface MicroResult {
  name: string
  op: string
  opsPerSec: number
  nsPerOp: number
  nsPerOpP50: number
  nsPerOpP99: number
  /** Relative margin of error of the mean, in percent (95 %). */
  rmePct: number
  samples: number
  opsPerSample: number
  framesPerSec?: number
  gbitPerSec?: number
}

/** A sample should last this long: long next to a timer read (~30-60 ns), short next to a scheduler tick. */
export const SAMPLE_TARGET_MS = 0.025

/** Operations per sample such that a sample lasts about SAMPLE_TARGET_MS, measured after a short JIT warm-up. */
export function calibrate(c: MicroCase, warmMs: number): number {
  const end = performance.now() + warmMs
  let k = 1
  let perOp = Infinity
  while (performance.now() < end) {
    const t0 = performance.now()
    c.run(k)
    const dt = performance.now() - t0
    perOp = Math.min(perOp, dt / k)
    if (dt < SAMPLE_TARGET_MS && k < 1 << 22) k *= 2
  }
  if (!(perOp > 0)) return k
  return Math.max(1, Math.min(1 << 22, Math.ceil(SAMPLE_TARGET_MS / perOp)))
}

export interface RunOptions {
  /** Measurement time per case, ms. */
  timeMs: number
  /** tinybench warm-up time per case, ms (calibration warms up the JIT before it too). */
  warmupMs: number
  onCase?(name: string): void
}

export async function runMicro(tb: TinybenchModule, cases: MicroCase[], opts: RunOptions): Promise<MicroResult[]> {
  const out: MicroResult[] = []
  // One Bench per case so calibration can run right before its case.
  for (const c of cases) {
    opts.onCase?.(c.name)
    const k = calibrate(c, Math.min(100, opts.warmupMs))
    const bench = new tb.Bench({ time: opts.timeMs, warmupTime: opts.warmupMs, throws: true })
    bench.add(c.name, () => {
      const t0 = performance.now()
      c.run(k)
      const dt = performance.now() - t0
      return { overriddenDuration: dt / k, overriddenIterationCost: dt }
    })
    await bench.run()
    const r = bench.tasks[0].result
    if (r.state !== 'completed') {
      throw new Error(`benchmark ${c.name} did not complete: ${r.state}${r.state === 'errored' ? `: ${r.error.message}` : ''}`)
    }
    const bad = c.verify?.() ?? null
    if (bad) throw new Error(`benchmark ${c.name} measured the wrong thing: ${bad}`)
    const lat = r.latency
    const nsPerOp = lat.mean * 1e6
    const opsPerSec = 1e9 / nsPerOp
    out.push({
      name: c.name,
      op: c.op,
      opsPerSec,
      nsPerOp,
      nsPerOpP50: lat.p50 * 1e6,
      nsPerOpP99: lat.p99 * 1e6,
      rmePct: lat.rme,
      samples: lat.samplesCount,
      opsPerSample: k,
      framesPerSec: c.framesPerOp !== undefined ? opsPerSec * c.framesPerOp : undefined,
      gbitPerSec: c.bytesPerOp !== undefined ? (opsPerSec * c.bytesPerOp * 8) / 1e9 : undefined,
    })
  }
  return out
}
