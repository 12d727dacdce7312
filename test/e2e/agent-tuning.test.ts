/**
 * The latency knobs of the agent's config: vxlan.rcvbufBytes sets the VXLAN
 * socket's receive buffer (the queue in front of a bottlenecked agent), and
 * busyPollUs keeps the loop polling after each batch. Two hosts, one pod each,
 * host A with both knobs set: the socket's buffer is the one asked for (as ss
 * shows it: Linux doubles SO_RCVBUF for its bookkeeping), pings and a TCP
 * transfer with a hash check go through with busy polling on, and the idle
 * agent stops spinning once traffic stops. And cpuLatencyUs: the kernel's PM QoS
 * limit (read back from /dev/cpu_dma_latency) is the agent's value while it
 * runs, follows a reload, and is back to what it was when the agent stops.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { tcpTransfer } from '../harness/xfer'
import { readProcCpu } from '../../bench/lib/e2e-loads'
import { readCpuLatency } from '../../src/ports/cpu-latency'

test('vxlan.rcvbufBytes and busyPollUs are applied; traffic flows with busy polling', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ta', 1)
  const b = c.addHost('tb', 2)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const pa = { ns: c.podNs('tpa'), ip: '10.244.1.2' }
  const pb = { ns: c.podNs('tpb'), ip: '10.244.2.2' }
  const agentA = await c.startAgent(a, hostConfig(a, c.hosts, nets, [{ name: 'tpa', network: 'blue', netns: pa.ns, ip: `${pa.ip}/16` }], {
    vxlan: { rcvbufBytes: 300_000 }, busyPollUs: 200,
  }))
  await c.startAgent(b, hostConfig(b, c.hosts, nets, [{ name: 'tpb', network: 'blue', netns: pb.ns, ip: `${pb.ip}/16` }]))

  // skmem: rb<receive buffer>. Host A's VXLAN socket has 2 x 300000; host B's the default (2 x 8 MiB).
  // The priority lane's socket on the same port keeps the system default, which is smaller.
  const rb = (ns: string): number => {
    const out = lab.exec(ns, ['ss', '-uamnH', 'sport = :4789'])
    const all = [...out.matchAll(/rb(\d+)/g)].map((m) => Number(m[1]))
    assert.equal(all.length, 2, `bulk and priority sockets in ${out}`)
    return Math.max(...all)
  }
  assert.equal(rb(a.ns), 600_000)
  assert.equal(rb(b.ns), 2 * 8 * 1024 * 1024)

  const r = await lab.execAsync(pa.ns, ['ping', '-c', '200', '-i', '0.002', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(r.stdout).received, 200, r.stdout + r.stderr)
  const x = await tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 20_000_000)
  assert.equal(x.received.bytes, 20_000_000)
  assert.equal(x.received.sha256, x.sent.sha256)

  // Idle again: the busy-poll window has closed, the agent sleeps (well under half a core).
  const pid = agentA.child.pid as number
  await new Promise((res) => setTimeout(res, 300))
  const before = readProcCpu(pid) as number
  await new Promise((res) => setTimeout(res, 2000))
  const used = (readProcCpu(pid) as number) - before
  assert.ok(used < 1, `the idle agent used ${used.toFixed(2)} CPU-s in 2 s`)
})

test('cpuLatencyUs holds a PM QoS CPU latency request while the agent runs, follows a reload and is dropped when the agent stops', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ta', 1)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const base = readCpuLatency()
  t.diagnostic(`limit before: ${base} us`)
  assert.ok(base > 50, `another process already holds a CPU latency limit of ${base} us; this test needs none below 50`)
  const cfg = (extra: Record<string, unknown>) => hostConfig(a, c.hosts, nets, [], extra)
  await c.startAgent(a, cfg({ cpuLatencyUs: 0 }))
  assert.equal(readCpuLatency(), 0)
  await c.reload(a, cfg({ cpuLatencyUs: 50 }))
  assert.equal(readCpuLatency(), 50)
  await c.reload(a, cfg({}))
  assert.equal(readCpuLatency(), base)
  await c.reload(a, cfg({ cpuLatencyUs: 7 }))
  assert.equal(readCpuLatency(), 7)
  assert.equal(await c.stopAgent(a), 0)
  assert.equal(readCpuLatency(), base)
})
