/**
 * The priority lane (priorityLane, overlay/steering.ts) in running agents:
 * pings between pods on two hosts are read through the sending pod's TAP
 * priority queue and each agent's priority socket while a TCP transfer beside
 * them stays on the bulk queue and socket (its bytes intact, its hash equal);
 * with the lane off there is one socket, one queue, and nothing is counted; a
 * restart with the other setting re-attaches the persistent TAPs as they are;
 * and a port already in use is still an error at start, although the lane's
 * sockets share the port through SO_REUSEPORT.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing } from '../harness/lab'
import { stats } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'
import { hostConfig } from '../harness/overlay'
import { tcpTransfer } from '../harness/xfer'

const PODS = {
  a: [{ name: 'pa', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
  b: [{ name: 'pb', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
}

test('pings go through the priority lane on both agents and both pod TAPs; a TCP transfer beside them does not', { timeout: 120_000 }, async (t) => {
  const { lab, a, b, sockA, sockB, start } = twoHosts(t)
  const { pa, pb } = await start(PODS)
  const sockets = (ns: string) => lab.exec(ns, ['ss', '-uanH', 'sport = :4789']).trim().split('\n').filter(Boolean).length
  assert.equal(sockets(a.ns), 2, 'bulk and priority sockets on the VXLAN port')
  const beforeA = await stats(lab, a, sockA)
  const beforeB = await stats(lab, b, sockB)
  const [ping, xfer] = await Promise.all([
    lab.execAsync(pa.ns, ['ping', '-c', '300', '-i', '0.005', '-W', '2', '-q', pb.ip]),
    tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 50_000_000),
  ])
  assert.equal(parsePing(ping.stdout).received, 300, ping.stdout + ping.stderr)
  assert.equal(xfer.received.bytes, 50_000_000)
  assert.equal(xfer.received.sha256, xfer.sent.sha256)
  const afterA = await stats(lab, a, sockA)
  const afterB = await stats(lab, b, sockB)
  const lane = (x: typeof afterA, y: typeof afterA) => ({
    frames: x.underlay.priorityRxFrames - y.underlay.priorityRxFrames,
    bytes: x.underlay.priorityRxBytes - y.underlay.priorityRxBytes,
    all: x.underlay.rxBytes - y.underlay.rxBytes,
  })
  const la = lane(afterA, beforeA)
  const lb = lane(afterB, beforeB)
  t.diagnostic(`priority lane: A ${JSON.stringify(la)}, B ${JSON.stringify(lb)}`)
  // Every echo request reached B and every reply reached A through the lane (ARP may add a few).
  assert.ok(lb.frames >= 300 && lb.frames < 320, `B's lane read ${lb.frames} datagrams for 300 echo requests`)
  assert.ok(la.frames >= 300 && la.frames < 320, `A's lane read ${la.frames} datagrams for 300 echo replies`)
  // And nothing of the transfer: 300 pings are about 33 KB of VXLAN, the transfer 50 MB.
  assert.ok(lb.all > 50_000_000, `B read ${lb.all} bytes in all`)
  assert.ok(lb.bytes < 64_000, `B's lane read ${lb.bytes} bytes`)
  // The pods' side: pa's echo requests and pb's replies came through their TAPs' priority queues, the transfer not.
  const podLane = (x: typeof afterA, y: typeof afterA, pod: string) => ({
    frames: x.pods[pod].priorityRxFrames - y.pods[pod].priorityRxFrames,
    bytes: x.pods[pod].priorityRxBytes - y.pods[pod].priorityRxBytes,
    all: x.pods[pod].rxBytes - y.pods[pod].rxBytes,
  })
  const qa = podLane(afterA, beforeA, 'pa')
  const qb = podLane(afterB, beforeB, 'pb')
  t.diagnostic(`pod queues: pa ${JSON.stringify(qa)}, pb ${JSON.stringify(qb)}`)
  assert.ok(qa.frames >= 300 && qa.frames < 320, `pa's priority queue read ${qa.frames} frames for 300 echo requests`)
  assert.ok(qb.frames >= 300 && qb.frames < 320, `pb's priority queue read ${qb.frames} frames for 300 echo replies`)
  assert.ok(qa.all > 50_000_000 && qa.bytes < 64_000, `pa: ${JSON.stringify(qa)}`)
})

test('with priorityLane off: one socket, one TAP queue, nothing counted, traffic flows', { timeout: 60_000 }, async (t) => {
  const { lab, a, b, sockB, start } = twoHosts(t)
  const { pa, pb } = await start({ ...PODS, extra: { priorityLane: false } })
  assert.equal(lab.exec(a.ns, ['ss', '-uanH', 'sport = :4789']).trim().split('\n').filter(Boolean).length, 1)
  assert.doesNotMatch(lab.exec(pa.ns, ['ip', '-d', 'link', 'show', 'eth0']), /multi_queue/)
  const ping = await lab.execAsync(pa.ns, ['ping', '-c', '50', '-i', '0.005', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(ping.stdout).received, 50, ping.stdout + ping.stderr)
  const s = await stats(lab, b, sockB)
  assert.equal(s.underlay.priorityRxFrames, 0)
  assert.equal(s.pods.pb.priorityRxFrames, 0)
  assert.ok(s.underlay.rxFrames >= 50)
})

test('a restart with the other priorityLane setting re-attaches the pods\' persistent TAPs as they are', { timeout: 90_000 }, async (t) => {
  const { lab, c, a, b, nets, sockA, start } = twoHosts(t)
  const { pa, pb } = await start({ ...PODS, extra: { priorityLane: false } })
  const podA = { name: 'pa', network: 'blue', netns: pa.ns, ip: `${pa.ip}/16`, mac: pa.mac }
  const pings = async (): Promise<void> => {
    const r = await lab.execAsync(pa.ns, ['ping', '-c', '20', '-i', '0.01', '-W', '2', '-q', pb.ip])
    assert.equal(parsePing(r.stdout).received, 20, r.stdout + r.stderr)
  }
  for (const lane of [true, false, true]) {
    assert.equal(await c.stopAgent(a), 0)
    await c.startAgent(a, hostConfig(a, [a, b], nets, [podA], { priorityLane: lane, api: { socket: sockA } }))
    await pings()
    const s = await stats(lab, a, sockA)
    // The TAP pa has was made single-queue by the first agent: it stays so, and nothing is read as priority.
    assert.equal(s.pods.pa.priorityRxFrames, 0, `lane ${lane}`)
    // The underlay lane follows the setting: the 20 echo replies came through it, or nothing did.
    if (lane) assert.ok(s.underlay.priorityRxFrames >= 20, `underlay lane read ${s.underlay.priorityRxFrames}`)
    else assert.equal(s.underlay.priorityRxFrames, 0)
  }
  // A pod made while the lane is on gets a multi-queue TAP; an agent with the lane off attaches to it too.
  const pc = { name: 'pc', network: 'blue', netns: c.podNs('pc'), ip: '10.244.1.3/16', mac: '02:00:0a:f4:01:03' }
  assert.equal(await c.stopAgent(a), 0)
  await c.startAgent(a, hostConfig(a, [a, b], nets, [podA, pc], { priorityLane: true, api: { socket: sockA } }))
  assert.match(lab.exec(pc.netns, ['ip', '-d', 'link', 'show', 'eth0']), /multi_queue/)
  assert.equal(await c.stopAgent(a), 0)
  await c.startAgent(a, hostConfig(a, [a, b], nets, [podA, pc], { priorityLane: false, api: { socket: sockA } }))
  const r = await lab.execAsync(pc.netns, ['ping', '-c', '20', '-i', '0.01', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(r.stdout).received, 20, r.stdout + r.stderr)
})

test('a VXLAN port already in use stops the agent at start, with or without SO_REUSEPORT on the other socket', { timeout: 60_000 }, async (t) => {
  const { lab, c, a, b, nets } = twoHosts(t)
  for (const reuse of [false, true]) {
    const holder = lab.spawn(a.ns, ['python3', '-c', [
      'import socket, sys, time',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      ...(reuse ? ['s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)'] : []),
      "s.bind(('192.168.250.1', 4789))",
      "print('ready', flush=True)",
      'time.sleep(60)',
    ].join('\n')])
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setInterval(() => {
          if (holder.stdout().includes('ready')) { clearInterval(timer); resolve() }
          if (holder.child.exitCode !== null) { clearInterval(timer); reject(new Error(`holder exited: ${holder.stderr()}`)) }
        }, 20)
      })
      await assert.rejects(c.startAgent(a, hostConfig(a, [a, b], nets, [])), /another process already uses this UDP port/, `holder with SO_REUSEPORT ${reuse}`)
    } finally {
      holder.child.kill('SIGKILL')
      await holder.exited
    }
  }
})
