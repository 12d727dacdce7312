/**
 * Datapath workers (config `workers` > 1): the main thread's datapath is worker
 * 0, and each further worker is a thread with a datapath of its own.
 *
 *   main thread                          worker k (k = 1 .. workers-1)
 *   Agent -- control ops, in order --->  Datapath replica
 *   Datapath (worker 0)                  reads: its socket of the VXLAN port's
 *   opens every fd                         group, its queue of each pod TAP
 *   sums the counters <-- shared ------  counts into a SharedArrayBuffer
 *
 * Who reads what: the VXLAN port has one socket per worker (SO_REUSEPORT) and
 * every pod TAP one queue per worker (IFF_MULTI_QUEUE), socket and queue k read
 * by worker k; the steering programs (overlay/steering.ts) give every packet of
 * a flow, both ways, to the same worker index. So a flow's learning, GRO and
 * order stay in one thread and TCP with several streams uses several cores.
 *
 * What is shared: the fds (the main thread opens and closes them all; a worker
 * adopts its own and writes on any: a TAP queue or a UDP socket takes writes
 * from several threads) and the counters. What is per worker: the FDB and ARP
 * learning (a miss floods, which is correct), GRO state, batches. What is
 * replicated: networks, peers, pods (with the main thread's port ids), remote
 * pods, the switch's settings, services and the DNS names, sent as ordered
 * messages; ARP entries, which only the main thread reads (ARP goes to
 * worker 0 or the priority lane), are passed on as it learns them.
 *
 * Services: a connection's NAT entry lives in the worker that read the
 * client's first packet, and its conntrack picks the reply tuple (the source
 * port the endpoint sees) so that the replies hash to that same worker
 * (Conntrack.pin): no entry is ever needed in two threads. What is per worker:
 * balancing state (least-connections counts, endpoint pick counters). An ICMP
 * error (for a local pod, or sent by one) is read by the worker of its own
 * hash (worker 0 with the priority lane); one whose embedded packet belongs
 * to another worker's flow is handed to that worker (Datapath onHandOver, op
 * 'icmp'), which holds the NAT entry to translate it with.
 *
 * Captures: while one runs, each worker relays the frames its datapath shows
 * it to the main thread's capture hook (capture-relay.ts).
 *
 * Shutdown: stop() asks every worker to stop its pollers and waits for the
 * answer before the fds are closed, then ends the threads. A worker that dies
 * is fatal (onFatal): flows pinned to it would stop silently otherwise.
 */
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'
import { DatapathCounters } from './counters'
import type { PodSpec } from './datapath'
import type { ServiceSpec } from '../service/service-model'

/** The datapath options a worker is built with (what crosses a thread: no functions). */
export interface WorkerDatapathOptions {
  vxlanPort: number
  fdb: { ageMs: number; maxEntries: number; maxPerVni: number; maxPerPort: number }
  arpSuppression: boolean
  learnPeers: boolean
  floodPerSecond: number
  floodBurst: number
}

export interface WorkerInit {
  index: number
  /** Every worker, this one's index among them (conntrack pins NATed replies to it). */
  workers: number
  options: WorkerDatapathOptions
  counters: SharedArrayBuffer
  busyPollUs: number
  rxBatchBytes: number
  sweepMs: number
}

/** A socket of the transmit pool as a worker adopts it. */
export interface TxFd { fd: number; port: number; gsoFd: number; gsoEnabled: boolean }

/** One control operation; every one is answered ({ seq, error? }) in order. */
export type WorkerOp =
  | { op: 'network'; vni: number; gatewayIp: number; add: boolean }
  | { op: 'peer'; addr: number; add: boolean }
  | { op: 'remotePod'; vni: number; macHi: number; macLo: number; ip: number; peer: number; add: boolean }
  | { op: 'settings'; arpSuppression: boolean; learnPeers: boolean; floodPerSecond: number; floodBurst: number; busyPollUs: number }
  | { op: 'underlay'; addr: number; rx: { fd: number; port: number; gro: boolean }; tx: TxFd[] }
  /** `read`: the worker reads this fd (its own queue); false: it only writes to the port (a TAP the main thread reads). */
  | { op: 'addPod'; id: number; spec: PodSpec; fd: number; name: string; vnetHdr: boolean; offloadFlags: number; read: boolean }
  | { op: 'removePod'; id: number }
  /** ARP entries the main thread learned, [vni, ip, macHi, macLo] after each other (ARP is read there). */
  | { op: 'arp'; entries: number[] }
  | { op: 'service'; spec: ServiceSpec }
  | { op: 'serviceRemove'; name: string; namespace: string }
  /** Cluster DNS: answer queries to `ip` (once, at start), and the names it answers (on every change). */
  | { op: 'dns'; ip: number; clusterDomain: string }
  | { op: 'dnsServices'; list: { name: string; namespace: string; clusterIP: number }[] }
  | { op: 'conntrackFlush' }
  /** An ICMP error another thread read about a flow of this worker, for pod `pod` or sent by it (fromPod): translate and deliver it. */
  | { op: 'icmp'; pod: number; frame: Uint8Array; fromPod: boolean }
  /** A capture runs (on) or none does: the worker relays the frames it sees (capture-relay.ts). */
  | { op: 'capture'; on: boolean }
  /** Nothing but the copy every answer is preceded by: the worker's counters are current once it is answered. */
  | { op: 'sync' }
  /** Answers with data: the worker's connections (Conntrack.list), learned FDB entries (FdbView) or services (ServiceTable.list, its own counts). */
  | { op: 'query'; what: 'conntrack' | 'fdb' | 'services' }
  | { op: 'stop' }

/** An FDB entry as a worker reports it (its peer index resolved to the address). */
export interface FdbView { vni: number; mac: string; port: number; isStatic: boolean; ageMs: number; remote: number | null }

/** An ICMP error a thread read about a flow of worker `worker`, for pod `pod` or sent by it (fromPod) (Datapath onHandOver). */
export interface HandOver { worker: number; pod: number; frame: Uint8Array; fromPod: boolean }

export type WorkerReply = { seq: number; error?: string; data?: unknown } | { ready: true } | { capture: Uint8Array } | { handOver: HandOver }

/** What the pool tells its owner. */
export interface PoolHooks {
  /** A worker died (or a worker thread failed): flows pinned to it stop. */
  onFatal: (err: Error) => void
  /** Capture records relayed by a worker (capture-relay.ts). */
  onCapture: (records: Uint8Array) => void
  /** An ICMP error a worker read about another worker's flow: pass it to that worker (0 is the caller's thread). */
  onHandOver?: (h: HandOver) => void
}

interface Pending { resolve: (data: unknown) => void; reject: (err: Error) => void }

class WorkerHandle {
  private seq = 0
  private readonly pending = new Map<number, Pending>()
  exited = false

  constructor(readonly index: number, readonly thread: Worker, readonly counters: DatapathCounters, onFatal: (err: Error) => void, hooks: PoolHooks) {
    thread.on('message', (m: WorkerReply) => {
      if ('capture' in m) { hooks.onCapture(m.capture); return }
      if ('handOver' in m) { hooks.onHandOver?.(m.handOver); return }
      if (!('seq' in m)) return
      const p = this.pending.get(m.seq)
      if (p === undefined) return
      this.pending.delete(m.seq)
      if (m.error !== undefined) p.reject(new Error(`datapath worker ${index}: ${m.error}`))
      else p.resolve(m.data)
    })
    const fail = (err: Error): void => {
      this.exited = true
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
      onFatal(err)
    }
    thread.on('error', (err) => fail(new Error(`datapath worker ${index} failed: ${err.message}`, { cause: err })))
    thread.on('exit', (code) => { if (!this.exited) fail(new Error(`datapath worker ${index} exited (code ${code})`)) })
  }

  call(op: WorkerOp): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(`datapath worker ${this.index} is not running`))
    const seq = ++this.seq
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject })
      this.thread.postMessage({ seq, ...op })
    })
  }
}

export class WorkerPool {
  private stopped = false

  private constructor(private readonly handles: WorkerHandle[]) {}

  /** Workers 1 .. count (worker 0 is the caller's thread), each ready to take operations. */
  /** `script`: the worker's entry (tests give another). */
  static async start(count: number, init: Omit<WorkerInit, 'index' | 'workers' | 'counters'>, hooks: PoolHooks,
    script = path.join(__dirname, 'worker-thread.js')): Promise<WorkerPool> {
    const handles: WorkerHandle[] = []
    try {
      for (let index = 1; index <= count; index++) {
        const counters = DatapathCounters.shared()
        const data: WorkerInit = { ...init, index, workers: count + 1, counters: counters.all.buffer as SharedArrayBuffer }
        const thread = new Worker(script, { workerData: data, name: `datapath-${index}` })
        let ready = false
        let early: Error | null = null
        const h = new WorkerHandle(index, thread, counters, (err) => { if (ready) hooks.onFatal(err); else early = err }, hooks)
        handles.push(h)
        await new Promise<void>((resolve, reject) => {
          const onMsg = (m: WorkerReply): void => { if ('ready' in m) { thread.off('message', onMsg); ready = true; resolve() } }
          thread.on('message', onMsg)
          thread.once('exit', () => { if (!ready) reject(early ?? new Error(`datapath worker ${index} exited while starting`)) })
        })
      }
    } catch (err) {
      for (const h of handles) { h.exited = true; await h.thread.terminate() }
      throw err
    }
    return new WorkerPool(handles)
  }

  /** Worker threads (not counting the caller's). */
  get size(): number {
    return this.handles.length
  }

  /** Each worker's counters, in worker order (1 ..). */
  get counters(): DatapathCounters[] {
    return this.handles.map((h) => h.counters)
  }

  /** Sends the same operation to every worker; resolves when all have done it. */
  async all(op: WorkerOp): Promise<void> {
    await Promise.all(this.handles.map((h) => h.call(op)))
  }

  /** Asks every worker the same question; answers in worker order (1 ..). */
  async ask(op: WorkerOp): Promise<unknown[]> {
    return Promise.all(this.handles.map((h) => h.call(op)))
  }

  /** Sends worker k (1 ..) its own operation. */
  async one(k: number, op: WorkerOp): Promise<void> {
    await this.handles[k - 1].call(op)
  }

  /** Stops every worker's pollers (then the caller may close the fds) and ends the threads. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await Promise.allSettled(this.handles.map((h) => h.call({ op: 'stop' })))
    for (const h of this.handles) {
      h.exited = true
      await h.thread.terminate()
    }
  }
}
