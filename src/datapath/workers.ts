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
 * pods and the switch's settings, sent as ordered messages. Services are not
 * (config-rules.ts refuses them with workers > 1).
 *
 * Shutdown: stop() asks every worker to stop its pollers and waits for the
 * answer before the fds are closed, then ends the threads. A worker that dies
 * is fatal (onFatal): flows pinned to it would stop silently otherwise.
 */
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'
import { DatapathCounters } from './counters'
import type { PodSpec } from './datapath'

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
  | { op: 'stop' }

export type WorkerReply = { seq: number; error?: string } | { ready: true }

interface Pending { resolve: () => void; reject: (err: Error) => void }

class WorkerHandle {
  private seq = 0
  private readonly pending = new Map<number, Pending>()
  exited = false

  constructor(readonly index: number, readonly thread: Worker, readonly counters: DatapathCounters, onFatal: (err: Error) => void) {
    thread.on('message', (m: WorkerReply) => {
      if (!('seq' in m)) return
      const p = this.pending.get(m.seq)
      if (p === undefined) return
      this.pending.delete(m.seq)
      if (m.error !== undefined) p.reject(new Error(`datapath worker ${index}: ${m.error}`))
      else p.resolve()
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

  call(op: WorkerOp): Promise<void> {
    if (this.exited) return Promise.reject(new Error(`datapath worker ${this.index} is not running`))
    const seq = ++this.seq
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject })
      this.thread.postMessage({ seq, ...op })
    })
  }
}

export class WorkerPool {
  private stopped = false

  private constructor(private readonly handles: WorkerHandle[]) {}

  /** Workers 1 .. count (worker 0 is the caller's thread), each ready to take operations. */
  static async start(count: number, init: Omit<WorkerInit, 'index' | 'counters'>, onFatal: (err: Error) => void): Promise<WorkerPool> {
    const handles: WorkerHandle[] = []
    try {
      for (let index = 1; index <= count; index++) {
        const counters = DatapathCounters.shared()
        const data: WorkerInit = { ...init, index, counters: counters.all.buffer as SharedArrayBuffer }
        const thread = new Worker(path.join(__dirname, 'worker-thread.js'), { workerData: data, name: `datapath-${index}` })
        let ready = false
        let early: Error | null = null
        const h = new WorkerHandle(index, thread, counters, (err) => { if (ready) onFatal(err); else early = err })
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
