/**
 * Output of the end-to-end benchmark: the markdown table (stdout and .md),
 * a hand-written SVG bar chart, and the JSON with every raw figure, all
 * named bench/results/e2e-<ISO date>.<ext>.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { sh } from '../../test/harness/lab'
import { Cell, Figure } from './e2e-figures'
import { Environment as BaseEnvironment, environment as baseEnvironment, table } from './report'
import { BenchPath, PathId, PATH_ORDER } from './e2e-paths'

/** The micro suite's record of where and how figures were taken, plus the iperf3 version and the run's length. */
export interface Environment extends BaseEnvironment {
  iperf3: string
  durationSeconds?: number
}

export function environment(mode: 'short' | 'full', repo: string): Environment {
  return { ...baseEnvironment(mode, repo), iperf3: sh('iperf3', ['--version'], { allowFail: true }).split('\n')[0].trim() }
}

export type Results = Record<string, Partial<Record<PathId, Cell>>>

// ---- numbers

function fmt(v: number, decimals: number): string {
  if (!Number.isFinite(v)) return String(v)
  if (decimals === 0 && Math.abs(v) >= 1e4) {
    for (const [f, u] of [[1e9, ' G'], [1e6, ' M'], [1e3, ' k']] as const) if (Math.abs(v) >= f) return (v / f).toPrecision(3) + u
  }
  return v.toFixed(decimals)
}

export function cellText(c: Cell | undefined, f: Figure): string {
  if (!c) return '-'
  if ('value' in c) return fmt(c.value, f.decimals)
  if ('notMeasured' in c) return c.notMeasured.startsWith('n/a') ? c.notMeasured : `not measured (${c.notMeasured})`
  return `error: ${c.error.split('\n')[0].slice(0, 80)}`
}

/** value / kernel value, or null when either is missing or the kernel's is 0. */
export function ratio(results: Results, f: Figure, id: PathId): number | null {
  const k = results[f.id]?.kernel
  const c = results[f.id]?.[id]
  if (!k || !c || !('value' in k) || !('value' in c) || !(k.value > 0)) return null
  return c.value / k.value
}

function ratioText(r: number | null): string {
  if (r === null) return '-'
  return r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`
}

// ---- markdown

export function resultsTable(figures: Figure[], results: Results, paths: BenchPath[]): string {
  const byId = new Map(paths.map((p) => [p.id, p]))
  const others = PATH_ORDER.filter((id) => id !== 'kernel' && byId.has(id))
  const head = ['figure', 'unit', 'better', `${byId.get('kernel')?.label ?? 'kernel'} (baseline)`]
  for (const id of others) head.push(byId.get(id)!.label, `${id} / kernel`)
  const rows = figures.map((f) => {
    // A figure not measured says why once, in its label, and "not measured" in its cells;
    // a short "n/a (...)" reason (a path that cannot have the figure) goes in the cell itself.
    const na = (r: string): boolean => r.startsWith('n/a')
    const reasons = [...new Set(Object.values(results[f.id] ?? {}).flatMap((c) => (c && 'notMeasured' in c && !na(c.notMeasured) ? [c.notMeasured] : [])))]
    const text = (c: Cell | undefined): string => (c && 'notMeasured' in c ? (na(c.notMeasured) ? c.notMeasured : 'not measured') : cellText(c, f))
    const label = reasons.length ? `${f.label} (not measured: ${reasons.join('; ')})` : f.label
    const row = [label, f.unit, f.better, text(results[f.id]?.kernel)]
    for (const id of others) row.push(text(results[f.id]?.[id]), ratioText(ratio(results, f, id)))
    return row
  })
  return table(head, rows, head.map((_, i) => i >= 3))
}

/** For each path with both request/response figures: the VIP rate next to the direct one. */
export function vipLines(results: Results, paths: BenchPath[]): string[] {
  const out: string[] = []
  for (const p of paths) {
    const d = results['rr-direct']?.[p.id]
    const v = results['rr-vip']?.[p.id]
    if (!d || !v || !('value' in d) || !('value' in v) || !(d.value > 0)) continue
    out.push(`${p.label}: via service VIP ${v.value.toFixed(0)} req/s vs direct to pod IP ${d.value.toFixed(0)} req/s (VIP / direct = ${(v.value / d.value).toFixed(2)}).`)
  }
  return out
}

/**
 * Tapestry's TCP 1-stream figure against each other userspace overlay of the
 * run (tinc, Open vSwitch): the issue's "at least 5x" comparison, as lines.
 */
export function overlayLines(results: Results, paths: BenchPath[]): string[] {
  const row = results['tcp-1'] ?? {}
  const t = row.tapestry
  if (!t || !('value' in t)) return []
  const out: string[] = []
  for (const p of paths) {
    if (p.id !== 'tinc' && p.id !== 'ovs') continue
    const o = row[p.id]
    if (!o || !('value' in o) || !(o.value > 0)) continue
    out.push(`TCP 1 stream: Tapestry ${t.value.toFixed(2)} Gbit/s vs ${p.label} ${o.value.toFixed(2)} Gbit/s (${(t.value / o.value).toFixed(1)}x).`)
  }
  return out
}

export function notes(figures: Figure[]): string[] {
  return figures.filter((f) => f.note).map((f) => `- ${f.note}`)
}

export function markdown(env: Environment, figures: Figure[], results: Results, paths: BenchPath[], settings: object): string {
  return [
    `# End-to-end benchmark, ${env.date}`,
    '',
    header(env, settings),
    '',
    resultsTable(figures, results, paths),
    '',
    'Ratios are path / kernel vxlan from this same run ("better" says which direction is good).',
    ...vipLines(results, paths),
    ...overlayLines(results, paths),
    '',
    '## Paths',
    '',
    ...paths.map((p) => `- **${p.label}**: ${p.description}.`),
    '',
    '## Notes',
    '',
    ...notes(figures),
    '',
  ].join('\n')
}

export function header(env: Environment, settings: object): string {
  const load = `load average (1 min) ${env.loadAvgStart.toFixed(2)} at start${env.loadAvgEnd !== undefined ? `, ${env.loadAvgEnd.toFixed(2)} at end` : ''}`
  return [
    `- command: \`${env.command}\` (${env.mode} mode: ${JSON.stringify(settings)})`,
    `- commit ${env.commit}${env.dirty ? '+dirty' : ''}, node ${env.node}, ${env.iperf3}`,
    `- machine: ${env.cpus} x ${env.cpu}, ${env.kernel}; ${load}`,
    ...(env.durationSeconds !== undefined ? [`- run took ${env.durationSeconds.toFixed(0)} s`] : []),
  ].join('\n')
}

// ---- SVG

const COLORS: Record<PathId, string> = { kernel: '#4e79a7', tapestry: '#f28e2b', tinc: '#59a14f', ovs: '#b07aa1', veth: '#9c9c9c' }

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/**
 * One group of horizontal bars per figure, one bar per path, scaled to the
 * largest value of that figure (units differ between figures). Each bar is
 * labelled with its value and its ratio to the kernel.
 */
export function svgChart(env: Environment, figures: Figure[], results: Results, paths: BenchPath[]): string {
  const W = 1000
  const labelW = 340
  const barMax = 440
  const barH = 14
  const gap = 3
  const groupPad = 16
  const top = 70
  const ids = PATH_ORDER.filter((id) => paths.some((p) => p.id === id))
  const groupH = 18 + ids.length * (barH + gap) + groupPad
  const H = top + figures.length * groupH + 20
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="10" y="22" font-size="16" font-weight="bold">Tapestry end-to-end benchmark (${esc(env.mode)} mode)</text>`)
  out.push(`<text x="10" y="40" fill="#555">${esc(`${env.date}, commit ${env.commit}${env.dirty ? '+dirty' : ''}, ${env.cpus} CPUs, load avg ${env.loadAvgStart.toFixed(2)}${env.loadAvgEnd !== undefined ? ` -> ${env.loadAvgEnd.toFixed(2)}` : ''}. Bars scaled per figure; ratio to kernel in brackets.`)}</text>`)
  let lx = 10
  for (const id of ids) {
    const label = paths.find((p) => p.id === id)!.label
    out.push(`<rect x="${lx}" y="50" width="12" height="12" fill="${COLORS[id]}"/><text x="${lx + 16}" y="60">${esc(label)}</text>`)
    lx += 30 + label.length * 7
  }
  figures.forEach((f, i) => {
    const y0 = top + i * groupH
    out.push(`<text x="10" y="${y0 + 12}" font-weight="bold">${esc(f.label)}</text>`)
    out.push(`<text x="10" y="${y0 + 28}" fill="#555">${esc(`${f.unit}, ${f.better} is better`)}</text>`)
    const cells = ids.map((id) => results[f.id]?.[id])
    const max = Math.max(0, ...cells.map((c) => (c && 'value' in c && Number.isFinite(c.value) ? c.value : 0)))
    ids.forEach((id, j) => {
      const c = cells[j]
      const y = y0 + 18 + j * (barH + gap) - 14
      if (c && 'value' in c) {
        const w = max > 0 ? Math.max(1, (c.value / max) * barMax) : 1
        const r = id === 'kernel' ? '' : ` [${ratioText(ratio(results, f, id))}]`
        out.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[id]}"/>`)
        out.push(`<text x="${(labelW + w + 6).toFixed(1)}" y="${y + 11}">${esc(`${fmt(c.value, f.decimals)}${r}`)}</text>`)
      } else {
        out.push(`<rect x="${labelW}" y="${y}" width="${barMax}" height="${barH}" fill="none" stroke="${COLORS[id]}" stroke-dasharray="4 3"/>`)
        out.push(`<text x="${labelW + 8}" y="${y + 11}" fill="#555">${esc(cellText(c, f))}</text>`)
      }
    })
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

// ---- files

export function resultFiles(repo: string, env: Environment): { json: string; md: string; svg: string } {
  const dir = path.join(repo, 'bench', 'results')
  fs.mkdirSync(dir, { recursive: true })
  // ISO date without ':' so the name is valid everywhere; "e2e-" next to bench/micro.ts's "micro-" files.
  const base = path.join(dir, `e2e-${env.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}`)
  return { json: `${base}.json`, md: `${base}.md`, svg: `${base}.svg` }
}
