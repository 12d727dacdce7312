/**
 * Where and how the figures were produced, and how they are shown: markdown
 * tables on stdout and a JSON file under bench/results/.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { sh } from '../../test/harness/lab'
import { MicroResult } from './tinybench'
import { LoadResult } from './tap-pair'

export interface Environment {
  date: string
  command: string
  mode: 'short' | 'full'
  commit: string
  /** Uncommitted changes in the work tree when the figures were taken. */
  dirty: boolean
  node: string
  v8: string
  kernel: string
  cpu: string
  cpus: number
  /** 1-minute load average at the start and the end: other work on the machine skews every figure. */
  loadAvgStart: number
  loadAvgEnd?: number
}

export function environment(mode: 'short' | 'full', repo: string): Environment {
  const git = (args: string[]): string => sh('git', ['-C', repo, ...args], { allowFail: true }).trim()
  return {
    date: new Date().toISOString(),
    command: ['node', path.relative(repo, process.argv[1] ?? ''), ...process.argv.slice(2)].join(' '),
    mode,
    commit: git(['rev-parse', '--short=12', 'HEAD']) || 'unknown',
    dirty: git(['status', '--porcelain', '--untracked-files=no']).length > 0,
    node: process.version,
    v8: process.versions.v8,
    kernel: `${os.type()} ${os.release()}`,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    loadAvgStart: os.loadavg()[0],
  }
}

/** 1234567 -> "1.23 M"; keeps three significant digits. */
export function si(v: number): string {
  if (!Number.isFinite(v)) return String(v)
  const units: Array<[number, string]> = [[1e9, ' G'], [1e6, ' M'], [1e3, ' k']]
  for (const [f, u] of units) if (Math.abs(v) >= f) return (v / f).toPrecision(3) + u
  return v.toPrecision(3)
}

function ns(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)
}

/** A markdown table, columns padded to their widest cell; `alignRight[i]` right-aligns column i. */
export function table(head: string[], rows: string[][], alignRight: boolean[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => (alignRight[i] ? c.padStart(w[i]) : c.padEnd(w[i]))).join(' | ') + ' |'
  const sep = '|' + w.map((n, i) => (alignRight[i] ? '-'.repeat(n + 1) + ':' : ':' + '-'.repeat(n + 1))).join('|') + '|'
  return [line(head), sep, ...rows.map(line)].join('\n')
}

export function microTable(rs: MicroResult[]): string {
  const rows = rs.map((r) => [
    r.name,
    si(r.opsPerSec),
    ns(r.nsPerOp),
    ns(r.nsPerOpP50),
    `±${r.rmePct.toFixed(2)}%`,
    String(r.samples),
    String(r.opsPerSample),
    [r.framesPerSec !== undefined ? `${si(r.framesPerSec)} frames/s` : '', r.gbitPerSec !== undefined ? `${r.gbitPerSec.toFixed(1)} Gbit/s` : '']
      .filter(Boolean).join(', '),
  ])
  return table(['case', 'ops/s', 'ns/op', 'p50 ns/op', 'rme', 'samples', 'ops/sample', 'derived'], rows,
    [false, true, true, true, true, true, true, false])
}

export interface E2eSummary {
  load: string
  rounds: number
  tap: LoadResult[]
  veth: LoadResult[]
  /** Medians over the rounds. */
  tapFramesPerSec: number
  vethFramesPerSec: number
  ratio: number
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export function summarize(load: string, tap: LoadResult[], veth: LoadResult[]): E2eSummary {
  const t = median(tap.map((r) => r.framesPerSec))
  const v = median(veth.map((r) => r.framesPerSec))
  return { load, rounds: tap.length, tap, veth, tapFramesPerSec: t, vethFramesPerSec: v, ratio: v > 0 ? t / v : 0 }
}

export function e2eTable(s: E2eSummary): string {
  const row = (label: string, rs: LoadResult[], ratio: string): string[] => {
    const fps = median(rs.map((r) => r.framesPerSec))
    const bytes = rs[0].frameBytes
    return [
      label,
      si(fps),
      ((fps * bytes * 8) / 1e9).toFixed(3),
      si(median(rs.map((r) => r.sentFrames / r.seconds))),
      `${median(rs.map((r) => r.lossPct)).toFixed(1)}%`,
      rs.length > 1 ? rs.map((r) => si(r.framesPerSec)).join(' / ') : '-',
      ratio,
    ]
  }
  return table(
    ['path', 'frames/s received', 'Gbit/s (L2)', 'frames/s sent', 'loss', 'each round', 'ratio to kernel'],
    [
      row('kernel: veth pair (baseline)', s.veth, '1.00'),
      row('TAP -> JS batch forwarder -> TAP', s.tap, s.ratio.toFixed(2)),
    ],
    [false, true, true, true, true, true, true],
  )
}

/** Writes the results next to earlier ones; returns the path. */
export function saveResults(repo: string, env: Environment, body: object): string {
  const dir = path.join(repo, 'bench', 'results')
  fs.mkdirSync(dir, { recursive: true })
  // ISO date without ':' so the name is valid everywhere.
  const file = path.join(dir, `micro-${env.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
  fs.writeFileSync(file, JSON.stringify({ environment: env, ...body }, null, 2) + '\n')
  return file
}
