import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { Conntrack } from '../../../src/service/conntrack'
import { PROTO_TCP } from '../../../src/wire/ipv4'
import { TCP_SYN } from '../../../src/wire/tcp'

// 1,000,000 connections must fit in 200 bytes each. Measured as the growth of
// process.memoryUsage() (array buffers + JS heap) after a full GC, so dropped
// arrays from growth steps do not count and the table's own slack does.
// Timings are not asserted; the fill takes about a second.

const N = 1_000_000
const BUDGET_BYTES = 200

function gc(): void {
  v8.setFlagsFromString('--expose-gc')
  const collect = vm.runInNewContext('gc') as () => void
  collect()
  collect()
}

function used(): number {
  const m = process.memoryUsage()
  return m.arrayBuffers + m.heapUsed
}

test(`1,000,000 connections use at most ${BUDGET_BYTES} bytes each`, (t) => {
  gc()
  const before = used()
  const ct = new Conntrack({ maxConnections: N, seed: 3 })
  const vip = 0x0a600001
  for (let i = 0; i < N; i++) {
    // 1000 clients x 1000 ports, 100 backends
    const client = (0x0af40000 + (i % 1000)) >>> 0
    const cport = 10000 + Math.floor(i / 1000)
    const backend = (0x0af50000 + (i % 100)) >>> 0
    if (ct.create(client, vip, cport, 80, PROTO_TCP, backend, 8080, client, 0, i % 100, TCP_SYN, 0) < 0) {
      assert.fail(`create ${i} failed`)
    }
  }
  assert.equal(ct.size, N)
  assert.equal(ct.entries, 2 * N)
  gc()
  const perConn = (used() - before) / N
  // Keep the table alive until measured.
  assert.ok(ct.lookup(0x0af40000, vip, 10000, 80, PROTO_TCP, 1) >= 0)
  t.diagnostic(`conntrack: ${perConn.toFixed(1)} bytes per connection at ${N} connections`)
  assert.ok(perConn <= BUDGET_BYTES, `${perConn.toFixed(1)} bytes per connection`)
})
