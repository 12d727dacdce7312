/**
 * MAC flooding: a pod (port security off, so its frames are not refused for
 * their source) sends frames from a fresh random source MAC each, as fast as
 * an AF_PACKET socket takes them, for a few seconds. The FDB learns at most
 * fdb.maxPerPort of them on the flooder's port (read with `fdb show --json`),
 * refusals are counted, and pods on both hosts keep reaching each other.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing } from '../harness/lab'
import { fdbShow } from '../harness/fdb'
import { assertAgentAlive, sendRaw, stats } from '../harness/harden'
import { twoHosts } from '../harness/two-hosts'

const MAX_PER_PORT = 16

test('a pod flooding random source MACs cannot grow the FDB past fdb.maxPerPort; other traffic flows', { timeout: 180_000 }, async (t) => {
  const { lab, c, a, sockA, start } = twoHosts(t)
  const fdb = { maxPerPort: MAX_PER_PORT }
  const { f, a1, b1 } = await start({
    a: [
      { name: 'f', ip: '10.244.1.9', mac: '02:00:0a:f4:01:09', config: { portSecurity: false } },
      { name: 'a1', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' },
    ],
    b: [{ name: 'b1', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }],
    extra: { fdb },
  })
  const warm = await lab.execAsync(a1.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', b1.ip])
  assert.equal(parsePing(warm.stdout).received, 2, `warm-up: ${warm.stdout}`)
  const before = await stats(lab, a, sockA)

  // Both directions across the hosts, during the whole flood.
  const pings = [
    lab.execAsync(a1.ns, ['ping', '-c', '100', '-i', '0.05', '-W', '2', b1.ip], 60_000),
    lab.execAsync(b1.ns, ['ping', '-c', '100', '-i', '0.05', '-W', '2', a1.ip], 60_000),
  ]
  // Unicast to a1 (known), EtherType 0x88b5 (local experimental), a new source MAC per frame.
  const flood = await sendRaw(lab, f.ns, 'eth0', { randomSrc: true, dst: a1.mac, type: '88b5', len: 46 }, 4, 200_000)
  const [p1, p2] = (await Promise.all(pings)).map((r) => parsePing(r.stdout))
  const after = await stats(lab, a, sockA)
  const entries = await fdbShow(lab, a.ns, sockA)
  assertAgentAlive(c, a)

  const onFlooder = entries.filter((e) => e.pod === 'f' && e.type === 'learned')
  t.diagnostic(JSON.stringify({ sent: flood.sent, readFromF: after.pods.f.rxFrames - before.pods.f.rxFrames, learnedOnF: onFlooder.length, fdbEntries: entries.length, limitDrops: after.fdb.limitDrops - before.fdb.limitDrops }))
  assert.ok(flood.sent > 10 * MAX_PER_PORT, `the flooder sent only ${flood.sent} frames`)
  assert.ok(onFlooder.length <= MAX_PER_PORT, `${onFlooder.length} MACs learned on the flooder's port (maxPerPort ${MAX_PER_PORT})`)
  // Everything else in the table: the pods' static entries and b1 behind host B; a handful at most.
  assert.ok(entries.length <= MAX_PER_PORT + 8, `the FDB of A has ${entries.length} entries after ${flood.sent} invented MACs`)
  // Every frame the agent read from f with an invented MAC was learned (at most MAX_PER_PORT) or refused and
  // counted; f's own frames (ARP, IPv6) carry its static MAC. The kernel drops what the TAP queue cannot hold.
  const readFromF = after.pods.f.rxFrames - before.pods.f.rxFrames
  const refused = after.fdb.limitDrops - before.fdb.limitDrops
  assert.ok(readFromF > 10 * MAX_PER_PORT, `the agent read only ${readFromF} frames from f`)
  assert.ok(refused <= readFromF && refused >= readFromF - onFlooder.length - 50,
    `refusals counted: ${refused} for ${readFromF} frames read from f (${flood.sent} sent), ${onFlooder.length} learned`)
  assert.equal(p1.received, 100, `a1 -> b1 lost ${100 - p1.received} of 100 during the flood`)
  assert.equal(p2.received, 100, `b1 -> a1 lost ${100 - p2.received} of 100 during the flood`)
})
