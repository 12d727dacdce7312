import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Conntrack, CtCounter } from '../../../src/service/conntrack'
import { PROTO_TCP, PROTO_UDP } from '../../../src/wire/ipv4'
import { TCP_ACK as A, TCP_FIN as F, TCP_SYN as S } from '../../../src/wire/tcp'
import { BACKEND, newCt, open, send } from './conntrack-steps'

const MIN = 60_000

/** An assured (handshake completed) connection from client port `cport` at `now`. */
function established(ct: Conntrack, cport: number, now: number): number {
  const c = open(ct, S, now, PROTO_TCP, cport)
  send(ct, { dir: 'r', flags: S | A, now }, PROTO_TCP, cport)
  send(ct, { dir: 'o', flags: A, now }, PROTO_TCP, cport)
  return c
}

function alive(ct: Conntrack, cport: number, now: number): boolean {
  return send(ct, { dir: 'o', flags: A, now }, PROTO_TCP, cport) >= 0
}

test('when full, creating a connection that already exists is refused without evicting anything', () => {
  const ct = newCt({ maxConnections: 2 })
  open(ct, S, 10, PROTO_TCP, 1)
  open(ct, S, 20, PROTO_TCP, 2)
  assert.equal(open(ct, S, 30, PROTO_TCP, 2), -1)
  assert.equal(ct.counters[CtCounter.Exists], 1)
  assert.equal(ct.counters[CtCounter.Evicted], 0)
  for (const p of [1, 2]) assert.ok(ct.lookup(...tuple(p), 30) >= 0, `port ${p} kept`)
})

test('when full, the least recently used unassured connection goes first', () => {
  const ct = newCt({ maxConnections: 4 })
  established(ct, 1, 0)
  established(ct, 2, 0)
  open(ct, S, 10, PROTO_TCP, 3) // half-open, older
  open(ct, S, 20, PROTO_TCP, 4) // half-open, newer
  assert.ok(open(ct, S, 30, PROTO_TCP, 5) >= 0)
  assert.equal(ct.counters[CtCounter.Evicted], 1)
  assert.equal(ct.lookup(...tuple(3), 30), -1, 'oldest half-open evicted')
  for (const p of [1, 2, 4, 5]) assert.ok(ct.lookup(...tuple(p), 30) >= 0, `port ${p} kept`)
})

test('a SYN flood recycles its own entries and never evicts active established connections', () => {
  const ct = newCt({ maxConnections: 8 })
  for (let p = 1; p <= 5; p++) established(ct, p, 0)
  let t = 0
  for (let i = 0; i < 10_000; i++) {
    t += 1
    assert.ok(open(ct, S, t, PROTO_TCP, 10_000 + (i % 50_000)) >= 0)
    if (i % 1000 === 0) for (let p = 1; p <= 5; p++) assert.ok(alive(ct, p, t)) // the real clients keep talking
  }
  for (let p = 1; p <= 5; p++) assert.ok(alive(ct, p, t), `established ${p} survived`)
  assert.equal(ct.size, 8)
  assert.equal(ct.counters[CtCounter.Evicted], 10_000 - 3)
})

test('an unanswered UDP flow and a picked-up TCP flow are cheap too; TIME_WAIT is cheap', () => {
  const ct = newCt({ maxConnections: 3 })
  established(ct, 1, 0)
  const tw = established(ct, 2, 0)
  send(ct, { dir: 'o', flags: F | A, now: 1 }, PROTO_TCP, 2)
  send(ct, { dir: 'r', flags: F | A, now: 1 }, PROTO_TCP, 2)
  send(ct, { dir: 'o', flags: A, now: 1 }, PROTO_TCP, 2) // TIME_WAIT, still assured
  assert.ok(tw >= 0)
  established(ct, 3, 2) // newest, most recently used
  assert.ok(open(ct, 0, 3, PROTO_UDP, 4) >= 0) // evicts the TIME_WAIT one, not the older ESTABLISHED 1
  assert.equal(ct.lookup(...tuple(2), 3), -1)
  assert.ok(ct.lookup(...tuple(1), 3) >= 0)
  assert.ok(open(ct, A, 4, PROTO_TCP, 5) >= 0) // evicts the unanswered UDP flow
  assert.equal(ct.lookup(...tuple(4, PROTO_UDP), 4), -1)
  assert.ok(open(ct, A, 5, PROTO_TCP, 6) >= 0) // evicts the unassured pickup (port 5)
  assert.equal(ct.lookup(...tuple(5), 5), -1)
  assert.equal(ct.counters[CtCounter.Evicted], 3)
})

test('with only recently active assured connections, a new one is refused', () => {
  const ct = newCt({ maxConnections: 2 })
  established(ct, 1, 0)
  established(ct, 2, 0)
  assert.equal(open(ct, S, MIN - 1, PROTO_TCP, 3), -1)
  assert.equal(ct.counters[CtCounter.Full], 1)
  assert.equal(ct.size, 2)
})

test('an assured connection idle for evictAssuredIdleS may go, least recently used first', () => {
  const ct = newCt({ maxConnections: 2 })
  established(ct, 1, 0)
  established(ct, 2, 0)
  assert.ok(alive(ct, 1, 10)) // 2 is now the least recently used
  assert.ok(open(ct, S, MIN, PROTO_TCP, 3) >= 0)
  assert.equal(ct.lookup(...tuple(2), MIN), -1)
  assert.ok(ct.lookup(...tuple(1), MIN) >= 0)
  assert.equal(ct.counters[CtCounter.Evicted], 1)
})

test('an expired assured connection is taken before any live one', () => {
  const ct = newCt({ maxConnections: 2, timeouts: { tcpEstablishedS: 100 } })
  established(ct, 1, 0)
  open(ct, S, 99_000, PROTO_TCP, 2)
  assert.ok(open(ct, S, 100_000, PROTO_TCP, 3) >= 0)
  assert.equal(ct.counters[CtCounter.Expired], 1)
  assert.equal(ct.counters[CtCounter.Evicted], 0)
  assert.ok(ct.lookup(...tuple(2), 100_000) >= 0)
})

test('hooks see every create and every removal, whatever the reason', () => {
  const opened: number[] = []
  const closed: number[] = []
  const ct = newCt({ maxConnections: 3, onCreate: (ep) => opened.push(ep), onClose: (ep) => closed.push(ep) })
  open(ct, S, 0, PROTO_TCP, 1, 11)
  open(ct, 0, 0, PROTO_UDP, 2, 12)
  open(ct, S, 0, PROTO_TCP, 3, 13)
  open(ct, S, 1, PROTO_TCP, 4, 14) // evicts ep 11's connection
  ct.sweep(31_000) // the UDP one (ep 12) expires
  ct.flush() // 13 and 14
  assert.deepEqual(opened, [11, 12, 13, 14])
  assert.deepEqual(closed.sort(), [11, 12, 13, 14])
  assert.equal(ct.size, 0)
  assert.equal(ct.entries, 0)
})

test('flushEndpoint removes UDP connections to an address and keeps TCP ones', () => {
  const ct = newCt()
  open(ct, 0, 0, PROTO_UDP, 1)
  open(ct, 0, 0, PROTO_UDP, 2)
  established(ct, 3, 0)
  assert.equal(ct.flushEndpoint(BACKEND + 1), 0)
  assert.equal(ct.flushEndpoint(BACKEND, PROTO_UDP, 99), 0, 'another service')
  assert.equal(ct.flushEndpoint(BACKEND), 2)
  assert.equal(ct.size, 1)
  assert.equal(ct.counters[CtCounter.Flushed], 2)
})

test('a reply tuple already taken gets another source port', () => {
  const ct = newCt()
  const VIP2 = 0x0a60000b
  const c1 = open(ct, S, 0, PROTO_TCP, 5000)
  // Same client port to another VIP balanced to the same endpoint port.
  const c2 = ct.create(0x0af4010a, VIP2, 5000, 80, PROTO_TCP, 0x0af40214, 8080, 0x0af4010a, 2, 0, S, 0)
  assert.ok(c1 >= 0 && c2 >= 0)
  assert.equal(ct.counters[CtCounter.PortRemapped], 1)
  ct.translate(ct.origEntry(c2))
  assert.notEqual(ct.natSport, 5000)
  // Below the ephemeral ranges, where the client's own connections take their ports.
  assert.ok(ct.natSport >= 1024 && ct.natSport < 32768, `port ${ct.natSport}`)
  const back = ct.lookup(0x0af40214, 0x0af4010a, 8080, ct.natSport, PROTO_TCP, 0)
  assert.equal(ct.connOf(back), c2)
  ct.translate(back)
  assert.deepEqual([ct.natSrc, ct.natSport, ct.natDst, ct.natDport], [VIP2, 80, 0x0af4010a, 5000])
})

test('list() shows each connection with readable fields', () => {
  const ct = newCt()
  established(ct, 40000, 1000)
  assert.deepEqual(ct.list(2000), [{
    id: 0, proto: 'tcp', state: 'ESTABLISHED', assured: true,
    client: '10.244.1.10:40000', vip: '10.96.0.10:80', backend: '10.244.2.20:8080', source: '10.244.1.10:40000',
    serviceId: 1, endpointSlot: 0, idleMs: 1000, expiresInMs: 432_000_000 - 1000,
  }])
})

function tuple(cport: number, proto = PROTO_TCP): [number, number, number, number, number] {
  return [0x0af4010a, 0x0a60000a, cport, 80, proto]
}
