/**
 * The in-memory port doubles (src/ports/memory-port.ts) the datapath tests
 * stand on: they satisfy the datapath's interfaces and behave as documented.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DatagramIo, FrameIo } from '../../../src/datapath/datapath'
import { MemoryDatagramIo, MemoryFrameIo } from '../../../src/ports/memory-port'
import { HEADROOM, TxList } from '../../../src/lib/batch'

test('MemoryFrameIo: inject fills the batch, deliver calls back with the count, write records copies', () => {
  const io = new MemoryFrameIo({ slots: 4, slotSize: 256 })
  const asIo: FrameIo = io
  const calls: number[] = []
  assert.throws(() => io.deliver(), /not started/)
  asIo.start((n) => calls.push(n))
  io.inject([Uint8Array.of(1, 2, 3), Uint8Array.of(4)])
  assert.equal(io.deliver(), 2)
  assert.deepEqual(calls, [2])
  assert.deepEqual([io.rx.len[0], io.rx.len[1]], [3, 1])
  assert.deepEqual(io.rx.data.subarray(HEADROOM, HEADROOM + 3), Uint8Array.of(1, 2, 3))
  assert.deepEqual(io.rx.data.subarray(256 + HEADROOM, 256 + HEADROOM + 1), Uint8Array.of(4))
  assert.throws(() => io.inject([new Uint8Array(1), new Uint8Array(1), new Uint8Array(1), new Uint8Array(1), new Uint8Array(1)]), RangeError)
  assert.throws(() => io.inject([new Uint8Array(256 - HEADROOM + 1)]), RangeError)

  const slab = Uint8Array.of(9, 8, 7, 6, 5)
  assert.equal(asIo.write(slab, Uint32Array.of(1, 3), Uint32Array.of(2, 2), 2), 2)
  slab.fill(0)
  assert.deepEqual(io.sent, [Uint8Array.of(8, 7), Uint8Array.of(6, 5)])
  assert.equal(io.writes, 1)
  assert.deepEqual(io.take().length, 2)
  assert.deepEqual(io.sent, [])
  asIo.stop()
  assert.throws(() => io.deliver(), /not started/)
})

test('MemoryDatagramIo: inject fills rx.meta (addr, port, GRO size), send records each entry', () => {
  const io = new MemoryDatagramIo({ port: 4790, gsoEnabled: true, slots: 2, slotSize: 512 })
  const asIo: DatagramIo = io
  assert.equal(asIo.port, 4790)
  assert.equal(asIo.gsoEnabled, true)
  let got = -1
  asIo.start((n) => { got = n })
  io.inject([{ bytes: Uint8Array.of(1, 2), addr: 0xc0a8fa02, port: 5555, gso: 1 }, { bytes: Uint8Array.of(3), addr: 0xc0a8fa03, port: 6666 }])
  io.deliver()
  assert.equal(got, 2)
  assert.deepEqual(Array.from(io.rx.meta.subarray(0, 6)), [0xc0a8fa02, 5555, 1, 0xc0a8fa03, 6666, 0])

  const tx = new TxList(4)
  const slab = new Uint8Array(100).map((_, i) => i)
  tx.pushTo(10, 4, 0x0a000001, 4789, 0)
  tx.pushTo(20, 30, 0x0a000002, 4789, 10)
  assert.equal(asIo.send(slab, tx), 2)
  assert.deepEqual(io.sent, [
    { bytes: Uint8Array.of(10, 11, 12, 13), addr: 0x0a000001, port: 4789, gso: 0 },
    { bytes: slab.slice(20, 50), addr: 0x0a000002, port: 4789, gso: 10 },
  ])
})

test('MemoryDatagramIo refuses what the kernel would: GSO without GSO, > 64 segments, > 65507 bytes', () => {
  const slab = new Uint8Array(70000)
  const plain = new MemoryDatagramIo({ gsoEnabled: false })
  const tx = new TxList(4)
  tx.pushTo(0, 100, 1, 4789, 50)
  assert.equal(plain.send(slab, tx), 0)
  assert.deepEqual(Array.from(plain.txCounters), [0, 1, 22])

  const gso = new MemoryDatagramIo({ gsoEnabled: true })
  tx.count = 0
  tx.pushTo(0, 65 * 100, 1, 4789, 100) // 65 segments
  tx.pushTo(0, 65508, 1, 4789, 1400) // too large
  tx.pushTo(0, 64 * 100, 1, 4789, 100) // 64 segments: fine
  tx.pushTo(0, 65508, 1, 4789, 0) // too large without GSO too
  assert.equal(gso.send(slab, tx), 1)
  assert.equal(gso.sent.length, 1)
  assert.equal(gso.txCounters[1], 3)
})
