/**
 * Latency knobs, measured beside the kernel path in one run.
 *
 *   node dist/bench/latency.js [--short] [--rcvbuf 8388608,1048576,262144] [--busy 0,200] [--cpu-latency off,0]
 *                              [--lane on,off] [--rx-batch 65536,0] [--workers 1,2] [--stream-worker any,0,1]
 *
 * For the kernel bridge+VXLAN path and for Tapestry with every combination of
 * vxlan.rcvbufBytes, busyPollUs, priorityLane, rxBatchBytes and workers given: ping RTT idle (p50, p99), ping RTT
 * while one TCP stream runs beside it (p50, p99), what that stream moved
 * (Gbit/s) and its retransmissions. Each Tapestry variant is a fresh pair of
 * agents (the same topology as bench/e2e.ts: two hosts, one pod each, pod MTU
 * 1450), warmed up (2 s of TCP, 300 pings) before its figures are taken, as
 * the e2e benchmark's paths are. Prints a markdown table and writes
 * bench/results/latency-<time>.json.
 *
 * What it shows: under a bulk transfer the queue that delays other traffic is
 * the receiving agent's VXLAN socket buffer (the agent is the bottleneck), so
 * its size trades ping delay for drops (retransmissions) and some throughput;
 * busy polling only helps when the agent has a core to itself. The priority
 * lane (ICMP read from a socket of its own) takes pings out of that queue, and
 * rxBatchBytes bounds the batch they wait behind instead. cpuLatencyUs
 * (a PM QoS CPU latency request, ports/cpu-latency.ts) is host-wide: for each
 * value the kernel path is measured too, with the benchmark holding the same
 * request, so both sides of a ratio run under it. --stream-worker k (with
 * workers > k) binds the loaded stream's client port to one the steering gives
 * to worker k on both hosts (src/wire/steer-hash.ts); `any` (the default)
 * leaves it to the kernel, and the row records which worker that was. Worker 0
 * also reads the priority lane, so this shows what a bulk flow on the pings'
 * thread costs them.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab, sh } from '../test/harness/lab'
import { BenchPath, buildKernel, buildTapestry } from './lib/e2e-paths'
import { LOADED_STREAM_PORT, PingResult, iperfTcp, pingRtt, pingUnderLoad } from './lib/e2e-loads'
import { environment } from './lib/e2e-report'
import { table } from './lib/report'
import { CpuLatencyRequest } from '../src/ports/cpu-latency'
import { steerWorkerV4 } from '../src/wire/steer-hash'
import { ipv4Parse } from '../src/wire/addr'

const REPO = path.join(__dirname, '..', '..')
const t0 = Date.now()

function progress(msg: string): void {
  process.stderr.write(`[latency +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`)
}

function usage(): never {
  process.stderr.write('usage: node dist/bench/latency.js [--short] [--rcvbuf BYTES,...] [--busy US,...] [--cpu-latency off|US,...] [--lane on,off] [--rx-batch BYTES,...] [--workers N,...] [--stream-worker any|K,...]\n')
  process.exit(2)
}

function list(arg: string | undefined): number[] {
  if (arg === undefined) usage()
  const v = arg.split(',').map(Number)
  if (v.some((x) => !Number.isInteger(x) || x < 0)) usage()
  return v
}

interface Row {
  path: string
  rcvbufBytes: number | null
  busyPollUs: number | null
  cpuLatencyUs: number | null
  priorityLane: boolean | null
  rxBatchBytes: number | null
  workers: number | null
  /** Worker of each agent that read the loaded stream (chosen or, with `any`, where the kernel's port put it). */
  streamWorker: number | null
  idle: PingResult | { error: string }
  loaded: PingResult | { error: string }
}

/** A client port from 40000 up whose stream to the server's LOADED_STREAM_PORT the steering gives to `worker` of `workers`. */
function portForWorker(clientIp: string, serverIp: string, workers: number, worker: number): number {
  const a = ipv4Parse(clientIp)
  const b = ipv4Parse(serverIp)
  for (let p = 40000; p < 65536; p++) if (steerWorkerV4(a, b, p, LOADED_STREAM_PORT, workers) === worker) return p
  throw new Error(`no client port for worker ${worker} of ${workers}`)
}

/** The worker that read the loaded stream, from the client port iperf3 reports; null without one. */
function streamWorkerOf(loaded: PingResult | { error: string }, clientIp: string, serverIp: string, workers: number): number | null {
  const port = 'error' in loaded ? undefined : loaded.bulk?.localPorts[0]
  return port === undefined ? null : steerWorkerV4(ipv4Parse(clientIp), ipv4Parse(serverIp), port, LOADED_STREAM_PORT, workers)
}

async function measure(lab: Lab, p: BenchPath, pings: number, cport?: number): Promise<Pick<Row, 'idle' | 'loaded'>> {
  // Warm-up, as the paths of bench/e2e.ts are warm when their pings are taken: a fresh
  // agent's first thousands of packets run while V8 still compiles its hot path.
  await iperfTcp(lab, p.ep, 2, 1).catch(() => undefined)
  await pingRtt(lab, p.ep, 300).catch(() => undefined)
  const idle = await pingRtt(lab, p.ep, pings).catch((e: Error) => ({ error: e.message }))
  const loaded = await pingUnderLoad(lab, p.ep, pings, 0.01, 0.5, cport).catch((e: Error) => ({ error: e.message }))
  return { idle, loaded }
}

function cell(r: PingResult | { error: string }, f: (p: PingResult) => string): string {
  return 'error' in r ? `error: ${r.error.slice(0, 60)}` : f(r)
}

async function main(): Promise<number> {
  const args = process.argv.slice(2)
  let short = false
  let rcvbufs = [8 << 20, 1 << 20, 256 << 10]
  let busy = [0]
  let cpuLatency: (number | null)[] = [null]
  let lanes = [true]
  let rxBatches = [65536]
  let workerCounts = [1]
  let streamWorkers: Array<number | 'any'> = ['any']
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--short') short = true
    else if (args[i] === '--rcvbuf') rcvbufs = list(args[++i])
    else if (args[i] === '--busy') busy = list(args[++i])
    else if (args[i] === '--lane') lanes = (args[++i] ?? usage()).split(',').map((x) => (x === 'on' ? true : x === 'off' ? false : usage()))
    else if (args[i] === '--rx-batch') rxBatches = list(args[++i])
    else if (args[i] === '--workers') workerCounts = list(args[++i])
    else if (args[i] === '--stream-worker') streamWorkers = (args[++i] ?? usage()).split(',').map((x) => (x === 'any' ? 'any' : list(x)[0]))
    else if (args[i] === '--cpu-latency') cpuLatency = (args[++i] ?? usage()).split(',').map((x) => (x === 'off' ? null : list(x)[0]))
    else usage()
  }
  if (process.getuid?.() !== 0) { process.stderr.write('bench latency: needs root\n'); return 1 }
  for (const cmd of ['iperf3', 'ping']) if (!sh(cmd, [cmd === 'ping' ? '-V' : '--version'], { allowFail: true })) { process.stderr.write(`bench latency: ${cmd} missing (run scripts/setup.sh)\n`); return 1 }
  sh('modprobe', ['vxlan'], { allowFail: true })
  const pings = short ? 200 : 1000
  const env = environment(short ? 'short' : 'full', REPO)
  const rows: Row[] = []
  for (const cl of cpuLatency) {
    const lab = new Lab()
    // The request is host-wide: the kernel path is measured under the one the agents will hold.
    const req = cl === null ? null : CpuLatencyRequest.open(cl)
    try {
      progress(`kernel bridge + VXLAN${cl === null ? '' : `, CPU latency request ${cl} us`}`)
      rows.push({ path: 'kernel vxlan (baseline)', rcvbufBytes: null, busyPollUs: null, cpuLatencyUs: cl, priorityLane: null, rxBatchBytes: null, workers: null, streamWorker: null, ...await measure(lab, await buildKernel(lab), pings) })
    } finally {
      req?.close()
      await lab.cleanup()
    }
    const variants = rcvbufs.flatMap((rb) => busy.flatMap((us) => lanes.flatMap((lane) => rxBatches.flatMap((rxb) =>
      workerCounts.flatMap((w) => streamWorkers.filter((sw) => sw === 'any' || sw < w).map((sw) => ({ rb, us, lane, rxb, w, sw })))))))
    for (const { rb, us, lane, rxb, w, sw } of variants) {
      const lab2 = new Lab()
      try {
        progress(`Tapestry, vxlan.rcvbufBytes ${rb}, busyPollUs ${us}, priorityLane ${lane}, rxBatchBytes ${rxb}, workers ${w}, stream worker ${sw}, cpuLatencyUs ${cl ?? 'off'}`)
        const p = await buildTapestry(lab2, { vxlan: { rcvbufBytes: rb }, priorityLane: lane, busyPollUs: us, rxBatchBytes: rxb, workers: w, ...(cl === null ? {} : { cpuLatencyUs: cl }) })
        const clientIp = String(p.details.clientIp)
        const cport = sw === 'any' ? undefined : portForWorker(clientIp, p.ep.serverIp, w, sw)
        const m = await measure(lab2, p, pings, cport)
        // With `any`, the worker is the one the kernel's ephemeral port hashed to: read it from the result's port.
        const used = sw !== 'any' ? sw : w === 1 ? 0 : streamWorkerOf(m.loaded, clientIp, p.ep.serverIp, w)
        rows.push({ path: 'Tapestry', rcvbufBytes: rb, busyPollUs: us, cpuLatencyUs: cl, priorityLane: lane, rxBatchBytes: rxb, workers: w, streamWorker: used, ...m })
      } finally { await lab2.cleanup() }
    }
  }
  const ms = (v: number): string => v.toFixed(3)
  const lines = [
    `## Latency knobs (${short ? 'short' : 'full'} mode: ${pings} pings per figure, 10 ms apart; one TCP stream beside the loaded ones)`,
    '',
    `${env.cpus} CPUs, load average ${env.loadAvgStart.toFixed(2)} at start; commit ${env.commit}`,
    '',
    table(
      ['path', 'cpuLatencyUs', 'vxlan.rcvbufBytes', 'busyPollUs', 'priorityLane', 'rxBatchBytes', 'workers', 'stream worker', 'idle p50 ms', 'idle p99 ms', 'loaded p50 ms', 'loaded p99 ms', 'stream Gbit/s', 'retransmits'],
      rows.map((r) => [r.path, r.cpuLatencyUs === null ? 'off' : String(r.cpuLatencyUs), String(r.rcvbufBytes ?? '-'), String(r.busyPollUs ?? '-'),
        r.priorityLane === null ? '-' : r.priorityLane ? 'on' : 'off', String(r.rxBatchBytes ?? '-'), String(r.workers ?? '-'), String(r.streamWorker ?? '-'), cell(r.idle, (p) => ms(p.p50Ms)), cell(r.idle, (p) => ms(p.p99Ms)),
        cell(r.loaded, (p) => ms(p.p50Ms)), cell(r.loaded, (p) => ms(p.p99Ms)), cell(r.loaded, (p) => (p.bulk ? p.bulk.gbitPerSec.toFixed(2) : '-')),
        cell(r.loaded, (p) => String(p.bulk?.retransmits ?? '-'))]),
      [false, true, true, true, true, true, true, true, true, true, true, true, true, true],
    ),
    '',
  ]
  process.stdout.write(lines.join('\n'))
  const dir = path.join(REPO, 'bench', 'results')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `latency-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`)
  fs.writeFileSync(file, JSON.stringify({ environment: env, pings, rows }, null, 2) + '\n')
  process.stdout.write(`written: ${path.relative(REPO, file)}\n`)
  return rows.some((r) => 'error' in r.idle || 'error' in r.loaded) ? 1 : 0
}

main().then((code) => process.exit(code), (err) => { process.stderr.write(`bench latency: ${err instanceof Error ? err.stack : err}\n`); process.exit(1) })
