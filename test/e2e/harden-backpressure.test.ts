/**
 * Backpressure: a pod floods UDP at full speed (iperf3 -u -b 0) to a pod on
 * the other host for 10 s, more than the path carries. The sending agent's
 * resident memory (VmRSS of the agent process, sampled every 500 ms) stays
 * under a fixed bound: what does not fit is dropped and counted (the agents'
 * tx_backpressure / queue_full / tx_error, the kernel's TAP and socket
 * counters), not queued in memory. Afterwards the path still carries a ping.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing, waitFor } from '../harness/lab'
import { agentPid, assertAgentAlive, dropDelta, linkStats, rssKiB, sampler, stats, udpSnmp } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'

/** The bound on the sending agent's RSS during the flood. */
const RSS_LIMIT_KIB = 300 * 1024
const SECONDS = 10

test('a full-speed UDP flood across hosts: the sending agent\'s RSS stays bounded, drops are counted', { timeout: 180_000 }, async (t) => {
  const { lab, c, a, b, sockA, sockB, start } = twoHosts(t)
  const { s, r } = await start({
    a: [{ name: 's', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
    b: [{ name: 'r', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
  })
  const warm = await lab.execAsync(s.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', r.ip])
  assert.equal(parsePing(warm.stdout).received, 2, `warm-up: ${warm.stdout}`)
  const pid = agentPid(c, a)

  const srv = lab.spawn(r.ns, ['iperf3', '-s', '-1', '-J'])
  await waitFor('iperf3 server listening', () => lab.exec(r.ns, ['ss', '-ltn']).includes(':5201'))
  const beforeA = await stats(lab, a, sockA)
  const beforeB = await stats(lab, b, sockB)
  const tapBefore = linkStats(s.ns, 'eth0')
  const udpBBefore = udpSnmp(lab, b.ns)
  const udpRBefore = udpSnmp(lab, r.ns)
  const udpABefore = udpSnmp(lab, a.ns)
  const rTapBefore = linkStats(r.ns, 'eth0')
  const rss = sampler(() => rssKiB(pid), 500)
  const cli = await lab.execAsync(s.ns, ['iperf3', '-c', r.ip, '-u', '-b', '0', '-l', '1400', '-t', String(SECONDS), '-J'], (SECONDS + 30) * 1000)
  const samples = rss.stop()
  await srv.exited
  const afterA = await stats(lab, a, sockA)
  const afterB = await stats(lab, b, sockB)
  const tapAfter = linkStats(s.ns, 'eth0')
  const udpBAfter = udpSnmp(lab, b.ns)
  const udpRAfter = udpSnmp(lab, r.ns)
  const udpAAfter = udpSnmp(lab, a.ns)
  const rTapAfter = linkStats(r.ns, 'eth0')
  assertAgentAlive(c, a)
  assertAgentAlive(c, b)

  assert.equal(cli.code, 0, `iperf3 client: ${cli.stderr}${cli.stdout.slice(-500)}`)
  const report = JSON.parse(cli.stdout) as { end: { sum: { packets: number; lost_packets?: number } } }
  const serverEnd = JSON.parse(srv.stdout()) as { end: { sum: { packets: number; lost_packets: number } } }
  const sent = report.end.sum.packets
  const lost = serverEnd.end.sum.lost_packets
  const values = samples.map((x) => x.v).filter((v): v is number => v !== null)
  const max = Math.max(...values)
  const dA = dropDelta(beforeA, afterA)
  const dB = dropDelta(beforeB, afterB)
  const tapDrops = tapAfter.txDropped - tapBefore.txDropped
  const rcvbufErrors = (udpBAfter.RcvbufErrors ?? 0) - (udpBBefore.RcvbufErrors ?? 0)
  const podRcvbufErrors = (udpRAfter.RcvbufErrors ?? 0) - (udpRBefore.RcvbufErrors ?? 0)
  const hostASndbufErrors = (udpAAfter.SndbufErrors ?? 0) - (udpABefore.SndbufErrors ?? 0)
  const podRTapRxDropped = rTapAfter.rxDropped - rTapBefore.rxDropped
  t.diagnostic(JSON.stringify({
    sentDatagrams: sent, lostDatagrams: lost, rssKiB: { first: values[0], max, last: values[values.length - 1], samples: values.length },
    dropsA: dA, dropsB: dB, podTapTxDropped: tapDrops, hostASndbufErrors, hostBUdpRcvbufErrors: rcvbufErrors,
    podRTapRxDropped, podRUdpRcvbufErrors: podRcvbufErrors,
  }))
  assert.ok(values.length >= SECONDS * 2 - 1, `only ${values.length} RSS samples`)
  assert.ok(max < RSS_LIMIT_KIB, `the sending agent's RSS reached ${max} KiB (bound ${RSS_LIMIT_KIB}); samples ${values.join(' ')}`)
  // Load beyond the path: something was lost, and the loss shows in a counter somewhere along the path.
  const counted = Object.values(dA).reduce((x, y) => x + y, 0) + Object.values(dB).reduce((x, y) => x + y, 0) + tapDrops + rcvbufErrors +
    podRcvbufErrors + hostASndbufErrors + podRTapRxDropped
  // Every datagram lost is accounted for by some counter (iperf3's count and the counters are read at slightly different moments).
  assert.ok(counted >= lost * 0.95, `${lost} datagrams lost, ${counted} counted as dropped along the path`)
  const after = await lab.execAsync(s.ns, ['ping', '-c', '5', '-i', '0.1', '-W', '2', r.ip])
  assert.equal(parsePing(after.stdout).received, 5, `ping after the flood: ${after.stdout}`)
})
