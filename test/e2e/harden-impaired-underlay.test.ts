/**
 * An impaired underlay: what host A sends on it is lost (1%), delayed (20 ms
 * with 5 ms jitter) and reordered (netem's `reorder 25% 50%`: a quarter of the
 * packets, correlated, go at once past the delayed ones). A 20 MB TCP transfer
 * from a pod on A to a pod on B completes with the right bytes (same length,
 * same SHA-256 on both ends): the dataplane neither corrupts nor wedges when
 * the underlay misbehaves.
 *
 * tc netem is used when the kernel has it; otherwise (CONFIG_NET_SCH_NETEM
 * unset, as on some CI kernels) a userspace relay in the underlay namespace
 * does the same to A's frames (harness/harden.ts impairEgress), and the test
 * checks that the relay did lose, delay and reorder frames.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing } from '../harness/lab'
import { tcpTransfer } from '../harness/xfer'
import { assertAgentAlive, impairEgress } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'

const BYTES = 20_000_000

test('a 20 MB TCP transfer between pods completes intact over a lossy, delaying, reordering underlay', { timeout: 300_000 }, async (t) => {
  const { lab, c, a, b, start } = twoHosts(t)
  const { a1, b1 } = await start({
    a: [{ name: 'a1', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
    b: [{ name: 'b1', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
  })

  const imp = await impairEgress(lab, c, a, { lossPct: 1, delayMs: 20, jitterMs: 5, reorderPct: 25, reorderCorrPct: 50 }, [b])
  t.diagnostic(`impairment: ${imp.mode}`)
  // The path works at all through the impairment (a lost echo is fine: 1% loss).
  const warm = await lab.execAsync(a1.ns, ['ping', '-c', '10', '-i', '0.1', '-W', '2', b1.ip], 30_000)
  assert.ok(parsePing(warm.stdout).received >= 5, `warm-up through the impaired underlay: ${warm.stdout}`)

  const r = await tcpTransfer(lab, a1.ns, b1.ns, b1.ip, BYTES)
  const what = await imp.stop()
  t.diagnostic(`impairment did: ${JSON.stringify(what)}`)
  assertAgentAlive(c, a)
  assertAgentAlive(c, b)
  assert.equal(r.sent.bytes, BYTES)
  assert.equal(r.received.bytes, BYTES, 'bytes received')
  assert.equal(r.received.sha256, r.sent.sha256, 'the data differs')
  if (typeof what !== 'string') {
    // The relay really impaired the transfer's frames (netem's own counters are in its statistics text).
    assert.ok(what.lost > 0 && what.delayed > 0 && what.immediate > 0 && what.reordered > 0, `relay statistics: ${JSON.stringify(what)}`)
    assert.ok(what.fromA > BYTES / 1500, `the relay saw ${what.fromA} frames from A`)
  }
})
