/**
 * The TAP batch path end to end: the addon creates a TAP, it is moved into a
 * namespace as eth0, and the namespace pings an address that this test answers
 * from JavaScript (ARP and ICMP echo) through rxStart/writeBatch.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, uniqueName, parsePing } from '../harness/lab'
import { TapPort, VNET_HDR_LEN } from '../../src/ports/tap'
import { native } from '../../src/ports/native'
import { setupPodInterface } from '../../src/ports/netdev'
import { TxList } from '../../src/lib/batch'
import { ipv4Parse } from '../../src/wire/addr'
import { Responder } from './fixtures/responder'

for (const [vnetHdr, busyUs] of [[false, 0], [true, 0], [true, 200]] as const) {
  test(`10,000 pings answered from JavaScript through a TAP (vnet header ${vnetHdr ? 'on' : 'off'}${busyUs ? `, busy polling ${busyUs} us` : ''})`, async (t) => {
    const lab = new Lab()
    t.after(() => lab.cleanup())
    native.busyPoll(busyUs)
    t.after(() => native.busyPoll(0))
    const ns = lab.netns('pg')
    const tap = TapPort.open({ name: uniqueName('t0'), vnetHdr })
    lab.onCleanup(() => tap.close())
    assert.match(tap.name, /^tpy/)
    await setupPodInterface({ netns: ns, tapName: tap.name, ifname: 'eth0', mac: '02:00:0a:62:00:02', cidr: '10.98.0.2/24', mtu: 1500 })
    const shown = lab.exec(ns, ['ip', '-o', 'addr', 'show', 'dev', 'eth0'])
    assert.match(shown, /10\.98\.0\.2\/24/)

    const responder = new Responder(ipv4Parse('10.98.0.1'), 0x0200, 0x0a620001, vnetHdr ? VNET_HDR_LEN : 0)
    const tx = new TxList(tap.rx.slots)
    let batches = 0
    let maxBatch = 0
    tap.start((n) => {
      assert.ok(n >= 0, `rx error ${-n}`)
      batches++
      if (n > maxBatch) maxBatch = n
      tx.count = 0
      responder.answer(tap.rx, n, tx)
      tap.write(tap.rx.data, tx.offs, tx.lens, tx.count)
    })

    const r = await lab.execAsync(ns, ['ping', '-c', '10000', '-i', '0', '-l', '16', '-W', '2', '-q', '10.98.0.1'], 120_000)
    const p = parsePing(r.stdout)
    assert.equal(p.sent, 10000, r.stdout + r.stderr)
    assert.equal(p.received, 10000, r.stdout + r.stderr)
    assert.ok(responder.arpReplies >= 1, 'the kernel never asked for the MAC by ARP')
    assert.ok(responder.echoReplies >= 10000)
    assert.ok(maxBatch > 1, `every batch held one frame (batches ${batches})`)
    assert.equal(tap.txCounters[0] + tap.txCounters[1], 0, `tx drops: ${tap.txCounters}`)
    if (busyUs > 0) {
      // The window closes when traffic stops: an idle loop sleeps instead of spinning.
      await new Promise((r) => setTimeout(r, 50))
      const before = process.cpuUsage()
      await new Promise((r) => setTimeout(r, 500))
      const used = process.cpuUsage(before)
      const ms = (used.user + used.system) / 1000
      assert.ok(ms < 200, `the loop kept spinning after traffic stopped: ${ms.toFixed(0)} ms of CPU in 500 ms`)
    }
  })
}

test('busyPoll takes 0..100000 microseconds', () => {
  assert.throws(() => native.busyPoll(100001), RangeError)
  assert.throws(() => native.busyPoll(-1 as number), (e: Error) => e instanceof TypeError || e instanceof RangeError)
  assert.throws(() => native.busyPoll('50' as unknown as number), TypeError)
  native.busyPoll(100)
  native.busyPoll(0)
})

test('opening a TAP with a bad name fails with an errno code and a sentence', () => {
  assert.throws(() => TapPort.open({ name: 'bad/nm' }), (err: Error & { code?: string }) => {
    assert.ok(typeof err.code === 'string' && err.code.startsWith('E'), `code ${err.code}`)
    assert.match(err.message, /TUNSETIFF|TAP/)
    return true
  })
})

test('native calls with wrong argument types throw TypeError instead of crashing', () => {
  const tap = TapPort.open({ name: uniqueName('t9') })
  try {
    const n = require('../../src/ports/native').native
    assert.throws(() => n.writeBatch(tap.fd, 'nope', new Uint32Array(1), new Uint32Array(1), 1, new Float64Array(3)), TypeError)
    assert.throws(() => n.writeBatch(tap.fd, new Uint8Array(10), new Uint32Array([8]), new Uint32Array([10]), 1, new Float64Array(3)), RangeError)
    assert.throws(() => n.readBatch(tap.fd, new Uint8Array(100), 2048, 64, new Uint32Array(64), 64), RangeError)
    assert.throws(() => n.rxStop({}), TypeError)
  } finally {
    tap.close()
  }
})
