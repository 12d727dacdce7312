/**
 * The underlay's priority lane (vxlan.priorityLane, overlay/steering.ts) in
 * running agents: pings between pods on two hosts are read through each
 * agent's priority socket while a TCP transfer beside them stays on the bulk
 * socket (its bytes intact, its hash equal); with the lane off there is one
 * socket and nothing is counted; and a port already in use is still an error
 * at start, although the lane's sockets share the port through SO_REUSEPORT.
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

test('pings go through the priority lane on both agents; a TCP transfer beside them does not', { timeout: 120_000 }, async (t) => {
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
})

test('with vxlan.priorityLane off: one socket, nothing counted, traffic flows', { timeout: 60_000 }, async (t) => {
  const { lab, a, b, sockB, start } = twoHosts(t)
  const { pa, pb } = await start({ ...PODS, extra: { vxlan: { priorityLane: false } } })
  assert.equal(lab.exec(a.ns, ['ss', '-uanH', 'sport = :4789']).trim().split('\n').filter(Boolean).length, 1)
  const ping = await lab.execAsync(pa.ns, ['ping', '-c', '50', '-i', '0.005', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(ping.stdout).received, 50, ping.stdout + ping.stderr)
  const s = await stats(lab, b, sockB)
  assert.equal(s.underlay.priorityRxFrames, 0)
  assert.ok(s.underlay.rxFrames >= 50)
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
