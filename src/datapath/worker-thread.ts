/**
 * A datapath worker thread (see workers.ts): a Datapath whose ports adopt fds
 * the main thread opened, changed only by the main thread's ordered operations.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { Datapath } from './datapath'
import { DatapathCounters, MISC_CAPTURE_LOST } from './counters'
import { CaptureRelay } from './capture-relay'
import { TapPort } from '../ports/tap'
import { UdpPort } from '../ports/udp'
import { native } from '../ports/native'
import { DnsResponder } from '../service/dns'
import { PEER_PORT_BASE, isPeerPort } from '../overlay/peers'
import type { FdbView, WorkerInit, WorkerOp, WorkerReply } from './workers'

const init = workerData as WorkerInit
const port = parentPort!
const dp = new Datapath({
  ...init.options, counters: new DatapathCounters(init.counters), steer: { workers: init.workers, worker: init.index },
  // The main thread routes it to the worker holding the flow (itself for worker 0).
  onHandOver: (worker, pod, frame, fromPod) => port.postMessage({ handOver: { worker, pod, frame, fromPod } } satisfies WorkerReply, [frame.buffer as ArrayBuffer]),
})
let dns: DnsResponder | null = null
const relay = new CaptureRelay((records) => port.postMessage({ capture: records } satisfies WorkerReply, [records.buffer as ArrayBuffer]))
const pods = new Map<number, TapPort>()
const underlay: UdpPort[] = []
native.busyPoll(init.busyPollUs)
// `top -H -p <agent pid>` shows each worker's CPU under this name.
native.threadName(`tp-datapath-${init.index}`)
const sweep = setInterval(() => { dp.sweep(); sync() }, init.sweepMs)

function sync(): void {
  dp.syncCounters()
  dp.counters.misc[MISC_CAPTURE_LOST] = relay.lost
}

/** Stops reading the pod's queue and forgets the port (the fd is the main thread's). */
function removePod(id: number): void {
  dp.removePod(id)
  pods.get(id)?.close()
  pods.delete(id)
}

/** Applies one operation; a query's answer is returned. */
function apply(m: WorkerOp): unknown {
  switch (m.op) {
    case 'network':
      if (m.add) dp.addNetwork(m.vni, m.gatewayIp)
      else dp.removeNetwork(m.vni)
      return
    case 'peer':
      if (m.add) dp.addPeer(m.addr)
      else dp.removePeer(m.addr)
      return
    case 'remotePod':
      if (m.add) dp.addRemotePod(m.vni, m.macHi, m.macLo, m.ip, m.peer)
      else dp.removeRemotePod(m.vni, m.macHi, m.macLo, m.ip)
      return
    case 'settings':
      dp.arpSuppression = m.arpSuppression
      dp.learnPeers = m.learnPeers
      dp.floodPerSecond = m.floodPerSecond
      dp.floodBurst = m.floodBurst
      native.busyPoll(m.busyPollUs)
      return
    case 'underlay': {
      const rx = UdpPort.adopt(m.rx.fd, m.addr, m.rx.port, { gro: m.rx.gro, gsoEnabled: false, rx: dp.underlayRx, rxBudget: init.rxBatchBytes })
      const tx = m.tx.map((t) => UdpPort.adopt(t.fd, m.addr, t.port, { gro: false, gsoEnabled: false, rx: dp.underlayRx }))
      const gso = m.tx.map((t) => (t.gsoFd >= 0 ? UdpPort.adopt(t.gsoFd, m.addr, t.port, { gro: false, gsoEnabled: t.gsoEnabled, rx: dp.underlayRx }) : null))
      underlay.push(rx, ...tx)
      for (const g of gso) if (g !== null) underlay.push(g)
      dp.attachUnderlay(rx, tx, gso)
      return
    }
    case 'addPod': {
      const tap = TapPort.adopt(m.fd, m.name, { vnetHdr: m.vnetHdr, offloadFlags: m.offloadFlags, rx: dp.podRx, rxBudget: init.rxBatchBytes, read: m.read })
      dp.addPod(m.spec, tap, null, m.id)
      pods.set(m.id, tap)
      return
    }
    case 'removePod':
      removePod(m.id)
      return
    case 'arp':
      for (let i = 0; i + 3 < m.entries.length; i += 4) dp.arpLearned(m.entries[i], m.entries[i + 1], m.entries[i + 2], m.entries[i + 3])
      return
    case 'service':
      dp.services.upsert(m.spec)
      return
    case 'serviceRemove':
      dp.services.remove(m.name, m.namespace)
      return
    case 'dns':
      dns = new DnsResponder({ ip: m.ip, clusterDomain: m.clusterDomain })
      dp.responder = dns.datapathResponder(dp.routerMacHi, dp.routerMacLo)
      return
    case 'dnsServices':
      dns?.setServices(m.list)
      return
    case 'sync':
      return
    case 'capture':
      dp.capture = m.on ? relay : null
      return
    case 'icmp':
      dp.deliverHandedOver(m.pod, m.frame, m.fromPod)
      return
    case 'conntrackFlush':
      return dp.conntrack.flush()
    case 'query':
      if (m.what === 'conntrack') return dp.conntrack.list(performance.now())
      if (m.what === 'services') return dp.services.list()
      return dp.fdb.entries(performance.now()).filter((e) => !e.isStatic).map((e): FdbView => ({
        vni: e.vni, mac: e.mac, port: e.port, isStatic: e.isStatic, ageMs: e.ageMs,
        remote: isPeerPort(e.port) ? dp.peers.addr[e.port - PEER_PORT_BASE] : null,
      }))
    case 'stop':
      clearInterval(sweep)
      for (const id of [...pods.keys()]) removePod(id)
      dp.detachUnderlay()
      for (const u of underlay) u.close()
      underlay.length = 0
      dp.capture = null
      sync()
      return
  }
}

port.on('message', (m: WorkerOp & { seq: number }) => {
  let reply: WorkerReply
  try {
    const data = apply(m)
    if (m.op !== 'stop') sync()
    reply = data === undefined ? { seq: m.seq } : { seq: m.seq, data }
  } catch (err) {
    reply = { seq: m.seq, error: (err as Error).message }
  }
  port.postMessage(reply)
})
armExitFailpoint(process.env.TAPESTRY_FAILPOINT_WORKER_EXIT)
port.postMessage({ ready: true } satisfies WorkerReply)

/**
 * Test hook (failpoint), for e2e tests only (test/e2e/harden-worker-crash.test.ts):
 * TAPESTRY_FAILPOINT_WORKER_EXIT=<index>@<ms>, e.g. `1@300`, makes the worker whose
 * index is <index> throw an uncaught Error <ms> ms after it starts, as a crashed
 * worker would (the pool's onFatal then stops the agent). Unset, malformed, out of
 * range or naming another worker: nothing happens. Workers inherit process.env.
 */
function armExitFailpoint(spec: string | undefined): void {
  if (spec === undefined) return
  const m = /^(\d{1,2})@(\d{1,10})$/.exec(spec)
  if (m === null) return
  const index = Number(m[1])
  const ms = Number(m[2])
  // setTimeout turns a delay above 2^31-1 ms into 1 ms: refuse it rather than fire early.
  if (index !== init.index || ms > 0x7fffffff) return
  setTimeout(() => {
    throw new Error(`failpoint TAPESTRY_FAILPOINT_WORKER_EXIT=${spec}: datapath worker ${index} exits ${ms} ms after start`)
  }, ms).unref()
}
