/**
 * Repeated throughput runs on one Tapestry path, with where the agents' time
 * goes: for comparing two builds (run it in a checkout of each, alternating)
 * or two configs.
 *
 *   node dist/bench/tput.js [--runs N] [--seconds S] [--streams P] [--udp] [--config JSON]
 *
 * Builds the path of bench/e2e.ts (two hosts, one pod each, pod MTU 1450;
 * `--config` adds agent config keys, e.g. '{"vxlan":{"rcvbufBytes":2097152}}'),
 * then N times: iperf3 TCP, 1 stream or P (-P; e.g. with '{"workers":2}') (or UDP with 64-byte payloads, --udp) for
 * S seconds, and for each agent its user and system CPU seconds per second
 * (/proc/<pid>/stat) and its run-queue wait per second and context switches
 * per second (/proc/<pid>/schedstat: time runnable but not running). One line
 * of JSON per run on stdout. Needs root, iperf3; cleans up like bench/e2e.ts.
 */
import * as fs from 'node:fs'
import { Lab } from '../test/harness/lab'
import { buildTapestry } from './lib/e2e-paths'
import { CLK_TCK, iperfTcp, iperfUdp } from './lib/e2e-loads'

interface Sample { user: number; sys: number; run: number; wait: number; slices: number }

function sample(pid: number): Sample {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
  const [run, wait, slices] = fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number)
  return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK, run: run / 1e9, wait: wait / 1e9, slices }
}

function usage(): never {
  process.stderr.write('usage: node dist/bench/tput.js [--runs N] [--seconds S] [--streams P] [--udp] [--config JSON]\n')
  process.exit(2)
}

async function main(): Promise<number> {
  const args = process.argv.slice(2)
  let runs = 3
  let seconds = 6
  let udp = false
  let streams = 1
  let config: Record<string, unknown> = {}
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '--runs') runs = Number(args[++i])
    else if (a === '--seconds') seconds = Number(args[++i])
    else if (a === '--udp') udp = true
    else if (a === '--streams') streams = Number(args[++i])
    else if (a === '--config') config = JSON.parse(args[++i] ?? usage()) as Record<string, unknown>
    else usage()
  }
  if (!(runs >= 1 && seconds >= 1 && Number.isInteger(streams) && streams >= 1 && streams <= 128)) usage()
  const lab = new Lab()
  try {
    const p = await buildTapestry(lab, config)
    for (let r = 0; r < runs; r++) {
      const t0 = Date.now()
      const before = p.dataplanePids.map(sample)
      const figure = udp
        ? { udp64DeliveredPerSec: Math.round((await iperfUdp(lab, p.ep, seconds, 64)).deliveredPerSec) }
        : { tcpGbitPerSec: Number((await iperfTcp(lab, p.ep, seconds, streams)).gbitPerSec.toFixed(2)) }
      const dt = (Date.now() - t0) / 1000
      const after = p.dataplanePids.map(sample)
      const per = (i: number) => {
        const d = (k: keyof Sample) => (after[i][k] - before[i][k]) / dt
        return { userS: +d('user').toFixed(2), sysS: +d('sys').toFixed(2), runQueueWaitS: +d('wait').toFixed(2), slicesPerS: Math.round(d('slices')) }
      }
      process.stdout.write(JSON.stringify({ run: r + 1, ...figure, sender: per(0), receiver: per(1) }) + '\n')
    }
  } finally {
    await lab.cleanup()
  }
  return 0
}

main().then((code) => { process.exitCode = code }, (err) => {
  process.stderr.write(`bench tput: ${err instanceof Error ? err.stack ?? err.message : err}\n`)
  process.exitCode = 1
})
