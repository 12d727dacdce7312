/**
 * Storm control: a pod sends broadcast frames as fast as an AF_PACKET socket
 * takes them for a few seconds. With storm.floodPerSecond R and burst B, the
 * other pods (one on the same host, one across the overlay) receive at most
 * about R * duration + B of them (the bound allows a second more), the rest is
 * counted as `storm` drops, and unicast traffic between the other pods flows
 * without loss.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing } from '../harness/lab'
import { assertAgentAlive, countFrames, dropDelta, macHex, sendRaw, stats } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'

const RATE = 100
const BURST = 50
const SECONDS = 3

test('storm control: a broadcast flood reaches other pods at most at floodPerSecond, the rest counted as storm', { timeout: 180_000 }, async (t) => {
  const { lab, c, a, sockA, start } = twoHosts(t)
  const storm = { floodPerSecond: RATE, burst: BURST }
  const { s, r1, r2 } = await start({
    a: [{ name: 's', ip: '10.244.1.9', mac: '02:00:0a:f4:01:09' }, { name: 'r1', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
    b: [{ name: 'r2', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
    extra: { storm },
  })
  const warm = await lab.execAsync(r1.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', r2.ip])
  assert.equal(parsePing(warm.stdout).received, 2, `warm-up: ${warm.stdout}`)

  const counters = [await countFrames(lab, r1.ns, 'eth0', '88b5'), await countFrames(lab, r2.ns, 'eth0', '88b5')]
  const before = await stats(lab, a, sockA)
  const ping = lab.execAsync(r1.ns, ['ping', '-c', '80', '-i', '0.05', '-W', '2', r2.ip], 60_000)
  // Broadcast, from s's own MAC (port security passes it), EtherType 0x88b5.
  const frame = 'ffffffffffff' + macHex(s.mac) + '88b5' + '00'.repeat(46)
  const sent = await sendRaw(lab, s.ns, 'eth0', { frames: [frame] }, SECONDS, 2_000_000)
  const p = parsePing((await ping).stdout)
  const after = await stats(lab, a, sockA)
  const [got1, got2] = [await counters[0].stop(), await counters[1].stop()]
  assertAgentAlive(c, a)

  const bound = RATE * (sent.seconds + 1) + BURST
  const readFromS = after.pods.s.rxFrames - before.pods.s.rxFrames
  const d = dropDelta(before, after)
  t.diagnostic(JSON.stringify({ sent: sent.sent, seconds: Number(sent.seconds.toFixed(2)), readFromS, receivedSameHost: got1, receivedOtherHost: got2, bound, drops: d }))
  assert.ok(readFromS > 2 * bound, `the agent read only ${readFromS} frames from s (${sent.sent} sent): no storm to control`)
  assert.ok(got1 >= BURST && got1 <= bound, `r1 (same host) received ${got1} broadcast frames in ${sent.seconds.toFixed(2)} s (bound ${bound})`)
  assert.ok(got2 >= BURST && got2 <= bound, `r2 (other host) received ${got2} broadcast frames (bound ${bound})`)
  assert.ok((d.storm ?? 0) >= readFromS - bound, `storm drops ${d.storm} for ${readFromS} frames read from s (bound ${bound}); drops ${JSON.stringify(d)}`)
  assert.equal(p.received, 80, `r1 -> r2 lost ${80 - p.received} of 80 during the storm`)
})
