/**
 * The loads of the end-to-end benchmark and how their figures are read:
 * iperf3 TCP and UDP (JSON output, receiver side), ping with per-packet
 * times, a TCP request/response loop (bench/lib/e2e-rr.ts), and CPU counters
 * (/proc/stat for the machine, /proc/<pid>/stat for given processes).
 *
 * Every load is bounded in time twice: by its own duration flag (iperf3 -t,
 * ping -c/-w, the rr client's seconds) and by a kill timeout in
 * Lab.execAsync. Servers are started with iperf3 -1 (one test, then exit) and
 * are in any case killed by Lab.cleanup.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab, Proc, sh, waitFor } from '../../test/harness/lab'

/** One endpoint pair of a path: the client pod, the server pod and the server's address. */
export interface Endpoints {
  clientNs: string
  serverNs: string
  serverIp: string
}

// ---- CPU counters

export const CLK_TCK = Number(sh('getconf', ['CLK_TCK'], { allowFail: true }).trim()) || 100

export interface MachineCpu {
  /** Seconds (summed over all CPUs) per /proc/stat column. */
  user: number
  nice: number
  system: number
  idle: number
  iowait: number
  irq: number
  softirq: number
  steal: number
}

export function readMachineCpu(): MachineCpu {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith('cpu '))
  if (!line) throw new Error('no aggregate cpu line in /proc/stat')
  const v = line.trim().split(/\s+/).slice(1).map((x) => Number(x) / CLK_TCK)
  return { user: v[0], nice: v[1], system: v[2], idle: v[3], iowait: v[4], irq: v[5], softirq: v[6], steal: v[7] ?? 0 }
}

/** utime + stime of a process (all its threads), in seconds; null when it is gone. */
export function readProcCpu(pid: number): number | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    // f[0] is field 3 (state), so utime (field 14) is f[11] and stime (field 15) f[12].
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return null
  }
}

export interface CpuDelta {
  wallSeconds: number
  /** user + nice + system + irq + softirq over all CPUs (steal and iowait excluded). */
  machineBusy: number
  /** system + irq + softirq over all CPUs: time in the kernel, in any context. */
  machineKernel: number
  machineUser: number
  machineSoftirq: number
  /** Sum of utime + stime of the watched processes (the Tapestry agents), or null when none are watched. */
  procs: number | null
}

/** Starts a CPU measurement; call the result to stop it. */
export function cpuMeter(pids: number[]): () => CpuDelta {
  const t0 = process.hrtime.bigint()
  const m0 = readMachineCpu()
  const p0 = pids.map(readProcCpu)
  return () => {
    const m1 = readMachineCpu()
    const p1 = pids.map(readProcCpu)
    const d = (k: keyof MachineCpu): number => m1[k] - m0[k]
    let procs: number | null = null
    if (pids.length) {
      procs = 0
      for (let i = 0; i < pids.length; i++) {
        if (p0[i] === null || p1[i] === null) throw new Error(`process ${pids[i]} went away during the measurement`)
        procs += p1[i]! - p0[i]!
      }
    }
    return {
      wallSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
      machineBusy: d('user') + d('nice') + d('system') + d('irq') + d('softirq'),
      machineKernel: d('system') + d('irq') + d('softirq'),
      machineUser: d('user') + d('nice'),
      machineSoftirq: d('softirq'),
      procs,
    }
  }
}

// ---- helpers

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  // Nearest-rank: the smallest value with at least p % of the samples at or below it.
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function iperf3Server(lab: Lab, ns: string, port: number): Promise<Proc> {
  const srv = lab.spawn(ns, ['iperf3', '-s', '-1', '-J', '-p', String(port)])
  await waitFor(`iperf3 server on :${port}`, () => {
    if (srv.child.exitCode !== null) throw new Error(`iperf3 server exited ${srv.child.exitCode}: ${srv.stderr()}${srv.stdout()}`)
    return lab.exec(ns, ['ss', '-Hltn', `sport = :${port}`]).includes(`:${port}`)
  }, 10_000, 20)
  return srv
}

async function stopServer(srv: Proc): Promise<void> {
  // iperf3 -1 exits by itself after the test; this only bounds the wait when it did not.
  const t = setTimeout(() => srv.child.kill('SIGKILL'), 5_000)
  await srv.exited
  clearTimeout(t)
}

function iperf3Json(out: string, what: string): any {
  let j: any
  try {
    j = JSON.parse(out)
  } catch {
    throw new Error(`${what}: iperf3 printed no JSON: ${out.slice(0, 300)}`)
  }
  if (j.error) throw new Error(`${what}: iperf3: ${j.error}`)
  return j
}

// ---- iperf3 TCP

export interface TcpResult {
  streams: number
  seconds: number
  /** Bytes the server received (iperf3 -J end.sum_received). */
  bytes: number
  gbitPerSec: number
  retransmits: number | null
  /** iperf3's own figure: CPU of the client (host) and server (remote) processes, % of one CPU. */
  iperfCpu: Record<string, number> | null
  /** Client ports of the data streams (iperf3 -J start.connected). */
  localPorts: number[]
}

export async function iperfTcp(lab: Lab, ep: Endpoints, seconds: number, streams: number, port = 5201, cport?: number): Promise<TcpResult> {
  const srv = await iperf3Server(lab, ep.serverNs, port)
  try {
    const args = ['iperf3', '-c', ep.serverIp, '-p', String(port), '-t', String(seconds), '-J', '-P', String(streams)]
    // --cport binds the data stream's client port (the control connection keeps an ephemeral one).
    if (cport !== undefined) args.push('--cport', String(cport))
    const r = await lab.execAsync(ep.clientNs, args, (seconds + 20) * 1000)
    const j = iperf3Json(r.stdout, `iperf3 TCP -P ${streams}`)
    if (r.code !== 0) throw new Error(`iperf3 TCP exited ${r.code}: ${r.stderr}`)
    const rcv = j.end.sum_received
    return {
      streams,
      seconds: rcv.seconds,
      bytes: rcv.bytes,
      gbitPerSec: rcv.bits_per_second / 1e9,
      retransmits: j.end.sum_sent?.retransmits ?? null,
      iperfCpu: j.end.cpu_utilization_percent ?? null,
      localPorts: (j.start?.connected ?? []).map((c: { local_port: number }) => c.local_port),
    }
  } finally {
    await stopServer(srv)
  }
}

// ---- iperf3 UDP, small packets

export interface UdpResult {
  payload: number
  seconds: number
  /** Datagrams the client sent. */
  sent: number
  /** Datagrams that reached the server socket (sent - lost, as the server counted them). */
  delivered: number
  sentPerSec: number
  deliveredPerSec: number
  lossPct: number
}

export async function iperfUdp(lab: Lab, ep: Endpoints, seconds: number, payload: number, port = 5201): Promise<UdpResult> {
  const srv = await iperf3Server(lab, ep.serverNs, port)
  try {
    // -b 0: as fast as the sender can go; what the receiver gets is the figure.
    const args = ['iperf3', '-c', ep.serverIp, '-p', String(port), '-u', '-l', String(payload), '-b', '0', '-t', String(seconds), '-J']
    const r = await lab.execAsync(ep.clientNs, args, (seconds + 20) * 1000)
    const j = iperf3Json(r.stdout, 'iperf3 UDP')
    if (r.code !== 0) throw new Error(`iperf3 UDP exited ${r.code}: ${r.stderr}`)
    // iperf3 >= 3.12: end.sum_received is the server's view; older versions only have end.sum with the server's loss.
    const rcv = j.end.sum_received ?? j.end.sum
    const sent: number = rcv.packets
    const delivered = sent - rcv.lost_packets
    return {
      payload,
      seconds: rcv.seconds,
      sent,
      delivered,
      sentPerSec: sent / rcv.seconds,
      deliveredPerSec: delivered / rcv.seconds,
      lossPct: sent > 0 ? (100 * (sent - delivered)) / sent : 0,
    }
  } finally {
    await stopServer(srv)
  }
}

// ---- ping

export interface PingResult {
  sent: number
  received: number
  lossPct: number
  p50Ms: number
  p99Ms: number
  minMs: number
  maxMs: number
  /** Only with a parallel bulk transfer: what that transfer achieved meanwhile. */
  bulk?: TcpResult
}

export function parsePingTimes(out: string): number[] {
  const times: number[] = []
  for (const m of out.matchAll(/ time[=<]([\d.]+) ms/g)) times.push(Number(m[1]))
  return times
}

export async function pingRtt(lab: Lab, ep: Endpoints, count: number, intervalS = 0.01): Promise<PingResult> {
  const deadline = Math.ceil(count * intervalS) + 5
  const r = await lab.execAsync(ep.clientNs, ['ping', '-n', '-i', String(intervalS), '-c', String(count), '-w', String(deadline), '-W', '1', ep.serverIp], (deadline + 10) * 1000)
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout)
  if (!m) throw new Error(`ping: no summary (exit ${r.code}): ${r.stdout.slice(-300)}${r.stderr}`)
  const times = parsePingTimes(r.stdout).sort((a, b) => a - b)
  if (times.length === 0) throw new Error('ping: no reply at all')
  const sent = Number(m[1])
  const received = Number(m[2])
  return {
    sent,
    received,
    lossPct: sent ? (100 * (sent - received)) / sent : 0,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    minMs: times[0],
    maxMs: times[times.length - 1],
  }
}

/**
 * Ping in the same direction as a bulk TCP transfer (1 stream) that runs the
 * whole time: the echo requests queue behind the bulk data in every buffer
 * on the way. The ping starts after a warm-up so the transfer is past its
 * slow start.
 */
/** Server port of the bulk stream beside the loaded pings. */
export const LOADED_STREAM_PORT = 5202

/** `cport`: the stream's client port (default ephemeral), to choose which datapath worker reads it. */
export async function pingUnderLoad(lab: Lab, ep: Endpoints, count: number, intervalS = 0.01, warmupS = 0.5, cport?: number): Promise<PingResult> {
  const pingSeconds = count * intervalS
  const bulkSeconds = Math.ceil(warmupS + pingSeconds + 1)
  // The handler is attached now so an early failure is not an unhandled rejection.
  const bulk = iperfTcp(lab, ep, bulkSeconds, 1, LOADED_STREAM_PORT, cport).catch((e: Error) => e)
  // Wait until the transfer's data connection is up (iperf3 opens a control connection first), then past slow start.
  try {
    await waitFor('bulk transfer connected', () =>
      lab.exec(ep.clientNs, ['ss', '-Htn', 'state', 'established', `dport = :${LOADED_STREAM_PORT}`]).trim().split('\n').filter(Boolean).length >= 2, 10_000, 20)
  } catch (err) {
    const b = await bulk
    throw b instanceof Error ? new Error(`bulk transfer beside ping failed: ${b.message}`) : err
  }
  await sleep(warmupS * 1000)
  const ping = await pingRtt(lab, ep, count, intervalS).catch((e: Error) => e)
  // Let the bulk transfer finish even when ping failed, so nothing is left running.
  const bulkResult = await bulk
  if (ping instanceof Error) throw ping
  if (bulkResult instanceof Error) throw new Error(`bulk transfer beside ping failed: ${bulkResult.message}`)
  return { ...ping, bulk: bulkResult }
}

// ---- TCP request/response

export const RR_SCRIPT = path.join(__dirname, 'e2e-rr.js')

export interface RrResult {
  connections: number
  size: number
  seconds: number
  requests: number
  requestsPerSec: number
  p50Us: number
  p99Us: number
}

/** Closed-loop request/response over persistent TCP connections (like netperf TCP_RR). */
/** Port the request/response server listens on in the server pod (the service's targetPort on the Tapestry path). */
export const RR_PORT = 7101

/**
 * The request/response load: the server listens on `port` in the server pod,
 * the client connects to ep.serverIp:`connectPort` (a service VIP's port,
 * which the service maps to `port`; by default `port` itself).
 */
export async function requestResponse(lab: Lab, ep: Endpoints, seconds: number, connections = 4, size = 100, port = RR_PORT, connectPort = port): Promise<RrResult> {
  const srv = lab.spawn(ep.serverNs, [process.execPath, RR_SCRIPT, 'server', String(port), String(size)])
  try {
    await waitFor('request/response server listening', () => {
      if (srv.child.exitCode !== null) throw new Error(`rr server exited ${srv.child.exitCode}: ${srv.stderr()}`)
      return srv.stdout().includes('listening')
    }, 10_000, 20)
    const r = await lab.execAsync(ep.clientNs, [process.execPath, RR_SCRIPT, 'client', ep.serverIp, String(connectPort), String(size), String(seconds), String(connections)], (seconds + 20) * 1000)
    if (r.code !== 0) throw new Error(`rr client exited ${r.code}: ${r.stderr}`)
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as RrResult
  } finally {
    srv.child.kill('SIGTERM')
    await srv.exited
  }
}
