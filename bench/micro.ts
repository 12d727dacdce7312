/**
 * Tapestry microbenchmarks: the hot functions with tinybench, then frames per
 * second through two real TAPs forwarded by this process, next to the kernel
 * baseline (a veth pair) measured in the same run under the same load.
 *
 *   node dist/bench/micro.js [--short] [--only micro|e2e] [--filter <text>]
 *
 * --short   CI mode: about a second per micro figure, 2 s per load, one round.
 * (default) full mode: 3 s per micro figure, 10 s per load, 3 alternating rounds (medians).
 *
 * Prints markdown tables and writes bench/results/micro-<ISO date>.json.
 * See bench/README.md for what each figure means and what it does not.
 */
import * as os from 'node:os'
import * as path from 'node:path'
import { Lab } from '../test/harness/lab'
import { loadTinybench, runMicro, MicroResult } from './lib/tinybench'
import { buildCases, sinkValue, FDB_ENTRIES, CT_ENTRIES_FULL, CT_ENTRIES_SHORT } from './lib/micro-cases'
import { e2eUnavailable, loadAvailable, tapPair, vethPair, waitReachable, measure, LoadResult, LoadSpec } from './lib/tap-pair'
import { environment, microTable, e2eTable, summarize, saveResults, si, E2eSummary } from './lib/report'

interface Args {
  short: boolean
  micro: boolean
  e2e: boolean
  /** Only micro cases whose name contains this. */
  filter: string
}

const USAGE = 'usage: node dist/bench/micro.js [--short] [--only micro|e2e] [--filter <text in a case name>]'

function parseArgs(argv: string[]): Args {
  const a: Args = { short: false, micro: true, e2e: true, filter: '' }
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]
    if (v === '--short') a.short = true
    else if (v === '--only') {
      const what = argv[++i]
      if (what !== 'micro' && what !== 'e2e') throw new Error(`--only takes micro or e2e (got ${what ?? 'nothing'})\n${USAGE}`)
      a.micro = what === 'micro'
      a.e2e = what === 'e2e'
    } else if (v === '--filter') {
      const what = argv[++i]
      if (!what) throw new Error(`--filter takes a piece of a case name\n${USAGE}`)
      a.filter = what
    } else if (v === '--help' || v === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else throw new Error(`unknown argument ${v}\n${USAGE}`)
  }
  return a
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`)
}

/** The kernel baseline and the TAP path under the same load, alternating so drift hits both. */
async function runE2e(lab: Lab, spec: LoadSpec, rounds: number): Promise<E2eSummary> {
  const veth = vethPair(lab)
  const tap = await tapPair(lab)
  await waitReachable(lab, veth)
  await waitReachable(lab, tap)
  const tapRuns: LoadResult[] = []
  const vethRuns: LoadResult[] = []
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [veth, tap] : [tap, veth]
    for (const p of order) {
      log(`load ${r + 1}/${rounds}: ${spec.kind} over ${p.path}, ${spec.seconds} s`)
      const res = await measure(lab, p, spec)
      ;(p.path === 'tap' ? tapRuns : vethRuns).push(res)
      log(`  ${si(res.framesPerSec)} frames/s received, ${res.lossPct.toFixed(1)}% lost`)
    }
  }
  const what = spec.kind === 'iperf3-udp'
    ? `iperf3 UDP A->B, -b 0 -l ${spec.payload} (${tapRuns[0].frameBytes} B frames), ${spec.seconds} s`
    : `ping -f A->B, -s ${spec.payload} (${tapRuns[0].frameBytes} B frames), ${spec.seconds} s`
  return summarize(what, tapRuns, vethRuns)
}

function forwarderLine(r: LoadResult): string {
  const f = r.forwarder
  if (!f) return ''
  const d = (name: string, s: typeof f.aToB): string =>
    `${name} ${si(s.frames / r.seconds)} frames/s read: ${s.frames} frames in ${s.batches} batches (mean ${s.meanBatch.toFixed(1)}), ` +
    `${s.written} written, ${s.eagain} EAGAIN, ${s.txErrors} tx errors, ${s.rxErrors} rx errors`
  return `${d('A->B', f.aToB)}; ${d('B->A', f.bToA)}`
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  const repo = path.resolve(__dirname, '..', '..')
  const mode = args.short ? 'short' : 'full'
  const env = environment(mode, repo)
  const started = performance.now()
  log(`mode ${mode}, commit ${env.commit}${env.dirty ? ' (uncommitted changes)' : ''}, node ${env.node}, ${env.cpus} x ${env.cpu}`)
  let status = 0

  let micro: MicroResult[] = []
  if (args.micro) {
    const tb = await loadTinybench()
    log(`building inputs (FDB of ${FDB_ENTRIES} entries, conntrack of ${args.short ? CT_ENTRIES_SHORT : CT_ENTRIES_FULL} connections, batches of 64 frames)`)
    const cases = buildCases({ short: args.short }).filter((c) => c.name.includes(args.filter))
    if (cases.length === 0) throw new Error(`no micro case name contains ${JSON.stringify(args.filter)}`)
    micro = await runMicro(tb, cases, {
      timeMs: args.short ? 700 : 3000,
      warmupMs: args.short ? 200 : 1000,
      onCase: (name) => log(`micro: ${name}`),
    })
  }

  let e2e: E2eSummary | { skipped: string } | { error: string } | null = null
  if (args.e2e) {
    const why = e2eUnavailable()
    if (why) {
      log(`TAP benchmark skipped: ${why}`)
      e2e = { skipped: why }
    } else {
      const kind = loadAvailable()!
      const spec: LoadSpec = { kind, seconds: args.short ? 2 : 10, payload: kind === 'iperf3-udp' ? 64 : 56 }
      // Lab tears down namespaces, TAPs and children here, and on exit, SIGINT and SIGTERM.
      const lab = new Lab()
      try {
        e2e = await runE2e(lab, spec, args.short ? 1 : 3)
      } catch (err) {
        e2e = { error: (err as Error).message }
        status = 1
      } finally {
        await lab.cleanup()
      }
    }
  }

  const elapsedS = (performance.now() - started) / 1000
  env.loadAvgEnd = os.loadavg()[0]
  const out: string[] = []
  out.push(`## Tapestry micro benchmarks (${mode}, ${env.date}, commit ${env.commit}${env.dirty ? '+dirty' : ''})`)
  out.push('')
  out.push(`node ${env.node} (V8 ${env.v8}), ${env.kernel}, ${env.cpus} x ${env.cpu}; ` +
    `load average ${env.loadAvgStart.toFixed(2)} at start, ${env.loadAvgEnd.toFixed(2)} at end`)
  if (micro.length > 0) {
    out.push('')
    out.push('### Hot functions (tinybench; one op = the column "op" in the JSON; ns/op is the mean, rme its 95% margin)')
    out.push('')
    out.push(microTable(micro))
  }
  if (e2e) {
    out.push('')
    out.push('### Frames through two TAPs forwarded in JS vs the kernel (veth), same run')
    out.push('')
    if ('skipped' in e2e) out.push(`skipped: ${e2e.skipped}`)
    else if ('error' in e2e) out.push(`FAILED: ${e2e.error}`)
    else {
      out.push(`load: ${e2e.load}; ${e2e.rounds} round(s), medians shown`)
      out.push('')
      out.push(e2eTable(e2e))
      out.push('')
      out.push(`TAP path is ${(e2e.ratio * 100).toFixed(0)}% of the kernel baseline (${si(e2e.tapFramesPerSec)} vs ${si(e2e.vethFramesPerSec)} frames/s).`)
      for (const r of e2e.tap) out.push(`forwarder: ${forwarderLine(r)}`)
    }
  }
  out.push('')
  out.push(`elapsed ${elapsedS.toFixed(1)} s`)
  console.log(out.join('\n'))

  const file = saveResults(repo, env, { elapsedS, micro, e2e, sink: sinkValue() })
  console.log(`results: ${path.relative(process.cwd(), file) || file}`)
  return status
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err)
    process.exit(1)
  },
)
