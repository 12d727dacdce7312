/**
 * A datapath worker thread (see workers.ts): a Datapath whose ports adopt fds
 * the main thread opened, changed only by the main thread's ordered operations.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { Datapath } from './datapath'
import { DatapathCounters } from './counters'
import { TapPort } from '../ports/tap'
import { UdpPort } from '../ports/udp'
import { native } from '../ports/native'
import type { WorkerInit, WorkerOp, WorkerReply } from './workers'

const init = workerData as WorkerInit
const port = parentPort!
const dp = new Datapath({ ...init.options, counters: new DatapathCounters(init.counters) })
const pods = new Map<number, TapPort>()
const underlay: UdpPort[] = []
native.busyPoll(init.busyPollUs)
// `top -H -p <agent pid>` shows each worker's CPU under this name.
native.threadName(`tp-datapath-${init.index}`)
const sweep = setInterval(() => { dp.sweep(); dp.syncCounters() }, init.sweepMs)

function apply(m: WorkerOp): void {
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
      dp.removePod(m.id)
      pods.get(m.id)?.close()
      pods.delete(m.id)
      return
    case 'stop':
      clearInterval(sweep)
      for (const id of [...pods.keys()]) { dp.removePod(id); pods.get(id)!.close() }
      pods.clear()
      dp.detachUnderlay()
      for (const u of underlay) u.close()
      underlay.length = 0
      dp.syncCounters()
      return
  }
}

port.on('message', (m: WorkerOp & { seq: number }) => {
  let reply: WorkerReply
  try {
    apply(m)
    if (m.op !== 'stop') dp.syncCounters()
    reply = { seq: m.seq }
  } catch (err) {
    reply = { seq: m.seq, error: (err as Error).message }
  }
  port.postMessage(reply)
})
port.postMessage({ ready: true } satisfies WorkerReply)
