/**
 * Frames per second through the batch rx/tx path with real TAPs, next to the
 * kernel doing the same job.
 *
 *   TAP path:     ns A eth0 (TAP) --> this process: rx batch --> writeBatch --> ns B eth0 (TAP)
 *                 (and B --> A the same way, for replies, ARP and iperf3's control connection)
 *   kernel path:  ns C eth0 <== veth pair ==> ns D eth0
 *
 * The forwarder does nothing but hand each rx batch to the other TAP's
 * writeBatch (offsets precomputed, lengths straight from the rx batch), so
 * the figure is the cost of the batch I/O path itself, not of switching.
 *
 * The load runs in child processes (iperf3, or ping -f without it) while this
 * process only awaits them, so its event loop is free to forward. Every load
 * is bounded in time and runs only between namespaces created here.
 */
import { Lab, uniqueName, waitFor, parsePing, sh } from '../../test/harness/lab'
import { TapPort } from '../../src/ports/tap'
import { setupPodInterface } from '../../src/ports/netdev'
import { UDP_FRAME_OVERHEAD } from './frames'

export type LoadKind = 'iperf3-udp' | 'ping-flood'

export interface LoadSpec {
  kind: LoadKind
  seconds: number
  /** UDP payload bytes (iperf3 -l) or ICMP payload bytes (ping -s). */
  payload: number
}

export interface LoadResult {
  path: 'tap' | 'veth'
  kind: LoadKind
  seconds: number
  /** Ethernet frame length (without FCS) of one load frame. */
  frameBytes: number
  sentFrames: number
  /** Frames that reached the receiving application (iperf3) or round trips x 2 (ping). */
  receivedFrames: number
  framesPerSec: number
  /** framesPerSec x frameBytes x 8: L2 bits, without preamble, FCS and gap. */
  gbitPerSec: number
  lossPct: number
  /** The TAP path only: what the forwarder saw during the load. */
  forwarder?: ForwarderStats
}

export interface ForwarderStats {
  aToB: DirectionStats
  bToA: DirectionStats
}

export interface DirectionStats {
  batches: number
  frames: number
  written: number
  /** writeBatch frames not written because the TAP would block. */
  eagain: number
  /** writeBatch frames the kernel refused. */
  txErrors: number
  /** rx callbacks that reported an error (-errno). */
  rxErrors: number
  meanBatch: number
}

export function loadAvailable(): LoadKind | null {
  if (sh('iperf3', ['--version'], { allowFail: true })) return 'iperf3-udp'
  if (sh('ping', ['-V'], { allowFail: true })) return 'ping-flood'
  return null
}

/** Why the TAP benchmark cannot run here, or null. */
export function e2eUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, TAP devices)'
  if (!sh('ip', ['-V'], { allowFail: true })) return 'iproute2 (ip) is not installed'
  if (!loadAvailable()) return 'neither iperf3 nor ping is installed'
  return null
}

interface Pair {
  path: 'tap' | 'veth'
  clientNs: string
  serverNs: string
  serverIp: string
  resetStats?(): void
  stats?(): ForwarderStats
}

/** Two namespaces joined by a veth pair: the kernel baseline. */
export function vethPair(lab: Lab): Pair {
  const c = lab.netns('c')
  const d = lab.netns('d')
  lab.veth(c, 'eth0', d, 'eth0', '10.97.1.1/24', '10.97.1.2/24', 1500)
  return { path: 'veth', clientNs: c, serverNs: d, serverIp: '10.97.1.2' }
}

class Direction {
  batches = 0
  frames = 0
  written = 0
  rxErrors = 0
  private eagain0 = 0
  private err0 = 0
  constructor(readonly from: TapPort, readonly to: TapPort) {}

  start(): void {
    const rx = this.from.rx
    const offs = new Uint32Array(rx.slots)
    for (let i = 0; i < rx.slots; i++) offs[i] = rx.off(i)
    const data = rx.data
    const lens = rx.len
    const to = this.to
    this.from.start((n) => {
      if (n <= 0) {
        if (n < 0) this.rxErrors++
        return
      }
      this.batches++
      this.frames += n
      this.written += to.write(data, offs, lens, n)
    })
  }

  reset(): void {
    this.batches = this.frames = this.written = this.rxErrors = 0
    this.eagain0 = this.to.txCounters[0]
    this.err0 = this.to.txCounters[1]
  }

  stats(): DirectionStats {
    return {
      batches: this.batches,
      frames: this.frames,
      written: this.written,
      eagain: this.to.txCounters[0] - this.eagain0,
      txErrors: this.to.txCounters[1] - this.err0,
      rxErrors: this.rxErrors,
      meanBatch: this.batches > 0 ? this.frames / this.batches : 0,
    }
  }
}

/**
 * Two namespaces, each with a TAP opened by this process as eth0, and a
 * forwarder between the two TAPs. The TAPs carry virtio-net headers (as pod
 * TAPs do) with offloads off; the forwarder passes the header through.
 */
export async function tapPair(lab: Lab): Promise<Pair> {
  const a = lab.netns('a')
  const b = lab.netns('b')
  const tapA = TapPort.open({ name: uniqueName('ta'), vnetHdr: true })
  lab.onCleanup(() => tapA.close())
  const tapB = TapPort.open({ name: uniqueName('tb'), vnetHdr: true })
  lab.onCleanup(() => tapB.close())
  await setupPodInterface({ netns: a, tapName: tapA.name, ifname: 'eth0', mac: '02:00:0a:61:00:01', cidr: '10.97.0.1/24', mtu: 1500 })
  await setupPodInterface({ netns: b, tapName: tapB.name, ifname: 'eth0', mac: '02:00:0a:61:00:02', cidr: '10.97.0.2/24', mtu: 1500 })
  const ab = new Direction(tapA, tapB)
  const ba = new Direction(tapB, tapA)
  ab.start()
  ba.start()
  return {
    path: 'tap',
    clientNs: a,
    serverNs: b,
    serverIp: '10.97.0.2',
    resetStats() { ab.reset(); ba.reset() },
    stats() { return { aToB: ab.stats(), bToA: ba.stats() } },
  }
}

/** Waits until the client namespace reaches the server (ARP resolved, path up). */
export async function waitReachable(lab: Lab, p: Pair): Promise<void> {
  await waitFor(`${p.path}: ${p.clientNs} to reach ${p.serverIp}`, async () => {
    const r = await lab.execAsync(p.clientNs, ['ping', '-c', '1', '-W', '1', '-q', p.serverIp], 5000)
    return r.code === 0
  }, 10_000, 100)
}

const IPERF_PORT = '5201'

interface IperfEnd {
  sum_sent?: { packets?: number; seconds?: number }
  sum_received?: { packets?: number; lost_packets?: number; seconds?: number }
}

async function iperfUdp(lab: Lab, p: Pair, spec: LoadSpec): Promise<Omit<LoadResult, 'path' | 'forwarder'>> {
  const server = lab.spawn(p.serverNs, ['iperf3', '-s', '-1', '-J', '-p', IPERF_PORT])
  const serverDone = new Promise<void>((resolve) => {
    const t = setTimeout(() => { server.child.kill('SIGKILL'); resolve() }, (spec.seconds + 20) * 1000)
    void server.exited.then(() => { clearTimeout(t); resolve() })
  })
  await waitFor(`iperf3 server listening in ${p.serverNs}`, async () => {
    const r = await lab.execAsync(p.serverNs, ['ss', '-Hltn', `sport = :${IPERF_PORT}`], 5000)
    return r.stdout.trim().length > 0
  }, 10_000, 50)
  const r = await lab.execAsync(p.clientNs, [
    'iperf3', '-c', p.serverIp, '-p', IPERF_PORT, '-u', '-b', '0', '-l', String(spec.payload),
    '-t', String(spec.seconds), '-J', '--connect-timeout', '3000',
  ], (spec.seconds + 15) * 1000)
  await serverDone
  let j: { error?: string; end?: IperfEnd }
  try {
    j = JSON.parse(r.stdout)
  } catch {
    throw new Error(`${p.path}: iperf3 client printed no JSON (exit ${r.code}): ${r.stderr.slice(-500)}`)
  }
  if (j.error) throw new Error(`${p.path}: iperf3: ${j.error}`)
  const rcv = j.end?.sum_received
  const snt = j.end?.sum_sent
  if (!rcv || rcv.packets === undefined || rcv.lost_packets === undefined || !rcv.seconds || snt?.packets === undefined) {
    throw new Error(`${p.path}: iperf3 JSON without end.sum_received/sum_sent: ${r.stdout.slice(-500)}`)
  }
  const received = rcv.packets - rcv.lost_packets
  const frameBytes = UDP_FRAME_OVERHEAD + spec.payload
  const fps = received / rcv.seconds
  return {
    kind: spec.kind,
    seconds: rcv.seconds,
    frameBytes,
    sentFrames: snt.packets,
    receivedFrames: received,
    framesPerSec: fps,
    gbitPerSec: (fps * frameBytes * 8) / 1e9,
    lossPct: snt.packets > 0 ? (100 * (snt.packets - received)) / snt.packets : 0,
  }
}

/** Fallback load: a flood ping bounded by -w; each answered request is two frames through the path. */
async function pingFlood(lab: Lab, p: Pair, spec: LoadSpec): Promise<Omit<LoadResult, 'path' | 'forwarder'>> {
  const t0 = performance.now()
  const r = await lab.execAsync(p.clientNs, ['ping', '-f', '-q', '-w', String(spec.seconds), '-s', String(spec.payload), p.serverIp],
    (spec.seconds + 10) * 1000)
  const seconds = (performance.now() - t0) / 1000
  const { sent, received } = parsePing(r.stdout)
  const frameBytes = 14 + 20 + 8 + spec.payload
  const fps = (2 * received) / seconds
  return {
    kind: spec.kind,
    seconds,
    frameBytes,
    sentFrames: 2 * sent,
    receivedFrames: 2 * received,
    framesPerSec: fps,
    gbitPerSec: (fps * frameBytes * 8) / 1e9,
    lossPct: sent > 0 ? (100 * (sent - received)) / sent : 0,
  }
}

/** Runs one bounded load over a pair. */
export async function measure(lab: Lab, p: Pair, spec: LoadSpec): Promise<LoadResult> {
  p.resetStats?.()
  const r = spec.kind === 'iperf3-udp' ? await iperfUdp(lab, p, spec) : await pingFlood(lab, p, spec)
  return { path: p.path, ...r, forwarder: p.stats?.() }
}
