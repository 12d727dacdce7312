/**
 * End-to-end benchmark: pod to pod across two hosts (network namespaces),
 * through these paths measured in one run:
 *
 *   kernel    Linux bridge + kernel vxlan device on each host (the baseline)
 *   tapestry  a Tapestry agent on each host, pods are its TAPs
 *   tinc      tincd in switch mode on each host (full mode, when installed)
 *   ovs       Open vSwitch's userspace datapath (netdev) with a VXLAN port on
 *             each host (full mode, when installed)
 *   veth      two namespaces joined by a veth pair (the ceiling: no overlay)
 *
 * Figures: iperf3 TCP 1 and 4 streams, iperf3 UDP 64-byte packets/s and loss,
 * ping p50/p99 idle and beside a bulk transfer, CPU per GB moved, TCP
 * requests/s (direct; via a service VIP once services exist). Each figure is
 * taken on every path back to back (kernel, Tapestry, tinc, OVS, veth), and
 * the table gives the ratio of each to the kernel's figure from this same run.
 *
 *   node dist/bench/e2e.js           full mode: 10 s per figure (about 4 minutes; more with tinc and OVS)
 *   node dist/bench/e2e.js --short   CI mode: 2 s per figure (under 90 s; no tinc, no OVS)
 *   node dist/bench/e2e.js --paths kernel,ovs   only these paths (kernel is always
 *                                    added: every ratio is to it); tinc and ovs named
 *                                    here run in short mode too, and must be installed
 *
 * Progress goes to stderr, the table to stdout, and the results to
 * bench/results/e2e-<date>.{json,md,svg}. Needs root, iproute2, iperf3, ping
 * and the kernel vxlan module; tinc and Open vSwitch (scripts/setup.sh installs
 * them) for those paths. Namespaces are named by the test Lab
 * (tpy<run id><tag>) and removed in a finally, on exit and on SIGINT/SIGTERM;
 * loads are bounded in time and run only between namespaces created here.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Lab, PREFIX, RUN_ID, sh } from '../test/harness/lab'
import { TAPESTRY_BIN } from '../test/harness/overlay'
import { Cell, MEASUREMENTS, SETTINGS } from './lib/e2e-figures'
import { BenchPath, BUILDERS, PATH_ORDER, PathId, buildTapestry, tincAvailable } from './lib/e2e-paths'
import { ovsAvailable } from './lib/ovs-path'
import { environment, header, markdown, notes, ratio, resultFiles, Results, resultsTable, cellText, svgChart, vipLines, overlayLines } from './lib/e2e-report'

const REPO = path.join(__dirname, '..', '..')
const t0 = Date.now()

function progress(msg: string): void {
  process.stderr.write(`[e2e +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`)
}

function usage(why?: string): never {
  process.stderr.write([
    ...(why ? [`bench e2e: ${why}`] : []),
    'usage: node dist/bench/e2e.js [--short] [--paths PATH,...] [--workers N]',
    '  --short         CI mode: 2 s per figure, whole run under 90 s (default: full mode, 10 s per figure)',
    `  --paths P,...   run only these paths, of ${PATH_ORDER.join(', ')} (default: all; tinc and ovs only in`,
    '                  full mode and when installed). kernel is always run, since every ratio is to it.',
    '                  tinc or ovs named here run in short mode too, and must be installed.',
    '  --workers N     run the Tapestry agents with workers: N (datapath threads; default 1)',
    '',
  ].join('\n'))
  process.exit(2)
}

/** The other userspace overlays: the full run's comparisons when installed (scripts/setup.sh installs them). */
const COMPARISONS: Partial<Record<PathId, { what: string; available: () => boolean }>> = {
  tinc: { what: 'tinc (tincd)', available: tincAvailable },
  ovs: { what: 'Open vSwitch (ovs-vswitchd, ovsdb-server)', available: ovsAvailable },
}

/** Parses the arguments: the mode, and the paths named with --paths (null: the default selection). */
function parseArgs(args: string[]): { mode: 'short' | 'full'; named: Set<PathId> | null; workers: number } {
  let mode: 'short' | 'full' = 'full'
  let named: Set<PathId> | null = null
  let workers = 1
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '--short') mode = 'short'
    else if (a === '--paths' || a.startsWith('--paths=')) {
      const list = a === '--paths' ? args[++i] : a.slice('--paths='.length)
      if (!list) usage('--paths needs a comma-separated list of paths')
      const ids = list.split(',').map((x) => x.trim()).filter(Boolean)
      const unknown = ids.filter((x) => !PATH_ORDER.includes(x as PathId))
      if (!ids.length) usage('--paths needs at least one path')
      if (unknown.length) usage(`unknown path ${unknown.join(', ')} in --paths`)
      named = new Set(ids as PathId[])
    } else if (a === '--workers') {
      workers = Number(args[++i])
      if (!Number.isInteger(workers) || workers < 1 || workers > 16) usage('--workers needs an integer from 1 to 16')
    } else usage(`unknown argument ${a}`)
  }
  return { mode, named, workers }
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
  const { mode, named, workers } = parseArgs(process.argv.slice(2))
  const settings = SETTINGS[mode]
  const why = unavailable()
  if (why) {
    process.stderr.write(`bench e2e: cannot run: ${why}\n`)
    return 1
  }
  const env = environment(mode, REPO)
  progress(`${mode} mode: ${settings.seconds} s per load, ${settings.pingCount} pings per latency figure; machine ${env.cpus} CPUs, load average ${env.loadAvgStart.toFixed(2)}`)
  if (env.loadAvgStart > 0.5) progress(`warning: the machine is busy (load average ${env.loadAvgStart.toFixed(2)}): figures will be low and noisy`)
  if (named && !named.has('kernel')) {
    named.add('kernel')
    progress('--paths: kernel added (the baseline every ratio is to)')
  }
  const chosen: PathId[] = []
  for (const id of PATH_ORDER) {
    if (named && !named.has(id)) continue
    const c = COMPARISONS[id]
    if (c && !c.available()) {
      if (named) {
        process.stderr.write(`bench e2e: cannot run: --paths names ${id}, but ${c.what} is not installed (run scripts/setup.sh)\n`)
        return 1
      }
      progress(`${id}: ${c.what} not installed, no side-by-side figure`)
      continue
    }
    if (c && mode === 'short' && !named) {
      progress(`${id}: not in short mode`)
      continue
    }
    chosen.push(id)
  }

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
    for (const id of chosen) {
      progress(`building path ${id}`)
      paths.push(await (id === 'tapestry' && workers > 1 ? buildTapestry(lab, { workers }) : BUILDERS[id](lab)))
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
    ...overlayLines(results, paths),
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
