/**
 * End-to-end benchmark: pod to pod across two hosts (network namespaces),
 * through three paths measured in one run:
 *
 *   kernel    Linux bridge + kernel vxlan device on each host (the baseline)
 *   tapestry  a Tapestry agent on each host, pods are its TAPs
 *   veth      two namespaces joined by a veth pair (the ceiling: no overlay)
 *
 * Figures: iperf3 TCP 1 and 4 streams, iperf3 UDP 64-byte packets/s and loss,
 * ping p50/p99 idle and beside a bulk transfer, CPU per GB moved, TCP
 * requests/s (direct; via a service VIP once services exist). Each figure is
 * taken on every path back to back (kernel, Tapestry, veth), and the table
 * gives the ratio of each to the kernel's figure from this same run.
 *
 *   node dist/bench/e2e.js           full mode: 10 s per figure (about 4 minutes)
 *   node dist/bench/e2e.js --short   CI mode: 2 s per figure (under 90 s)
 *
 * Progress goes to stderr, the table to stdout, and the results to
 * bench/results/e2e-<date>.{json,md,svg}. Needs root, iproute2, iperf3, ping
 * and the kernel vxlan module. Namespaces are named by the test Lab
 * (tpy<run id><tag>) and removed in a finally, on exit and on SIGINT/SIGTERM;
 * loads are bounded in time and run only between namespaces created here.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Lab, PREFIX, RUN_ID, sh } from '../test/harness/lab'
import { TAPESTRY_BIN } from '../test/harness/overlay'
import { Cell, MEASUREMENTS, SETTINGS } from './lib/e2e-figures'
import { BenchPath, BUILDERS, PATH_ORDER, tincAvailable } from './lib/e2e-paths'
import { environment, header, markdown, notes, ratio, resultFiles, Results, resultsTable, cellText, svgChart, vipLines } from './lib/e2e-report'

const REPO = path.join(__dirname, '..', '..')
const t0 = Date.now()

function progress(msg: string): void {
  process.stderr.write(`[e2e +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`)
}

function usage(): never {
  process.stderr.write('usage: node dist/bench/e2e.js [--short]\n  --short  CI mode: 2 s per figure, whole run under 90 s (default: full mode, 10 s per figure)\n')
  process.exit(2)
}

/** Why the benchmark cannot run here, or null. */
function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, TAP devices, vxlan devices)'
  for (const [cmd, args] of [['ip', ['-V']], ['iperf3', ['--version']], ['ping', ['-V']], ['ss', ['-V']]] as const) {
    if (!sh(cmd, [...args], { allowFail: true })) return `${cmd} is not installed (run scripts/setup.sh)`
  }
  if (!fs.existsSync(path.join(REPO, 'dist', 'src', 'cli', 'main.js'))) return `Tapestry is not built (${TAPESTRY_BIN} needs dist/src): run npm run build`
  if (!fs.existsSync('/dev/net/tun')) return '/dev/net/tun is missing (run scripts/setup.sh)'
  sh('modprobe', ['vxlan'], { allowFail: true })
  return null
}

async function main(): Promise<number> {
  const args = process.argv.slice(2)
  if (args.some((a) => a !== '--short')) usage()
  const mode = args.includes('--short') ? 'short' : 'full'
  const settings = SETTINGS[mode]
  const why = unavailable()
  if (why) {
    process.stderr.write(`bench e2e: cannot run: ${why}\n`)
    return 1
  }
  const env = environment(mode, REPO)
  progress(`${mode} mode: ${settings.seconds} s per load, ${settings.pingCount} pings per latency figure; machine ${env.cpus} CPUs, load average ${env.loadAvgStart.toFixed(2)}`)
  if (env.loadAvgStart > 0.5) progress(`warning: the machine is busy (load average ${env.loadAvgStart.toFixed(2)}): figures will be low and noisy`)

  const lab = new Lab()
  progress(`namespaces and links: ${PREFIX}${RUN_ID}* (leftovers of a killed run: npm run clean:netns)`)
  const onSignal = (sig: string): void => {
    // Lab's own handler (registered first) removes everything and exits.
    process.stderr.write(`\n[e2e] ${sig}: removing namespaces and stopping agents\n`)
  }
  process.prependOnceListener('SIGINT', () => onSignal('SIGINT'))
  process.prependOnceListener('SIGTERM', () => onSignal('SIGTERM'))

  const paths: BenchPath[] = []
  const results: Results = {}
  const figures = MEASUREMENTS.flatMap((m) => m.figures)
  let errors = 0
  try {
    for (const id of PATH_ORDER) {
      // tinc, the other userspace overlay, is the full run's comparison (setup installs it).
      if (id === 'tinc' && (mode === 'short' || !tincAvailable())) {
        progress(mode === 'short' ? 'tinc: not in short mode' : 'tinc: not installed, no side-by-side figure')
        continue
      }
      progress(`building path ${id}`)
      paths.push(await BUILDERS[id](lab))
    }
    for (const p of paths.filter((q) => q.dataplanePids.length)) progress(`${p.id}: dataplane pids ${p.dataplanePids.join(', ')}${p.details.agentPids ? ` (${(p.details.agentPids as Array<{ check: string }>).map((x) => x.check).join('; ')})` : ''}`)
    for (const m of MEASUREMENTS) {
      for (const p of paths) {
        let cells: Record<string, Cell>
        try {
          cells = await m.run(lab, p, settings)
        } catch (err) {
          errors++
          const msg = err instanceof Error ? err.message : String(err)
          cells = Object.fromEntries(m.figures.map((f) => [f.id, { error: msg }]))
        }
        for (const f of m.figures) (results[f.id] ??= {})[p.id] = cells[f.id] ?? { error: 'no figure returned' }
        progress(`${m.id} / ${p.label}: ${m.figures.map((f) => `${f.label} ${cellText(cells[f.id], f)}${'value' in (cells[f.id] ?? {}) ? ` ${f.unit}` : ''}`).join('; ')}`)
      }
    }
  } finally {
    progress('cleaning up')
    await lab.cleanup()
  }

  env.loadAvgEnd = os.loadavg()[0]
  env.durationSeconds = (Date.now() - t0) / 1000
  const files = resultFiles(REPO, env)
  const md = markdown(env, figures, results, paths, settings)
  fs.writeFileSync(files.md, md)
  fs.writeFileSync(files.svg, svgChart(env, figures, results, paths))
  fs.writeFileSync(files.json, JSON.stringify({
    environment: env,
    settings,
    paths,
    figures: figures.map((f) => ({
      ...f,
      cells: results[f.id] ?? {},
      ratioToKernel: Object.fromEntries(paths.map((p) => [p.id, ratio(results, f, p.id)])),
    })),
  }, null, 2) + '\n')

  process.stdout.write([
    '',
    `## End-to-end: pod to pod across 2 hosts (${mode} mode)`,
    '',
    header(env, settings),
    '',
    resultsTable(figures, results, paths),
    '',
    ...vipLines(results, paths),
    ...notes(figures),
    '',
    `written: ${path.relative(REPO, files.md)}, ${path.relative(REPO, files.svg)}, ${path.relative(REPO, files.json)}`,
    '',
  ].join('\n'))
  if (errors) process.stderr.write(`bench e2e: ${errors} measurement(s) failed; see the table and ${path.relative(REPO, files.json)}\n`)
  return errors ? 1 : 0
}

main().then((code) => { process.exitCode = code }, (err) => {
  process.stderr.write(`bench e2e: ${err instanceof Error ? err.stack ?? err.message : err}\n`)
  process.exitCode = 1
})
