/**
 * Datapath workers (config `workers`, datapath/workers.ts) in running agents:
 * with workers: 2 each agent has a socket per worker and the priority lane's
 * on the VXLAN port, every pod TAP a queue per worker, and two transfers whose
 * flows hash to different workers (chosen ahead with flowWorker, the steering
 * programs' reference) are each read by their own worker on both hosts, their
 * bytes intact; pings still go through the lane. Stopping the agent ends the
 * worker threads and releases every socket; a restart with workers: 1
 * re-attaches the multi-queue TAPs and traffic flows. Services with workers:
 * svc-workers.test.ts.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { parsePing } from '../harness/lab'
import { agentPid, stats, tapestry } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'
import { hostConfig } from '../harness/overlay'
import { tcpTransfer } from '../harness/xfer'
import { flowWorker } from '../../src/overlay/steering'
import { tcpFrame } from '../unit/wire/frames'

const PODS = {
  a: [{ name: 'pa', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
  b: [{ name: 'pb', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
}

/** A client port from `from` up whose flow pa -> pb:port is read by `worker` (of 2). */
function portFor(worker: number, port: number, from: number): number {
  for (let p = from; ; p++) {
    const f = tcpFrame({ src: PODS.a[0].ip, dst: PODS.b[0].ip, sport: p, dport: port })
    if (flowWorker(f, 0, f.length, { workers: 2, lane: true }) === worker) return p
  }
}

interface WorkerRow { worker: number; batches: number; frames: number; underlayRxFrames: number }

test('workers: 2 — each flow is read by its own worker on both hosts, bytes intact; the lane still works', { timeout: 120_000 }, async (t) => {
  const { lab, a, b, sockA, sockB, start } = twoHosts(t)
  const { pa, pb } = await start({ ...PODS, extra: { workers: 2 } })
  const sockets = (ns: string) => lab.exec(ns, ['ss', '-uanH', 'sport = :4789']).trim().split('\n').filter(Boolean).length
  assert.equal(sockets(a.ns), 3, 'two workers\' sockets and the priority lane\'s on the VXLAN port')
  assert.match(lab.exec(pa.ns, ['ip', '-d', 'link', 'show', 'eth0']), /multi_queue/)
  const before = { a: await stats(lab, a, sockA), b: await stats(lab, b, sockB) }
  const p0 = portFor(0, 7101, 41000)
  const p1 = portFor(1, 7102, 42000)
  const [x0, x1, ping] = await Promise.all([
    tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 30_000_000, 7101, p0),
    tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 30_000_000, 7102, p1),
    lab.execAsync(pa.ns, ['ping', '-c', '100', '-i', '0.01', '-W', '2', '-q', pb.ip]),
  ])
  for (const x of [x0, x1]) {
    assert.equal(x.received.bytes, 30_000_000)
    assert.equal(x.received.sha256, x.sent.sha256)
  }
  assert.equal(parsePing(ping.stdout).received, 100, ping.stdout + ping.stderr)
  const after = { a: await stats(lab, a, sockA), b: await stats(lab, b, sockB) }
  const rows = (s: typeof after.a) => (s as unknown as { workers: WorkerRow[] }).workers
  for (const h of ['a', 'b'] as const) {
    const now = rows(after[h])
    const was = rows(before[h])
    assert.equal(now.length, 2, `${h}: one row per worker`)
    const frames = now.map((w, i) => w.frames - was[i].frames)
    const underlay = now.map((w, i) => w.underlayRxFrames - was[i].underlayRxFrames)
    t.diagnostic(`host ${h}: frames read per worker ${JSON.stringify(frames)}, underlay datagrams ${JSON.stringify(underlay)}`)
    // 30 MB of TCP data (host b) or its ACKs (host a) per flow: hundreds of frames at least, on each worker.
    for (let w = 0; w < 2; w++) assert.ok(frames[w] > 300, `host ${h}: worker ${w} read ${frames[w]} frames`)
    const least = h === 'b' ? 100 : 20
    for (let w = 0; w < 2; w++) assert.ok(underlay[w] > least, `host ${h}: worker ${w} read ${underlay[w]} underlay datagrams`)
    // The pings went through the priority lane, read by the main thread.
    assert.ok(after[h].underlay.priorityRxFrames - before[h].underlay.priorityRxFrames >= 100)
  }
  // The text view lists each worker's share.
  const text = await tapestry(lab, b, sockB, 'stats')
  assert.match(text, /^WORKER\s+BATCHES\s+FRAMES\s+UNDERLAYRXFRAMES\s+CONNECTIONS\s+CAPTURELOST$/m)
  assert.match(text, /^1\s+\d+\s+\d+/m)
  // The sums the API shows include the worker: pb's port received both transfers.
  assert.ok(after.b.pods.pb.txBytes - before.b.pods.pb.txBytes > 60_000_000, `pb tx ${after.b.pods.pb.txBytes - before.b.pods.pb.txBytes}`)
})

test('workers: stop ends the threads and releases every socket; workers: 1 re-attaches the TAPs', { timeout: 120_000 }, async (t) => {
  const { lab, c, a, b, nets, sockA, start } = twoHosts(t)
  const { pa, pb } = await start({ ...PODS, extra: { workers: 3, priorityLane: false } })
  const threads = (): string[] => {
    const pid = agentPid(c, a)
    return fs.readdirSync(`/proc/${pid}/task`).map((tid) => { try { return fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() } catch { return '' } })
  }
  assert.equal(threads().filter((n) => n.startsWith('tp-datapath-')).length, 2, `threads: ${threads().join(', ')}`)
  assert.equal(lab.exec(a.ns, ['ss', '-uanH', 'sport = :4789']).trim().split('\n').filter(Boolean).length, 3)
  const x = await tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 10_000_000, 7103)
  assert.equal(x.received.sha256, x.sent.sha256)
  assert.equal(await c.stopAgent(a), 0)
  assert.equal(lab.exec(a.ns, ['ss', '-uanH', 'sport = :4789']).trim(), '', 'no socket left on the VXLAN port')
  // The pod's TAP stays (persistent) with its queues detached; workers: 1 attaches to it again.
  assert.match(lab.exec(pa.ns, ['ip', '-d', 'link', 'show', 'eth0']), /multi_queue/)
  const podA = { name: 'pa', network: 'blue', netns: pa.ns, ip: `${pa.ip}/16`, mac: pa.mac }
  await c.startAgent(a, hostConfig(a, [a, b], nets, [podA], { workers: 1, priorityLane: false, api: { socket: sockA } }))
  const ping = await lab.execAsync(pa.ns, ['ping', '-c', '20', '-i', '0.01', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(ping.stdout).received, 20, ping.stdout + ping.stderr)
  const y = await tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 10_000_000, 7104)
  assert.equal(y.received.sha256, y.sent.sha256)
  const s = await stats(lab, a, sockA)
  assert.equal((s as unknown as { workers: WorkerRow[] }).workers.length, 1)
})
