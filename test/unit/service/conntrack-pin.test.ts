/**
 * Conntrack.pin (datapath workers): every connection's reply tuple hashes to
 * the table's own worker, as the steering programs will read it
 * (wire/steer-hash.ts); a client port that already does is kept, one that
 * does not is remapped (counted), the choice repeats for the same connection
 * (a restarted agent picks the same port), the reply tuple matches back to
 * its connection, and remapped ports stay below the ephemeral ranges.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Conntrack, CtCounter, CT_DIR_REPLY, REMAP_PORT_END, REMAP_PORT_MIN } from '../../../src/service/conntrack'
import { PROTO_TCP, PROTO_UDP } from '../../../src/wire/ipv4'
import { TCP_SYN } from '../../../src/wire/tcp'
import { steerWorkerV4 } from '../../../src/wire/steer-hash'
import { ipv4Parse } from '../../../src/wire/addr'

const CLIENT = ipv4Parse('10.244.1.2')
const VIP = ipv4Parse('10.96.0.10')
const BACKEND = ipv4Parse('10.244.2.7')

/** The port the backend sees for connection c (its reply tuple's destination port). */
function seenPort(ct: Conntrack, c: number): number {
  return Number(ct.list().find((x) => x.id === c)!.source.split(':')[1])
}

for (const workers of [2, 3, 4, 16]) {
  test(`pinned to each of ${workers} workers, every reply tuple hashes to the table's own worker`, () => {
    for (let worker = 0; worker < workers; worker++) {
      const ct = new Conntrack({ maxConnections: 4096 })
      ct.pin(workers, worker)
      let kept = 0
      for (let i = 0; i < 500; i++) {
        const cport = 32768 + 2 * i
        const proto = i % 2 === 0 ? PROTO_TCP : PROTO_UDP
        const c = ct.create(CLIENT, VIP, cport, 80, proto, BACKEND, 8080, CLIENT, 0, 0, proto === PROTO_TCP ? TCP_SYN : 0, 0)
        assert.ok(c >= 0, `connection ${i} created`)
        const p = seenPort(ct, c)
        assert.equal(steerWorkerV4(BACKEND, CLIENT, 8080, p, workers), worker, `connection ${i}: port ${p}`)
        if (p === cport) kept++
        else assert.ok(p >= REMAP_PORT_MIN && p < REMAP_PORT_END, `connection ${i}: remapped to ${p}, inside the ephemeral ranges`)
        // The reply the backend sends to that port finds the connection.
        const e = ct.lookup(BACKEND, CLIENT, 8080, p, proto, 1)
        assert.equal(ct.connOf(e), c)
        assert.equal(ct.dirOf(e), CT_DIR_REPLY)
      }
      // About 1/workers of the client ports already hash right and are kept.
      assert.ok(kept > 500 / workers / 2 && kept < (500 / workers) * 2, `${kept} of 500 kept with ${workers} workers`)
      assert.equal(ct.counters[CtCounter.PortRemapped], 500 - kept)
    }
  })
}

test('the remapped port is the same for the same connection in a new table (a restarted agent)', () => {
  const ports = (): number[] => {
    const ct = new Conntrack({ maxConnections: 64 })
    ct.pin(4, 3)
    return Array.from({ length: 40 }, (_, i) => seenPort(ct, ct.create(CLIENT, VIP, 40000 + 2 * i, 80, PROTO_TCP, BACKEND, 8080, CLIENT, 0, 0, TCP_SYN, 0)))
  }
  assert.deepEqual(ports(), ports())
})

test('without pin (one worker) client ports are kept; pin refuses a worker outside the range', () => {
  const ct = new Conntrack({ maxConnections: 64 })
  for (let i = 0; i < 20; i++) assert.equal(seenPort(ct, ct.create(CLIENT, VIP, 40000 + i, 80, PROTO_TCP, BACKEND, 8080, CLIENT, 0, 0, TCP_SYN, 0)), 40000 + i)
  assert.equal(ct.counters[CtCounter.PortRemapped], 0)
  assert.throws(() => ct.pin(2, 2), RangeError)
  assert.throws(() => ct.pin(0, 0), RangeError)
})
