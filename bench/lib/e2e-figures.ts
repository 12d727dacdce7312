/**
 * What the end-to-end benchmark measures: a list of measurements, each run
 * once per path, each yielding one or more figures (table rows).
 *
 * To add a figure: append a Measurement (its figures, and a run() that
 * returns a Cell per figure id). A run() that cannot measure on some path
 * returns { notMeasured: reason } for it; the table shows the reason, never
 * a number. The service VIP row is built that way: it starts measuring as
 * soon as a path sets `serviceVip` (see e2e-paths.ts).
 */
import { Lab } from '../../test/harness/lab'
import { BenchPath } from './e2e-paths'
import { cpuMeter, CpuDelta, iperfTcp, iperfUdp, pingRtt, pingUnderLoad, requestResponse, RR_PORT } from './e2e-loads'

export type Cell =
  | { value: number; raw?: unknown }
  | { notMeasured: string }
  | { error: string }

export interface Figure {
  id: string
  label: string
  unit: string
  better: 'higher' | 'lower'
  /** Digits after the point in tables. */
  decimals: number
  /** Footnote shown under the table. */
  note?: string
}

export interface Settings {
  mode: 'short' | 'full'
  /** Duration of each iperf3 and request/response load. */
  seconds: number
  /** Echo requests per ping figure (every 10 ms). */
  pingCount: number
  udpPayload: number
  rrConnections: number
  rrSize: number
}

export const SETTINGS: Record<'short' | 'full', Settings> = {
  short: { mode: 'short', seconds: 2, pingCount: 150, udpPayload: 64, rrConnections: 4, rrSize: 100 },
  full: { mode: 'full', seconds: 10, pingCount: 1000, udpPayload: 64, rrConnections: 4, rrSize: 100 },
}

export interface Measurement {
  id: string
  title: string
  figures: Figure[]
  run(lab: Lab, path: BenchPath, s: Settings): Promise<Record<string, Cell>>
}

const GB = 1e9
export const NO_SERVICE_PATH = 'n/a (no service path)'

function cpuCells(cpu: CpuDelta, bytes: number, path: BenchPath): Record<string, Cell> {
  const gb = bytes / GB
  const dataplane = cpu.procs !== null ? cpu.procs : cpu.machineKernel
  return {
    'cpu-machine': { value: cpu.machineBusy / gb, raw: cpu },
    'cpu-dataplane': { value: dataplane / gb, raw: { source: cpu.procs !== null ? `utime+stime of pids ${path.dataplanePids.join(', ')}` : '/proc/stat system+irq+softirq, all CPUs', cpuSeconds: dataplane, gb } },
  }
}

export const MEASUREMENTS: Measurement[] = [
  {
    id: 'tcp-1',
    title: 'iperf3 TCP, 1 stream (with CPU counters)',
    figures: [
      { id: 'tcp-1', label: 'TCP, 1 stream', unit: 'Gbit/s', better: 'higher', decimals: 2 },
      {
        id: 'cpu-machine', label: 'CPU per GB (TCP 1 stream), whole machine', unit: 'CPU-s/GB', better: 'lower', decimals: 2,
        note: 'CPU per GB, whole machine: busy time of all CPUs (/proc/stat user+nice+system+irq+softirq) during the 1-stream TCP test, divided by the GB (1e9 bytes) iperf3 received. Includes iperf3 itself on both ends (and anything else running on the machine). The same definition on every path, so the ratio is comparable.',
      },
      {
        id: 'cpu-dataplane', label: 'CPU per GB (TCP 1 stream), dataplane', unit: 'CPU-s/GB', better: 'lower', decimals: 2,
        note: 'CPU per GB, dataplane: Tapestry = utime+stime of the two agent processes (/proc/<pid>/stat); kernel and veth = all kernel time on all CPUs (/proc/stat system+irq+softirq), which also contains the pods\' own TCP/IP stacks and iperf3\'s system calls. The kernel figure is an upper bound of its forwarding cost, so this ratio flatters Tapestry (whose pods\' kernel time is not counted); prefer the whole-machine row.',
      },
    ],
    async run(lab, path, s) {
      const stop = cpuMeter(path.dataplanePids)
      const r = await iperfTcp(lab, path.ep, s.seconds, 1)
      const cpu = stop()
      return { 'tcp-1': { value: r.gbitPerSec, raw: r }, ...cpuCells(cpu, r.bytes, path) }
    },
  },
  {
    id: 'tcp-4',
    title: 'iperf3 TCP, 4 streams',
    figures: [{ id: 'tcp-4', label: 'TCP, 4 streams (-P 4)', unit: 'Gbit/s', better: 'higher', decimals: 2 }],
    async run(lab, path, s) {
      const stop = cpuMeter(path.dataplanePids)
      const r = await iperfTcp(lab, path.ep, s.seconds, 4)
      return { 'tcp-4': { value: r.gbitPerSec, raw: { ...r, cpu: stop() } } }
    },
  },
  {
    id: 'udp-small',
    title: 'iperf3 UDP, 64-byte payloads, -b 0',
    figures: [
      { id: 'udp-pps', label: 'UDP 64 B, delivered', unit: 'packets/s', better: 'higher', decimals: 0 },
      { id: 'udp-loss', label: 'UDP 64 B, loss', unit: '%', better: 'lower', decimals: 1,
        note: 'UDP: iperf3 -u -l 64 -b 0 (the client sends as fast as it can); delivered = datagrams the server received per second, loss = share of the client\'s datagrams that never reached the server socket. Loss depends on how fast the sender is, so read it beside the delivered rate.' },
    ],
    async run(lab, path, s) {
      const stop = cpuMeter(path.dataplanePids)
      const r = await iperfUdp(lab, path.ep, s.seconds, s.udpPayload)
      const raw = { ...r, cpu: stop() }
      return { 'udp-pps': { value: r.deliveredPerSec, raw }, 'udp-loss': { value: r.lossPct } }
    },
  },
  {
    id: 'ping-idle',
    title: 'ping every 10 ms, idle',
    figures: [
      { id: 'ping-idle-p50', label: 'ping RTT idle, p50', unit: 'ms', better: 'lower', decimals: 3 },
      { id: 'ping-idle-p99', label: 'ping RTT idle, p99', unit: 'ms', better: 'lower', decimals: 3 },
    ],
    async run(lab, path, s) {
      const r = await pingRtt(lab, path.ep, s.pingCount)
      return { 'ping-idle-p50': { value: r.p50Ms, raw: r }, 'ping-idle-p99': { value: r.p99Ms } }
    },
  },
  {
    id: 'ping-load',
    title: 'ping every 10 ms beside a bulk TCP transfer',
    figures: [
      { id: 'ping-load-p50', label: 'ping RTT under TCP load, p50', unit: 'ms', better: 'lower', decimals: 3 },
      { id: 'ping-load-p99', label: 'ping RTT under TCP load, p99', unit: 'ms', better: 'lower', decimals: 3,
        note: 'ping under load: the same ping, client pod to server pod, while a 1-stream iperf3 TCP transfer runs in the same direction (started 0.5 s before the first echo request and running past the last one).' },
    ],
    async run(lab, path, s) {
      const r = await pingUnderLoad(lab, path.ep, s.pingCount)
      return { 'ping-load-p50': { value: r.p50Ms, raw: r }, 'ping-load-p99': { value: r.p99Ms } }
    },
  },
  {
    id: 'rr-direct',
    title: 'TCP request/response to the pod IP',
    figures: [{ id: 'rr-direct', label: 'requests/s, direct to pod IP', unit: 'req/s', better: 'higher', decimals: 0,
      note: 'requests/s: closed-loop TCP request/response (bench/lib/e2e-rr.ts): 4 persistent connections, 100-byte request, 100-byte answer, the next request when the answer is in; a Node.js client and server in the pods, so the figure is bounded by their event loops as well as by the path.' }],
    async run(lab, path, s) {
      const r = await requestResponse(lab, path.ep, s.seconds, s.rrConnections, s.rrSize)
      return { 'rr-direct': { value: r.requestsPerSec, raw: r } }
    },
  },
  {
    id: 'rr-vip',
    title: 'TCP request/response through a service VIP',
    figures: [{ id: 'rr-vip', label: 'requests/s, via service VIP', unit: 'req/s', better: 'higher', decimals: 0,
      note: 'requests/s via service VIP: the same load with the client connecting to a service VIP (Tapestry: 10.96.0.10:80 -> the server pod\'s port 7101, one endpoint, balanced and NATed by the client\'s agent). The kernel and veth paths have no service path.' }],
    async run(lab, path, s) {
      if (!path.serviceVip) return { 'rr-vip': { notMeasured: NO_SERVICE_PATH } }
      const r = await requestResponse(lab, { ...path.ep, serverIp: path.serviceVip }, s.seconds, s.rrConnections, s.rrSize, RR_PORT, path.servicePort ?? RR_PORT)
      return { 'rr-vip': { value: r.requestsPerSec, raw: r } }
    },
  },
]
