/**
 * The underlay UDP batch path between two namespaces: 100,000 datagrams sent with
 * sendmmsg to per-datagram destinations, received with recvmmsg, and echoed to the
 * source address each batch reported — so a wrong source address loses the echo.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { Lab, waitFor } from '../harness/lab'

const PEER = path.join(__dirname, 'fixtures', 'udp-peer.js')
const COUNT = 100_000

test('100,000 datagrams through recvmmsg/sendmmsg with correct source addresses', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const a = lab.netns('ua')
  const b = lab.netns('ub')
  lab.veth(a, 'eth0', b, 'eth0', '10.99.0.1/24', '10.99.0.2/24')

  const echo = lab.spawn(b, [process.execPath, PEER, 'echo', '10.99.0.2', '7777', String(COUNT)])
  await waitFor('echo peer ready', () => echo.stdout().includes('ready'))
  const send = lab.spawn(a, [process.execPath, PEER, 'send', '10.99.0.1', '10.99.0.2', '7777', String(COUNT), '256'])
  const code = await send.exited
  assert.equal(code, 0, send.stderr())
  const s = JSON.parse(send.stdout().trim())
  assert.equal(s.echoed, COUNT, `only ${s.echoed} of ${COUNT} datagrams came back: ${send.stdout()}`)
  assert.equal(s.badSource, 0)

  await waitFor('echo summary', () => echo.stdout().includes('{'))
  const e = JSON.parse(echo.stdout().split('\n').find((l) => l.startsWith('{'))!)
  // Every datagram the echo side saw was reported from A's address (one ephemeral port).
  const sources = Object.keys(e.sources)
  assert.equal(sources.length, 1, `sources: ${JSON.stringify(e.sources)}`)
  assert.match(sources[0], /^10\.99\.0\.1:\d+$/)
  assert.ok(e.seen >= COUNT)
  assert.ok(e.maxBatch > 1, `recvmmsg never returned more than one datagram (max ${e.maxBatch})`)
})
